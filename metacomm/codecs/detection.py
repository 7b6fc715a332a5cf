r"""Classical pilot-based estimation and detection over a codebook, one implementation each.

Signal model (one block, channel constant over the block, ``Es = 1`` per complex use, noise
:math:`\mathcal{CN}(0, N_0)` per complex sample): a block of ``n`` complex uses :math:`\mathbf x` goes through
``L`` taps :math:`\mathbf h` as the causal convolution truncated to ``n`` outputs,
:math:`\mathbf y = \mathbf H(\mathbf h)\mathbf x + \mathbf w` (:math:`\mathbf H` the lower-triangular
Toeplitz matrix, :func:`metacomm.channels.multipath.convolution_matrix`).

* **Pilot Toeplitz matrix** (:func:`pilot_matrix`, :func:`stacked_pilot_matrix`): with known pilot codewords
  the model is linear in the taps, :math:`\mathbf y_p = \mathbf X\mathbf h + \mathbf w` with :math:`\mathbf X`
  ``[B, n_rx, L]`` (column :math:`\ell` = the pilots delayed by :math:`\ell`); ``P`` pilot blocks per link stack
  to ``[B, P n, L]``.
* **LS taps** (:func:`ls_solve`, :func:`ls_taps`): :math:`\hat{\mathbf h} = (\mathbf X^H\mathbf X)^{-1}
  \mathbf X^H\mathbf y_p` (optionally with a ridge :math:`\epsilon\mathbf I` added to the Gram matrix).
* **Codeword images** (:func:`convolve_codewords`, :func:`matrix_images`, :func:`noiseless_images`): the
  noiseless received block of every codeword, through taps, through a channel matrix, or through any metacomm
  channel with a known state (the genie's images).
* **Minimum-distance / ML detection** (:func:`sq_distances`, :func:`min_distance_decide`,
  :func:`ml_block_logits`): :math:`\hat m = \arg\min_m \|\mathbf y - \mathbf r_m\|^2` over the images
  :math:`\mathbf r_m`; with Gaussian noise and the true images this is the ML decision, with estimated taps the
  plug-in (mismatched) ML decision.
* **The fused score-and-decide kernel** (:func:`codeword_scores`, :func:`score_decide`,
  :class:`ScoreWorkspace`): every block receiver's search over the codebook as one ``baddbmm`` against the
  codeword images, :math:`s_{jm} = (2\,\Re\langle\mathbf y_j,\mathbf r_m\rangle - \|\mathbf r_m\|^2)/N_0`
  (the log-likelihood up to the block's constant :math:`-\|\mathbf y_j\|^2/N_0`, which is never formed), the
  decision and its confidence :math:`\max_m s_{jm} - \log\sum_m e^{s_{jm}}` (the log posterior probability of
  the decided message) from one max pass and one exp pass into reused buffers.
* **Pilot-LS + ML** (:func:`pilot_ls_decide`, the one implementation): LS taps from the pilot codewords, then
  minimum-distance detection through the images of the estimated taps.
* **LMMSE flat gain** (:func:`lmmse_flat`): :math:`\hat h = \sum_p x_p^* y_p / (\sum_p |x_p|^2 + N_0)` for
  :math:`h \sim \mathcal{CN}(0, 1)`. (The LMMSE *block equaliser* is
  :func:`metacomm.codecs.equalization.lmmse_equalize`.)

Users: ``metacomm.drift.run`` (pilot-ls and genie schemes), ``metacomm.scenarios.online_drift``
(template decoder, :func:`ml_block_logits`), :func:`metacomm.codecs.equalization.ls_estimate_multipath`, the
``pilot-ls-ml`` references of ``metacomm.scenarios.fewshot_fading`` and ``metacomm.scenarios.drift_track``
(:func:`pilot_ls_decide`).
All functions are pure (no random draws) and keep the exact floating-point operations of the code they
replaced, so results stay bit-identical.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from metacomm._validation import ConfigError, check_choice, check_nonneg, check_positive_int
from metacomm.channels.multipath import convolution_matrix
from metacomm.channels.units import broadcast_no

__all__ = [
    "RIDGE",
    "IMAGE_FORMS",
    "ScoreWorkspace",
    "codeword_scores",
    "score_decide",
    "LS_METHODS",
    "convolve_codewords",
    "lmmse_flat",
    "ls_solve",
    "ls_taps",
    "matrix_images",
    "min_distance_decide",
    "ml_block_logits",
    "noiseless_images",
    "pilot_ls_decide",
    "pilot_matrix",
    "sq_distances",
    "stacked_pilot_matrix",
]

LS_METHODS = ("normal", "lstsq", "auto")
#: how :func:`pilot_ls_decide` forms the codeword images (the same numbers up to floating-point summation order)
IMAGE_FORMS = ("matrix", "regressor")
ConvMatrixFn = Callable[[torch.Tensor, int], torch.Tensor]


def _default_conv_matrix(lag0: int = 0) -> ConvMatrixFn:
    if lag0:
        def f(taps, n):
            return convolution_matrix(taps, n, lag0=lag0)
    else:
        def f(taps, n):
            return convolution_matrix(taps, n)
    f.lag0 = int(lag0)  # recognised by pilot_matrix: its unit-tap matrices are then cached
    return f


@functools.lru_cache(maxsize=64)
def _unit_conv(L: int, n: int, lag0: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``convolution_matrix(eye(L), n, lag0)`` ``[L, n_rx, n]``, computed once per geometry (a constant of every
    pilot and codebook regressor; read-only)."""
    unit = torch.eye(L, dtype=dtype, device=device)
    return _default_conv_matrix(lag0)(unit, n)


