"""Protocol properties every channel in this package must have: shapes, average received power, gradient
flow to x, reuse of a sampled realisation, reproducibility per seed and different draws per seed."""

import math

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import (
    AWGN,
    TDL,
    Compose,
    IQImbalance,
    MultipathBlockFading,
    PhaseOffset,
    RandomIQImbalance,
    RappPA,
    RayleighBlockFading,
    RicianBlockFading,
    SalehPA,
    WienerPhaseNoise,
    make_generator,
)

FACTORIES = {
    "rayleigh": lambda: RayleighBlockFading(),
    "rician-6dB": lambda: RicianBlockFading(6.0),
    "rician-random-phase": lambda: RicianBlockFading(k_factor=2.0, random_los_phase=True),
    "multipath-trunc": lambda: MultipathBlockFading(3),
    "multipath-full-exp": lambda: MultipathBlockFading(4, 3.0, mode="full"),
    "tdl-a": lambda: TDL("A", 30e-9, bandwidth=10e6),
    "tdl-d-truncate": lambda: TDL("D", 30e-9, bandwidth=10e6, mode="truncate"),
    "tdl-c-mobile": lambda: TDL("C", 30e-9, bandwidth=10e6, speed=30.0),
    "random-iq": lambda: RandomIQImbalance(),
    "phase-offset-random": lambda: PhaseOffset(random=True),
    "wiener": lambda: WienerPhaseNoise(0.01, initial_phase="uniform"),
    "compose": lambda: Compose(RappPA(2.0, input_backoff_db=6.0), RandomIQImbalance(), RayleighBlockFading()),
}
# stages whose state is empty (deterministic maps)
DETERMINISTIC = {
    "iq-fixed": lambda: IQImbalance(0.1, 5.0),
    "phase-offset-fixed": lambda: PhaseOffset(30.0),
    "rapp": lambda: RappPA(3.0, input_backoff_db=3.0),
    "saleh": lambda: SalehPA(input_backoff_db=6.0),
}
# power-preserving on average for unit-energy i.i.d. symbols (PAs compress, so they are excluded)
POWER_PRESERVING = [k for k in FACTORIES if k != "compose"] + ["iq-fixed", "phase-offset-fixed"]
ALL = {**FACTORIES, **DETERMINISTIC}


def qpsk(batch, n, generator, device, dtype=torch.complex64):
    bits = torch.randint(0, 2, (batch, n, 2), generator=generator, device=device)
    s = (1 - 2 * bits).to(torch.float64) / math.sqrt(2.0)
    return torch.complex(s[..., 0], s[..., 1]).to(dtype)


@pytest.mark.parametrize("name", sorted(ALL))
def test_shapes_and_output_length(name, device):
    ch = ALL[name]()
    g = make_generator(0, device)
    x = qpsk(5, 12, g, device)
    y = ch(x, 0.1, generator=g)
    assert y.shape == (5, ch.output_length(12))
    assert y.dtype == x.dtype and y.device == x.device
    st = ch.sample_state(5, 12, generator=g, device=device)
    for k, v in st.items():
        assert v.shape[0] == 5, k
        assert v.device.type == torch.device(device).type


@pytest.mark.parametrize("name", POWER_PRESERVING)
def test_average_received_power_is_one(name, device):
    """E|y - n|^2 = 1 for unit-energy i.i.d. QPSK (over the samples fully covered by the block)."""
    ch = ALL[name]()
    g = make_generator(1, device)
    batch, n = 20000, 16
    if name.startswith("tdl"):
        batch, n = (1000 if "mobile" in name else 8000), 48  # the mobile draw costs n+L-1 CIR time steps
    x = qpsk(batch, n, g, device)
    y = ch(x, 0.0, generator=g)
    if isinstance(ch, (MultipathBlockFading, TDL)):
        lag0 = ch.lag0 if isinstance(ch, TDL) else 0
        L = ch.num_taps
        full = ch.mode == "full"
        # samples whose whole tap window lies inside the block
        start = L - 1 if full else max(L - 1 - lag0, 0)
        stop = n if full else n - lag0
        y = y[:, start:stop]
        assert y.shape[1] > 0
    p = y.abs().square().mean().item()
    # per-block power has variance <= ~1 (Rayleigh |h|^2 ~ Exp(1)); 5 sigma on the mean of `batch` blocks
    assert abs(p - 1.0) < 5.0 / math.sqrt(batch) + 1e-3, p


