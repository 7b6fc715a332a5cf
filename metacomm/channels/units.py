r"""Power and SNR conventions.

* Average transmitted symbol energy ``Es = 1`` (unit average power per complex channel use).
* ``N0`` is the noise variance per complex sample (``N0/2`` per real dimension); ``Es/N0 = 1/N0``.
* ``Eb/N0 = Es/N0 / (r * m)`` with ``m`` coded bits per complex channel use and code rate ``r``; equivalently
  ``Eb/N0 = Es/N0 / rho`` with ``rho = r * m`` *information* bits per complex channel use.
  For an (n, k) autoencoder using ``n_c`` complex channel uses per ``k``-bit message, ``rho = k / n_c``
  (``n_c = n/2`` when ``n`` counts real channel uses, as in O'Shea & Hoydis).
* All SNRs at interfaces are in dB; ``_db`` in a name says so.
"""

from __future__ import annotations

import math

import torch
from sionna.phy.utils import ebnodb2no as _sionna_ebnodb2no

from metacomm._validation import ConfigError, check_finite, check_positive

__all__ = ["ebnodb_to_no", "esnodb_to_no", "ebnodb_to_esnodb", "esnodb_to_ebnodb", "db_to_lin", "lin_to_db"]


def db_to_lin(x_db: float) -> float:
    return 10.0 ** (x_db / 10.0)


def lin_to_db(x: float) -> float:
    return 10.0 * math.log10(x)


def ebnodb_to_esnodb(ebno_db: float, bits_per_symbol: float, coderate: float = 1.0) -> float:
    """Es/N0 [dB] = Eb/N0 [dB] + 10 log10(coderate * bits_per_symbol)."""
    check_positive("bits_per_symbol", bits_per_symbol)
    check_positive("coderate", coderate)
    return float(ebno_db) + lin_to_db(coderate * bits_per_symbol)


def esnodb_to_ebnodb(esno_db: float, bits_per_symbol: float, coderate: float = 1.0) -> float:
    return float(esno_db) - lin_to_db(coderate * bits_per_symbol)


def esnodb_to_no(esno_db) -> torch.Tensor | float:
    """N0 for ``Es = 1``: ``N0 = 10^(-Es/N0[dB] / 10)``."""
    if isinstance(esno_db, torch.Tensor):
        return torch.pow(10.0, -esno_db / 10.0)
    return 10.0 ** (-check_finite("esno_db", esno_db) / 10.0)


def ebnodb_to_no(ebno_db, bits_per_symbol: float, coderate: float = 1.0, *, device=None):
    """N0 per complex sample for ``Es = 1`` at the given Eb/N0 in dB.

    ``N0 = 1 / (Eb/N0 * coderate * bits_per_symbol)``. A Python float in gives a float out (via Sionna's
    :func:`sionna.phy.utils.ebnodb2no`, float64); a tensor in gives a tensor out.
    """
    check_positive("bits_per_symbol", bits_per_symbol)
    if not (0 < coderate):
        raise ConfigError("coderate", f"must be > 0, got {coderate!r}")
    if isinstance(ebno_db, torch.Tensor):
        return 1.0 / (torch.pow(10.0, ebno_db / 10.0) * coderate * bits_per_symbol)
    ebno_db = check_finite("ebno_db", ebno_db)
    if float(bits_per_symbol).is_integer() and coderate <= 1.0:
        no = _sionna_ebnodb2no(ebno_db, int(bits_per_symbol), coderate, precision="double", device="cpu")
        return float(no)
    # Non-integer bits per channel use (e.g. an AE with k/n_c = 4/3.5) or rate > 1 per symbol.
    return 1.0 / (db_to_lin(ebno_db) * coderate * bits_per_symbol)