def _check_complex(name: str, t: torch.Tensor, dims: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor) or not torch.is_complex(t) or t.dim() not in dims:
        got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ConfigError(name, f"expected a complex tensor with {' or '.join(map(str, dims))} dims, got {got}")


# ------------------------------------------------------------------------------------------------------------
# Pilot Toeplitz matrices and LS taps
# ------------------------------------------------------------------------------------------------------------
def pilot_matrix(pilots: torch.Tensor, num_taps: int, conv_matrix: ConvMatrixFn | None = None) -> torch.Tensor:
    r"""The pilot convolution matrix :math:`\mathbf{X}` ``[B, n_rx, L]`` with :math:`\mathbf{y}_p =
    \mathbf{X}\mathbf{h} + \mathbf{n}` for taps :math:`\mathbf{h}` ``[B, L]``.

    ``pilots`` complex ``[P]`` (shared, gives ``B = 1``) or ``[B, P]``. Built by linearity from
    ``conv_matrix(taps, n)`` (default :func:`metacomm.channels.multipath.convolution_matrix`, causal, truncated to
    ``n`` outputs): column :math:`\ell` is :math:`\mathbf{H}(\mathbf{e}_\ell)\mathbf{p}`, so it matches whatever
    convolution (truncated/full, tap offset) the channel uses.
    """
    _check_complex("pilots", pilots, (1, 2))
    L = check_positive_int("num_taps", num_taps)
    conv_matrix = conv_matrix or _default_conv_matrix()
    p = pilots if pilots.dim() == 2 else pilots.unsqueeze(0)
    lag0 = getattr(conv_matrix, "lag0", None)
    if lag0 is not None:  # the default convolution: the unit-tap matrices do not depend on the pilots
        c = _unit_conv(L, p.shape[-1], lag0, p.dtype, p.device)  # [L, n_rx, P], cached
    else:
        unit = torch.eye(L, dtype=p.dtype, device=p.device)  # L "channels", each a unit tap at one lag
        c = conv_matrix(unit, p.shape[-1])  # [L, n_rx, P]
    return torch.einsum("lrp,bp->brl", c, p)


def stacked_pilot_matrix(x_p: torch.Tensor, num_taps: int, *, lag0: int = 0) -> torch.Tensor:
    r"""``P`` pilot codewords per link, complex ``[B, P, n]`` -> the stacked truncated-convolution matrices
    :math:`\mathbf X` complex ``[B, P n, L]`` (block ``p`` occupies rows ``p n .. p n + n - 1``). ``lag0``: the
    number of pre-cursor taps -- tap :math:`\ell` sits at lag :math:`\ell - \text{lag0}`,
    :math:`(\mathbf X\mathbf h)_i = \sum_\ell h_\ell\, x_{i - \ell + \text{lag0}}` (``0 <= lag0 < L``; 0 = causal),
    as :func:`metacomm.channels.multipath.convolution_matrix`."""
    _check_complex("x_p", x_p, (3,))
    B, P, n = x_p.shape
    conv = _default_conv_matrix(lag0) if lag0 else None
    return pilot_matrix(x_p.reshape(B * P, n), num_taps, conv).reshape(B, P * n, num_taps)