@pytest.mark.parametrize("name", sorted(ALL))
def test_gradient_flows_to_x(name):
    """Autograd Jacobian matches finite differences (complex128), with noise fixed."""
    ch = ALL[name]()
    g = make_generator(2)
    n = 6
    st = ch.sample_state(2, n, generator=g, dtype=torch.complex128)
    noise = torch.zeros(2, ch.output_length(n), dtype=torch.complex128)
    x = qpsk(2, n, g, "cpu", torch.complex128).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: ch(v, 0.3, st, noise=noise), (x,), eps=1e-6, atol=1e-5)
    y = ch(x, 0.3, st, generator=g)
    (gx,) = torch.autograd.grad(y.abs().square().sum(), x)
    assert torch.isfinite(torch.view_as_real(gx)).all() and gx.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_reuse_of_sampled_realisation(name, device):
    ch = FACTORIES[name]()
    g = make_generator(3, device)
    x1, x2 = qpsk(4, 10, g, device), qpsk(4, 10, g, device)
    st = ch.sample_state(4, 10, generator=g, device=device)
    assert st, "random channels must expose their realisation"
    a = ch(x1, 0.0, st)
    b = ch(x1, 0.0, st, generator=make_generator(99, device))
    assert torch.equal(a, b)
    # linear in x for a fixed realisation (all but the PA stages)
    if name != "compose":
        torch.testing.assert_close(ch(x1 + 2 * x2, 0.0, st), a + 2 * ch(x2, 0.0, st), rtol=1e-5, atol=1e-5)
    # a fresh draw differs
    assert not torch.allclose(ch(x1, 0.0, generator=g), a)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_reproducible_per_seed(name, device):
    ch = FACTORIES[name]()
    s1 = ch.sample_state(6, 8, generator=make_generator(7, device), device=device)
    s2 = ch.sample_state(6, 8, generator=make_generator(7, device), device=device)
    s3 = ch.sample_state(6, 8, generator=make_generator(8, device), device=device)
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)
    # noise too: the same generator seed gives bit-identical noisy outputs
    x = qpsk(6, 8, make_generator(0, device), device)
    y1 = ch(x, 0.5, generator=make_generator(11, device))
    y2 = ch(x, 0.5, generator=make_generator(11, device))
    assert torch.equal(y1, y2)


@pytest.mark.parametrize("name", ["rayleigh", "multipath-trunc", "tdl-a"])
def test_noise_variance_per_complex_sample(name):
    """With a fixed realisation, y - y_noiseless has variance N0 (N0/2 per real dimension)."""
    ch = FACTORIES[name]()
    g = make_generator(5)
    x = qpsk(2000, 32, g, "cpu")
    st = ch.sample_state(2000, 32, generator=g)
    no = 0.25
    w = ch(x, no, st, generator=g) - ch(x, 0.0, st)
    v_re, v_im = w.real.var().item(), w.imag.var().item()
    assert abs(v_re - no / 2) < 0.01 and abs(v_im - no / 2) < 0.01


@pytest.mark.parametrize("name", ["rayleigh", "multipath-trunc", "tdl-a", "random-iq", "wiener"])
def test_state_with_wrong_shape_is_config_error(name):
    ch = FACTORIES[name]()
    x = qpsk(4, 8, make_generator(0), "cpu")
    st = ch.sample_state(3, 8, generator=make_generator(0))
    with pytest.raises(ConfigError):
        ch(x, 0.0, st)
    with pytest.raises(ConfigError):
        ch(x, 0.0, {})


def test_complex128_state_and_output():
    for name in ("rayleigh", "multipath-full-exp", "tdl-a", "wiener"):
        ch = FACTORIES[name]()
        x = qpsk(3, 8, make_generator(0), "cpu", torch.complex128)
        y = ch(x, 0.1, generator=make_generator(1))
        assert y.dtype == torch.complex128
        st = ch.sample_state(3, 8, generator=make_generator(1), dtype=torch.complex128)
        assert all(v.dtype in (torch.complex128, torch.float64) for v in st.values())


def test_awgn_compose_with_impairment_keeps_one_noise_stage():
    ch = Compose(RandomIQImbalance(), AWGN())
    g = make_generator(0)
    x = qpsk(4, 8, g, "cpu")
    st = ch.sample_state(4, 8, generator=g)
    assert set(st) == {"0.epsilon", "0.delta"}
    noise = torch.zeros(4, 8, dtype=torch.complex64)
    torch.testing.assert_close(ch(x, 1.0, st, noise=noise), ch.stages[0](x, 0.0, {k[2:]: v for k, v in st.items()}))


@pytest.mark.parametrize("name", ["rayleigh", "multipath-full-exp", "tdl-a", "random-iq", "wiener", "compose"])
def test_vmap_over_tasks_matches_loop(name):
    """torch.vmap over a task axis (states stacked, noise pre-drawn) equals a Python loop over tasks."""
    ch = FACTORIES[name]()
    g = make_generator(9)
    tasks, batch, n = 3, 4, 8
    x = torch.stack([qpsk(batch, n, g, "cpu") for _ in range(tasks)])
    states = [ch.sample_state(batch, n, generator=g) for _ in range(tasks)]
    stacked = {k: torch.stack([s[k] for s in states]) for k in states[0]}
    w = torch.randn(tasks, batch, ch.output_length(n), dtype=torch.complex64, generator=g)
    y = torch.vmap(lambda xx, ss, ww: ch(xx, 0.2, ss, noise=ww))(x, stacked, w)
    ref = torch.stack([ch(x[t], 0.2, states[t], noise=w[t]) for t in range(tasks)])
    torch.testing.assert_close(y, ref)
