"""Closed forms against independent references written here (per-level PAM sums, quadrature, enumeration)."""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from metacomm import ConfigError
from metacomm.sims import theory

EBNO = np.array([-2.0, 0.0, 3.0, 6.0, 10.0, 14.0])


def brgc(m):
    return [i ^ (i >> 1) for i in range(2 ** m)]


def pam_gray_stats(M, ebno_db):
    """(BER, P(symbol correct per dimension)) of Gray square M-QAM from its per-dimension PAM, exactly.

    Levels -(L-1), ..., (L-1) (L = sqrt M) with binary-reflected Gray labels, minimum-distance decisions;
    Es = 2 (M-1)/3, Eb = Es / log2 M, noise variance N0/2 per real dimension. ``ebno_db`` may be an array.
    """
    L = int(round(math.sqrt(M)))
    mb = int(math.log2(L))
    a = np.arange(-(L - 1), L, 2, dtype=float)
    lab = brgc(mb)
    gamma = 10 ** (np.asarray(ebno_db, dtype=float) / 10)
    sigma = np.sqrt((M - 1) / (3 * math.log2(M) * gamma))
    edges = np.concatenate([[-np.inf], (a[:-1] + a[1:]) / 2, [np.inf]])
    ber = np.zeros_like(sigma)
    pc = np.zeros_like(sigma)
    for i in range(L):
        for j in range(L):
            lo, hi = (edges[j] - a[i]) / sigma, (edges[j + 1] - a[i]) / sigma
            # difference of tails on the side away from the mean, to keep precision far in the tails
            pj = norm.sf(lo) - norm.sf(hi) if edges[j] - a[i] > 0 else norm.cdf(hi) - norm.cdf(lo)
            ber = ber + pj * bin(lab[i] ^ lab[j]).count("1") / mb / L
            if i == j:
                pc = pc + pj / L
    return ber, pc


@pytest.mark.parametrize("M", [4, 16, 64, 256])
def test_cho_yoon_equals_per_level_gray_sum(M):
    ref = pam_gray_stats(M, EBNO)[0]
    np.testing.assert_allclose(theory.ber_qam_awgn(M, EBNO), ref, rtol=1e-9, atol=1e-300)


def test_bpsk_qpsk_awgn():
    ref = 0.5 * np.array([math.erfc(math.sqrt(10 ** (e / 10))) for e in EBNO])
    np.testing.assert_allclose(theory.ber_bpsk_awgn(EBNO), ref, rtol=1e-12)
    np.testing.assert_allclose(theory.ber_qpsk_awgn(EBNO), ref, rtol=1e-12)
    # textbook values: BPSK at 9.6 dB ~ 1e-5; 16-QAM at 10 dB ~ 1.75e-3
    assert theory.ber_bpsk_awgn(9.6) == pytest.approx(1.0e-5, rel=0.05)
    assert theory.ber_qam_awgn(16, 10.0) == pytest.approx(1.754e-3, rel=2e-3)


def test_rayleigh_against_quadrature():
    for e in EBNO:
        g = 10 ** (e / 10)
        ref, _ = integrate.quad(lambda x, g=g: 0.5 * math.erfc(math.sqrt(g * x)) * math.exp(-x), 0, np.inf,
                                epsabs=1e-14)
        assert theory.ber_bpsk_rayleigh(e) == pytest.approx(ref, rel=1e-7)
    # QAM: average the per-level AWGN BER over |h|^2 = x ~ Exp(1) (instantaneous Eb/N0 = x * gamma);
    # x = u^2 makes the integrand smooth in u; composite Gauss-Legendre (16 panels x 200 nodes) on [0, sqrt(60)]
    t, wt = np.polynomial.legendre.leggauss(200)
    edges = np.linspace(0.0, math.sqrt(60.0), 17)
    u = np.concatenate([(t + 1) * (b - a) / 2 + a for a, b in zip(edges[:-1], edges[1:], strict=True)])
    w = np.concatenate([wt * (b - a) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)])
    x = u * u
    for M in (16, 64):
        for e in (0.0, 10.0, 20.0):
            f = pam_gray_stats(M, e + 10 * np.log10(x))[0] * np.exp(-x) * 2 * u
            assert theory.ber_qam_rayleigh(M, e) == pytest.approx(float(np.sum(w * f)), rel=1e-6)


