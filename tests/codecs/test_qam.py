"""Uncoded Gray QAM: energy, Gray labelling, round trip, LLRs against independent formulas."""

import itertools

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import AWGN, make_generator
from metacomm.codecs.qam import QAMMapper, UncodedQAM, broadcast_no

torch.set_num_threads(1)
MODS = [1, 2, 4, 6]


def _labels(m):
    return np.array([[(i >> (m - 1 - j)) & 1 for j in range(m)] for i in range(2 ** m)])


@pytest.mark.parametrize("m", MODS)
def test_unit_energy_and_zero_mean(m):
    p = QAMMapper(m).points.numpy().astype(np.complex128)
    assert p.shape == (2 ** m,)
    assert np.mean(np.abs(p) ** 2) == pytest.approx(1.0, abs=1e-6)
    assert abs(p.mean()) < 1e-6
    if m == 1:
        np.testing.assert_allclose(p, [1.0, -1.0], atol=0)  # real BPSK, bit 0 -> +1


@pytest.mark.parametrize("m", MODS)
def test_gray_labelling(m):
    p = QAMMapper(m).points.numpy().astype(np.complex128)
    lab = _labels(m)
    d = np.abs(p[:, None] - p[None, :])
    dmin = d[~np.eye(len(p), dtype=bool)].min()
    pairs = [(i, j) for i, j in itertools.combinations(range(len(p)), 2) if abs(d[i, j] - dmin) < 1e-5]
    # square QAM: every point has 2..4 nearest neighbours -> many pairs; each differs in exactly one bit
    assert len(pairs) >= len(p) - 1
    for i, j in pairs:
        assert np.sum(lab[i] != lab[j]) == 1, (i, j)


@pytest.mark.parametrize("m", MODS)
@pytest.mark.parametrize("demapping", ["app", "maxlog"])
def test_round_trip_high_snr(m, demapping, device):
    codec = UncodedQAM(m, 64, demapping, device=device)
    g = make_generator(1, device)
    bits = torch.randint(0, 2, (32, codec.num_info_bits), generator=g, device=device).float()
    x = codec.encoder(bits)
    assert x.shape == (32, 64) and x.dtype == torch.complex64 and x.device.type == torch.device(device).type
    assert (x.abs() ** 2).mean().item() == pytest.approx(1.0, abs=0.15)
    y = AWGN()(x, 1e-4, generator=g)
    llr = codec.decoder(y, 1e-4)
    assert llr.shape == bits.shape
    assert torch.equal((llr > 0).float(), bits)
    assert torch.equal(codec.decide(y, 1e-4), bits)
    assert codec.rate == m


def _app_llr_numpy(y, no, points, m):
    lab = _labels(m)
    metric = -np.abs(y[..., None] - points) ** 2 / no[..., None]  # [B, n, M]
    out = np.empty(y.shape + (m,))
    for i in range(m):
        one, zero = metric[..., lab[:, i] == 1], metric[..., lab[:, i] == 0]
        out[..., i] = np.logaddexp.reduce(one, axis=-1) - np.logaddexp.reduce(zero, axis=-1)
    return out.reshape(y.shape[0], -1)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_app_llr_matches_independent_formula_per_symbol_no(m):
    codec = UncodedQAM(m, 16, "app", precision="double")
    g = make_generator(3)
    bits = torch.randint(0, 2, (8, codec.num_info_bits), generator=g).double()
    x = codec.encoder(bits)
    no = 0.05 + torch.rand(8, 16, generator=g, dtype=torch.float64)  # per-symbol N0
    y = x + torch.randn(8, 16, dtype=torch.complex128, generator=g) * no.sqrt()
    llr = codec.decoder(y, no).numpy()
    ref = _app_llr_numpy(y.numpy(), no.numpy(), QAMMapper(m, precision="double").points.numpy(), m)
    np.testing.assert_allclose(llr, ref, rtol=1e-9, atol=1e-9)


def test_bpsk_llr_closed_form():
    codec = UncodedQAM(1, 10, "app", precision="double")
    y = torch.complex(torch.linspace(-2, 2, 10, dtype=torch.float64), torch.linspace(3, -1, 10,
                                                                                      dtype=torch.float64))[None]
    no = 0.7
    # ln P(b=1)/P(b=0) with b=0 -> +1: -4 Re(y) / N0 (imaginary part irrelevant)
    np.testing.assert_allclose(codec.decoder(y, no).numpy()[0], -4 * y.real.numpy()[0] / no, rtol=1e-12)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_app_and_maxlog_sign_agreement(m):
    app, mx = UncodedQAM(m, 256, "app"), UncodedQAM(m, 256, "maxlog")
    g = make_generator(5)
    bits = torch.randint(0, 2, (64, app.num_info_bits), generator=g).float()
    no = 10 ** (-12 / 10)  # Es/N0 = 12 dB
    y = AWGN()(app.encoder(bits), no, generator=g)
    l_app, l_mx = app.decoder(y, no), mx.decoder(y, no)
    agree = ((l_app > 0) == (l_mx > 0)).float().mean().item()
    assert agree > 0.995
    confident = l_app.abs() > 1.0
    assert torch.equal((l_app > 0)[confident], (l_mx > 0)[confident])
    # max-log is never less confident than APP for the winning hypothesis
    assert (l_mx.abs() + 1e-4 >= l_app.abs() - np.log(2 ** m)).all()


def test_noise_variance_shapes():
    codec = UncodedQAM(4, 8)
    g = make_generator(0)
    y = torch.randn(3, 8, dtype=torch.complex64, generator=g)
    a = codec.decoder(y, 0.3)
    b = codec.decoder(y, torch.full((3,), 0.3))
    c = codec.decoder(y, torch.full((3, 8), 0.3))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    with pytest.raises(ConfigError, match="no"):
        broadcast_no(torch.ones(5), y)
    with pytest.raises(ConfigError, match="no"):
        broadcast_no(torch.ones(3, 7), y)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="bits_per_symbol.*allowed"):
        UncodedQAM(3, 8)
    with pytest.raises(ConfigError, match="^decoder: .*app, maxlog"):
        UncodedQAM(2, 8, "ml")
    with pytest.raises(ConfigError, match="num_symbols"):
        UncodedQAM(2, 0)
    with pytest.raises(ConfigError, match="^device: "):
        UncodedQAM(2, 8, device="tpu")


def test_no_trainable_parameters_and_no_shared_modules():
    codec = UncodedQAM(4, 8)
    assert not list(codec.parameters())
    enc = {id(mod) for mod in codec.encoder.modules()}
    dec = {id(mod) for mod in codec.decoder.modules()}
    assert not enc & dec


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("demapping", ["app", "maxlog"])
def test_sign_slicer_decisions_equal_demapper_llr_signs(m, demapping):
    """The fast BPSK/QPSK slicer in decide() must agree with the sign of Sionna's demapper LLRs."""
    from metacomm.codecs.base import random_bits
    codec = UncodedQAM(m, num_symbols=64, demapping=demapping)
    g = make_generator(3)
    bits = random_bits(200, codec.num_info_bits, generator=g)
    y = AWGN()(codec.encoder(bits), 0.5, generator=g)
    llr_decisions = (codec.decoder(y, 0.5) > 0).float()
    assert torch.equal(codec.decide(y, 0.5), llr_decisions)
    assert (llr_decisions != bits).float().mean() > 0.01  # noisy enough that errors occur
