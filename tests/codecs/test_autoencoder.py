"""Tests of the (n, k) autoencoder: architecture, energy, exact bit LLRs, and (slow) trained performance."""

import itertools
import math

import pytest
import torch
from torch import nn

from metacomm import ConfigError
from metacomm.channels import AWGN, make_generator
from metacomm.codecs.autoencoder import Autoencoder
from metacomm.codecs.base import random_bits


def _q(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def test_park_architecture_exact():
    ae = Autoencoder(4, 4, real_uses=False, hidden=16)
    enc = [(m.in_features, m.out_features) for m in ae.encoder.modules() if isinstance(m, nn.Linear)]
    dec = [(m.in_features, m.out_features) for m in ae.decoder.modules() if isinstance(m, nn.Linear)]
    assert enc == [(16, 16), (16, 8)]
    assert dec == [(8, 16), (16, 16)]
    assert [type(m) for m in ae.encoder.net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert [type(m) for m in ae.decoder.net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert sum(p.numel() for p in ae.parameters()) == (16 * 16 + 16 + 16 * 8 + 8) + (8 * 16 + 16 + 16 * 16 + 16)
    assert ae.num_channel_uses == 4 and ae.rate == 1.0


def test_one_hot_lookup_equals_matrix_product():
    ae = Autoencoder(3, 4, real_uses=False)
    idx = torch.arange(8)
    one_hot = torch.eye(8)
    r = ae.encoder.net(one_hot)  # plain matrix products on the one-hot vectors
    r = r * torch.rsqrt(r.square().sum(-1, keepdim=True) / 4)
    expect = torch.complex(r[:, :4], r[:, 4:])
    torch.testing.assert_close(ae.encoder.forward_index(idx), expect)


@pytest.mark.parametrize("k,n,real_uses", [(4, 7, True), (2, 2, True), (4, 4, False), (3, 5, True)])
def test_block_energy(k, n, real_uses, device):
    ae = Autoencoder(k, n, real_uses=real_uses).to(device)
    g = make_generator(0, device)
    x = ae.encoder(random_bits(64, k, generator=g))
    nc = n / 2 if real_uses else n
    assert x.shape == (64, math.ceil(n / 2) if real_uses else n) and x.is_complex()
    torch.testing.assert_close(x.abs().square().sum(-1), torch.full((64,), float(nc), device=device))
    if real_uses and n % 2:
        assert torch.all(x[:, -1].imag == 0)
    assert ae.rate == pytest.approx(k / nc)


def test_average_power_is_codebook_mean():
    ae = Autoencoder(4, 7, power="average")
    book = ae.encoder.codebook()
    assert book.shape == (16, 4)
    e = book.abs().square().sum(-1)
    assert float(e.mean().detach()) == pytest.approx(3.5, rel=1e-5)
    assert float(e.std().detach()) > 1e-3  # per-codeword energies are free under the average constraint
    # batch independence: the same message gives the same codeword whatever else is in the batch
    b1 = ae.encoder(torch.tensor([[0.0, 1, 1, 0]]))
    torch.testing.assert_close(b1[0], book[6])


def test_bit_llrs_are_exact_marginals():
    torch.manual_seed(0)
    ae = Autoencoder(3, 4, real_uses=False)
    y = torch.randn(10, 4, dtype=torch.complex64)
    logits = ae.decoder.block_logits(y).double()
    p = logits.softmax(-1)  # independent reference: sum the posteriors directly
    msgs = torch.tensor(list(itertools.product([0, 1], repeat=3)), dtype=torch.float64)  # MSB first
    p1 = p @ msgs
    expect = torch.log(p1) - torch.log(1 - p1)
    torch.testing.assert_close(ae.decoder(y, 0.1).double(), expect, rtol=1e-4, atol=1e-4)
    # decide = bits of the arg-max message, not the bit-wise signs
    torch.testing.assert_close(ae.decide(y, 0.1), msgs[logits.argmax(-1)].float())


def test_message_index_msb_first():
    ae = Autoencoder(3, 2, real_uses=False)
    book = ae.encoder.codebook()
    x = ae.encoder(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    torch.testing.assert_close(x, book[[4, 1]])


def test_decoder_n_rx_and_shape_errors():
    ae = Autoencoder(4, 4, real_uses=False, hidden=16, n_rx=6)
    assert ae.decoder.net[0].in_features == 12
    y = torch.randn(5, 6, dtype=torch.complex64)
    assert ae.decoder(y, 0.1).shape == (5, 4)
    with pytest.raises(ConfigError, match="y"):
        ae.decoder(torch.randn(5, 4, dtype=torch.complex64), 0.1)
    with pytest.raises(ConfigError, match="y"):
        ae.decoder(torch.randn(5, 6), 0.1)
    with pytest.raises(ConfigError, match="bits"):
        ae.encoder(torch.zeros(5, 3))


@pytest.mark.parametrize("kwargs,field", [
    (dict(k=0, n=7), "k"), (dict(k=-1, n=7), "k"), (dict(k=17, n=7), "k"), (dict(k=4, n=0), "n"),
    (dict(k=4, n=-3), "n"), (dict(k=4, n=7, power="peak"), "power"), (dict(k=4, n=7, hidden=0), "hidden"),
    (dict(k=4, n=7, num_hidden_layers=0), "num_hidden_layers"), (dict(k=2.5, n=7), "k"),
    (dict(k=4, n=7, real_uses="yes"), "real_uses"),
])
def test_bad_config(kwargs, field):
    with pytest.raises(ConfigError) as e:
        Autoencoder(**kwargs)
    assert e.value.field == field
    if kwargs.get("k") == 17:
        assert "16" in str(e.value) and "2^k" in str(e.value)


@pytest.fixture
def one_thread():
    """Training tests run single-threaded (faster than 2 contended threads for these tiny networks)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _awgn_bler(ae, ebno_db, n_blocks, seed):
    g = make_generator(seed)
    errors = 0
    with torch.no_grad():
        for _ in range(n_blocks // 50000):
            bits = random_bits(50000, ae.num_info_bits, generator=g)
            no = 1.0 / (ae.rate * 10 ** (ebno_db / 10))
            y = AWGN()(ae.encoder(bits), no, generator=g)
            errors += int((ae.decide(y, no) != bits).any(-1).sum())
    return errors / (n_blocks // 50000 * 50000)


def test_ae22_small_budget_near_qpsk(one_thread):
    from metacomm.codecs.training import train

    ae = Autoencoder(2, 2, hidden=8)
    train(ae, AWGN(), train_ebno_db=4.0, steps=300, batch_size=256, lr=0.01, seed=3, restarts=2,
          progress=False, val_batch_size=2000)
    eb = 4.0
    p = _q(math.sqrt(2 * 10 ** (eb / 10)))  # Gray QPSK bit error probability (= BPSK)
    bler_ref = 1 - (1 - p) ** 2
    bler = _awgn_bler(ae, eb, 200000, seed=11)
    # Small budget, coarse check: within ~0.3 dB (+25 % BLER at this SNR); ~4500 errors give ~1.5 % std.
    # It can never be clearly *better* than QPSK (the optimum for 4 points in one complex use).
    assert 0.93 * bler_ref < bler < 1.25 * bler_ref, (bler, bler_ref)


def test_ae74_small_budget_beats_hamming_hard(one_thread):
    from metacomm.codecs.training import train

    ae = Autoencoder(4, 7)
    train(ae, AWGN(), train_ebno_db=5.0, steps=1000, batch_size=256, lr=0.02, seed=1, progress=False,
          val_batch_size=2000)
    eb = 6.0
    p = _q(math.sqrt(2 * 4 / 7 * 10 ** (eb / 10)))  # BPSK bit error prob. of a rate-4/7 code
    hard = 1 - (1 - p) ** 7 - 7 * p * (1 - p) ** 6  # Hamming(7,4) corrects exactly one error
    bler = _awgn_bler(ae, eb, 100000, seed=12)
    assert bler < 0.6 * hard, (bler, hard)


@pytest.mark.slow
def test_ae88_matches_uncoded_bpsk(one_thread):
    from metacomm.codecs.training import train

    ae = Autoencoder(8, 8, hidden=256)
    train(ae, AWGN(), train_ebno_db=5.0, steps=4000, batch_size=2000, lr=0.005, seed=0, progress=False)
    for eb in (4.0, 6.0):
        p = _q(math.sqrt(2 * 10 ** (eb / 10)))
        bler_ref = 1 - (1 - p) ** 8  # 8 uncoded BPSK bits
        bler = _awgn_bler(ae, eb, 200000, seed=13)
        assert bler < 1.05 * bler_ref, (eb, bler, bler_ref)