#: the ridge of every pilot least-squares fit (pilot-LS and its relatives): keeps the normal equations solvable
#: when the pilots do not excite every tap, far below any N0 of interest
RIDGE = 1e-9


def ls_solve(X: torch.Tensor, y: torch.Tensor, *, ridge: float = 0.0, method: str = "normal") -> torch.Tensor:
    r"""Least squares :math:`\hat{\mathbf h} = \arg\min \|\mathbf y - \mathbf X\mathbf h\|^2` per batch entry.

    :param X: complex ``[B, R, L]`` (full column rank, ``R >= L``).
    :param y: complex ``[B, R, 1]`` (or ``[B, R, K]`` for ``K`` right-hand sides).
    :param ridge: :math:`\epsilon \ge 0` added to the Gram diagonal (``method="normal"`` only; 0 = none).
    :param method: ``"normal"`` -- the normal equations, ``solve(X^H X [+ eps I], X^H y)``; ``"lstsq"`` --
        :func:`torch.linalg.lstsq` (QR based, better conditioned; CPU only); ``"auto"`` -- ``lstsq`` on CPU, the
        normal equations elsewhere.
    :returns: complex ``[B, L, 1]`` (``[B, L, K]``).
    """
    method = check_choice("method", method, LS_METHODS)
    check_nonneg("ridge", ridge)
    if method == "auto":
        method = "lstsq" if X.device.type == "cpu" else "normal"
    if method == "lstsq":
        if ridge:
            raise ConfigError("ridge", "a ridge needs method='normal'")
        return torch.linalg.lstsq(X, y).solution
    A = X.mH @ X
    if ridge:
        A = A + ridge * torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
    return torch.linalg.solve(A, X.mH @ y)


def ls_taps(x_p: torch.Tensor, y_p: torch.Tensor, num_taps: int, *, ridge: float = 0.0,
            method: str = "normal", lag0: int = 0) -> torch.Tensor:
    r"""LS estimate of ``L`` block-constant taps per link from ``P`` known pilot codewords,
    :math:`\hat{\mathbf h} = (\mathbf X^H\mathbf X)^{-1}\mathbf X^H\mathbf y_p` (truncated causal convolution).

    :param x_p: transmitted pilot codewords, complex ``[B, P, n]``.
    :param y_p: received pilots, complex ``[B, P, n_rx]`` with ``n_rx >= n`` (only the first ``n`` samples of
        each block enter: the truncated-convolution model).
    :param num_taps: ``L`` (needs ``P n >= L`` without a ridge; a ridge keeps fewer pilot samples solvable).
    :param ridge, method: see :func:`ls_solve`.
    :param lag0: pre-cursor taps of the window (tap :math:`\ell` at lag :math:`\ell - \text{lag0}`), see
        :func:`stacked_pilot_matrix`.
    :returns: complex ``[B, L]``.
    """
    _check_complex("y_p", y_p, (3,))
    X = stacked_pilot_matrix(x_p, num_taps, lag0=lag0)
    B, P, n = x_p.shape
    if y_p.shape[:2] != (B, P) or y_p.shape[-1] < n:
        raise ConfigError("y_p", f"expected [{B}, {P}, >= {n}] received pilots, got {tuple(y_p.shape)}")
    if P * n < num_taps and not ridge:
        raise ConfigError("num_pilots", f"LS estimation of {num_taps} taps needs at least {num_taps} pilot "
                                        f"samples, got {P * n}")
    y = y_p[..., :n].reshape(B, P * n, 1)
    return ls_solve(X, y, ridge=ridge, method=method).squeeze(-1)


