r"""Power and SNR conventions.

* Average transmitted symbol energy ``Es = 1`` (unit average power per complex channel use).
* ``N0`` is the noise variance per complex sample (``N0/2`` per real dimension); ``Es/N0 = 1/N0``.
* ``Eb/N0 = Es/N0 / (r * m)`` with ``m`` coded bits per complex channel use and code rate ``r``; equivalently
  ``Eb/N0 = Es/N0 / rho`` with ``rho = r * m`` *information* bits per complex channel use.
  For an (n, k) autoencoder using ``n_c`` complex channel uses per ``k``-bit message, ``rho = k / n_c``
  (``n_c = n/2`` when ``n`` counts real channel uses, as in O'Shea & Hoydis).
* All SNRs at interfaces are in dB; ``_db`` in a name says so.
* N0 given to a channel, an equaliser or a demapper is linear (not dB): a Python number or 0-d tensor (one
  value for everything), ``[B]`` (one per block) or ``[B, n]`` (one per sample, e.g. after equalisation);
  :func:`broadcast_no` is the one place that turns it into a tensor against the samples and validates it.
"""

from __future__ import annotations

import math

import torch
from sionna.phy.utils import ebnodb2no as _sionna_ebnodb2no

from metacomm._validation import ConfigError, check_db, check_positive

__all__ = ["broadcast_no", "ebnodb_to_no", "esnodb_to_no", "ebnodb_to_esnodb", "esnodb_to_ebnodb", "db_to_lin", "lin_to_db"]


def db_to_lin(x_db: float, field: str = "x_db") -> float:
    """``10^(x/10)``; ConfigError naming ``field`` outside the physical range (:func:`~metacomm._validation.check_db`,
    ``|x| <= 300`` dB), where the power would overflow."""
    return 10.0 ** (check_db(field, x_db) / 10.0)


def lin_to_db(x: float) -> float:
    return 10.0 * math.log10(x)


def ebnodb_to_esnodb(ebno_db: float, bits_per_symbol: float, coderate: float = 1.0) -> float:
    """Es/N0 [dB] = Eb/N0 [dB] + 10 log10(coderate * bits_per_symbol)."""
    check_positive("bits_per_symbol", bits_per_symbol)
    check_positive("coderate", coderate)
    return check_db("ebno_db", ebno_db) + lin_to_db(coderate * bits_per_symbol)


def esnodb_to_ebnodb(esno_db: float, bits_per_symbol: float, coderate: float = 1.0) -> float:
    check_positive("bits_per_symbol", bits_per_symbol)
    check_positive("coderate", coderate)
    return check_db("esno_db", esno_db) - lin_to_db(coderate * bits_per_symbol)


def esnodb_to_no(esno_db) -> torch.Tensor | float:
    """N0 for ``Es = 1``: ``N0 = 10^(-Es/N0[dB] / 10)``."""
    if isinstance(esno_db, torch.Tensor):
        return torch.pow(10.0, -esno_db / 10.0)
    return 10.0 ** (-check_db("esno_db", esno_db) / 10.0)


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
    ebno_db = check_db("ebno_db", ebno_db)
    if float(bits_per_symbol).is_integer() and coderate <= 1.0:
        no = _sionna_ebnodb2no(ebno_db, int(bits_per_symbol), coderate, precision="double", device="cpu")
        return float(no)
    # Non-integer bits per channel use (e.g. an AE with k/n_c = 4/3.5) or rate > 1 per symbol.
    return 1.0 / (db_to_lin(ebno_db, "ebno_db") * coderate * bits_per_symbol)


def _readable(t: torch.Tensor) -> bool:
    """Whether the values of ``t`` may be read on the host (not inside vmap/grad, tracing or compiling)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or t.device.type == "meta":
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(t)


def broadcast_no(no, like: torch.Tensor, *, field: str = "no", allow_zero: bool = False,
                 per_block: bool = False) -> torch.Tensor:
    """N0 (linear noise variance per complex sample, N0/2 per real dimension) as a real tensor that broadcasts
    against the samples ``like``.

    Args:
        no: a Python number or 0-d tensor (one N0 for every sample), or a tensor whose dims align with the
            leading dims of ``like``, each 1 or equal to ``like``'s: ``[B]`` / ``[1]`` (one per block),
            ``[B, 1]``, ``[B, n]`` (one per sample, e.g. the post-equalisation noise variance).
        like: the samples N0 applies to, ``[B, n]`` (any rank >= 1, first dim = batch), complex or real.
        field: the name used in the :class:`~metacomm.ConfigError` (argument, key or flag).
        allow_zero: accept N0 = 0 (a noiseless channel); otherwise N0 must be > 0 (demappers, decoders).
        per_block: refuse one N0 per sample (every dim after the first must be 1).

    Returns:
        A tensor of ``like``'s real dtype (float32 for complex64/float32, float64 for complex128/float64) on
        ``like``'s device: 0-d for a scalar N0, otherwise ``like.dim()`` dims (trailing singleton dims added,
        ``[B]`` -> ``[B, 1]``). Differentiable with respect to a tensor ``no``; values are unchanged.

    Raises:
        ConfigError(field): ``no`` is not numeric, has a shape that does not broadcast as above, or holds a
        NaN, an infinity, a negative value or (unless ``allow_zero``) zero. Tensor values are checked
        whenever they can be read (not inside ``torch.vmap`` / ``torch.func.grad``, tracing or compiling).
    """
    if like.is_complex():
        rdt = like.real.dtype
    else:
        rdt = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(no, (int, float)) and not isinstance(no, bool):
        v = float(no)
        if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(field, f"noise variance N0 must be finite and {bound}, got {no!r}")
        return torch.as_tensor(v, dtype=rdt, device=like.device)
    try:
        no_t = torch.as_tensor(no, dtype=rdt, device=like.device)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(field, f"expected a number or a real tensor (N0), got {type(no).__name__}") from None
    if no_t.dim():
        shape_ok = no_t.dim() <= like.dim() and all(
            s in (1, t) for s, t in zip(no_t.shape, like.shape[: no_t.dim()], strict=True))
        if per_block:
            shape_ok = shape_ok and all(s == 1 for s in no_t.shape[1:])
        if not shape_ok:
            allowed = ("a scalar, [batch] or [batch, 1]" if per_block
                       else "a scalar, [batch], [batch, 1] or [batch, n] (dims 1 or equal to the samples')")
            raise ConfigError(field, f"noise variance of shape {tuple(no_t.shape)} does not fit the samples "
                                     f"{tuple(like.shape)}; allowed: {allowed}")
        if no_t.dim() < like.dim():
            no_t = no_t.reshape(*no_t.shape, *([1] * (like.dim() - no_t.dim())))
    if no_t.numel() and _readable(no_t):
        lo, hi = (float(t) for t in torch.aminmax(no_t.detach()))  # NaN anywhere -> both NaN
        if not ((lo >= 0 if allow_zero else lo > 0) and hi < math.inf):
            v = no_t.detach()
            bad = ~torch.isfinite(v) | ((v < 0) if allow_zero else (v <= 0))
            raise ConfigError(field, f"noise variance N0 must be finite and {bound}, got "
                                     f"{float(v[bad].flatten()[0])!r}"
                                     f"{'' if v.dim() == 0 else ' (one of its entries)'}")
    return no_t
