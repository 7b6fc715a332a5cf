r"""Widely-linear channel estimation and detection: LS fit of :math:`\mathbf y = \mathbf H_1\mathbf x +
\mathbf H_2\mathbf x^*` from pilots, and minimum-distance (ML) detection over a codebook through that model.

Why: transmitter IQ imbalance (:func:`metacomm.channels.impairments.iq_imbalance`, amplitude :math:`\epsilon`,
phase :math:`\delta`) maps a symbol to :math:`s' = K_1 s + K_2 s^*` with

.. math::  K_1 = \frac{\cos\delta + j\epsilon\sin\delta}{\sqrt{1+\epsilon^2}}, \qquad
           K_2 = \frac{\epsilon\cos\delta - j\sin\delta}{\sqrt{1+\epsilon^2}}

(:func:`iq_coefficients`; without renormalisation drop the :math:`\sqrt{1+\epsilon^2}`), so after a linear
channel with taps :math:`\mathbf h` the received block is *widely linear* in the codeword:
:math:`\mathbf y = \mathbf H(\mathbf h_1)\mathbf x + \mathbf H(\mathbf h_2)\mathbf x^* + \mathbf w` with
:math:`\mathbf h_1 = K_1\mathbf h`, :math:`\mathbf h_2 = K_2\mathbf h` (:math:`\mathbf H(\cdot)` the convolution
matrix). An IQ-blind (strictly linear) model cannot fit the :math:`\mathbf x^*` term.

* :func:`widely_linear_regressor` -- the one widely-linear regressor :math:`[\mathbf T(\mathbf x),
  \mathbf T(\mathbf x^*)]` for any linear regressor builder :math:`\mathbf T` (column order: the ``x`` taps, then
  the ``conj(x)`` taps; vmap-safe conjugate). Used here and by :mod:`metacomm.adaptation.tracking`
  (``regressor_matrix(..., widely_linear=True)``, the tracker's belief over ``2L`` coefficients).
* :func:`wl_pilot_matrix` -- the regression matrix :math:`[\mathbf X, \mathbf X^{(*)}]` ``[B, P n_rx, 2L]``:
  the pilot convolution matrix of the pilots and of their conjugates, so
  :math:`\mathbf y_p = [\mathbf X, \mathbf X^{(*)}][\mathbf h_1; \mathbf h_2] + \mathbf w`.
* :func:`wl_ls_taps` -- the LS fit :math:`(\hat{\mathbf h}_1, \hat{\mathbf h}_2)` (normal equations,
  :func:`metacomm.codecs.detection.ls_solve`); unbiased, error covariance
  :math:`N_0(\mathbf A^H\mathbf A)^{-1}` for regression matrix :math:`\mathbf A`.
* :func:`wl_images` -- every codeword's noiseless image :math:`\mathbf H(\mathbf h_1)\mathbf c_m +
  \mathbf H(\mathbf h_2)\mathbf c_m^*`; decide with :func:`metacomm.codecs.detection.min_distance_decide`.

The convolution is any ``conv_matrix(taps [.., L], n) -> [.., n_rx, n]`` (default: causal, truncated to ``n``
outputs, :func:`metacomm.channels.multipath.convolution_matrix`), e.g. a tap window with pre-cursor taps
(``lag0 > 0``). Pure functions, no random draws.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from metacomm._validation import ConfigError
from metacomm.codecs.detection import ls_solve, matrix_images, pilot_matrix

__all__ = ["iq_coefficients", "stacked_conv_pilot_matrix", "widely_linear_regressor", "wl_images", "wl_ls_taps",
           "wl_pilot_matrix"]

ConvMatrixFn = Callable[[torch.Tensor, int], torch.Tensor]


def _conv(conv_matrix: ConvMatrixFn | None) -> ConvMatrixFn:
    if conv_matrix is not None:
        return conv_matrix
    from metacomm.channels.multipath import convolution_matrix
    return lambda taps, n: convolution_matrix(taps, n)


def iq_coefficients(epsilon, delta, *, renormalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The widely-linear form :math:`s' = K_1 s + K_2 s^*` of :func:`metacomm.channels.impairments.iq_imbalance`
    (module docstring). ``epsilon`` (linear) and ``delta`` [rad]: floats or real tensors (same shape) ->
    ``(K1, K2)`` complex128 tensors of that shape."""
    e = torch.as_tensor(epsilon, dtype=torch.float64)
    d = torch.as_tensor(delta, dtype=torch.float64)
    k1 = torch.complex(torch.cos(d), e * torch.sin(d))
    k2 = torch.complex(e * torch.cos(d), -torch.sin(d))
    if renormalize:
        s = torch.rsqrt(1.0 + e * e)
        k1, k2 = k1 * s, k2 * s
    return k1, k2


