r"""Pilot-based channel estimation and equalisation for block-fading links.

Signal model (one block, the channel realisation constant over the block, ``Es = 1``, noise
:math:`\mathcal{CN}(0, N_0)` per complex sample):

* flat fading: :math:`y_t = h x_t + n_t`, state ``"h"`` complex ``[B, 1]``;
* L-tap multipath (ISI): :math:`\mathbf{y} = \mathbf{H}\mathbf{x} + \mathbf{n}` with
  :math:`\mathbf{H}` the convolution matrix of the taps ``"taps"`` ``[B, L]`` (``[B, n_rx, n]``, as built by
  :func:`metacomm.channels.multipath.convolution_matrix` or a channel's ``convolution_matrix(state, n)``).

**LS estimation** from a known pilot block :math:`\mathbf{p}` (``P`` symbols) received as :math:`\mathbf{y}_p`:

* flat: :math:`\hat h = \sum_t p_t^* y_{p,t} / \sum_t |p_t|^2`, unbiased, error variance
  :math:`\sigma_e^2 = N_0 / \sum_t |p_t|^2` (:func:`ls_estimate_flat`);
* multipath: :math:`\mathbf{y}_p = \mathbf{X}\mathbf{h} + \mathbf{n}` with the pilot convolution matrix
  :math:`\mathbf{X}` (``[B, n_rx, L]``, column :math:`\ell` = the pilots sent through a unit tap at lag
  :math:`\ell`), :math:`\hat{\mathbf{h}} = (\mathbf{X}^H\mathbf{X})^{-1}\mathbf{X}^H\mathbf{y}_p`, error
  covariance :math:`N_0 (\mathbf{X}^H\mathbf{X})^{-1}` (:func:`ls_estimate_multipath`).

**Equalisation** returns a symbol estimate and the per-symbol effective noise variance ``no_eff`` that the
demapper needs (:math:`\hat x_t = x_t + e_t`, :math:`\mathrm{Var}(e_t) = ` ``no_eff``):

* one tap (flat fading, :func:`one_tap_equalize`): ``"zf"`` :math:`\hat x = y / \hat h`,
  :math:`\sigma^2_{\rm eff} = (N_0 + \sigma_e^2)/|\hat h|^2` -- for a single tap this is also the *unbiased*
  MMSE estimate; ``"mmse"`` the biased MMSE estimate :math:`\hat x = \hat h^* y / (|\hat h|^2 + N_0')` with
  its mean-squared error :math:`N_0' / (|\hat h|^2 + N_0')`, :math:`N_0' = N_0 + \sigma_e^2` (a shrunk
  estimate: feed a QAM demapper the ``"zf"`` one);
* LMMSE block equaliser (multipath, :func:`lmmse_equalize`), Sionna's
  :func:`sionna.phy.mimo.lmmse_equalizer`: :math:`\mathbf{G} = \mathbf{H}^H(\mathbf{H}\mathbf{H}^H +
  \mathbf{S})^{-1}` (:math:`= (\mathbf{H}^H\mathbf{H} + N_0\mathbf{I})^{-1}\mathbf{H}^H` for
  :math:`\mathbf{S} = N_0\mathbf{I}`), unbiased :math:`\hat{\mathbf{x}} = \mathrm{diag}(\mathbf{G}\mathbf{H})^{-1}
  \mathbf{G}\mathbf{y}`, :math:`\sigma^2_{{\rm eff},t} = 1/[\mathbf{G}\mathbf{H}]_{tt} - 1 = 1/\mathrm{SINR}_t`.

Channel-estimation error (``h_err_var`` / ``tap_err_cov``) is treated as extra Gaussian noise: with
:math:`\mathbf{h} = \hat{\mathbf{h}} - \mathbf{e}` and i.i.d. unit-energy symbols the term
:math:`-\mathbf{E}\mathbf{x}` adds :math:`\sigma_e^2` (flat) or the diagonal of
:math:`\sum_{\ell,\ell'} C_{e,\ell\ell'} \mathbf{C}_\ell \mathbf{C}_{\ell'}^H` (multipath; off-diagonal terms
dropped) to the noise covariance. Perfect-CSI (genie) receivers pass the true state and zero error.
Costs: the LMMSE solve is :math:`O(n^3)` per block (Cholesky of ``n_rx x n_rx``).
"""

from __future__ import annotations

import torch
from sionna.phy.mimo import lmmse_equalizer

