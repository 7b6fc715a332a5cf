"""Tests of the trainable constellation codec (geometry ownership, Sionna APP consistency, training)."""

import math

import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import AWGN, make_generator
from metacomm.codecs.base import random_bits
from metacomm.codecs.constellation import TrainableConstellation, bmd_rate


def _gray_16qam_reference():
    """Independent 16-QAM reference: the per-axis amplitude levels {-3, -1, 1, 3}/sqrt(10) (unit energy)."""
    levels = torch.tensor([-3.0, -1.0, 1.0, 3.0]) / math.sqrt(10.0)
    return levels


def test_init_is_unit_energy_gray_16qam():
    tc = TrainableConstellation(4, 8)
    p = tc.points().detach()
    assert p.shape == (16,)
    assert float(p.abs().square().mean()) == pytest.approx(1.0, abs=1e-6)
    levels = _gray_16qam_reference()
    for v in torch.cat([p.real, p.imag]):
        assert float((levels - v).abs().min()) < 1e-6
    labels = tc.encoder.labels()
    # Gray: every nearest neighbour (distance 2/sqrt(10)) differs in exactly one bit
    d = (p[:, None] - p[None, :]).abs()
    nn_pairs = (d - 2 / math.sqrt(10)).abs() < 1e-5
    hamming = (labels[:, None, :] != labels[None, :, :]).sum(-1)
    assert nn_pairs.sum() == 48 and torch.all(hamming[nn_pairs] == 1)


@pytest.mark.parametrize("demapper", ["neural", "app"])
def test_parameter_ownership(demapper):
    tc = TrainableConstellation(4, 8, demapper=demapper)
    names = [n for n, _ in tc.named_parameters(remove_duplicate=False)]
    assert len(names) == len(set(names)) == len(list(tc.parameters()))
    assert "encoder.points_r" in names and "encoder.points_i" in names
    if demapper == "app":
        assert sorted(names) == ["encoder.points_i", "encoder.points_r"]


def test_centred_and_normalised_after_perturbation():
    tc = TrainableConstellation(4, 8)
    with torch.no_grad():
        tc.encoder.points_r.add_(0.7)
        tc.encoder.points_i.mul_(3.0)
    p = tc.points().detach()
    assert abs(complex(p.mean())) < 1e-6
    assert float(p.abs().square().mean()) == pytest.approx(1.0, abs=1e-5)


def test_app_mode_matches_closed_form_and_has_gradients():
    tc = TrainableConstellation(4, 6, demapper="app")
    with torch.no_grad():
        tc.encoder.points_r.add_(0.05 * torch.randn(16, generator=make_generator(1)))
    g = make_generator(0)
    bits = random_bits(5, 24, generator=g)
    no = 0.2
    y = AWGN()(tc.encoder(bits), no, generator=g)
    llr = tc.decoder(y, no)
    pts = tc.points().detach()
    labels = tc.encoder.labels().bool()
    metric = -(y.detach()[..., None] - pts).abs().square() / no  # [B, n, 16]
    ref = torch.stack([torch.logsumexp(metric[..., labels[:, i]], -1) - torch.logsumexp(metric[..., ~labels[:, i]], -1)
                       for i in range(4)], -1).reshape(5, 24)
    torch.testing.assert_close(llr.detach(), ref, rtol=1e-4, atol=1e-4)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(llr, bits)
    loss.backward()
    assert tc.encoder.points_r.grad is not None and tc.encoder.points_r.grad.abs().sum() > 0


def test_functional_call_does_not_corrupt():
    tc = TrainableConstellation(4, 6, demapper="app")
    before = {k: v.clone() for k, v in tc.named_parameters()}
    new = {k: v + 0.3 * torch.randn(v.shape, generator=make_generator(2)) for k, v in before.items()}
    bits = random_bits(3, 24, generator=make_generator(0))
    x_new = torch.func.functional_call(tc.encoder, {"points_r": new["encoder.points_r"],
                                                    "points_i": new["encoder.points_i"]}, (bits,))
    x_old = tc.encoder(bits)
    assert not torch.allclose(x_new, x_old)
    for k, v in tc.named_parameters():
        assert isinstance(v, torch.nn.Parameter)
        torch.testing.assert_close(v.detach(), before[k])


@pytest.mark.parametrize("kwargs,field", [
    (dict(bits_per_symbol=3), "bits_per_symbol"), (dict(bits_per_symbol=0), "bits_per_symbol"),
    (dict(num_symbols=0), "num_symbols"), (dict(demapper="ml"), "demapper"), (dict(hidden=-1), "hidden"),
])
def test_bad_config(kwargs, field):
    with pytest.raises(ConfigError) as e:
        TrainableConstellation(**kwargs)
    assert e.value.field == field


def test_neural_demapper_learns_quickly():
    from metacomm.codecs.qam import UncodedQAM
    from metacomm.codecs.training import train

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tc = TrainableConstellation(4, 16, hidden=32)
        assert bmd_rate(tc, AWGN(), 8.0, num_blocks=200, seed=1) < 1.0  # untrained
        train(tc, AWGN(), train_ebno_db=8.0, steps=300, batch_size=32, lr=0.01, seed=0, progress=False,
              val_batch_size=200)
    finally:
        torch.set_num_threads(n)
    rate = bmd_rate(tc, AWGN(), 8.0, num_blocks=2000, seed=1)
    ref = bmd_rate(UncodedQAM(4, 16), AWGN(), 8.0, num_blocks=2000, seed=1)  # Gray 16-QAM + exact APP
    assert ref - 0.15 < rate <= ref + 0.05, (rate, ref)


@pytest.mark.slow
def test_trained_16_point_ber_no_worse_than_gray_qam():
    from metacomm.codecs.qam import UncodedQAM
    from metacomm.codecs.training import train

    eb = 8.0
    tc = TrainableConstellation(4, 64)
    train(tc, AWGN(), train_ebno_db=eb, steps=1500, batch_size=64, lr=0.005, seed=0, progress=False)
    ref = UncodedQAM(4, 64)
    no = 1 / (4 * 10 ** (eb / 10))

    def ber(c):
        g = make_generator(5)
        err = tot = 0
        with torch.no_grad():
            for _ in range(20):
                b = random_bits(2000, c.num_info_bits, generator=g)
                y = AWGN()(c.encoder(b), no, generator=g)
                err += int(((c.decoder(y, no) > 0).float() != b).sum())
                tot += b.numel()
        return err / tot, tot

    (b_tc, tot), (b_ref, _) = ber(tc), ber(ref)
    sigma = math.sqrt(b_ref / tot)  # ~binomial std (bits within a symbol are correlated: ~2x margin)
    assert b_tc <= b_ref + 4 * sigma, (b_tc, b_ref)