@pytest.mark.parametrize("m,k", [(1, 1), (1, 100), (2, 64), (4, 64), (6, 60)])
def test_uncoded_bler_awgn(m, k):
    for e in (0.0, 5.0, 9.0):
        if m == 1:
            p = 0.5 * math.erfc(math.sqrt(10 ** (e / 10)))
            ref = 1 - (1 - p) ** k
        else:
            pc = pam_gray_stats(2 ** m, e)[1]
            ref = 1 - (pc ** 2) ** (k // m)
        assert theory.bler_uncoded_awgn(k, e, m) == pytest.approx(ref, rel=1e-9)


def test_uncoded_bler_rayleigh_block():
    # k = 1: the BER; large k at high SNR: BLER ~ E[min(1, k * BER(x))] -> check against simple quadrature
    np.testing.assert_allclose(theory.bler_uncoded_rayleigh_block(1, EBNO), theory.ber_bpsk_rayleigh(EBNO),
                               rtol=1e-6)
    g = 10.0
    ref = integrate.quad(lambda x: (1 - (1 - 0.5 * math.erfc(math.sqrt(g * x))) ** 32) * math.exp(-x),
                         0, 50, points=[0.1, 1.0], epsabs=1e-13)[0]
    assert theory.bler_uncoded_rayleigh_block(32, 10.0, 1) == pytest.approx(ref, rel=1e-6)


def test_hamming74_hard_by_syndrome_enumeration():
    H = np.array([[1, 1, 0, 1, 1, 0, 0], [1, 0, 1, 1, 0, 1, 0], [0, 1, 1, 1, 0, 0, 1]])
    leader = {}
    for e in itertools.product([0, 1], repeat=7):  # coset leaders: minimum-weight pattern per syndrome
        e = np.array(e)
        s = tuple(H @ e % 2)
        if s not in leader or e.sum() < leader[s].sum():
            leader[s] = e
    for ebno in (0.0, 4.0, 8.0):
        p = 0.5 * math.erfc(math.sqrt(4 / 7 * 10 ** (ebno / 10)))
        fail = 0.0
        for e in itertools.product([0, 1], repeat=7):
            e = np.array(e)
            if np.any((e + leader[tuple(H @ e % 2)]) % 2):
                fail += p ** e.sum() * (1 - p) ** (7 - e.sum())
        assert theory.bler_hamming74_hard_awgn(ebno) == pytest.approx(fail, rel=1e-10)


def test_theory_curves_lookup():
    assert theory.theory_curves("qam16", "awgn")["ber"](10.0) == pytest.approx(theory.ber_qam_awgn(16, 10.0))
    assert theory.theory_curves("bpsk", "rayleigh")["ber"] is theory.ber_bpsk_rayleigh
    assert theory.theory_curves("hamming74", "awgn", decoder="hard")["bler"] is theory.bler_hamming74_hard_awgn
    assert theory.theory_curves("hamming74", "awgn", decoder="ml")["bler"] is None
    assert theory.theory_curves("ldpc5g", "awgn")["ber"] is None
    assert theory.theory_curves("qpsk", "tdl-a")["ber"] is None


def test_bad_inputs():
    with pytest.raises(ConfigError, match="M"):
        theory.ber_qam_awgn(32, 1.0)
    with pytest.raises(ConfigError, match="ebno_db"):
        theory.ber_bpsk_awgn(float("nan"))
    with pytest.raises(ConfigError, match="block_length"):
        theory.bler_uncoded_awgn(7, 1.0, 2)