from metacomm._validation import ConfigError, check_choice
from metacomm.channels.units import broadcast_no
from metacomm.codecs.detection import (
    ConvMatrixFn,
    _check_complex,
    _default_conv_matrix,
    ls_solve,
    pilot_matrix,
)

__all__ = [
    "ONE_TAP_KINDS",
    "estimation_noise_diagonal",
    "lmmse_equalize",
    "ls_estimate_flat",
    "ls_estimate_multipath",
    "one_tap_equalize",
    "pilot_matrix",
]

ONE_TAP_KINDS = ("zf", "mmse")


def _real(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.complex128 else torch.float32


def _no_per_block(no, like: torch.Tensor) -> torch.Tensor:
    """N0 (>= 0) as ``[B, 1]`` (or 0-d) real tensor (:func:`metacomm.channels.units.broadcast_no`)."""
    return broadcast_no(no, like, allow_zero=True, per_block=True)


# ------------------------------------------------------------------------------------------------------------
# LS estimation
# ------------------------------------------------------------------------------------------------------------
def ls_estimate_flat(y_p: torch.Tensor, pilots: torch.Tensor, no=None):
    r"""LS estimate of a flat block-fading coefficient, :math:`\hat h = \sum p^* y_p / \sum |p|^2`.

    Args:
        y_p: received pilots, complex ``[B, P]``.
        pilots: transmitted pilots, complex ``[P]`` (shared) or ``[B, P]``.
        no: N0 (scalar or ``[B]``); when given, the error variance is returned too.

    Returns:
        ``h_hat`` complex ``[B, 1]``; with ``no``: ``(h_hat, err_var)`` with
        ``err_var = N0 / sum|p|^2`` real ``[B, 1]``.
    """
    _check_complex("y_p", y_p, (2,))
    _check_complex("pilots", pilots, (1, 2))
    p = pilots.to(dtype=y_p.dtype, device=y_p.device).expand_as(y_p)
    energy = p.abs().square().sum(-1, keepdim=True)
    h_hat = (p.conj() * y_p).sum(-1, keepdim=True) / energy
    if no is None:
        return h_hat
    return h_hat, (_no_per_block(no, y_p) / energy).expand(y_p.shape[0], 1)


def ls_estimate_multipath(y_p: torch.Tensor, pilots: torch.Tensor, num_taps: int, no=None, *,
                          conv_matrix: ConvMatrixFn | None = None):
    r"""LS estimate of L block-constant taps, :math:`\hat{\mathbf{h}} = (\mathbf{X}^H\mathbf{X})^{-1}
    \mathbf{X}^H \mathbf{y}_p` (:func:`pilot_matrix`).

    Args:
        y_p: received pilots, complex ``[B, n_rx]`` (``n_rx`` = the channel's output length for ``P`` pilots).
        pilots: complex ``[P]`` or ``[B, P]``; need :math:`\mathbf{X}` of full column rank (``n_rx >= L``).
        num_taps: L.
        no: N0 (scalar or ``[B]``); when given, the error covariance :math:`N_0(\mathbf{X}^H\mathbf{X})^{-1}`
            ``[B, L, L]`` is returned too.
        conv_matrix: the channel's ``(taps, n) -> H`` (see :func:`pilot_matrix`).

    Returns:
        ``taps_hat`` complex ``[B, L]`` (and ``err_cov`` ``[B, L, L]`` complex when ``no`` is given).
    """
    _check_complex("y_p", y_p, (2,))
    x = pilot_matrix(pilots.to(dtype=y_p.dtype, device=y_p.device), num_taps, conv_matrix)
    if x.shape[-2] != y_p.shape[-1]:
        raise ConfigError("y_p", f"{y_p.shape[-1]} received pilot samples, but the convolution matrix has "
                                 f"{x.shape[-2]} rows")
    if x.shape[-2] < num_taps:
        raise ConfigError("num_pilots", f"LS estimation of {num_taps} taps needs at least {num_taps} received "
                                        f"pilot samples, got {x.shape[-2]}")
    taps_hat = ls_solve(x, y_p.unsqueeze(-1)).squeeze(-1)  # normal equations (metacomm.codecs.detection)
    taps_hat = taps_hat.expand(y_p.shape[0], -1) if taps_hat.shape[0] == 1 else taps_hat
    if no is None:
        return taps_hat
    gram = x.mH @ x  # [B, L, L]
    no_b = _no_per_block(no, y_p)
    no_b = no_b.reshape(-1, 1, 1) if no_b.dim() else no_b
    cov = torch.linalg.inv(gram) * no_b
    return taps_hat, cov.expand(y_p.shape[0], -1, -1)


# ------------------------------------------------------------------------------------------------------------
# Equalisers
# ------------------------------------------------------------------------------------------------------------
def one_tap_equalize(y: torch.Tensor, h: torch.Tensor, no, *, kind: str = "zf", h_err_var=0.0):
    r"""One-tap equaliser for flat block fading.

    Args:
        y: received data block, complex ``[B, n]``.
        h: channel coefficient (true or estimated), complex ``[B, 1]`` (or ``[B]``).
        no: N0 per complex sample (scalar or ``[B]``).
        kind: ``"zf"`` (unbiased; equal to the unbiased MMSE for one tap) or ``"mmse"`` (biased, minimum MSE).
        h_err_var: variance :math:`\sigma_e^2` of the channel-estimate error (scalar or ``[B, 1]``; 0 = genie).

    Returns:
        ``(x_hat, no_eff)``: complex ``[B, n]`` and real ``[B, n]`` (see the module docstring).
    """
    _check_complex("y", y, (2,))
    _check_complex("h", h, (1, 2))
    kind = check_choice("kind", kind, ONE_TAP_KINDS)
    h = (h.unsqueeze(-1) if h.dim() == 1 else h).to(dtype=y.dtype, device=y.device)
    n_eff = _no_per_block(no, y) + torch.as_tensor(h_err_var, dtype=_real(y.dtype), device=y.device)
    g = h.abs().square()
    if kind == "zf":
        x_hat = y / h
        no_eff = n_eff / g
    else:
        x_hat = h.conj() * y / (g + n_eff)
        no_eff = n_eff / (g + n_eff)
    return x_hat, no_eff.expand(y.shape).contiguous()


def estimation_noise_diagonal(tap_err_cov: torch.Tensor, n: int, conv_matrix: ConvMatrixFn | None = None):
    r"""Per-sample variance ``[B, n_rx]`` of the self-interference :math:`\mathbf{E}\mathbf{x}` caused by a
    tap error with covariance ``tap_err_cov`` ``[B, L, L]`` for i.i.d. unit-energy symbols:
    :math:`\mathrm{diag}\sum_{\ell,\ell'} C_{e,\ell\ell'} \mathbf{C}_\ell\mathbf{C}_{\ell'}^H`.
    """
    conv_matrix = conv_matrix or _default_conv_matrix()
    L = tap_err_cov.shape[-1]
    unit = torch.eye(L, dtype=tap_err_cov.dtype, device=tap_err_cov.device)
    c = conv_matrix(unit, n)  # [L, n_rx, n]
    d = torch.einsum("lrn,mrn->lmr", c, c.conj())  # [L, L, n_rx]
    return torch.einsum("blm,lmr->br", tap_err_cov, d).real


def lmmse_equalize(y: torch.Tensor, H: torch.Tensor, no, *, extra_noise_var: torch.Tensor | None = None):
    r"""Unbiased LMMSE block equaliser (Sionna's :func:`~sionna.phy.mimo.lmmse_equalizer`).

    Args:
        y: received block, complex ``[B, n_rx]``.
        H: channel matrix, complex ``[B, n_rx, n]`` (``y = H x + noise``).
        no: N0 per complex sample (scalar or ``[B]``).
        extra_noise_var: optional real ``[B, n_rx]`` added to the noise variance (channel-estimation error,
            :func:`estimation_noise_diagonal`).

    Returns:
        ``(x_hat, no_eff)``: complex ``[B, n]`` and real ``[B, n]``; ``no_eff`` is the per-symbol error
        variance :math:`1/[\mathbf{GH}]_{tt} - 1 = 1/\mathrm{SINR}_t` (:math:`\hat x_t = x_t + e_t`).
    """
    _check_complex("y", y, (2,))
    _check_complex("H", H, (3,))
    if H.shape[-2] != y.shape[-1]:
        raise ConfigError("H", f"channel matrix has {H.shape[-2]} rows but y has {y.shape[-1]} samples")
    H = H.to(dtype=y.dtype, device=y.device)
    var = _no_per_block(no, y).expand(y.shape[0], y.shape[-1])
    if extra_noise_var is not None:
        var = var + extra_noise_var.to(dtype=var.dtype, device=var.device)
    s = torch.diag_embed(var.to(y.dtype))
    precision = "double" if y.dtype == torch.complex128 else "single"
    x_hat, no_eff = lmmse_equalizer(y, H.expand(y.shape[0], -1, -1), s, whiten_interference=True,
                                    precision=precision)
    return x_hat, no_eff
