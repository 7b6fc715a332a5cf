r"""Closed-form error rates used as references (tests, theory overlays on plots).

Conventions: every function takes ``ebno_db``, the **information-bit** SNR Eb/N0 in **dB** (a float or an array;
the output has its shape, float64). ``gamma = 10^(ebno_db/10)`` is the linear Eb/N0. Es = 1 per complex symbol;
for ``m = log2 M`` coded bits per symbol and code rate ``r``: Es/N0 = r m Eb/N0. All curves are for coherent
detection with perfect channel knowledge (CSI) and hard/ML decisions as stated in each docstring.

* BPSK and Gray QPSK over AWGN: :math:`P_b = Q(\sqrt{2\gamma})` (QPSK is two BPSKs at the same Eb/N0).
* Gray square M-QAM over AWGN, exact BER (Cho & Yoon, IEEE Trans. Commun. 50(7), 2002, eq. (14)-(16)):

  .. math::

      P_b = \frac{1}{\log_2\sqrt M}\sum_{k=1}^{\log_2\sqrt M} \frac{1}{\sqrt M}
            \sum_{i=0}^{(1-2^{-k})\sqrt M - 1} (-1)^{\lfloor i 2^{k-1}/\sqrt M\rfloor}
            \Big(2^{k-1} - \Big\lfloor \frac{i 2^{k-1}}{\sqrt M} + \frac12\Big\rfloor\Big)
            \operatorname{erfc}\Big((2i+1)\sqrt{\tfrac{3\log_2(M)\,\gamma}{2(M-1)}}\Big).

  It holds for symbol-wise minimum-distance (= max-log) decisions on a binary-reflected Gray labelling per
  dimension (the 3GPP TS 38.211 / Sionna labelling is equivalent to it up to bit permutation and complement).
  Bit-wise APP (true MAP) decisions differ from it slightly at low SNR.
* Flat Rayleigh fading, :math:`h\sim\mathcal{CN}(0,1)`, perfect CSI: averaging each
  :math:`\operatorname{erfc}(c\sqrt{\gamma |h|^2})` over :math:`|h|^2\sim\mathrm{Exp}(1)` gives
  :math:`1-\sqrt{c^2\gamma/(1+c^2\gamma)}`; for BPSK :math:`P_b = \tfrac12\big(1-\sqrt{\gamma/(1+\gamma)}\big)`.
* Block error rates of uncoded blocks of ``k`` bits over AWGN (independent symbols): :math:`1-(1-P_s)^{k/m}`
  with the exact symbol error rate :math:`P_s` of Gray QAM; over block Rayleigh fading (one fade per block)
  the same expression averaged numerically over the fade.
* Hamming(7,4), BPSK, AWGN, hard-decision (syndrome) decoding, which corrects every single error and no other
  pattern: :math:`P_\mathrm{block} = 1-(1-p)^7-7p(1-p)^6` with :math:`p = Q(\sqrt{2\cdot\tfrac47\gamma})`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import integrate, special

from metacomm._validation import ConfigError

__all__ = [
    "qfunc",
    "ber_bpsk_awgn",
    "ber_qpsk_awgn",
    "ber_qam_awgn",
    "ser_qam_awgn",
    "ber_bpsk_rayleigh",
    "ber_qam_rayleigh",
    "bler_uncoded_awgn",
    "bler_uncoded_rayleigh_block",
    "bler_hamming74_hard_awgn",
    "theory_curves",
]

_BITS = {"bpsk": 1, "qpsk": 2, "qam16": 4, "qam64": 6}


def qfunc(x):
    r"""Gaussian tail :math:`Q(x) = \tfrac12\operatorname{erfc}(x/\sqrt2)`."""
    return 0.5 * special.erfc(np.asarray(x, dtype=np.float64) / math.sqrt(2.0))


def _gamma(ebno_db) -> np.ndarray:
    e = np.asarray(ebno_db, dtype=np.float64)
    if not np.all(np.isfinite(e)):
        raise ConfigError("ebno_db", f"must be finite (dB), got {ebno_db!r}")
    return 10.0 ** (e / 10.0)


def _check_m(M: int) -> int:
    if M not in (4, 16, 64, 256, 1024):
        raise ConfigError("M", f"square Gray QAM order must be one of 4, 16, 64, 256, 1024, got {M!r}")
    return int(M)


def ber_bpsk_awgn(ebno_db):
    r"""BPSK over AWGN: :math:`Q(\sqrt{2 E_b/N_0})`."""
    return qfunc(np.sqrt(2.0 * _gamma(ebno_db)))


def ber_qpsk_awgn(ebno_db):
    r"""Gray QPSK over AWGN, per bit at Eb/N0 (Es/N0 = 2 Eb/N0): :math:`Q(\sqrt{2 E_b/N_0})`."""
    return ber_bpsk_awgn(ebno_db)


def _cho_yoon_terms(M: int):
    """(weight, multiplier) pairs with P_b = sum_w w * erfc(mult * sqrt(3 log2(M) gamma / (2(M-1))))."""
    sm = int(round(math.sqrt(M)))
    nk = int(round(math.log2(sm)))
    terms: dict[int, float] = {}
    for k in range(1, nk + 1):
        for i in range(int((1 - 2.0 ** (-k)) * sm)):
            sign = (-1) ** math.floor(i * 2 ** (k - 1) / sm)
            w = sign * (2 ** (k - 1) - math.floor(i * 2 ** (k - 1) / sm + 0.5))
            terms[2 * i + 1] = terms.get(2 * i + 1, 0.0) + w / (sm * nk)
    return sorted(terms.items())


def ber_qam_awgn(M: int, ebno_db):
    """Exact BER of Gray square M-QAM over AWGN (Cho & Yoon 2002; see module docstring). ``M`` in 4..1024."""
    M = _check_m(M)
    g = _gamma(ebno_db)
    c = math.sqrt(3.0 * math.log2(M) / (2.0 * (M - 1)))
    out = np.zeros_like(g)
    for mult, w in _cho_yoon_terms(M):
        out = out + w * special.erfc(mult * c * np.sqrt(g))
    return out


def ber_qam_rayleigh(M: int, ebno_db):
    r"""Exact BER of Gray square M-QAM over flat Rayleigh fading (CN(0,1) gain, perfect CSI, per-symbol fades).

    Each erfc term of Cho & Yoon averaged over the exponential SNR: :math:`E[\operatorname{erfc}(a\sqrt{\gamma
    X})] = 1-\sqrt{a^2\gamma/(1+a^2\gamma)}` for :math:`X\sim\mathrm{Exp}(1)`. Valid per bit also for block
    fading (the mean over bits does not depend on the fading's time correlation).
    """
    M = _check_m(M)
    g = _gamma(ebno_db)
    c2 = 3.0 * math.log2(M) / (2.0 * (M - 1))
    out = np.zeros_like(g)
    for mult, w in _cho_yoon_terms(M):
        a2g = mult * mult * c2 * g
        out = out + w * (1.0 - np.sqrt(a2g / (1.0 + a2g)))
    return out


def ber_bpsk_rayleigh(ebno_db):
    r"""BPSK over flat Rayleigh fading with perfect CSI: :math:`\tfrac12(1-\sqrt{\gamma/(1+\gamma)})`.

    Also the per-bit BER of Gray QPSK at the same Eb/N0.
    """
    g = _gamma(ebno_db)
    return 0.5 * (1.0 - np.sqrt(g / (1.0 + g)))


def ser_qam_awgn(M: int, esno_lin):
    r"""Exact symbol error rate of square M-QAM over AWGN at **linear** Es/N0 (M=2 means BPSK).

    :math:`P_s = 1-(1-P_L)^2`, :math:`P_L = 2(1-1/\sqrt M)\,Q(\sqrt{3\,E_s/N_0/(M-1)})` (per-dimension PAM).
    """
    esno = np.asarray(esno_lin, dtype=np.float64)
    if M == 2:
        return qfunc(np.sqrt(2.0 * esno))
    M = _check_m(M)
    pl = 2.0 * (1.0 - 1.0 / math.sqrt(M)) * qfunc(np.sqrt(3.0 * esno / (M - 1)))
    return 1.0 - (1.0 - pl) ** 2


def _order(bits_per_symbol: int) -> int:
    if bits_per_symbol not in (1, 2, 4, 6, 8, 10):
        raise ConfigError("bits_per_symbol", f"must be 1 (BPSK) or 2, 4, 6, 8, 10 (QAM), got {bits_per_symbol!r}")
    return 2 ** bits_per_symbol


def bler_uncoded_awgn(block_length: int, ebno_db, bits_per_symbol: int = 1):
    r"""Block error rate of uncoded Gray QAM blocks of ``block_length`` bits over AWGN.

    :math:`1-(1-P_s)^{k/m}` with ``m = bits_per_symbol`` (1 = BPSK, 2 = QPSK, 4 = 16-QAM, ...); ``k`` must be a
    multiple of ``m``. Exact: symbols err independently and a block is correct iff every symbol is.
    """
    M = _order(bits_per_symbol)
    if block_length <= 0 or block_length % bits_per_symbol:
        raise ConfigError("block_length", f"must be a positive multiple of {bits_per_symbol}, got {block_length!r}")
    esno = _gamma(ebno_db) * bits_per_symbol
    ps = ser_qam_awgn(M, esno)
    return -np.expm1((block_length // bits_per_symbol) * np.log1p(-ps))


def bler_uncoded_rayleigh_block(block_length: int, ebno_db, bits_per_symbol: int = 1):
    r"""Uncoded BLER over **block** Rayleigh fading (one CN(0,1) gain per block, perfect CSI), by quadrature.

    :math:`\int_0^\infty \big(1-(1-P_s(x\,E_s/N_0))^{k/m}\big) e^{-x}\,dx`; accurate to ~1e-10 absolute.
    """
    M = _order(bits_per_symbol)
    if block_length <= 0 or block_length % bits_per_symbol:
        raise ConfigError("block_length", f"must be a positive multiple of {bits_per_symbol}, got {block_length!r}")
    n_sym = block_length // bits_per_symbol
    esno = np.atleast_1d(_gamma(ebno_db) * bits_per_symbol)
    out = np.empty_like(esno)
    for i, s in enumerate(esno):
        def f(x, s=s):
            return -math.expm1(n_sym * math.log1p(-float(ser_qam_awgn(M, x * s)))) * math.exp(-x)
        # the integrand changes fastest near x ~ 1/s; split there for accuracy
        brk = min(1.0 / s, 50.0)
        a, _ = integrate.quad(f, 0.0, brk, epsabs=1e-13, limit=200)
        b, _ = integrate.quad(f, brk, np.inf, epsabs=1e-13, limit=200)
        out[i] = a + b
    return out.reshape(np.shape(ebno_db))


def bler_hamming74_hard_awgn(ebno_db):
    r"""Hamming(7,4), BPSK over AWGN, hard-decision syndrome decoding: :math:`1-(1-p)^7-7p(1-p)^6`.

    ``p = Q(sqrt(2 R Eb/N0))`` is the raw bit error rate at code rate R = 4/7.
    """
    p = qfunc(np.sqrt(2.0 * (4.0 / 7.0) * _gamma(ebno_db)))
    return 1.0 - (1.0 - p) ** 7 - 7.0 * p * (1.0 - p) ** 6


def theory_curves(codec: str, channel: str, *, decoder: str | None = None,
                  block_length: int | None = None, csi: str | None = "perfect") -> dict[str, Callable | None]:
    """Closed-form BER/BLER curves for a CLI link, where one exists.

    Returns ``{"ber": f or None, "bler": f or None, "label": str}`` with ``f(ebno_db_array) -> array``.
    Known: uncoded ``bpsk/qpsk/qam16/qam64`` over ``awgn`` (BER, and BLER when ``block_length`` is given) and over
    ``rayleigh`` with ``csi="perfect"`` (BER; BLER for block fading); ``hamming74`` with ``decoder="hard"``
    over ``awgn`` (BLER). ``decoder="app"`` for 16/64-QAM gets the max-log (min-distance) curve, which bit-wise
    APP decisions match to within a few percent at low SNR (and beat slightly).
    """
    out: dict[str, Any] = {"ber": None, "bler": None, "label": ""}
    if codec in _BITS:
        m = _BITS[codec]
        M = 2 ** m
        if channel == "awgn":
            out["ber"] = ber_bpsk_awgn if m <= 2 else (lambda e, M=M: ber_qam_awgn(M, e))
            if block_length and block_length % m == 0:
                out["bler"] = lambda e, k=block_length, m=m: bler_uncoded_awgn(k, e, m)
            out["label"] = f"theory ({codec}, AWGN)"
        elif channel == "rayleigh" and csi == "perfect":
            out["ber"] = ber_bpsk_rayleigh if m <= 2 else (lambda e, M=M: ber_qam_rayleigh(M, e))
            if block_length and block_length % m == 0:
                out["bler"] = lambda e, k=block_length, m=m: bler_uncoded_rayleigh_block(k, e, m)
            out["label"] = f"theory ({codec}, Rayleigh, perfect CSI)"
    elif codec == "hamming74" and decoder == "hard" and channel == "awgn":
        out["bler"] = bler_hamming74_hard_awgn
        out["label"] = "theory (Hamming(7,4) hard, AWGN)"
    return out
