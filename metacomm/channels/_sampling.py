"""Random draws from an explicit :class:`torch.Generator` shared by the channel models.

``torch.distributions`` cannot take a generator, so the Gamma and Beta draws that the impairment models need
are implemented here from uniform and normal draws of the caller's generator.
"""

from __future__ import annotations

import math

import torch

from metacomm._validation import (
    ConfigError,
    check_memory,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)

__all__ = ["check_state_key", "check_complex_dtype", "check_sample_args", "resolve_devices", "sample_uniform",
           "sample_gamma", "sample_beta", "real_dtype"]


def _size(field: str, value, positive: bool):
    if isinstance(value, torch.SymInt):  # a symbolic size under tracing / torch.compile: nothing to check
        return value
    return check_positive_int(field, value) if positive else check_nonneg_int(field, value)


def check_sample_args(batch_size, num_symbols, *, width: int = 1, positive: bool = False) -> tuple[int, int]:
    """The one check of every channel's ``sample_state(batch_size, num_symbols, ...)`` arguments: integers
    (booleans and non-integer floats refused) >= 0 (>= 1 with ``positive``), and a state of about
    ``batch_size * max(num_symbols, width)`` complex128 entries (``width``: the channel's own state width, e.g.
    its taps) within :func:`~metacomm._validation.check_memory`. Returns ``(batch_size, num_symbols)`` as ints;
    ConfigError naming ``batch_size`` / ``num_symbols`` otherwise."""
    b = _size("batch_size", batch_size, positive)
    n = _size("num_symbols", num_symbols, positive)
    if isinstance(b, int) and isinstance(n, int):
        check_memory(("batch_size", "num_symbols"), 16.0 * b * max(n, int(width), 1), "a channel state draw")
    return b, n


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype matching a complex (or real) dtype: complex128/float64 -> float64, else float32."""
    return torch.float64 if dtype in (torch.complex128, torch.float64) else torch.float32


def check_complex_dtype(dtype: torch.dtype, field: str = "dtype") -> torch.dtype:
    if dtype not in (torch.complex64, torch.complex128):
        raise ConfigError(field, f"expected torch.complex64 or torch.complex128, got {dtype}")
    return dtype


def check_state_key(state: dict[str, torch.Tensor], key: str, batch: int, channel: str) -> torch.Tensor:
    """``state[key]`` after checking that it is present and has ``batch`` rows."""
    if key not in state:
        raise ConfigError("state", f"{channel} state needs key {key!r}; got keys {sorted(state)}")
    v = state[key]
    if v.dim() == 0 or v.shape[0] not in (1, batch):
        raise ConfigError("state", f"{channel} state {key!r} has shape {tuple(v.shape)}; its first "
                          f"dimension must be the batch size {batch} (or 1)")
    return v


def resolve_devices(generator: torch.Generator | None, device) -> tuple[torch.device, torch.device]:
    """``(draw_device, out_device)`` for a state draw.

    Draws happen on the generator's device (a generator can only fill tensors on its own device) and the
    result is moved to ``device`` (default: the generator's device, or CPU without a generator).
    """
    out = torch.device(device) if device is not None else None
    if generator is not None:
        draw = generator.device
    else:
        draw = out if out is not None else torch.device("cpu")
    return draw, (out if out is not None else draw)


def sample_uniform(shape, low: float, high: float, *, generator, dtype, device) -> torch.Tensor:
    """U[low, high) of the given real dtype."""
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype, device=device)


def sample_gamma(shape, concentration: float, *, generator: torch.Generator | None, dtype=torch.float32,
                 device=None) -> torch.Tensor:
    r"""Gamma(:math:`\alpha`, 1) draws (shape ``shape``) from ``generator``.

    Marsaglia & Tsang (ACM TOMS 2000): for :math:`\alpha \ge 1`, with :math:`d = \alpha - 1/3`,
    :math:`c = 1/\sqrt{9d}`, draw :math:`z \sim N(0,1)`, :math:`u \sim U(0,1)`, :math:`v = (1 + c z)^3` and accept
    :math:`d v` if :math:`v > 0` and :math:`\ln u < z^2/2 + d - d v + d \ln v` (acceptance > 95 %; rejected
    entries are redrawn, vectorised). For :math:`\alpha < 1`, :math:`G_\alpha = G_{\alpha+1} U^{1/\alpha}`.
    Computed in float64 and cast to ``dtype``.
    """
    alpha = check_positive("concentration", concentration)
    if generator is not None and device is None:
        device = generator.device
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    n = math.prod(shape)
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    for _ in range(1000):
        if todo.numel() == 0:
            break
        m = todo.numel()
        z = torch.randn(m, generator=generator, dtype=torch.float64, device=device)
        u = torch.rand(m, generator=generator, dtype=torch.float64, device=device)
        v = (1.0 + c * z) ** 3
        ok = v > 0
        v_safe = torch.where(ok, v, torch.ones_like(v))
        ok = ok & (torch.log(u) < 0.5 * z * z + d - d * v_safe + d * torch.log(v_safe))
        out[todo[ok]] = d * v_safe[ok]
        todo = todo[~ok]
    else:  # pragma: no cover - probability ~ 0.05**1000
        raise RuntimeError("gamma sampler did not converge")
    if boost:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        out = out * u.pow(1.0 / alpha)
    return out.reshape(shape).to(dtype)


def sample_beta(shape, a: float, b: float, *, generator: torch.Generator | None, dtype=torch.float32,
                device=None) -> torch.Tensor:
    r"""Beta(a, b) draws as :math:`G_a / (G_a + G_b)` with independent Gamma draws (see :func:`sample_gamma`).

    Mean :math:`a/(a+b)`, variance :math:`ab / ((a+b)^2 (a+b+1))`.
    """
    ga = sample_gamma(shape, a, generator=generator, dtype=torch.float64, device=device)
    gb = sample_gamma(shape, b, generator=generator, dtype=torch.float64, device=device)
    return (ga / (ga + gb)).to(dtype)
