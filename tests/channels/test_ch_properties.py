"""Property-based tests (hypothesis) over every registered channel: for any finite input block, any batch size and
block length and any N0 >= 0, the output is finite, complex, shaped [batch, output_length(n)]; with N0 = 0 and a
reused state the channel is deterministic; AWGN adds noise of exactly the power asked for (in expectation)."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metacomm.channels import make_generator
from metacomm.channels.registry import CHANNEL_NAMES, make_channel
from metacomm.codecs.autoencoder import Autoencoder

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: settings a channel cannot do without (everything else at its defaults)
REQUIRED = {"phase-noise": {"variance": 0.01}}

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def blocks(draw):
    batch = draw(st.integers(1, 4))
    n = draw(st.integers(1, 12))
    re = draw(st.lists(finite, min_size=batch * n, max_size=batch * n))
    im = draw(st.lists(finite, min_size=batch * n, max_size=batch * n))
    x = torch.complex(torch.tensor(re).reshape(batch, n), torch.tensor(im).reshape(batch, n))
    return x


@SETTINGS
@given(name=st.sampled_from(CHANNEL_NAMES), x=blocks(), no=st.floats(0.0, 10.0), seed=st.integers(0, 2 ** 31))
def test_any_finite_input_gives_a_finite_output_of_the_declared_shape(name, x, no, seed):
    ch = make_channel(name, **REQUIRED.get(name, {}))
    g = make_generator(seed)
    B, n = x.shape
    state = ch.sample_state(B, n, generator=g)
    y = ch(x, no, state=state, generator=g)
    assert torch.is_complex(y) and y.shape == (B, ch.output_length(n))
    assert bool(torch.isfinite(torch.view_as_real(y)).all())
    # noiseless and with the same state: deterministic
    y0 = ch(x, 0.0, state=state, generator=make_generator(1))
    y1 = ch(x, 0.0, state=state, generator=make_generator(2))
    assert torch.equal(y0, y1)


@SETTINGS
@given(no=st.floats(0.01, 5.0), seed=st.integers(0, 2 ** 31))
def test_awgn_noise_power_is_n0_per_complex_sample(no, seed):
    ch = make_channel("awgn")
    x = torch.zeros(400, 50, dtype=torch.complex64)
    y = ch(x, no, generator=make_generator(seed))
    p = float(y.abs().square().mean())
    # 20000 samples of |w|^2 ~ Exp(no): relative standard deviation 1/sqrt(20000) = 0.7 %; allow 6 sigma
    assert abs(p / no - 1.0) < 6 / math.sqrt(20000)


@SETTINGS
@given(k=st.integers(1, 6), n=st.integers(1, 8), real_uses=st.booleans(), seed=st.integers(0, 1000))
def test_autoencoder_transmits_unit_energy_per_complex_use(k, n, real_uses, seed):
    if real_uses and n % 2:
        n += 1
    torch.manual_seed(seed)
    ae = Autoencoder(k, n, real_uses=real_uses)
    bits = torch.randint(0, 2, (64, k)).float()
    x = ae.encoder(bits)
    assert bool(torch.isfinite(torch.view_as_real(x)).all())
    energy = x.abs().square().sum(-1)  # block power normalisation: ||x||^2 = n_c per block
    assert torch.allclose(energy, torch.full_like(energy, ae.num_channel_uses), rtol=1e-4)