# ------------------------------------------------------------------------------------------------------------
# Codeword images
# ------------------------------------------------------------------------------------------------------------
def convolve_codewords(codewords: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    r"""``r[..., m, i] = sum_l taps[..., l] * codewords[m, i - l]`` (truncated causal convolution).

    ``codewords`` complex ``[M, n]``, ``taps`` complex ``[..., L]`` -> ``[..., M, n]``; vmap-friendly (pads and
    slices only, no in-place ops)."""
    n = codewords.shape[-1]
    L = taps.shape[-1]
    padded = torch.nn.functional.pad(codewords, (L - 1, 0))  # [M, n + L - 1]
    out = None
    for ell in range(L):
        shifted = padded[..., L - 1 - ell: L - 1 - ell + n]  # codewords delayed by ell
        term = taps[..., ell, None, None] * shifted
        out = term if out is None else out + term
    return out


def matrix_images(H: torch.Tensor, codewords: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathbf H_b \mathbf c_m` for every link and codeword: ``H`` complex ``[B, n_rx, n]``,
    ``codewords`` ``[M, n]`` -> ``[B, M, n_rx]``."""
    return torch.einsum("crs,ms->cmr", H, codewords)


def noiseless_images(channel, x: torch.Tensor, state: dict) -> torch.Tensor:
    r"""The noiseless output of a metacomm ``channel`` with a known per-link ``state``.

    ``x`` complex ``[B, N, n]`` (``N`` blocks per link, e.g. the whole codebook expanded to ``[B, M, n]``),
    ``state`` ``{key: [B, ...]}`` -> complex ``[B, N, n_rx]``. N0 = 0 and an all-zero noise draw: any channel
    whose randomness besides AWGN is in its state (the genie's images :math:`\mathcal C_t(c_m)`)."""
    B, N, n = x.shape
    st = {k: v.repeat_interleave(N, dim=0) for k, v in state.items()}
    zero = torch.zeros(B * N, device=x.device)
    n_rx = channel.output_length(n)
    y = channel(x.reshape(B * N, n), zero, state=st, noise=torch.zeros(B * N, n_rx, dtype=x.dtype, device=x.device))
    return y.reshape(B, N, -1)


# ------------------------------------------------------------------------------------------------------------
# Minimum-distance / ML detection
# ------------------------------------------------------------------------------------------------------------
def sq_distances(y: torch.Tensor, images: torch.Tensor, *, expanded: bool = False,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    r"""Squared Euclidean distances :math:`\|\mathbf y_j - \mathbf r_m\|^2` of received blocks to images.

    ``y`` complex ``[..., N, n]``, ``images`` complex ``[..., M, n]`` (same leading dims, broadcastable) ->
    real ``[..., N, M]``. ``expanded=False``: every difference formed (exact distances); ``expanded=True``:
    :math:`-2\,\Re\langle \mathbf y_j, \mathbf r_m\rangle + \|\mathbf r_m\|^2` as one real matmul -- the distance
    *minus* the common :math:`\|\mathbf y_j\|^2` (same arg-min, much less memory for large ``M``); with
    ``[B, N, n]`` / ``[B, M, n]`` operands one ``baddbmm``, written into ``out`` (a real ``[B, N, M]`` buffer)
    when given.
    """
    if expanded:
        yr = torch.view_as_real(y).flatten(-2)
        ir = torch.view_as_real(images).flatten(-2)
        rr = ir.square().sum(-1).unsqueeze(-2)
        if yr.dim() == 3 and ir.dim() == 3 and yr.shape[0] == ir.shape[0]:
            # one baddbmm: the same numbers as -2 (y @ r^T) + ||r||^2 (a power-of-two scale is exact and the
            # kernel adds the bias after the product; checked bit for bit in tests/codecs/test_detection.py)
            return torch.baddbmm(rr, yr, ir.transpose(-1, -2), alpha=-2.0, out=out)
        return -2.0 * yr @ ir.transpose(-1, -2) + rr
    return (y.unsqueeze(-2) - images.unsqueeze(-3)).abs().square().sum(-1)


def min_distance_decide(y: torch.Tensor, images: torch.Tensor, *, expanded: bool = True,
                        workspace: ScoreWorkspace | None = None) -> torch.Tensor:
    r"""Minimum-distance decision :math:`\hat m = \arg\min_m \|\mathbf y_j - \mathbf r_m\|^2` (ML for AWGN with
    the true images): ``y`` ``[..., N, n]``, ``images`` ``[..., M, n]`` -> int64 ``[..., N]``
    (:func:`sq_distances`; ties go to the lowest index). ``workspace`` (:class:`ScoreWorkspace`): the
    ``[B, N, M]`` distances of ``[B, N, n]`` / ``[B, M, n]`` operands go into its reused buffer (the same numbers;
    no fresh tens-of-MB allocation per call)."""
    out = None
    if workspace is not None and expanded and y.dim() == 3 and images.dim() == 3 and y.shape[0] == images.shape[0]:
        out = workspace.get("s", (y.shape[0], y.shape[1], images.shape[1]), y.real.dtype, y.device)
    return sq_distances(y, images, expanded=expanded, out=out).argmin(-1)


class ScoreWorkspace:
    """Reused buffers for :func:`score_decide` (one per receiver): the ``[..., N, M]`` score tensors of a large
    run are tens of MB, and a fresh allocation of that size is mapped and page-faulted anew on every call (on CPU
    that costs more than the matrix product). :meth:`get` returns a buffer of the asked shape, dtype and device,
    reallocated only when one of them changes. Not thread-safe; holds at most one buffer per name."""

    def __init__(self):
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
        b = self._bufs.get(name)
        shape = tuple(int(d) for d in shape)
        if b is None or tuple(b.shape) != shape or b.dtype != dtype or b.device != torch.device(device):
            b = torch.empty(shape, dtype=dtype, device=device)
            self._bufs[name] = b
        return b

    def clear(self) -> None:
        self._bufs.clear()


def _real3(t: torch.Tensor) -> torch.Tensor:
    """complex ``[..., K, n]`` -> real ``[prod(...), K, 2n]`` (``[Re, Im]`` interleaved per sample)."""
    r = torch.view_as_real(t.resolve_conj()).flatten(-2)
    return r.reshape(-1, *r.shape[-2:])


def codeword_scores(y: torch.Tensor, images: torch.Tensor, scale=None, *, out: torch.Tensor | None = None
                    ) -> torch.Tensor:
    r"""The fused codebook scores :math:`s_{jm} = c\,(2\,\Re\langle\mathbf y_j, \mathbf r_m
angle -
    \|\mathbf r_m\|^2) = c\,(\|\mathbf y_j\|^2 - \|\mathbf y_j - \mathbf r_m\|^2)`, float ``[..., N, M]``.

    :param y: received blocks, complex ``[..., N, n]``.
    :param images: codeword images :math:`\mathbf r_m`, complex ``[..., M, n]`` (the same leading dims as ``y``)
        or ``[M, n]`` (one set for every leading entry).
    :param scale: :math:`c` per leading entry (e.g. :math:`1/N_0`, real, broadcastable to ``[...]``), or ``None``
        (:math:`c = 1`). With :math:`c = 1/N_0` the scores are the Gaussian log-likelihoods
        :math:`-\|\mathbf y_j - \mathbf r_m\|^2/N_0` up to the per-block constant :math:`\|\mathbf y_j\|^2/N_0`,
        which is not formed (it changes no decision and no posterior).
    :param out: optional real buffer ``[prod(...), N, M]`` (contiguous) the scores are written into.

    One ``baddbmm``: the images, scaled by :math:`2c` (``[..., M, 2n]``, small), against the received blocks as
    real vectors, with the bias :math:`-c\|\mathbf r_m\|^2` -- no ``[..., N, M, n]`` difference tensor and no
    extra pass over the ``[..., N, M]`` scores.
    """
    lead = y.shape[:-2]
    N, n = y.shape[-2:]
    yr = _real3(y)  # [G, N, 2n]
    G = yr.shape[0]
    ir = _real3(images)
    if images.dim() == 2:
        ir = ir.expand(G, *ir.shape[-2:])
    elif ir.shape[0] != G:
        raise ConfigError("images", f"expected images [{', '.join(map(str, lead))}, M, {n}] or [M, {n}], got "
                                    f"{tuple(images.shape)}")
    rr = ir.square().sum(-1)  # [G, M]
    if scale is None:
        w, bias = 2.0 * ir, -rr
    else:
        c = torch.as_tensor(scale, dtype=yr.dtype, device=yr.device).expand(lead).reshape(G)
        w, bias = ir * (2.0 * c)[:, None, None], -rr * c[:, None]
    s = torch.baddbmm(bias[:, None, :], yr, w.transpose(-1, -2), out=out)
    return s.reshape(*lead, N, ir.shape[-2])


def score_decide(y: torch.Tensor, images: torch.Tensor, scale=None, *, confidence: bool = True,
                 workspace: ScoreWorkspace | None = None, key: str = "s"):
    r"""The fused score-and-decide kernel: :func:`codeword_scores`, then the decision
    :math:`\hat m_j = rg\max_m s_{jm}` (int64 ``[..., N]``; ties to the lowest index) and, with
    ``confidence``, :math:`\kappa_j = \max_m s_{jm} - \log\sum_m e^{s_{jm}} \le 0` -- with ``scale = 1/N0`` the
    log posterior probability of the decided message under a uniform prior (float ``[..., N]``), and the sum
    :math:`S_j = \sum_m e^{s_{jm} - \max_m s_{jm}} \ge 1` it comes from (float ``[..., N]``).

    Returns ``(msg_hat, kappa, S, smax)`` (``kappa``, ``S`` ``None`` without ``confidence``; ``smax`` the
    maximum score ``[..., N]``). ``workspace``: buffers reused across calls (:class:`ScoreWorkspace`; ``key``
    names this call's buffers in it). One max pass (values and indices together), one subtract-and-exp pass in
    place, one sum -- against ``log_softmax`` + ``argmax`` + ``max`` over freshly allocated tensors.
    """
    lead = y.shape[:-2]
    N = y.shape[-2]
    M = images.shape[-2]
    G = 1
    for d in lead:
        G *= int(d)
    rdt = y.real.dtype
    out = None if workspace is None else workspace.get(key, (G, N, M), rdt, y.device)
    s = codeword_scores(y, images, scale, out=out).reshape(G, N, M)
    smax, best = s.max(-1)
    if not confidence:
        return best.reshape(*lead, N), None, None, smax.reshape(*lead, N)
    e = torch.empty_like(s) if workspace is None else workspace.get(key + ".exp", (G, N, M), rdt, y.device)
    torch.sub(s, smax[..., None], out=e)
    # exp(-80) = 1.8e-35 is still a normal float32: terms below it (they change S by < M e^-80) would underflow
    # to subnormals, which the CPU's exp handles ~10x slower than normals
    e.clamp_(min=-80.0).exp_()
    S = e.sum(-1)
    kappa = -torch.log(S)
    return best.reshape(*lead, N), kappa.reshape(*lead, N), S.reshape(*lead, N), smax.reshape(*lead, N)


def ml_block_logits(y: torch.Tensor, codebook: torch.Tensor, taps: torch.Tensor, no) -> torch.Tensor:
    r"""ML (genie or plug-in) block log-likelihoods :math:`-\|y - \mathbf H(h) c_m\|^2 / N_0` (up to a constant).

    ``y`` complex ``[B, n]``, ``codebook`` complex ``[2^k, n]``, ``taps`` complex ``[B, L]`` (per block),
    ``no`` N0 per complex sample, float or ``[B]`` -> float ``[B, 2^k]``. With the true taps and N0 the arg-max
    is the ML decision of any decoder for that encoder.
    """
    r = convolve_codewords(codebook, taps)  # [B, M, n]
    d = sq_distances(y.unsqueeze(-2), r).squeeze(-2)
    return -d / broadcast_no(no, d)


# ------------------------------------------------------------------------------------------------------------
# Pilot-LS + ML
# ------------------------------------------------------------------------------------------------------------
def pilot_ls_decide(x_p: torch.Tensor, y_p: torch.Tensor, y_d: torch.Tensor, codebook: torch.Tensor,
                    num_taps: int, *, lag0: int = 0, dtype: torch.dtype | None = None, ridge: float = RIDGE,
                    method: str = "normal", images: str = "matrix", expanded: bool = True,
                    workspace: ScoreWorkspace | None = None) -> torch.Tensor:
    r"""Pilot-LS + ML, the one implementation: LS taps from known pilot codewords, then minimum-distance (plug-in
    ML) detection of the payload over the codebook through them.

    Per link (every entry of the leading dims ``...``), with ``L = num_taps`` taps at lags
    :math:`-\text{lag0} .. L-1-\text{lag0}` and the truncated convolution (the first ``n`` received samples of a
    block; ``lag0 = 0``: causal taps):

    .. math::  \hat{\mathbf h} = (\mathbf X^H\mathbf X + \epsilon\mathbf I)^{-1}\mathbf X^H\mathbf y_p,
               \qquad \hat m_j = \arg\min_m \|\mathbf y_j - \mathbf H(\hat{\mathbf h})\mathbf c_m\|^2

    with :math:`\mathbf X` ``[P n, L]`` the stacked pilot matrix (:func:`stacked_pilot_matrix`), :math:`\epsilon`
    = ``ridge`` (:func:`ls_taps`, :func:`ls_solve`) and :math:`\mathbf H(\cdot)` the
    :func:`~metacomm.channels.multipath.convolution_matrix` with that ``lag0``.

    :param x_p: pilot codewords, complex ``[..., P, n]``.
    :param y_p: received pilots, complex ``[..., P, n_rx]`` (``n_rx >= n``; only the first ``n`` samples enter).
    :param y_d: received payload, complex ``[..., N, n_rx]`` (first ``n`` samples used).
    :param codebook: complex ``[M, n]``.
    :param num_taps: ``L`` (``0 <= lag0 < L``; needs ``P n >= L`` unless ``ridge > 0``).
    :param dtype: complex dtype of the estimation and the images (default: the codebook's); the images are
        cast to ``y_d``'s dtype for the decision.
    :param ridge: :math:`\epsilon` (default :data:`RIDGE`; 0 with ``method="lstsq"``/``"auto"``).
    :param method: the LS solver, see :func:`ls_solve`.
    :param images: ``"matrix"`` -- :math:`\mathbf r_m = \mathbf H(\hat{\mathbf h})\mathbf c_m` through the
        convolution matrix (:func:`matrix_images`); ``"regressor"`` -- :math:`\mathbf r_m = \mathbf T(\mathbf
        c_m)\hat{\mathbf h}`, each codeword's tap regressor (:func:`pilot_matrix` of the codebook) times the
        taps. The same images up to floating-point summation order (kept so that each caller's numbers stay
        bit-identical).
    :param expanded: distance form of :func:`min_distance_decide`.
    :param workspace: reused distance buffer (:class:`ScoreWorkspace`, see :func:`min_distance_decide`).
    :returns: int64 ``[..., N]``, the decided codeword indices.
    """
    _check_complex("x_p", x_p, tuple(range(2, 9)))
    L = check_positive_int("num_taps", num_taps)
    check_choice("images", images, IMAGE_FORMS)
    if not 0 <= int(lag0) < L:
        raise ConfigError("lag0", f"must lie in [0, {L - 1}] for {L} taps, got {lag0}")
    lag0 = int(lag0)
    dt = codebook.dtype if dtype is None else dtype
    lead, (P, n) = x_p.shape[:-2], x_p.shape[-2:]
    if y_p.shape[:-1] != x_p.shape[:-1] or y_d.shape[:-2] != lead:
        raise ConfigError("y_p", f"expected received pilots [{', '.join(map(str, x_p.shape[:-1]))}, >= {n}] and "
                                 f"payload [{', '.join(map(str, lead))}, N, >= {n}], got {tuple(y_p.shape)} and "
                                 f"{tuple(y_d.shape)}")
    h = ls_taps(x_p.to(dt).reshape(-1, P, n), y_p.to(dt).reshape(-1, P, y_p.shape[-1]), L, ridge=ridge,
                method=method, lag0=lag0)  # [B, L]
    book = codebook.to(dt)
    if images == "matrix":
        conv = _default_conv_matrix(lag0)
        r = matrix_images(conv(h, n), book)  # [B, M, n]
        r = r.reshape(*lead, *r.shape[-2:])
    else:
        T = pilot_matrix(book, L, _default_conv_matrix(lag0) if lag0 else None)  # [M, n, L]
        r = torch.einsum("mnl,...l->...mn", T, h.reshape(*lead, L))
    return min_distance_decide(y_d[..., :n], r.to(y_d.dtype), expanded=expanded, workspace=workspace)


# ------------------------------------------------------------------------------------------------------------
# LMMSE
# ------------------------------------------------------------------------------------------------------------
def lmmse_flat(x: torch.Tensor, y: torch.Tensor, no) -> torch.Tensor:
    r"""LMMSE estimate of a flat gain :math:`h \sim \mathcal{CN}(0, 1)` from pilots :math:`y_p = h x_p + w_p`,
    :math:`w_p \sim \mathcal{CN}(0, N_0)`: :math:`\hat h = \sum_p x_p^* y_p / (\sum_p |x_p|^2 + N_0)`
    (error variance :math:`N_0 / (\sum_p|x_p|^2 + N_0)`). ``x``, ``y`` complex ``[..., P]``, ``no`` N0 per
    complex sample (float or broadcastable to ``[...]``) -> complex ``[...]``."""
    return (x.conj() * y).sum(-1) / (x.abs().square().sum(-1) + no)
