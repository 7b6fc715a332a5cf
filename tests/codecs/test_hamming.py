"""Hamming(7,4): against independent NumPy ML / syndrome decoders, single-error correction, Eb/N0 bookkeeping."""

import itertools
import math

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import AWGN, make_generator
from metacomm.codecs.base import CodecLink
from metacomm.codecs.hamming import Hamming74

torch.set_num_threads(1)

# Independent description of the code (written here, not imported): systematic G = [I | P].
P = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]])
G = np.hstack([np.eye(4, dtype=int), P])
H = np.hstack([P.T, np.eye(3, dtype=int)])
MSGS = np.array(list(itertools.product([0, 1], repeat=4)))
CODEBOOK = 1 - 2 * (MSGS @ G % 2)  # [16, 7] BPSK, bit 0 -> +1


def np_ml_decode(r, no):
    """Exhaustive correlation ML decoder: argmax_m sum_j r_j s_mj / no_j, per 7-symbol codeword."""
    r = r.reshape(r.shape[0], -1, 7)
    no = np.broadcast_to(no, r.shape[:1] + (r.shape[1] * 7,)).reshape(r.shape)
    corr = np.einsum("bcj,mj->bcm", r / no, CODEBOOK)
    return MSGS[corr.argmax(-1)].reshape(r.shape[0], -1)


def np_ml_bit_llr(r, no):
    """Exact bit marginals ln sum_{m: u_i=1} exp(L_m) - ln sum_{m: u_i=0} exp(L_m), L_m = 2 r.s_m / N0."""
    metric = 2 * (r / no) @ CODEBOOK.T  # [B, 16]
    out = np.empty((r.shape[0], 4))
    for i in range(4):
        out[:, i] = (np.logaddexp.reduce(metric[:, MSGS[:, i] == 1], axis=1)
                     - np.logaddexp.reduce(metric[:, MSGS[:, i] == 0], axis=1))
    return out


def np_syndrome_decode(r):
    """Hard decisions, syndrome -> error pattern table built by trying all single errors."""
    c = (r < 0).astype(int).reshape(r.shape[0], -1, 7)
    table = {(0, 0, 0): np.zeros(7, int)}
    for j in range(7):
        e = np.zeros(7, int)
        e[j] = 1
        table[tuple(H @ e % 2)] = e
    out = np.empty_like(c)
    for b in range(c.shape[0]):
        for k in range(c.shape[1]):
            s = tuple(H @ c[b, k] % 2)
            out[b, k] = (c[b, k] + table[s]) % 2
    return out[..., :4].reshape(r.shape[0], -1)


def test_code_structure():
    assert not (H @ G.T % 2).any()
    codec = Hamming74("ml", num_codewords=1)
    x = codec.encoder(torch.tensor(MSGS, dtype=torch.float32))
    np.testing.assert_array_equal(x.real.numpy(), CODEBOOK)
    assert not x.imag.any()
    d = [(CODEBOOK[i] != CODEBOOK[j]).sum() for i, j in itertools.combinations(range(16), 2)]
    assert min(d) == 3
    assert codec.num_info_bits == 4 and codec.num_channel_uses == 7 and codec.rate == pytest.approx(4 / 7)


@pytest.mark.parametrize("ebno_db", [0.0, 3.0, 6.0])
def test_soft_ml_equals_numpy_exhaustive_correlation(ebno_db, device):
    codec = Hamming74("ml", num_codewords=3, device=device)
    g = make_generator(11, device)
    bits = torch.randint(0, 2, (2000, 12), generator=g, device=device).float()
    no = 1 / (10 ** (ebno_db / 10) * 4 / 7)
    y = AWGN()(codec.encoder(bits), no, generator=g)
    ours = codec.decide(y, no).cpu().numpy()
    ref = np_ml_decode(y.real.cpu().double().numpy(), no)
    np.testing.assert_array_equal(ours, ref)
    # block errors exist at these SNRs, so the comparison is not vacuous
    assert (ours != bits.cpu().numpy()).any() or ebno_db > 5


