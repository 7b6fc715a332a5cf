r"""L-tap multipath (frequency-selective, ISI) block fading.

Each block (row of ``x``) sees an independent realisation of ``L`` complex taps, constant over the block,

.. math::  h_\ell \sim \mathcal{CN}(0, p_\ell), \quad \ell = 0, \dots, L-1, \qquad \sum_\ell p_\ell = 1,

and the received samples are the causal linear convolution plus noise

.. math::  y_t = \sum_{\ell=0}^{L-1} h_\ell\, x_{t-\ell} + n_t, \qquad x_t = 0 \text{ outside } 0 \le t < n,
           \qquad n_t \sim \mathcal{CN}(0, N_0).

Power-delay profile (PDP): exponential, :math:`p_\ell \propto 10^{-\ell\, d / 10}` with ``decay_db_per_tap``
:math:`d` in dB per tap (``d = 0`` gives the uniform PDP :math:`p_\ell = 1/L` of Park, Simeone & Kang,
"meta-learning to communicate", ICASSP 2020), or any user-given PDP. With :math:`\sum p_\ell = 1` and i.i.d.
unit-energy symbols, :math:`\mathbb{E}|y_t - n_t|^2 = 1` for every output sample fully covered by the block
(``t >= L-1``).

``mode="truncate"`` keeps the ``n`` outputs :math:`t = 0..n-1` (what Park et al. use; the tail of the last
symbols is cut); ``mode="full"`` keeps all :math:`n + L - 1` outputs (:meth:`output_length` says which).

The helpers :func:`convolve` and :func:`convolution_matrix` are shared with the TDL channel (taps that vary
within the block, precursor taps) and with equalisers (LS/LMMSE need :math:`\mathbf{H}`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from metacomm._validation import ConfigError, check_choice, check_db, check_memory, check_positive_int
from metacomm.channels._sampling import (
    check_complex_dtype,
    check_sample_args,
    check_state_key,
    real_dtype,
    resolve_devices,
)
from metacomm.channels.base import Channel, State, add_noise, complex_normal

__all__ = ["MultipathBlockFading", "convolution_matrix", "convolve", "exponential_pdp", "MODES", "MAX_TAPS"]

MODES = ("truncate", "full")

MAX_TAPS = 4096
"""Most taps :class:`MultipathBlockFading` accepts: its power-delay profile is a Python list and
:func:`convolve` loops over the taps, so ``num_taps = 1e9`` would run for hours (and the PDP alone would need
tens of GiB); blocks here are a few to a few hundred channel uses long, far fewer than this."""


def _check_num_taps(field: str, num_taps) -> int:
    """A tap count in 1..:data:`MAX_TAPS` whose PDP fits :func:`~metacomm._validation.check_memory`."""
    L = check_positive_int(field, num_taps, maximum=MAX_TAPS)
    check_memory(field, 64.0 * L, f"a power-delay profile of {L} taps")
    return L


def exponential_pdp(num_taps: int, decay_db_per_tap: float = 0.0) -> list[float]:
    r"""Normalised exponential PDP :math:`p_\ell = 10^{-\ell d/10} / \sum_k 10^{-k d/10}`, ``d`` in dB/tap."""
    num_taps = _check_num_taps("num_taps", num_taps)
    d = check_db("decay_db_per_tap", decay_db_per_tap, minimum=0.0)
    p = [10.0 ** (-ell * d / 10.0) for ell in range(num_taps)]
    s = sum(p)
    return [v / s for v in p]


def _check_taps(taps: torch.Tensor) -> torch.Tensor:
    if not isinstance(taps, torch.Tensor) or not torch.is_complex(taps) or taps.dim() not in (2, 3):
        shape = tuple(taps.shape) if isinstance(taps, torch.Tensor) else type(taps).__name__
        raise ConfigError("taps", f"expected a complex tensor [batch, L] (block-constant taps) or "
                          f"[batch, T, L] (taps per output sample), got {shape}")
    return taps


def _shift(v: torch.Tensor, k: int) -> torch.Tensor:
    """``v`` delayed by ``k`` samples along the last axis (zeros shifted in, same length)."""
    if k == 0:
        return v
    return torch.cat([v.new_zeros((*v.shape[:-1], k)), v[..., : v.shape[-1] - k]], dim=-1)


def convolve(x: torch.Tensor, taps: torch.Tensor, *, mode: str = "truncate", lag0: int = 0) -> torch.Tensor:
    r"""Linear convolution of each block with its own taps (differentiable in ``x`` and ``taps``).

    Full output, index :math:`b = 0 .. n+L-2`:  :math:`z_b = \sum_{k=0}^{L-1} h_{[b,]k}\, x_{b-k}` where
    ``taps`` is ``[batch, L]`` (constant over the block) or ``[batch, n+L-1, L]`` (tap ``k`` at output ``b``,
    the layout of :class:`sionna.phy.channel.ApplyTimeChannel`).

    ``lag0`` is the index of the zero-delay tap (0 for causal taps; :math:`-L_{\min}` for sinc-sampled taps
    with precursors), i.e. output :math:`b` belongs to time :math:`b - \text{lag0}`. ``mode="full"`` returns all
    ``n+L-1`` outputs; ``mode="truncate"`` returns the ``n`` outputs aligned with ``x``,
    :math:`z_{\text{lag0}}, \dots, z_{\text{lag0}+n-1}`.

    Shapes: ``x`` complex ``[batch, n]`` -> ``[batch, n]`` or ``[batch, n+L-1]``.
    """
    check_choice("mode", mode, MODES)
    _check_taps(taps)
    n = x.shape[-1]
    L = taps.shape[-1]
    if not 0 <= lag0 < L:
        raise ConfigError("lag0", f"must lie in [0, {L - 1}] for {L} taps, got {lag0}")
    if taps.dim() == 3 and taps.shape[1] not in (1, n + L - 1):
        raise ConfigError("taps", f"time-varying taps need {n + L - 1} rows (n + L - 1) for n = {n}, "
                          f"got {taps.shape[1]}")
    taps = taps.to(dtype=x.dtype, device=x.device)
    xp = torch.cat([x, x.new_zeros((*x.shape[:-1], L - 1))], dim=-1)
    y = None
    for k in range(L):
        hk = taps[:, k:k + 1] if taps.dim() == 2 else taps[:, :, k]
        term = hk * _shift(xp, k)
        y = term if y is None else y + term
    if mode == "truncate":
        y = y[..., lag0:lag0 + n]
    return y


def convolution_matrix(taps: torch.Tensor, n: int, *, mode: str = "truncate", lag0: int = 0) -> torch.Tensor:
    r"""The matrix :math:`\mathbf{H}` with :math:`\mathbf{y} = \mathbf{H}\mathbf{x} + \mathbf{n}` for
    :func:`convolve` (Toeplitz for block-constant taps).

    ``taps`` ``[batch, L]``: :math:`H_{b,s} = h_{b-s}` for :math:`0 \le b-s < L`, else 0;
    ``taps`` ``[batch, n+L-1, L]``: :math:`H_{b,s} = h_{b, b-s}`. ``mode``/``lag0`` as in :func:`convolve`.

    Returns complex ``[batch, n_rx, n]`` with ``n_rx = n`` (truncate) or ``n + L - 1`` (full), so that
    ``(H @ x[..., None])[..., 0]`` equals ``convolve(x, taps, mode=mode, lag0=lag0)``.
    """
    check_choice("mode", mode, MODES)
    _check_taps(taps)
    n = check_positive_int("n", n)
    L = taps.shape[-1]
    if not 0 <= lag0 < L:
        raise ConfigError("lag0", f"must lie in [0, {L - 1}] for {L} taps, got {lag0}")
    rows = n + L - 1
    dev = taps.device
    b = torch.arange(rows, device=dev)[:, None]
    s = torch.arange(n, device=dev)[None, :]
    d = b - s
    valid = (d >= 0) & (d < L)
    dc = d.clamp(0, L - 1)
    if taps.dim() == 2:
        h = taps[:, dc]
    else:
        if taps.shape[1] not in (1, rows):
            raise ConfigError("taps", f"time-varying taps need {rows} rows (n + L - 1), got {taps.shape[1]}")
        tv = taps.expand(-1, rows, -1) if taps.shape[1] == 1 else taps
        h = tv[:, b.expand(rows, n), dc]
    h = h * valid.to(h.dtype)
    if mode == "truncate":
        h = h[:, lag0:lag0 + n, :]
    return h


class MultipathBlockFading(Channel):
    r"""L-tap Rayleigh multipath block fading, :math:`y = h * x + n` (see the module docstring).

    :param num_taps: number of taps ``L`` (1 .. :data:`MAX_TAPS`; ``L = 1`` is flat Rayleigh fading).
    :param decay_db_per_tap: exponential PDP decay ``d`` in dB per tap (>= 0; 0 = uniform PDP, taps
        :math:`\mathcal{CN}(0, 1/L)` as in Park et al.).
    :param pdp: alternatively, the tap powers (linear, non-negative, any scale; normalised to sum 1). Its length
        sets ``L``.
    :param mode: ``"truncate"`` (``n`` outputs) or ``"full"`` (``n + L - 1`` outputs).

    State ``"taps"``: complex ``[batch, L]``. :meth:`convolution_matrix` gives :math:`\mathbf{H}` for a state.
    """

    adds_noise = True

    def __init__(self, num_taps: int = 3, decay_db_per_tap: float = 0.0, *, pdp: Sequence[float] | None = None,
                 mode: str = "truncate"):
        super().__init__()
        self.mode = check_choice("mode", mode, MODES)
        if pdp is not None:
            try:
                p = [float(v) for v in pdp]
            except (TypeError, ValueError):
                raise ConfigError("pdp", f"expected a sequence of non-negative tap powers, got {pdp!r}") from None
            _check_num_taps("pdp", max(len(p), 1))
            if not p or any(not math.isfinite(v) or v < 0 for v in p) or sum(p) <= 0:
                raise ConfigError("pdp", f"expected a non-empty sequence of finite powers >= 0 with a "
                                  f"positive sum, got {pdp!r}")
            s = sum(p)
            self.pdp = [v / s for v in p]
        else:
            self.pdp = exponential_pdp(num_taps, decay_db_per_tap)
        self.num_taps = len(self.pdp)

    def extra_repr(self) -> str:
        return f"num_taps={self.num_taps}, pdp={[round(v, 4) for v in self.pdp]}, mode={self.mode!r}"

    def output_length(self, num_symbols: int) -> int:
        return num_symbols if self.mode == "truncate" else num_symbols + self.num_taps - 1

    def sample_state(self, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        check_complex_dtype(dtype)
        batch_size, _ = check_sample_args(batch_size, num_symbols, width=self.num_taps)
        draw, out = resolve_devices(generator, device)
        g = complex_normal((batch_size, self.num_taps), generator=generator, dtype=dtype, device=draw)
        scale = torch.tensor(self.pdp, dtype=real_dtype(dtype), device=draw).sqrt()
        return {"taps": (g * scale).to(out)}

    def apply(self, x, no, state, generator, noise):
        taps = check_state_key(state, "taps", x.shape[0], type(self).__name__)
        if taps.dim() != 2 or taps.shape[-1] != self.num_taps:
            raise ConfigError("state", f"'taps' must have shape [batch, {self.num_taps}], got {tuple(taps.shape)}")
        return add_noise(convolve(x, taps, mode=self.mode), no, generator, noise)

    def convolution_matrix(self, state: State, num_symbols: int) -> torch.Tensor:
        """:math:`\\mathbf{H}` ``[batch, output_length(n), n]`` of a state (see :func:`convolution_matrix`)."""
        return convolution_matrix(state["taps"], num_symbols, mode=self.mode)