def stacked_conv_pilot_matrix(x_p: torch.Tensor, num_taps: int, conv_matrix: ConvMatrixFn | None = None
                              ) -> torch.Tensor:
    r"""``P`` pilot codewords per link, complex ``[B, P, n]`` -> the stacked convolution matrices ``[B, P n_rx, L]``
    for the convolution ``conv_matrix`` (rows of block ``p`` at ``p n_rx .. p n_rx + n_rx - 1``; column
    :math:`\ell` = the response of tap :math:`\ell` alone, :func:`metacomm.codecs.detection.pilot_matrix`)."""
    if not torch.is_complex(x_p) or x_p.dim() != 3:
        raise ConfigError("x_p", f"expected complex [B, P, n] pilot codewords, got {x_p.dtype} {tuple(x_p.shape)}")
    B, P, n = x_p.shape
    X = pilot_matrix(x_p.reshape(B * P, n), num_taps, _conv(conv_matrix))  # [B P, n_rx, L]
    return X.reshape(B, P * X.shape[1], num_taps)


def widely_linear_regressor(regressor: Callable[[torch.Tensor], torch.Tensor], symbols: torch.Tensor
                            ) -> torch.Tensor:
    r"""The widely-linear regressor :math:`[\mathbf T(\mathbf x), \mathbf T(\mathbf x^*)]` of a linear one.

    ``regressor`` maps complex symbols ``[..., n]`` (any leading dims it accepts) to a regression matrix
    ``[..., R, L]`` with :math:`\mathbf y = \mathbf T(\mathbf x)\mathbf h`; the result ``[..., R, 2L]`` is the
    regressor of :math:`\mathbf y = \mathbf T(\mathbf x)\mathbf h_1 + \mathbf T(\mathbf x^*)\mathbf h_2`
    (first ``L`` columns: :math:`\mathbf h_1`, last ``L``: :math:`\mathbf h_2`). The conjugate is formed as
    ``complex(re, -im)`` (``conj_physical`` has no vmap rule), so this is safe under ``torch.func.vmap``/``grad``.
    """
    conj = torch.complex(symbols.real, -symbols.imag)
    return torch.cat([regressor(symbols), regressor(conj)], dim=-1)


def wl_pilot_matrix(x_p: torch.Tensor, num_taps: int, conv_matrix: ConvMatrixFn | None = None) -> torch.Tensor:
    r"""Widely-linear regression matrix :math:`[\mathbf X(\mathbf x_p), \mathbf X(\mathbf x_p^*)]`,
    complex ``[B, P n_rx, 2L]`` (first ``L`` columns: :math:`\mathbf h_1`, last ``L``: :math:`\mathbf h_2`;
    :func:`widely_linear_regressor` of :func:`stacked_conv_pilot_matrix`)."""
    return widely_linear_regressor(lambda x: stacked_conv_pilot_matrix(x, num_taps, conv_matrix), x_p)


def wl_ls_taps(x_p: torch.Tensor, y_p: torch.Tensor, num_taps: int, *, ridge: float = 0.0,
               conv_matrix: ConvMatrixFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Widely-linear LS: :math:`(\hat{\mathbf h}_1, \hat{\mathbf h}_2) = \arg\min \|\mathbf y_p -
    \mathbf H(\mathbf h_1)\mathbf x_p - \mathbf H(\mathbf h_2)\mathbf x_p^*\|^2`.

    :param x_p: pilot codewords, complex ``[B, P, n]``.
    :param y_p: received pilots, complex ``[B, P, n_rx]`` (``n_rx`` = the convolution's output length).
    :param num_taps: ``L`` per branch (``2L`` unknowns; needs ``P n_rx >= 2L`` and pilots that are not all
        proper -- e.g. a real-valued or a single circularly symmetric pilot cannot separate the branches;
        ``ridge`` > 0 then picks the minimum-norm-like solution).
    :param ridge: added to the Gram diagonal (0 = none).
    :returns: ``(h1, h2)``, each complex ``[B, L]``.
    """
    A = wl_pilot_matrix(x_p, num_taps, conv_matrix)
    B = x_p.shape[0]
    if y_p.shape[0] != B or y_p.shape[1] * y_p.shape[2] != A.shape[1]:
        raise ConfigError("y_p", f"expected [{B}, {x_p.shape[1]}, {A.shape[1] // max(1, x_p.shape[1])}] received "
                                 f"pilots, got {tuple(y_p.shape)}")
    if A.shape[1] < 2 * num_taps and not ridge:
        raise ConfigError("num_pilots", f"widely-linear LS of 2 x {num_taps} taps needs at least {2 * num_taps} "
                                        f"pilot samples, got {A.shape[1]}")
    h = ls_solve(A, y_p.reshape(B, -1, 1).to(A.dtype), ridge=ridge).squeeze(-1)
    return h[:, :num_taps], h[:, num_taps:]


def wl_images(codebook: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor,
              conv_matrix: ConvMatrixFn | None = None) -> torch.Tensor:
    r"""Noiseless widely-linear images :math:`\mathbf H(\mathbf h_1)\mathbf c_m + \mathbf H(\mathbf h_2)
    \mathbf c_m^*`: ``codebook`` complex ``[M, n]``, ``h1``, ``h2`` complex ``[B, L]`` -> ``[B, M, n_rx]``."""
    conv = _conv(conv_matrix)
    n = codebook.shape[-1]
    book = codebook.to(h1.dtype)
    return matrix_images(conv(h1, n), book) + matrix_images(conv(h2, n), book.conj())