def test_soft_ml_per_symbol_noise_and_exact_bit_llrs():
    codec = Hamming74("ml", num_codewords=1, bit_llr="exact")
    g = make_generator(2)
    bits = torch.randint(0, 2, (500, 4), generator=g).float()
    no = 0.2 + torch.rand(500, 7, generator=g)  # per-symbol N0 (as after equalisation)
    y = codec.encoder(bits) + torch.randn(500, 7, dtype=torch.complex64, generator=g) * no.sqrt()
    r = y.real.double().numpy()
    np.testing.assert_array_equal(codec.decide(y, no).numpy(), np_ml_decode(r, no.double().numpy()))
    np.testing.assert_allclose(codec.decoder(y, no).double().numpy(), np_ml_bit_llr(r, no.double().numpy()),
                               rtol=1e-4, atol=1e-3)
    maxlog = Hamming74("ml", bit_llr="maxlog")
    l_mx = maxlog.decoder(y, no)
    # max-log bit decisions are the ML codeword's bits (up to ties)
    assert torch.equal((l_mx > 0).float(), codec.decide(y, no))


@pytest.mark.parametrize("ebno_db", [0.0, 4.0])
def test_hard_equals_numpy_syndrome_decoder(ebno_db, device):
    codec = Hamming74("hard", num_codewords=2, device=device)
    g = make_generator(7, device)
    bits = torch.randint(0, 2, (3000, 8), generator=g, device=device).float()
    no = 1 / (10 ** (ebno_db / 10) * 4 / 7)
    y = AWGN()(codec.encoder(bits), no, generator=g)
    np.testing.assert_array_equal(codec.decide(y, no).cpu().numpy(), np_syndrome_decode(y.real.cpu().numpy()))
    llr = codec.decoder(y, no)
    assert torch.equal((llr > 0).float(), codec.decide(y, no))
    p = 0.5 * math.erfc(math.sqrt(1 / no))
    assert llr.abs().cpu().numpy() == pytest.approx(math.log((1 - p) / p), rel=1e-4)


@pytest.mark.parametrize("decoder", ["hard", "ml"])
def test_every_single_error_corrected(decoder):
    codec = Hamming74(decoder)
    msgs = torch.tensor(MSGS, dtype=torch.float32)
    x = codec.encoder(msgs)
    for j in range(7):
        y = x.clone()
        y[:, j] = -y[:, j]  # one wrong symbol in every codeword
        assert torch.equal(codec.decide(y, 0.5), msgs), j
    # two errors are not always corrected (d_min = 3): the decoder is not trivially returning something else
    y = x.clone()
    y[:, :2] = -y[:, :2]
    assert not torch.equal(codec.decide(y, 0.5), msgs)


def _q(x):
    return 0.5 * math.erfc(x / math.sqrt(2))


def test_hard_bler_closed_form_fixes_ebno_bookkeeping():
    """BLER = 1-(1-p)^7-7p(1-p)^6 with p = Q(sqrt(2*(4/7)*Eb/N0)) through CodecLink (rate 4/7)."""
    ebno_db = 4.0
    link = CodecLink(Hamming74("hard"), AWGN())
    g = make_generator(123)
    bits, bits_hat = link(40000, ebno_db, g)
    bler = (bits != bits_hat).any(-1).double().mean().item()
    p = _q(math.sqrt(2 * 4 / 7 * 10 ** (ebno_db / 10)))
    ref = 1 - (1 - p) ** 7 - 7 * p * (1 - p) ** 6
    sigma = math.sqrt(ref * (1 - ref) / 40000)
    assert abs(bler - ref) < 4.5 * sigma, (bler, ref)
    # with the uncoded Eb/N0 convention (rate 1) the BLER would be far off
    p_wrong = _q(math.sqrt(2 * 10 ** (ebno_db / 10)))
    assert abs(bler - (1 - (1 - p_wrong) ** 7 - 7 * p_wrong * (1 - p_wrong) ** 6)) > 10 * sigma


def test_soft_ml_beats_hard_on_same_noise():
    g1, g2 = make_generator(9), make_generator(9)
    b1, h1 = CodecLink(Hamming74("ml"), AWGN())(20000, 5.0, g1)
    b2, h2 = CodecLink(Hamming74("hard"), AWGN())(20000, 5.0, g2)
    assert torch.equal(b1, b2)
    assert (b1 != h1).any(-1).sum() < 0.7 * (b2 != h2).any(-1).sum()


def test_bad_arguments():
    with pytest.raises(ConfigError, match="^decoder: .*ml, hard"):
        Hamming74("bp")
    with pytest.raises(ConfigError, match="num_codewords"):
        Hamming74("ml", num_codewords=0)
    with pytest.raises(ConfigError, match="bit_llr"):
        Hamming74("ml", bit_llr="approx")
