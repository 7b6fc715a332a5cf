r"""Fake quantisation and magnitude pruning written in plain torch, usable inside ``torch.func`` inner loops.

Everything here is a pure tensor function: no ``.item()``, no Python branching on tensor values, no in-place
ops, so it runs under :func:`torch.vmap` (a task axis), :func:`torch.func.grad` and second-order autograd.
The bit-width ``bits`` is a *runtime tensor* (a task variable carried in the task batch): a vmapped meta-batch
can mix 8-, 6- and 4-bit tasks. No ``torch.ao.quantization`` (deprecated).

Quantisers (values in the units of their input; ``bits`` a float or integer tensor broadcastable to the
per-row / per-element shape, or a Python number):

* :func:`quantize_weight` -- symmetric per-channel (per output row of a ``[out, in]`` weight) uniform
  quantiser, mid-tread with :math:`2q+1` levels, :math:`q = 2^{b-1}-1`:

  .. math:: s_r = \max_j |w_{rj}| / q, \qquad Q_b(w)_{rj} = s_r\,\mathrm{clip}(\mathrm{round}(w_{rj}/s_r),
            -q, q)

  (the "restricted-range" signed grid of integer inference, e.g. int8 in [-127, 127]; ``round`` is
  round-half-to-even). For :math:`b = 1` it is the binary quantiser :math:`Q_1(w)_{rj} = \alpha_r
  \,\mathrm{sign}(w_{rj})` (sign(0) = +1) with the per-row scale :math:`\alpha_r = \frac1{n}\sum_j |w_{rj}|`,
  the L2-optimal scale of a sign binarisation (XNOR-Net: Rastegari et al., ECCV 2016, eq. 4-5). For
  :math:`b \ge 17` (e.g. 32) the weight is returned unchanged (float reference). Bits 1-16 are the
  quantised range.
* :func:`quantize_uniform` -- symmetric mid-tread quantiser of activations with a fixed clipping range
  ``clip`` (:math:`s = c/q`, values clipped to :math:`[-c, c]`); :math:`b \ge 2`.
* :func:`quantize_adc` -- a receiver ADC: ``b`` bits on Re and on Im separately, mid-rise with :math:`2^b`
  levels on :math:`[-c, c]` (step :math:`\Delta = 2c/2^b`, outputs :math:`\pm\Delta/2, \pm 3\Delta/2, \dots`;
  1 bit = :math:`\pm c/2`, a sign detector). ``clip`` :math:`c` is in the amplitude units of ``y`` (Es = 1 per
  complex use, so each real dimension of the transmitted signal has power 1/2); ``adc_bits = 0`` (or
  :math:`\ge 17`) = no ADC quantisation.
* :func:`magnitude_mask` / :func:`prune` -- magnitude pruning at sparsity :math:`s \in [0, 1)`: per tensor,
  the :math:`\lfloor s N \rfloor` entries of smallest :math:`|w|` (ties broken by position) are zeroed; the mask
  is recomputed from the current magnitudes at every call (a constant for autograd).

Straight-through estimator (:func:`ste`): ``x + (q - x).detach()`` -- forward value ``q``, gradient the
identity. :func:`fake_quant_weight` applies pruning and quantisation with it, so :math:`\partial Q(w)/\partial w`
is the pruning mask (identity inside the clip range, which for the per-row max scale is every weight).
For clipped activations / ADC inputs, :func:`fake_quant_uniform` / :func:`fake_quant_adc` pass the gradient
inside the clip range and zero it outside (the clipped STE).

:func:`quantize_params` maps a parameter dict to its quantised version (weights of ``Linear`` layers only;
biases stay float32: they are added to 32-bit accumulators in integer inference), and
:func:`model_bytes` counts the storage of a (pruned) quantised model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch

from metacomm._validation import ConfigError

__all__ = ["FLOAT_BITS", "MAX_BITS", "levels", "quantize_weight", "quantize_uniform", "quantize_adc", "ste",
           "magnitude_mask", "prune", "fake_quant_weight", "fake_quant_uniform", "fake_quant_adc",
           "quantize_params", "quantized_names", "model_bytes", "check_bits", "check_sparsity"]

MAX_BITS = 16
"""Largest quantised bit-width; ``bits > MAX_BITS`` (e.g. 32) means float (no quantisation)."""
FLOAT_BITS = 32
"""The bit-width label of the float32 reference."""
_EPS = 1e-12


def check_bits(field: str, bits, *, allow_float: bool = False) -> int:
    """An integer bit-width in 1..16 (or 32 with ``allow_float``); ConfigError naming ``field`` otherwise."""
    ok = isinstance(bits, int | float) and not isinstance(bits, bool) and float(bits) == int(bits)
    b = int(bits) if ok else None
    if b is None or not (1 <= b <= MAX_BITS or (allow_float and b == FLOAT_BITS)):
        extra = f" (or {FLOAT_BITS} = float)" if allow_float else ""
        raise ConfigError(field, f"bit-widths are integers 1-{MAX_BITS}{extra}, got {bits!r}")
    return b


def check_sparsity(field: str, s) -> float:
    """A sparsity in [0, 1); ConfigError naming ``field`` otherwise."""
    ok = isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(float(s))
    if not ok or not 0.0 <= float(s) < 1.0:
        raise ConfigError(field, f"sparsity is a fraction in [0, 1), got {s!r}")
    return float(s)


def _readable(t: torch.Tensor) -> bool:
    """Whether the values of ``t`` may be read on the host (not inside vmap/grad transforms, tracing or
    compiling): only then are tensor bit-widths and sparsities checked (inside a vmapped task batch the sampler
    that drew them has checked them)."""
    from metacomm.channels.units import _readable as readable
    return readable(t)


def _check_bits_arg(field: str, bits, *, minimum: int, off: str):
    """A bit-width argument: a Python integer (or integer-valued float) >= ``minimum``, or a tensor of such values
    (checked when readable). ``bits > MAX_BITS`` means float (no quantisation); ``off`` says what values below 1
    mean in the message. NaN, infinite, fractional and boolean bit-widths are refused (ConfigError naming
    ``field``): they would give NaN or silently wrong weights."""
    allowed = f"integers >= {minimum}{off} (1-{MAX_BITS} quantise, more = float, e.g. {FLOAT_BITS})"
    if isinstance(bits, torch.Tensor):
        if bits.dtype == torch.bool or bits.is_complex():
            raise ConfigError(field, f"bit-widths are {allowed}, got a {bits.dtype} tensor")
        if bits.numel() and _readable(bits):
            b = bits.detach().to(torch.float64)
            bad = ~torch.isfinite(b) | (b < minimum) | (b != torch.round(b))
            if bool(bad.any()):
                raise ConfigError(field, f"bit-widths are {allowed}, got {float(b[bad].flatten()[0])!r}"
                                         f"{'' if b.dim() == 0 else ' (one of its entries)'}")
        return bits
    ok = isinstance(bits, int | float) and not isinstance(bits, bool) and math.isfinite(float(bits)) \
        and float(bits) == int(bits) and int(bits) >= minimum
    if not ok:
        raise ConfigError(field, f"bit-widths are {allowed}, got {bits!r}")
    return bits


def _check_sparsity_arg(field: str, s):
    """A sparsity argument: a number in [0, 1) (:func:`check_sparsity`) or a tensor of such values (checked when
    readable)."""
    if isinstance(s, torch.Tensor):
        if s.dtype == torch.bool or s.is_complex():
            raise ConfigError(field, f"sparsity is a fraction in [0, 1), got a {s.dtype} tensor")
        if s.numel() and _readable(s):
            v = s.detach().to(torch.float64)
            bad = ~((v >= 0) & (v < 1))  # NaN too
            if bool(bad.any()):
                raise ConfigError(field, f"sparsity is a fraction in [0, 1), got {float(v[bad].flatten()[0])!r}"
                                         f"{'' if v.dim() == 0 else ' (one of its entries)'}")
        return s
    check_sparsity(field, s)
    return s


def _check_clip(field: str, clip):
    """A clipping range: a finite number > 0, or a tensor of them (checked when readable)."""
    if isinstance(clip, torch.Tensor):
        if clip.numel() and _readable(clip) and not clip.is_complex():
            c = clip.detach().to(torch.float64)
            if not bool(((c > 0) & torch.isfinite(c)).all()):
                raise ConfigError(field, "the clipping range must be finite and > 0")
        return clip
    ok = isinstance(clip, int | float) and not isinstance(clip, bool) and math.isfinite(float(clip)) and clip > 0
    if not ok:
        raise ConfigError(field, f"the clipping range must be a finite number > 0, got {clip!r}")
    return clip


def _check_weight(field: str, w) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or not (w.is_floating_point()):
        raise ConfigError(field, f"expected a real floating-point weight tensor, got "
                                 f"{w.dtype if isinstance(w, torch.Tensor) else type(w).__name__}")
    if w.numel() == 0:
        raise ConfigError(field, f"empty weight of shape {tuple(w.shape)}: nothing to quantise (every row needs "
                                 "at least one entry for its scale)")
    return w


def _as_tensor(v, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device) if not isinstance(v, torch.Tensor) \
        else v.to(like.dtype)


def levels(bits) -> torch.Tensor:
    """:math:`q = 2^{b-1} - 1` (largest integer level of the signed restricted-range grid), clamped to >= 1."""
    b = bits if isinstance(bits, torch.Tensor) else torch.as_tensor(float(bits))
    return torch.clamp(torch.exp2(b.to(torch.float32) - 1) - 1, min=1.0)


def _row_shape(w: torch.Tensor) -> tuple[int, ...]:
    return (w.shape[0],) + (1,) * (w.dim() - 1) if w.dim() > 1 else tuple(w.shape)


def _per_row_reduce(x: torch.Tensor, fn) -> torch.Tensor:
    """``fn`` over all dims but the first (keepdim); a 1-D tensor is one channel."""
    if x.dim() <= 1:
        return fn(x.reshape(-1), 0).reshape((1,) * x.dim())  # a 0-d weight stays 0-d
    return fn(x.reshape(x.shape[0], -1), 1).reshape(_row_shape(x))


def quantize_weight(w: torch.Tensor, bits) -> torch.Tensor:
    """:math:`Q_b(w)` of the module docstring (forward values only, no STE): per output row (dim 0),
    ``w`` float ``[out, ...]`` (not empty), ``bits`` an integer >= 1 (> 16: float, unchanged) or a 0-d tensor
    (inside ``vmap``: one task's bit-width). Same shape and dtype as ``w``. ConfigError naming ``w`` / ``bits``
    for an empty or non-float weight and for bit-widths 0, negative, fractional, NaN or boolean."""
    _check_weight("w", w)
    _check_bits_arg("bits", bits, minimum=1, off="")
    b = _as_tensor(bits, w)
    amax = _per_row_reduce(w.abs(), lambda t, d: t.amax(d))
    q = levels(b).to(w.dtype)
    s = torch.clamp(amax, min=_EPS) / q
    uniform = torch.clamp(torch.round(w / s), -q, q) * s
    alpha = _per_row_reduce(w.abs(), lambda t, d: t.mean(d))
    binary = alpha * torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))
    out = torch.where(b <= 1, binary, uniform)
    return torch.where(b > MAX_BITS, w, out)


def quantize_uniform(x: torch.Tensor, bits, clip) -> torch.Tensor:
    """Symmetric mid-tread quantiser with a fixed range ``[-clip, clip]`` (``bits >= 2``; ``bits > 16``:
    unchanged; ``bits`` 0: unchanged): :math:`s\\,\\mathrm{clip}(\\mathrm{round}(x/s), -q, q)`, :math:`s = c/q`.
    ConfigError for negative, fractional or NaN bit-widths and a clip that is not a finite number > 0."""
    _check_bits_arg("bits", bits, minimum=0, off=" (0 = off)")
    _check_clip("clip", clip)
    b = _as_tensor(bits, x)
    c = _as_tensor(clip, x)
    q = levels(b).to(x.dtype)
    s = c / q
    out = torch.clamp(torch.round(x / s), -q, q) * s
    return torch.where((b <= 0) | (b > MAX_BITS), x, out)


def _adc_real(x: torch.Tensor, bits, clip) -> torch.Tensor:
    b = _as_tensor(bits, x)
    c = _as_tensor(clip, x)
    half = torch.exp2(torch.clamp(b, min=1.0) - 1)  # 2^(b-1) levels per side
    delta = c / half
    idx = torch.clamp(torch.floor(x / delta), -half, half - 1)
    out = (idx + 0.5) * delta
    off = (b <= 0) | (b > MAX_BITS)
    return torch.where(off, x, out)


def quantize_adc(y: torch.Tensor, bits, clip) -> torch.Tensor:
    """Receiver ADC (module docstring): ``bits`` on Re and Im of the complex ``y`` (or on a real ``y``),
    mid-rise, :math:`2^b` levels on ``[-clip, clip]``; ``bits`` 0 or > 16: unchanged. Same shape/dtype.
    ConfigError for negative, fractional or NaN bit-widths and a clip that is not a finite number > 0."""
    _check_bits_arg("bits", bits, minimum=0, off=" (0 = off)")
    _check_clip("clip", clip)
    if torch.is_complex(y):
        return torch.complex(_adc_real(y.real, bits, clip), _adc_real(y.imag, bits, clip))
    return _adc_real(y, bits, clip)


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator: forward value ``q``, gradient w.r.t. ``x`` the identity
    (``x + (q - x).detach()``)."""
    return x + (q - x).detach()


def magnitude_mask(w: torch.Tensor, sparsity) -> torch.Tensor:
    r"""0/1 mask (dtype of ``w``) zeroing the :math:`\lfloor s N\rfloor` smallest-magnitude entries of ``w``
    (:math:`N` = ``w.numel()``; ties: lower position first). ``sparsity`` a number or 0-d tensor in [0, 1).
    The mask carries no gradient. ConfigError naming ``sparsity`` outside [0, 1) (NaN included)."""
    _check_sparsity_arg("sparsity", sparsity)
    s = _as_tensor(sparsity, w).detach()
    flat = w.detach().abs().reshape(-1)
    order = torch.argsort(flat, stable=True)
    rank = torch.argsort(order, stable=True).to(w.dtype)  # rank of each entry by magnitude (0 = smallest)
    k = torch.floor(s * flat.numel() + 1e-6)
    return (rank >= k).to(w.dtype).reshape(w.shape)


def prune(w: torch.Tensor, sparsity) -> torch.Tensor:
    """``w * magnitude_mask(w, sparsity)`` (gradient: the mask)."""
    return w * magnitude_mask(w, sparsity)


def fake_quant_weight(w: torch.Tensor, bits, sparsity=0.0) -> torch.Tensor:
    """Pruned and quantised weight with the STE: forward :math:`Q_b(w \\odot m)`, gradient w.r.t. ``w`` the
    mask :math:`m` (:func:`magnitude_mask`). ConfigError as :func:`quantize_weight` and :func:`magnitude_mask`."""
    _check_weight("w", w)
    _check_bits_arg("bits", bits, minimum=1, off="")
    wp = prune(w, sparsity)
    return ste(wp, quantize_weight(wp.detach(), bits))


def fake_quant_uniform(x: torch.Tensor, bits, clip) -> torch.Tensor:
    """Activation fake quantisation, clipped STE: forward :func:`quantize_uniform`, gradient 1 inside
    ``[-clip, clip]`` and 0 outside (``bits`` 0 or > 16: identity)."""
    b = _as_tensor(bits, x)
    c = _as_tensor(clip, x)
    on = (b > 0) & (b <= MAX_BITS)
    xc = torch.where(on, torch.minimum(torch.maximum(x, -c), c), x)
    return ste(xc, quantize_uniform(x.detach(), bits, clip))


def fake_quant_adc(y: torch.Tensor, bits, clip) -> torch.Tensor:
    """ADC fake quantisation of complex ``y``, clipped STE per real dimension (bits 0 / > 16: identity)."""
    _check_bits_arg("bits", bits, minimum=0, off=" (0 = off)")
    _check_clip("clip", clip)
    def one(x):
        b = _as_tensor(bits, x)
        c = _as_tensor(clip, x)
        on = (b > 0) & (b <= MAX_BITS)
        xc = torch.where(on, torch.minimum(torch.maximum(x, -c), c), x)
        return ste(xc, _adc_real(x.detach(), bits, clip))
    if torch.is_complex(y):
        return torch.complex(one(y.real), one(y.imag))
    return one(y)


def quantized_names(names: Iterable[str], scope: str = "all") -> list[str]:
    """The weight tensors that get quantised: names ending in ``weight`` with at least 2 dims are chosen by
    the caller; here the name filter: ``scope="all"`` every ``*.weight``, ``"decoder"`` only ``decoder.*``,
    ``"encoder"`` only ``encoder.*``."""
    if scope not in ("all", "decoder", "encoder"):
        raise ConfigError("quantize", f"unknown scope {scope!r}; allowed: all, decoder, encoder")
    out = []
    for n in names:
        if not n.endswith("weight"):
            continue
        if scope != "all" and not n.startswith(scope + "."):
            continue
        out.append(n)
    return out


def quantize_params(params: Mapping[str, torch.Tensor], bits, sparsity=0.0, *, scope: str = "all",
                    names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """``params`` with every quantised weight (``names``, default :func:`quantized_names` of ``scope``, 2-D or
    more) replaced by :func:`fake_quant_weight` ``(w, bits, sparsity)``; other tensors (biases) unchanged."""
    sel = set(quantized_names(params, scope) if names is None else names)
    return {n: (fake_quant_weight(t, bits, sparsity) if n in sel and t.dim() >= 2 else t)
            for n, t in params.items()}


def model_bytes(params: Mapping[str, torch.Tensor], bits: int, sparsity: float = 0.0, *, scope: str = "all",
                prefix: str | None = None, filter: Callable[[str], bool] | None = None) -> int:
    r"""Storage in bytes of the (pruned) quantised tensors of ``params`` (optionally only names starting with
    ``prefix``): each quantised weight with :math:`N` entries, :math:`R` rows and sparsity :math:`s` takes
    :math:`\lceil (N - \lfloor sN\rfloor)\,b/8\rceil` bytes of values, :math:`\lceil N/8\rceil` bytes of
    bitmask when :math:`s > 0`, and :math:`4R` bytes of float32 per-row scales; every other tensor (biases) and
    every tensor of a float model (``bits`` 32) 4 bytes per entry (float32). ConfigError naming ``bits`` for a
    bit-width that is not an integer >= 1 (0 would count a model of no bytes) and ``sparsity`` outside [0, 1)."""
    _check_bits_arg("bits", bits, minimum=1, off="")
    sparsity = check_sparsity("sparsity", sparsity)
    bits = int(bits)
    sel = set(quantized_names(params, scope))
    total = 0
    for n, t in params.items():
        if prefix is not None and not n.startswith(prefix):
            continue
        if filter is not None and not filter(n):
            continue
        N = t.numel()
        if n in sel and t.dim() >= 2 and bits <= MAX_BITS:
            kept = N - math.floor(sparsity * N + 1e-6)
            total += math.ceil(kept * bits / 8) + (math.ceil(N / 8) if sparsity > 0 else 0) + 4 * t.shape[0]
        else:
            total += 4 * N
    return total
