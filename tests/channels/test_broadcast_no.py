"""metacomm.channels.units.broadcast_no: the one N0 -> tensor helper (shapes, dtypes, validation) and its users."""

import math

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import make_generator
from metacomm.channels.awgn import AWGN
from metacomm.channels.units import broadcast_no
from metacomm.codecs.constellation import TrainableConstellation
from metacomm.codecs.equalization import lmmse_equalize, one_tap_equalize
from metacomm.codecs.hamming import Hamming74
from metacomm.codecs.neural_rx import NeuralReceiver
from metacomm.codecs.qam import UncodedQAM

B, N = 3, 5


@pytest.mark.parametrize("like_dtype,out_dtype", [(torch.complex64, torch.float32), (torch.complex128, torch.float64),
                                                  (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_dtype_follows_the_samples(like_dtype, out_dtype):
    like = torch.zeros(B, N, dtype=like_dtype)
    for no in (0.25, torch.tensor(0.25, dtype=torch.float64), torch.full((B,), 0.25), torch.full((B, N), 0.25)):
        assert broadcast_no(no, like).dtype == out_dtype


def test_shapes_and_values():
    like = torch.zeros(B, N, dtype=torch.complex64)
    s = broadcast_no(0.5, like)
    assert s.shape == () and float(s) == 0.5
    per_block = torch.tensor([0.1, 0.2, 0.3])
    t = broadcast_no(per_block, like)
    assert t.shape == (B, 1) and t[:, 0].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert broadcast_no(torch.tensor([0.7]), like).shape == (1, 1)
    assert broadcast_no(per_block[:, None], like).shape == (B, 1)
    per_sample = torch.arange(1, B * N + 1, dtype=torch.float32).reshape(B, N)
    assert torch.equal(broadcast_no(per_sample, like), per_sample)
    # [B] against [B, N, n]: aligned with the leading dim, trailing singleton dims added.
    assert broadcast_no(per_block, torch.zeros(B, 2, N)).shape == (B, 1, 1)
    assert broadcast_no(torch.ones(B, 2), torch.zeros(B, 2, N)).shape == (B, 2, 1)
    # every shape broadcasts against the samples to the intended per-sample values
    full = torch.broadcast_to(broadcast_no(per_block, like), like.shape)
    assert torch.equal(full, per_block.repeat_interleave(N).reshape(B, N))


def test_gradient_flows_through_a_tensor_no():
    no = torch.tensor([0.1, 0.2, 0.3], requires_grad=True)
    broadcast_no(no, torch.zeros(B, N)).sum().backward()
    assert no.grad.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("bad", [torch.ones(B + 1), torch.ones(B, N + 1), torch.ones(N, B), torch.ones(B, N, 2),
                                 torch.ones(2, B, N)])
def test_bad_shapes(bad):
    with pytest.raises(ConfigError) as e:
        broadcast_no(bad, torch.zeros(B, N, dtype=torch.complex64), field="--ebno-db")
    assert e.value.field == "--ebno-db" and "allowed" in str(e.value)


def test_per_block_refuses_per_sample():
    like = torch.zeros(B, N)
    assert broadcast_no(torch.ones(B, 1), like, per_block=True).shape == (B, 1)
    with pytest.raises(ConfigError, match=r"\[batch, 1\]"):
        broadcast_no(torch.ones(B, N), like, per_block=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.1, 0.0, 0, torch.tensor(math.nan), torch.tensor(-1.0),
                                 torch.tensor([0.1, math.nan, 0.2]), torch.tensor([0.1, -0.2, 0.3]),
                                 torch.tensor([[0.1], [0.0], [0.3]]), torch.full((B, N), math.inf)])
def test_bad_values(bad):
    with pytest.raises(ConfigError) as e:
        broadcast_no(bad, torch.zeros(B, N, dtype=torch.complex64))
    assert e.value.field == "no" and "finite and > 0" in str(e.value)


def test_zero_only_where_allowed():
    like = torch.zeros(B, N)
    assert float(broadcast_no(0.0, like, allow_zero=True)) == 0.0
    assert broadcast_no(torch.zeros(B), like, allow_zero=True).shape == (B, 1)
    for bad in (-1e-9, math.nan, torch.tensor([0.0, -1.0, 0.0])):
        with pytest.raises(ConfigError, match=">= 0"):
            broadcast_no(bad, like, allow_zero=True)


def test_not_a_number():
    with pytest.raises(ConfigError, match="expected a number"):
        broadcast_no("loud", torch.zeros(B, N))
    with pytest.raises(ConfigError, match="expected a number"):
        broadcast_no(None, torch.zeros(B, N))


def test_inside_vmap_values_are_not_read():
    """Under torch.vmap the values cannot be read on the host: the shape logic works per task, no error."""
    nos = torch.tensor([0.1, 0.2])
    out = torch.vmap(lambda no: broadcast_no(no, torch.zeros(B, N)) * 2.0)(nos)
    assert out.shape == (2,) and out.tolist() == pytest.approx([0.2, 0.4])


def test_channel_noise_variance_per_block():
    """AWGN with one N0 per block: the empirical per-block noise power is that N0 (and 0 gives no noise)."""
    ch = AWGN()
    x = torch.zeros(3, 20000, dtype=torch.complex64)
    no = torch.tensor([0.01, 0.1, 1.0])
    y = ch(x, no, generator=make_generator(0))
    p = y.abs().square().mean(-1)
    assert p.tolist() == pytest.approx(no.tolist(), rel=0.05)  # SE of the power estimate ~0.7 %
    assert torch.equal(ch(x, 0.0, generator=make_generator(0)), x)
    for bad in (-0.1, math.nan, torch.tensor([0.1, -0.1, 0.1]), torch.ones(4)):
        with pytest.raises(ConfigError, match="no"):
            ch(x, bad, generator=make_generator(0))


def _users():
    y = torch.randn(B, 14, dtype=torch.complex64, generator=make_generator(1))
    return [
        ("qam", lambda no: UncodedQAM(2, 14).decoder(y, no)),
        ("hamming-ml", lambda no: Hamming74(num_codewords=2).decoder(y, no)),
        ("hamming-hard", lambda no: Hamming74("hard", num_codewords=2).decoder(y, no)),
        ("constellation-neural", lambda no: TrainableConstellation(2, 14).decoder(y, no)),
        ("constellation-app", lambda no: TrainableConstellation(2, 14, demapper="app").decoder(y, no)),
        ("neural-rx", lambda no: NeuralReceiver(2, 8, 4, 3).decoder(y[:, :14], no)),
        ("neural-rx-net", lambda no: NeuralReceiver(2, 8, 4, 3, architecture="net", hidden=8,
                                                    num_hidden_layers=1).decoder(y[:, :14], no)),
    ]


@pytest.mark.parametrize("name,decode", _users(), ids=[n for n, _ in _users()])
def test_decoders_refuse_nan_negative_and_zero_no(name, decode):
    decode(0.3)
    decode(torch.full((B,), 0.3))
    for bad in (math.nan, -0.3, 0.0, torch.tensor([0.3, math.nan, 0.3]), torch.tensor([0.3, 0.3, -1.0])):
        with pytest.raises(ConfigError) as e:
            decode(bad)
        assert e.value.field == "no"


def test_equalizers_accept_zero_refuse_nan_and_per_sample():
    g = make_generator(2)
    y = torch.randn(B, 4, dtype=torch.complex64, generator=g)
    h = torch.randn(B, 1, dtype=torch.complex64, generator=g)
    x_hat, no_eff = one_tap_equalize(y, h, 0.0)
    torch.testing.assert_close(x_hat, y / h)
    assert torch.all(no_eff == 0)
    H = torch.randn(B, 4, 4, dtype=torch.complex64, generator=g)
    for bad in (math.nan, -1.0, torch.ones(B, 4)):
        with pytest.raises(ConfigError, match="no"):
            one_tap_equalize(y, h, bad)
        with pytest.raises(ConfigError, match="no"):
            lmmse_equalize(y, H, bad)
