r"""Meta-learned channel tracking: a Kalman-style belief over the channel taps carried from frame to frame.

The receiver models the channel of frame :math:`t` as ``L`` complex taps :math:`\mathbf h_t` (a window with
``precursor`` pre-cursor taps: :math:`y_i = \sum_{\ell=0}^{L-1} h_\ell\, x_{i-\ell+p}`, :math:`x_j = 0` outside
``0..n-1``, ``n`` outputs) following a per-tap Gauss-Markov process

.. math:: \mathbf h_t = \mathbf a \odot \mathbf h_{t-1} + \mathbf u_t,\quad \mathbf u_t \sim
          \mathcal{CN}(0, \operatorname{diag}\mathbf q),\quad \mathbf h_0 \sim \mathcal{CN}(0,
          \operatorname{diag}\boldsymbol\sigma_0^2),

and keeps, per link, the Gaussian belief :math:`\mathcal{CN}(\mathbf m, \mathbf P)` (``m`` complex ``[..., L]``,
``P`` complex Hermitian ``[..., L, L]``). Per frame: **predict** :math:`\mathbf m \leftarrow \mathbf a\odot\mathbf
m`, :math:`\mathbf P \leftarrow \operatorname{diag}(\mathbf a)\mathbf P\operatorname{diag}(\mathbf a) +
\operatorname{diag}\mathbf q`; **update** with the frame's pilots :math:`\mathbf y = \mathbf X\mathbf h + \mathbf w`,
:math:`\mathbf w\sim\mathcal{CN}(0, N_0\mathbf I)` (``X`` the stacked convolution matrices of what the receiver
believes was sent) by the exact linear-Gaussian posterior, written without inverting ``P``:

.. math:: \mathbf G = \mathbf X^H\mathbf X/N_0,\ \mathbf b = \mathbf X^H\mathbf y/N_0,\ \mathbf A = \mathbf I +
          \mathbf P\mathbf G,\quad \mathbf m^+ = \mathbf A^{-1}(\mathbf m + \mathbf P\mathbf b),\ \mathbf P^+ =
          \mathbf A^{-1}\mathbf P

(:math:`(\mathbf P^{-1} + \mathbf G)^{-1} = (\mathbf I + \mathbf P\mathbf G)^{-1}\mathbf P`). With ``a``, ``q``,
:math:`\sigma_0^2` set to the true process this *is* the Kalman filter (the MMSE tracker); here they are
meta-parameters (:class:`KalmanTracker`: ``a`` per tap in (0, 1) through a sigmoid, ``q`` and :math:`\sigma_0^2`
per tap through a softplus) learned from the scenario's own frame sequences -- the receiver is never told the
correlation :math:`\rho`.

Decoding (:func:`gaussian_block_logits`): the log-likelihood of each of the ``M`` messages' templates
:math:`\mathbf t_m` under the belief, either at the mean (:math:`-\|\mathbf y - \mathbf T_m\mathbf m\|^2/N_0`) or
integrating over :math:`\mathbf h\sim\mathcal{CN}(\mathbf m,\mathbf P)` (``soft``): :math:`\mathbf y \mid m \sim
\mathcal{CN}(\mathbf T_m\mathbf m,\ \mathbf T_m\mathbf P\mathbf T_m^H + N_0\mathbf I)`, evaluated by Woodbury with
``L x L`` systems only.

Everything is pure (no in-place ops, no ``.item()``, nothing random), batched over leading dims, and safe under
``torch.func.vmap``/``grad``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metacomm._validation import ConfigError, check_nonneg_int, check_positive_int
from metacomm.codecs.widely_linear import widely_linear_regressor

__all__ = ["track_frames", "track_frame_decide", "redecode_candidates", "KalmanTracker", "PACorrection", "phase_prior", "position_matrix", "phase_frame_update",
           "phase_block_logits", "phase_nll", "pa_params", "pa_apply", "tap_conv_matrix", "regressor_matrix", "stacked_conv_matrix", "tracker_init", "tracker_predict",
           "tracker_update", "tracker_step", "gaussian_block_logits", "gaussian_nll", "inv_softplus", "logit"]


def inv_softplus(x: float) -> float:
    """:math:`\\log(e^x - 1)` for ``x > 0`` (so that ``softplus(inv_softplus(x)) == x``)."""
    if not x > 0:
        raise ConfigError("value", f"must be > 0, got {x!r}")
    return float(x + math.log(-math.expm1(-x)))


def logit(p: float) -> float:
    """:math:`\\log(p / (1 - p))` for ``0 < p < 1``."""
    if not 0 < p < 1:
        raise ConfigError("value", f"must lie in (0, 1), got {p!r}")
    return float(math.log(p) - math.log1p(-p))


def tap_conv_matrix(symbols: torch.Tensor, num_taps: int, precursor: int = 0) -> torch.Tensor:
    r"""The convolution matrix of a block: ``symbols`` complex ``[..., n]`` -> ``T`` complex ``[..., n, L]`` with
    :math:`(\mathbf T\mathbf h)_i = \sum_\ell h_\ell\, x_{i-\ell+p}` (``p = precursor``; zero outside the block,
    ``n`` outputs). ``precursor = 0`` is the causal truncated convolution of
    :func:`metacomm.channels.multipath.convolve` (``mode="truncate"``)."""
    n = symbols.shape[-1]
    L, p = int(num_taps), int(precursor)
    pad_l, pad_r = max(L - 1 - p, 0), max(p, 0)
    padded = torch.nn.functional.pad(symbols, (pad_l, pad_r))  # index j of symbols at j + pad_l
    cols = []
    for ell in range(L):
        start = pad_l - ell + p  # output i reads symbol i - ell + p
        cols.append(padded[..., start:start + n])
    return torch.stack(cols, dim=-1)


def regressor_matrix(symbols: torch.Tensor, num_taps: int, precursor: int = 0, widely_linear: bool = False
                     ) -> torch.Tensor:
    r"""The receiver's observation matrix of a block: :func:`tap_conv_matrix` ``[..., n, L]``, or with
    ``widely_linear`` ``[..., n, 2L]`` = ``[T(x), T(conj x)]`` -- the model :math:`\mathbf y = \mathbf T(\mathbf
    x)\mathbf h + \mathbf T(\mathbf x^*)\mathbf g`, which represents IQ imbalance (transmitter or receiver, a
    real-linear map of the samples) in front of or behind a linear channel: the belief then covers ``2L``
    coefficients (``h`` then ``g``; the one widely-linear regressor,
    :func:`metacomm.codecs.widely_linear.widely_linear_regressor`, of :func:`tap_conv_matrix`)."""
    if not widely_linear:
        return tap_conv_matrix(symbols, num_taps, precursor)
    return widely_linear_regressor(lambda x: tap_conv_matrix(x, num_taps, precursor), symbols)


def stacked_conv_matrix(symbols: torch.Tensor, num_taps: int, precursor: int = 0, widely_linear: bool = False
                        ) -> torch.Tensor:
    """``P`` blocks ``[..., P, n]`` -> the stacked matrices ``[..., P n, L]`` (block ``p`` in rows
    ``p n .. p n + n - 1``; ``2L`` columns with ``widely_linear``, see :func:`regressor_matrix`)."""
    T = regressor_matrix(symbols, num_taps, precursor, widely_linear)
    return T.reshape(*T.shape[:-3], T.shape[-3] * T.shape[-2], T.shape[-1])


def _herm_mm(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """:math:`A^H B` for complex ``A [..., r, p]``, ``B [..., r, q]`` by real matmuls (a complex matmul with a
    lazily conjugated operand takes a slow path on CPU, and ``conj_physical`` has no vmap rule)."""
    Ar, Ai = A.real.transpose(-1, -2), A.imag.transpose(-1, -2)
    Br, Bi = B.real, B.imag
    return torch.complex(Ar @ Br + Ai @ Bi, Ar @ Bi - Ai @ Br)


def _diag(v: torch.Tensor) -> torch.Tensor:
    return torch.diag_embed(v)


def tracker_init(p0: torch.Tensor, batch_shape: tuple = (), dtype=torch.complex64) -> tuple[torch.Tensor, ...]:
    """The prior belief before the first frame: ``m = 0`` complex ``[*batch_shape, L]``, ``P = diag(p0)``
    ``[*batch_shape, L, L]`` (``p0`` real ``[L]``, the per-tap prior variance)."""
    L = p0.shape[-1]
    m = torch.zeros(*batch_shape, L, dtype=dtype, device=p0.device)
    P = _diag(p0).to(dtype).expand(*batch_shape, L, L)
    return m, P


def tracker_predict(m: torch.Tensor, P: torch.Tensor, a: torch.Tensor, q: torch.Tensor):
    r"""Time update: :math:`\mathbf m \leftarrow \mathbf a\odot\mathbf m`, :math:`\mathbf P\leftarrow
    \operatorname{diag}(\mathbf a)\mathbf P\operatorname{diag}(\mathbf a) + \operatorname{diag}(\mathbf q)`
    (``a``, ``q`` real ``[L]``)."""
    a_c = a.to(m.dtype)
    return m * a_c, a_c[..., :, None] * P * a_c[..., None, :] + _diag(q).to(P.dtype)


def tracker_update(m: torch.Tensor, P: torch.Tensor, X: torch.Tensor, y: torch.Tensor, no: torch.Tensor,
                   weight: torch.Tensor | None = None):
    r"""Measurement update (module docstring) with ``y = X h + w``: ``X`` complex ``[..., R, L]``, ``y`` complex
    ``[..., R]``, ``no`` real ``[...]`` (N0 per complex sample), ``weight`` optional real ``[..., R]`` (row ``r``'s
    noise variance is ``N0 / weight_r``; 0 drops the row). Returns the posterior ``(m, P)``."""
    Xh = X.conj().transpose(-1, -2)  # [..., L, R]
    if weight is not None:
        Xh = Xh * weight.to(X.real.dtype)[..., None, :]
    inv_no = (1.0 / no).to(X.real.dtype)[..., None, None]
    G = (Xh @ X) * inv_no
    b = (Xh @ y[..., None]) * inv_no  # [..., L, 1]
    L = m.shape[-1]
    A = torch.eye(L, dtype=P.dtype, device=P.device) + P @ G
    rhs = torch.cat([m[..., None] + P @ b, P], dim=-1)  # one solve for both
    sol = torch.linalg.solve(A, rhs)
    m_new, P_new = sol[..., 0], sol[..., 1:]
    return m_new, 0.5 * (P_new + P_new.conj().transpose(-1, -2))


def tracker_step(m, P, a, q, X, y, no, weight=None):
    """:func:`tracker_predict` then :func:`tracker_update`: one frame of the recursion."""
    m, P = tracker_predict(m, P, a, q)
    return tracker_update(m, P, X, y, no, weight)


def gaussian_block_logits(y: torch.Tensor, templates: torch.Tensor, m: torch.Tensor, no: torch.Tensor,
                          P: torch.Tensor | None = None, *, precursor: int = 0,
                          widely_linear: bool = False) -> torch.Tensor:
    r"""Log-likelihoods of the ``M`` messages (up to a common constant), float ``[..., N, M]``.

    ``y`` complex ``[..., N, n]`` received blocks, ``templates`` complex ``[M, n]`` (what the receiver believes
    message ``m`` sends), ``m`` complex ``[..., L]`` tap belief mean, ``no`` real ``[...]`` N0 per complex sample.
    Without ``P``: :math:`-\|\mathbf y - \mathbf T_m\mathbf m\|^2/N_0` (ML at the mean). With ``P`` complex
    ``[..., L, L]`` (``soft``): the exact Gaussian log-likelihood of :math:`\mathbf y\mid m` with
    :math:`\mathbf h\sim\mathcal{CN}(\mathbf m,\mathbf P)` integrated out,
    :math:`-(\|\mathbf e\|^2 - \mathbf v^H\mathbf K^{-1}\mathbf v)/N_0 - \log\det(\mathbf K/N_0)` with
    :math:`\mathbf P = \mathbf R\mathbf R^H`, :math:`\mathbf U = \mathbf T_m\mathbf R`,
    :math:`\mathbf K = N_0\mathbf I + \mathbf U^H\mathbf U`, :math:`\mathbf v = \mathbf U^H\mathbf e`.
    With ``widely_linear`` the belief is over ``L = 2 L'`` coefficients and :math:`\mathbf T_m` is
    :func:`regressor_matrix` (``[T(t_m), T(t_m^*)]``).
    """
    L = m.shape[-1]
    T = regressor_matrix(templates, L // 2 if widely_linear else L, precursor, widely_linear)  # [M, n, L]
    r = torch.einsum("mnl,...l->...mn", T, m)  # [..., M, n]
    no_r = no.to(y.real.dtype)[..., None, None]
    # ||y - r||^2 = ||y||^2 - 2 Re<y, r> + ||r||^2 by one matmul (no [..., N, M, n] tensor)
    # Re sum_i y_i conj(r_i) as a real matmul (a complex matmul with a conjugated operand is ~100x slower on CPU)
    cross = torch.view_as_real(y).flatten(-2) @ torch.view_as_real(r).flatten(-2).transpose(-1, -2)
    d2 = y.abs().square().sum(-1)[..., None] - 2.0 * cross + r.abs().square().sum(-1)[..., None, :]
    if P is None:
        return -d2 / no_r
    eye = torch.eye(L, dtype=P.dtype, device=P.device)
    R = torch.linalg.cholesky(P + 1e-9 * eye)  # [..., L, L]
    U = torch.einsum("mnl,...lk->...mnk", T, R)  # [..., M, n, L]
    K = _herm_mm(U, U) + no.to(P.dtype)[..., None, None, None] * eye  # [..., M, L, L]
    CK = torch.linalg.cholesky(K)
    # v = U^H (y - r) = U^H y - U^H r
    M = U.shape[-3]
    Ut = U.transpose(-3, -2).reshape(*U.shape[:-3], U.shape[-2], M * L)  # [..., n, M L]
    vy = _herm_mm(Ut, y.transpose(-1, -2))  # [..., M L, N]
    vy = vy.reshape(*vy.shape[:-2], M, L, vy.shape[-1]).movedim(-1, -3)  # [..., N, M, L]
    vr = _herm_mm(U, r[..., None])[..., 0]  # [..., M, L]
    v = vy - vr[..., None, :, :]
    # v^H K^{-1} v with K^{-1} per message (M small L x L inverses, no per-block solves)
    Kinv = torch.cholesky_inverse(CK)  # [..., M, L, L]
    Kv = (Kinv @ v.movedim(-3, -1)).movedim(-1, -3)  # [..., N, M, L]
    quad = (v.real * Kv.real + v.imag * Kv.imag).sum(-1)
    logdet = 2.0 * torch.log(torch.diagonal(CK, dim1=-2, dim2=-1).real).sum(-1) - L * torch.log(
        no.to(y.real.dtype))[..., None]  # [..., M]: log det(K / N0)
    return -(d2 - quad) / no_r - logdet[..., None, :]


def gaussian_nll(y: torch.Tensor, T: torch.Tensor, m: torch.Tensor, P: torch.Tensor, no: torch.Tensor
                 ) -> torch.Tensor:
    r"""Negative log-likelihood per received sample of blocks with *known* transmitted templates under the belief,
    :math:`\mathbf y \sim \mathcal{CN}(\mathbf T\mathbf m,\ \mathbf T\mathbf P\mathbf T^H + N_0\mathbf I)`,
    float ``[..., B]`` (nats per complex sample, without the constant :math:`\log\pi`).

    ``y`` complex ``[..., B, n]``, ``T`` complex ``[..., B, n, L]`` (each block's convolution matrix), ``m``
    ``[..., L]``, ``P`` ``[..., L, L]``, ``no`` ``[...]``. Woodbury with ``L x L`` systems: :math:`\mathbf U =
    \mathbf T\mathbf R` (:math:`\mathbf P = \mathbf R\mathbf R^H`), :math:`\mathbf K = N_0\mathbf I +
    \mathbf U^H\mathbf U`; :math:`\mathbf e^H\mathbf S^{-1}\mathbf e = (\|\mathbf e\|^2 -
    \|\mathbf C_K^{-1}\mathbf U^H\mathbf e\|^2)/N_0`, :math:`\log\det\mathbf S = n\log N_0 +
    \log\det(\mathbf K/N_0)`. This is the likelihood a Kalman filter maximises over its model parameters (the
    innovation likelihood): it identifies ``a``, ``q`` and ``p0``."""
    L = m.shape[-1]
    n = y.shape[-1]
    eye = torch.eye(L, dtype=P.dtype, device=P.device)
    R = torch.linalg.cholesky(P + 1e-9 * eye)[..., None, :, :]  # [..., 1, L, L]
    e = y - (T @ m[..., None, :, None])[..., 0]  # [..., B, n]
    U = T @ R  # [..., B, n, L]
    no_c = no.to(P.dtype)[..., None, None, None]
    CK = torch.linalg.cholesky(_herm_mm(U, U) + no_c * eye)
    v = _herm_mm(U, e[..., None])  # [..., B, L, 1]
    z = torch.linalg.solve_triangular(CK, v, upper=False)[..., 0]
    no_r = no.to(y.real.dtype)[..., None]
    quad = (e.abs().square().sum(-1) - z.abs().square().sum(-1)) / no_r
    logdet = n * torch.log(no_r) + 2.0 * torch.log(torch.diagonal(CK, dim1=-2, dim2=-1).real).sum(-1) \
        - L * torch.log(no_r)
    return (quad + logdet) / n


class KalmanTracker(nn.Module):
    r"""The tracker's meta-parameters (module docstring): ``a_logit`` ``[L]`` (:math:`a = \sigma(\cdot)`),
    ``q_raw`` ``[L]`` (:math:`q = \mathrm{softplus}(\cdot)`, innovation variance per tap and frame),
    ``p0_raw`` ``[L]`` (:math:`\sigma_0^2 = \mathrm{softplus}(\cdot)`, prior variance per tap); ``num_taps``
    ``L`` and ``precursor`` (pre-cursor taps of the window) fixed. Initial values: ``a = rho``, ``p0`` per tap
    and ``q = (1 - rho^2) p0`` (a stationary process) unless given.

    :meth:`params` -> ``(a, q, p0)`` real ``[L]``; :meth:`init`, :meth:`step` and :meth:`logits` wrap the pure
    functions with the module's current (possibly functionally swapped) parameters.
    """

    def __init__(self, num_taps: int, precursor: int = 0, *, rho: float = 0.9, p0: float | None = None,
                 q: float | None = None, widely_linear: bool = False, phase_noise: float | None = None):
        super().__init__()
        L = check_positive_int("num_taps", num_taps)
        self.num_taps, self.precursor = L, check_nonneg_int("precursor", precursor)
        if self.precursor >= L:
            raise ConfigError("precursor", f"must be < num_taps = {L}, got {precursor}")
        self.widely_linear = bool(widely_linear)
        p0 = 1.0 / L if p0 is None else float(p0)
        q = (1.0 - rho ** 2) * p0 if q is None else float(q)
        # widely linear: L more coefficients (the conj(x) taps g), starting 20 dB below h (IQ imbalance is small)
        scale = torch.cat([torch.ones(L), torch.full((L,), 0.01)]) if self.widely_linear else torch.ones(L)
        self.a_logit = nn.Parameter(torch.full(scale.shape, logit(rho)))
        self.q_raw = nn.Parameter(torch.tensor([inv_softplus(q * float(s)) for s in scale]))
        self.p0_raw = nn.Parameter(torch.tensor([inv_softplus(p0 * float(s)) for s in scale]))
        #: receiver Wiener phase noise (the per-frame per-position belief, :func:`phase_prior`): its variance
        #: s2 = softplus(pn_raw) [rad^2/symbol] is learned; absent (the tracker unchanged) unless given
        self.phase_noise = phase_noise is not None
        if self.phase_noise:
            self.pn_raw = nn.Parameter(torch.tensor(inv_softplus(float(phase_noise))))

    @property
    def dim(self) -> int:
        """Coefficients in the belief: ``L``, or ``2L`` when widely linear."""
        return 2 * self.num_taps if self.widely_linear else self.num_taps

    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.sigmoid(self.a_logit), nn.functional.softplus(self.q_raw),
                nn.functional.softplus(self.p0_raw))

    def init(self, batch_shape: tuple = (), dtype=torch.complex64):
        return tracker_init(self.params()[2], batch_shape, dtype)

    def step(self, m, P, templates_p: torch.Tensor, y_p: torch.Tensor, no: torch.Tensor, weight=None):
        """One frame: predict, then update on ``templates_p`` complex ``[..., P, n]`` (the pilots' templates) and
        ``y_p`` complex ``[..., P, n]`` received, ``no`` ``[...]``; ``weight`` optional ``[..., P]``."""
        a, q, _ = self.params()
        X = stacked_conv_matrix(templates_p, self.num_taps, self.precursor, self.widely_linear)
        w = None if weight is None else weight.repeat_interleave(templates_p.shape[-1], dim=-1)
        return tracker_step(m, P, a, q, X, y_p.reshape(*y_p.shape[:-2], -1), no, w)

    def update(self, m, P, templates_p, y_p, no, weight=None):
        """Measurement update only (no time step), e.g. with decided payload blocks; arguments as :meth:`step`."""
        X = stacked_conv_matrix(templates_p, self.num_taps, self.precursor, self.widely_linear)
        w = None if weight is None else weight.repeat_interleave(templates_p.shape[-1], dim=-1)
        return tracker_update(m, P, X, y_p.reshape(*y_p.shape[:-2], -1), no, w)

    def nll(self, y, templates_b, m, P, no):
        """:func:`gaussian_nll` of blocks ``y`` ``[..., B, n]`` sent as ``templates_b`` ``[..., B, n]``."""
        return gaussian_nll(y, regressor_matrix(templates_b, self.num_taps, self.precursor, self.widely_linear),
                            m, P, no)

    def logits(self, y, templates, m, no, P=None):
        return gaussian_block_logits(y, templates, m, no, P, precursor=self.precursor,
                                     widely_linear=self.widely_linear)

    def phase_variance(self) -> torch.Tensor:
        """The learned phase-noise variance s2 [rad^2/symbol] (a phase-noise tracker only)."""
        return nn.functional.softplus(self.pn_raw)

    def regressors(self, templates: torch.Tensor) -> torch.Tensor:
        """:func:`regressor_matrix` of ``templates`` ``[..., n]`` with the tracker's window."""
        return regressor_matrix(templates, self.num_taps, self.precursor, self.widely_linear)

    def extra_repr(self) -> str:
        return (f"num_taps={self.num_taps}, precursor={self.precursor}, widely_linear={self.widely_linear}"
                + (", phase_noise=True" if self.phase_noise else ""))


# --- receiver Wiener phase noise: a per-frame belief over per-position taps ---------------------------------------
#
# In a drift frame every block of a link sees the same phase path phi_0 = 0, phi_i = phi_{i-1} + N(0, s2) (the
# impairment state is drawn per frame and link), drawn afresh each frame: y_i = e^{j phi_i} (T(x) h)_i + w_i. So
# position i has its own taps H_i = g_i h (g_i = e^{j phi_i}), H_0 = h. The receiver moment-matches a Gaussian
# belief over vec(H) [n D] (D coefficients per position) from its belief CN(m, P) over h and the Wiener prior
# E g_i = e^{-s2 i / 2}, E g_i g_k^* = e^{-s2 |i - k| / 2}; updates it on the frame's pilots; decides the payload
# at the per-position mean; and carries the marginal of position 0 (= h exactly) to the next frame.


def phase_prior(m: torch.Tensor, P: torch.Tensor, s2: torch.Tensor, n: int):
    r"""The moment-matched prior over per-position taps: mean :math:`\mu_i \mathbf m` and covariance
    :math:`R_{ik}(\mathbf P + \mathbf m\mathbf m^H) - \mu_i\mu_k \mathbf m\mathbf m^H` with
    :math:`\mu_i = e^{-s^2 i/2}`, :math:`R_{ik} = e^{-s^2|i-k|/2}`; ``m`` ``[..., D]``, ``P`` ``[..., D, D]``,
    ``s2`` real scalar tensor (rad^2 per symbol). Returns ``(M [..., n D], C [..., n D, n D])`` (position-major)."""
    idx = torch.arange(n, dtype=s2.dtype, device=s2.device)
    mu = torch.exp(-0.5 * s2 * idx)  # [n]
    R = torch.exp(-0.5 * s2 * (idx[:, None] - idx[None, :]).abs())  # [n, n]
    mm = m[..., :, None] * m.conj()[..., None, :]
    D = m.shape[-1]
    C = (R.to(P.dtype)[..., :, None, :, None] * (P + mm)[..., None, :, None, :]
         - (mu[:, None] * mu[None, :]).to(P.dtype)[..., :, None, :, None] * mm[..., None, :, None, :])
    C = C.reshape(*C.shape[:-4], n * D, n * D)
    M = (mu.to(m.dtype)[:, None] * m[..., None, :]).reshape(*m.shape[:-1], n * D)
    return M, C


def position_matrix(T: torch.Tensor) -> torch.Tensor:
    """Per-block regressors ``T`` ``[..., n, D]`` -> the matrix ``[..., n, n D]`` of the per-position taps
    (row ``i`` holds ``T[i]`` in columns ``i D .. i D + D - 1``)."""
    n, D = T.shape[-2], T.shape[-1]
    eye = torch.eye(n, dtype=T.dtype, device=T.device)
    return (eye[:, :, None] * T[..., :, None, :]).reshape(*T.shape[:-2], n, n * D)


def phase_frame_update(M: torch.Tensor, C: torch.Tensor, T: torch.Tensor, y: torch.Tensor, no: torch.Tensor,
                       weight: torch.Tensor | None = None):
    """The exact linear-Gaussian update (:func:`tracker_update`) of the per-position belief ``(M, C)`` on blocks
    ``y`` ``[..., B, n]`` sent with regressors ``T`` ``[..., B, n, D]``; ``weight`` optional ``[..., B]``."""
    X = position_matrix(T)  # [..., B, n, n D]
    X = X.reshape(*X.shape[:-3], X.shape[-3] * X.shape[-2], X.shape[-1])
    w = None if weight is None else weight.repeat_interleave(T.shape[-2], dim=-1)
    return tracker_update(M, C, X, y.reshape(*y.shape[:-2], -1), no, w)


def phase_block_logits(y: torch.Tensor, T: torch.Tensor, M: torch.Tensor, no: torch.Tensor) -> torch.Tensor:
    r"""ML at the per-position mean: :math:`-\|\mathbf y - \mathbf r_m\|^2/N_0`, ``r_m[i] = T_m[i] . M_i``;
    ``y`` ``[..., N, n]``, ``T`` ``[M, n, D]`` (the messages' regressors), ``M`` ``[..., n D]`` -> ``[..., N, M]``."""
    n, D = T.shape[-2], T.shape[-1]
    r = torch.einsum("mnd,...nd->...mn", T, M.reshape(*M.shape[:-1], n, D))
    cross = torch.view_as_real(y).flatten(-2) @ torch.view_as_real(r).flatten(-2).transpose(-1, -2)
    d2 = y.abs().square().sum(-1)[..., None] - 2.0 * cross + r.abs().square().sum(-1)[..., None, :]
    return -d2 / no.to(y.real.dtype)[..., None, None]


def phase_nll(y: torch.Tensor, T: torch.Tensor, M: torch.Tensor, C: torch.Tensor, no: torch.Tensor):
    """:func:`gaussian_nll` of blocks ``y`` ``[..., B, n]`` (regressors ``T`` ``[..., B, n, D]``) under the
    per-position belief ``(M, C)``."""
    return gaussian_nll(y, position_matrix(T), M, C, no)


class PACorrection(nn.Module):
    r"""A learned memoryless AM/AM + AM/PM map of the transmitted symbols,
    :math:`f_\theta(x) = x\, e^{g_\theta(|x|^2) - g_\theta(0) + j\,(\varphi_\theta(|x|^2) - \varphi_\theta(0))}`
    (unit small-signal gain), with :math:`(g, \varphi)` a small MLP
    (``1 -> hidden -> 2``, tanh) of :math:`u = |x|^2` (a function of :math:`|x|^2`, so smooth at ``x = 0``, and
    ``arg f = arg x + phi``: any memoryless PA whose gain depends on the amplitude only, Rapp or Saleh).
    The output layer starts at zero: :math:`f_\theta(x) = x` (the linear receiver) until trained. The tracker then
    models ``y = T(f_theta(x)) h + w``: its belief over ``h`` stays linear-Gaussian given :math:`f_\theta(x)`."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.hidden = check_positive_int("hidden", hidden)
        self.inp = nn.Linear(1, self.hidden)
        self.out = nn.Linear(self.hidden, 2)
        with torch.no_grad():
            self.inp.weight.copy_(torch.linspace(-2.0, 2.0, self.hidden)[:, None])
            self.inp.bias.copy_(torch.linspace(-3.0, 3.0, self.hidden))
            self.out.weight.zero_()
            self.out.bias.zero_()

    def gain(self, u: torch.Tensor) -> torch.Tensor:
        """The complex gain :math:`e^{g(u) - g(0) + j(\varphi(u) - \varphi(0))}` at ``u = |x|^2`` (real ``[...]``
        -> complex ``[...]``): unit small-signal gain and phase (a common gain and phase is the taps' job, so the
        pair ``(f_theta, h)`` has no scale ambiguity)."""
        o = self.out(torch.tanh(self.inp(u[..., None])))
        o0 = self.out(torch.tanh(self.inp.bias))
        return torch.polar(torch.exp(o[..., 0] - o0[0]), o[..., 1] - o0[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain(x.real.square() + x.imag.square()).to(x.dtype)


#: kinds in :func:`pa_params` vectors
PA_KINDS = {"none": 0.0, "rapp": 1.0, "saleh": 2.0}


def pa_params(channel) -> list[float]:
    """The exact memoryless PA of a channel stage as 6 numbers for :func:`pa_apply`: ``[kind, c1 .. c5]`` --
    ``RappPA``: ``[1, p, A_sat^2, 0, 0, 0]``; ``SalehPA``: ``[2, beta_a s^2, alpha_phi s^2, beta_phi s^2, g, 0]``
    (``g`` = 1 with ``normalize_gain``, else ``alpha_a s``); anything else (``None``): ``[0, ...]`` (identity)."""
    from metacomm.channels.impairments import RappPA, SalehPA
    if isinstance(channel, RappPA):
        return [1.0, float(channel.smoothness), float(channel.saturation) ** 2, 0.0, 0.0, 0.0]
    if isinstance(channel, SalehPA):
        s2 = channel.input_scale ** 2
        g = 1.0 if channel.normalize_gain else channel.alpha_a * channel.input_scale
        return [2.0, channel.beta_a * s2, channel.alpha_phi * s2, channel.beta_phi * s2, g, 0.0]
    return [0.0] * 6


def pa_apply(x: torch.Tensor, prm: torch.Tensor) -> torch.Tensor:
    """The PA of :func:`pa_params` vectors ``prm`` real ``[..., 6]`` (broadcast against ``x``'s leading dims,
    e.g. ``[F, 1, 1, 6]`` for ``x [F, B, n]``) applied to complex ``x`` -- the same maps as
    :class:`~metacomm.channels.impairments.RappPA` / :class:`~metacomm.channels.impairments.SalehPA` (pure, vmap-safe)."""
    u = x.real.square() + x.imag.square()
    kind, c1, c2, c3, c4 = (prm[..., i] for i in range(5))
    # Rapp: (1 + (u / A^2)^p)^(-1/(2p)), the power guarded at u = 0
    safe_c2 = torch.where(kind == 1.0, c2, torch.ones_like(c2))
    safe_p = torch.where(kind == 1.0, c1, torch.ones_like(c1))
    r = u / safe_c2
    pos = r > 0
    rp = torch.where(pos, torch.where(pos, r, torch.ones_like(r)).pow(safe_p), torch.zeros_like(r))
    rapp = (1.0 + rp).pow(-1.0 / (2.0 * safe_p))
    # Saleh: g / (1 + beta_a s^2 u) * exp(j alpha_phi s^2 u / (1 + beta_phi s^2 u))
    sal_amp = c4 / (1.0 + c1 * u)
    sal_ph = c2 * u / (1.0 + c3 * u)
    amp = torch.where(kind == 1.0, rapp, torch.where(kind == 2.0, sal_amp, torch.ones_like(u)))
    ph = torch.where(kind == 2.0, sal_ph, torch.zeros_like(u))
    return x * torch.polar(amp, ph).to(x.dtype)


def track_frames(model, msg_p, y_p, y_d, no, state=None, *, detach_templates: bool = False,
                 msg_d=None, linear: bool = False):
    r"""Run a tracking codec's tracker over a sequence of frames (pure; the recursion the ``meta-train --scenario
    drift`` loss is computed through, its evaluation and the drift scheme ``track`` at run time).

    ``model``: a :class:`~metacomm.scenarios.drift_track.TrackingDriftCodec` (its ``tracker``, ``track_options``,
    ``decoder.template_symbols()`` and, when trained with one, ``pa`` and ``linear_tracker``).

    ``msg_p`` int64 ``[..., F, P]`` pilot messages, ``y_p`` complex ``[..., F, P, n]`` received pilots, ``y_d``
    complex ``[..., F, N, n]`` received payload, ``no`` real ``[..., F]`` N0 per complex sample; ``state``:
    the belief ``(m, P)`` before the first frame (``None``: the tracker's prior). Per frame: predict, update on
    the pilots' templates, compute the payload logits ``[..., N, M]`` (:meth:`KalmanTracker.logits`, with the
    covariance when ``soft``), and, with ``decision_directed``, update again on the payload blocks decided with
    posterior probability above ``dd_threshold`` (and, with ``dd_redecode``, the payload is decided again with
    that refined belief: the returned logits are the second pass's). Returns ``(logits [..., F, N, M], (m, P))``; with ``msg_d``
    int64 ``[..., F, N]`` (the payload messages, known at training time) ``(logits, (m, P), nll)`` where ``nll``
    ``[..., F, N]`` is :meth:`KalmanTracker.nll` of each payload block under the belief it was decoded with.
    With a PA correction (``model.pa``) the templates are :math:`f_\theta(\mathbf t_m)`; ``linear``: run
    ``model.linear_tracker`` on the bare templates instead (the baseline without the correction).
    """
    tr = model.linear_tracker if linear else model.tracker
    opts = model.track_options
    tmpl = model.decoder.template_symbols()
    if detach_templates:
        tmpl = tmpl.detach()
    if not linear and hasattr(model, "pa"):
        tmpl = model.pa(tmpl)
    lead = msg_p.shape[:-2]
    m, P = tr.init(tuple(lead), dtype=y_p.dtype) if state is None else state
    if tr.phase_noise:
        return _track_frames_phase(tr, opts, tmpl, msg_p, y_p, y_d, no, m, P, msg_d)
    out, nlls = [], []
    for t in range(msg_p.shape[-2]):
        no_t = no[..., t]
        m, P = tr.step(m, P, tmpl[msg_p[..., t, :]], y_p[..., t, :, :], no_t)
        logits = tr.logits(y_d[..., t, :, :], tmpl, m, no_t, P if opts["soft"] else None)
        if msg_d is not None:
            nlls.append(tr.nll(y_d[..., t, :, :], tmpl[msg_d[..., t, :]], m, P, no_t))
        if opts["decision_directed"]:
            logp = torch.log_softmax(logits.detach(), dim=-1)
            best = logp.argmax(-1)
            conf = (logp.max(-1).values > math.log(opts["dd_threshold"])).to(no_t.dtype)
            m, P = tr.update(m, P, tmpl[best], y_d[..., t, :, :], no_t, conf)
            if opts.get("dd_redecode", False):  # decide the frame again with the refined belief
                logits = tr.logits(y_d[..., t, :, :], tmpl, m, no_t, P if opts["soft"] else None)
        out.append(logits)
    if msg_d is not None:
        return torch.stack(out, dim=-3), (m, P), torch.stack(nlls, dim=-2)
    return torch.stack(out, dim=-3), (m, P)


def _sqnorm(z: torch.Tensor) -> torch.Tensor:
    """``||z||^2`` over the last dim of a complex tensor (real ``[...]``), without the complex ``abs``."""
    return torch.view_as_real(z).square().sum((-1, -2))


def _mean_images(T: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathbf T_m\mathbf m_b` for every message and link: ``T`` ``[M, n, L]``, ``m`` ``[B, L]`` ->
    ``[B, M, n]`` (one matrix product; the same numbers as ``einsum("mnl,bl->bmn")``)."""
    M, n, L = T.shape
    return (m @ T.reshape(M * n, L).transpose(0, 1)).reshape(m.shape[0], M, n)


def redecode_candidates(y: torch.Tensor, smax: torch.Tensor, S: torch.Tensor, scale: torch.Tensor,
                        images: torch.Tensor, new_images: torch.Tensor, *, slack: float = 1e-2) -> torch.Tensor:
    r"""Which blocks' decisions can change when the codeword images move from ``images`` to ``new_images`` (bool
    ``[B, N]``; every other block's arg-max is provably the same under the new images).

    ``y`` complex ``[B, N, n]``; ``smax`` ``[B, N]``, ``S`` ``[B, N]`` the first pass's maximum score and
    :math:`S_j = \sum_m e^{s_{jm} - \max s_j}` (:func:`~metacomm.codecs.detection.score_decide` with
    ``scale = 1/N0``); ``scale`` real ``[B]``; ``images``, ``new_images`` complex ``[B, M, n]``.

    The bound: with :math:`A = \max_m \|\mathbf r'_m - \mathbf r_m\|` per link and :math:`e = \|\mathbf y_j -
    \mathbf r_{\hat m}\|`, the triangle inequality gives :math:`\|\mathbf y - \mathbf r'_m\| \ge \|\mathbf y -
    \mathbf r_m\| - A` and :math:`\|\mathbf y - \mathbf r'_{\hat m}\| \le e + A`, so message ``m`` can overtake the
    decided one only if :math:`\|\mathbf y - \mathbf r_m\|^2 - e^2 \le 4Ae + 4A^2`. The left side is at least the
    first pass's margin over the runner-up, and that margin is at least :math:`-\log(S_j - 1)` (all other
    messages' terms sum to :math:`S_j - 1`); ``S`` carries float32 summation error, so :math:`S_j - 1` is taken
    as :math:`\max(S_j - 1, 0) + 2^{-23} M S_j` (never a larger margin than the exact one). A block is a candidate
    when that margin, in squared-distance units (:math:`\times N_0`), is at most :math:`4Ae + 4A^2` plus
    ``slack`` nats (:math:`\times N_0`; covers the rounding of the scores themselves)."""
    M = images.shape[-2]
    A = _sqnorm(new_images - images).amax(-1).sqrt()  # [B]
    yy = _sqnorm(y)  # [B, N]
    no = 1.0 / scale
    e = (yy - smax * no[:, None]).clamp_min(0.0).sqrt() + 1e-3 * yy.sqrt()  # ||y - r_best|| (+ its rounding)
    rest = (S - 1.0).clamp_min(0.0) + S * (M * 2.0 ** -23)
    margin = -torch.log(rest)  # nats, a lower bound on s_best - s_m for every m != best
    reach = 4.0 * A[:, None] * e + 4.0 * A[:, None].square()  # squared-distance units
    return (margin - slack) * no[:, None] <= reach


def _redecode_some(y: torch.Tensor, images: torch.Tensor, scale: torch.Tensor, best: torch.Tensor,
                   cand: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Decide again the candidate blocks ``cand`` bool ``[B, N]`` of ``y`` ``[B, N, n]`` against ``images``
    ``[B, M, n]`` (scores :func:`~metacomm.codecs.detection.codeword_scores`), the others keep ``best``.
    Links are split by their candidate count at the ``k`` that minimises the blocks scored: links with more than
    ``k`` candidates are scored whole, the others on their first ``k`` candidates (padded with other blocks of
    the link, whose decision comes out the same). Returns ``(best, blocks scored)``."""
    from metacomm.codecs.detection import codeword_scores

    B, N = cand.shape
    counts = cand.sum(-1)  # [B]
    cs, order = torch.sort(counts)
    i = torch.arange(B, device=counts.device)
    cost = cs * (i + 1) + N * (B - 1 - i)  # links order[:i+1] padded to cs[i], the rest whole
    j = int(torch.argmin(cost))
    k = int(cs[j])
    if k >= N or int(cost[j]) >= B * N:
        j, k = -1, 0
    best = best.clone()
    done = 0
    whole = order[j + 1:]
    if whole.numel():
        s = codeword_scores(y[whole], images[whole], scale[whole])
        best[whole] = s.argmax(-1)
        done += whole.numel() * N
    part = order[:j + 1]
    if k > 0 and part.numel():
        c = cand[part]
        idx = torch.sort((~c).to(torch.int8), dim=-1, stable=True).indices[:, :k]  # candidates first
        yp = y[part]
        ysel = torch.gather(yp, 1, idx[..., None].expand(*idx.shape, y.shape[-1]))
        s = codeword_scores(ysel, images[part], scale[part])
        best[part] = best[part].scatter(1, idx, s.argmax(-1))
        done += part.numel() * k
    return best, done


def track_frame_decide(tr: KalmanTracker, opts: dict, tmpl: torch.Tensor, T: torch.Tensor, m: torch.Tensor,
                       P: torch.Tensor, msg_p: torch.Tensor, y_p: torch.Tensor, y_d: torch.Tensor,
                       no: torch.Tensor, *, workspace=None, stats: dict | None = None, redecode: str = "all"):
    r"""One frame of :func:`track_frames` for inference (no gradients, a tracker without phase noise, decisions at
    the belief mean -- ``soft = False``), through the fused kernel
    (:func:`~metacomm.codecs.detection.score_decide`): predict and update on the pilots, score the payload once
    against the images :math:`\mathbf T_m\mathbf m` (one ``baddbmm``; the decision and the confidence
    :math:`\max - \operatorname{logsumexp}` from the same pass), the decision-directed update on the blocks whose
    posterior probability exceeds ``dd_threshold``, and, with ``dd_redecode``, the re-decode with the refined
    belief -- ``redecode="changed"``: only the blocks whose decision can change (:func:`redecode_candidates`, a
    proven bound: the other blocks keep their decision exactly), ``"all"`` (the default): every block.

    Measured (``benchmarks/drift_track_speed.py``, one thread, doppler-fast): the re-decode is needed -- it changes
    0.31 % of the decisions (2013 of 655k blocks over 20 frames at 512 links: 933 corrected, 621 broken) -- but not
    worth narrowing: the bound leaves ~68 % of the blocks out, yet the gathers and index bookkeeping of the other
    32 % cost about what they save over a full second pass, which in the fused kernel is one ``baddbmm`` and one
    max into warm buffers (``changed`` / ``all`` CPU time: 1.17 at 8 links, 0.96 at 64, 0.98 at 512, 1.08 at 2000,
    1.11 at 10^4). Both give the same decisions.

    ``tmpl`` complex ``[M, n]`` (the templates, after any PA correction), ``T`` complex ``[M, n, L]`` their
    regressors (:meth:`KalmanTracker.regressors`), belief ``m`` ``[B, L]``, ``P`` ``[B, L, L]``, ``msg_p`` int64
    ``[B, P]``, ``y_p`` complex ``[B, P, n]``, ``y_d`` complex ``[B, N, n]``, ``no`` real ``[B]``. Returns
    ``(msg_hat int64 [B, N], (m, P))``. ``stats`` (a dict, optional) gets ``redecoded`` (blocks scored again)
    and ``blocks`` added. Same decisions as :func:`track_frames` up to score rounding (the scores drop the
    constant :math:`\|\mathbf y\|^2/N_0`; the confidence is the same log-posterior to ~1e-5 nats; measured: 1
    decision in 640k differs, a near-tie, ``benchmarks/drift_track_speed.py`` at 2000 links)."""
    from metacomm.codecs.detection import score_decide

    m, P = tr.step(m, P, tmpl[msg_p], y_p, no)
    scale = 1.0 / no.to(y_d.real.dtype)
    r = _mean_images(T, m)  # [B, M, n]
    dd = bool(opts["decision_directed"])
    best, kappa, S, smax = score_decide(y_d, r, scale, confidence=dd, workspace=workspace, key="track")
    B, N = best.shape
    redone = 0
    if dd:
        conf = (kappa > math.log(opts["dd_threshold"])).to(no.dtype)
        m, P = tr.update(m, P, tmpl[best], y_d, no, conf)
        if opts.get("dd_redecode", False):
            r2 = _mean_images(T, m)
            if redecode == "all":
                best = score_decide(y_d, r2, scale, confidence=False, workspace=workspace, key="track")[0]
                redone = B * N
            else:
                cand = redecode_candidates(y_d, smax, S, scale, r, r2)
                best, redone = _redecode_some(y_d, r2, scale, best, cand)
    if stats is not None:
        stats["redecoded"] = stats.get("redecoded", 0) + redone
        stats["blocks"] = stats.get("blocks", 0) + B * N
    return best, (m, P)


def _track_frames_phase(tr, opts, tmpl, msg_p, y_p, y_d, no, m, P, msg_d):
    r""":func:`track_frames` for a tracker with receiver phase noise (``tr.phase_noise``): per frame, predict the
    belief over ``h``, expand it to the per-position taps ``H_i = e^{j phi_i} h`` under the learned Wiener variance
    (:func:`~metacomm.adaptation.tracking.phase_prior`), update on the pilots (and, decision-directed, on the
    confident payload decisions), decide at the per-position mean, carry position 0's marginal (``H_0 = h``).
    Decisions are at the mean (``soft`` is not used)."""
    a, q, _ = tr.params()
    s2 = tr.phase_variance()
    n = y_p.shape[-1]
    D = m.shape[-1]
    Tall = tr.regressors(tmpl)  # [M, n, D]
    out, nlls = [], []
    for t in range(msg_p.shape[-2]):
        no_t = no[..., t]
        m, P = tracker_predict(m, P, a, q)
        Mv, C = phase_prior(m, P, s2, n)
        Mv, C = phase_frame_update(Mv, C, Tall[msg_p[..., t, :]], y_p[..., t, :, :], no_t)
        yd = y_d[..., t, :, :]
        logits = phase_block_logits(yd, Tall, Mv, no_t)
        if msg_d is not None:
            nlls.append(phase_nll(yd, Tall[msg_d[..., t, :]], Mv, C, no_t))
        if opts["decision_directed"]:
            logp = torch.log_softmax(logits.detach(), dim=-1)
            best = logp.argmax(-1)
            conf = (logp.max(-1).values > math.log(opts["dd_threshold"])).to(no_t.dtype)
            Mv, C = phase_frame_update(Mv, C, Tall[best], yd, no_t, conf)
            if opts.get("dd_redecode", False):
                logits = phase_block_logits(yd, Tall, Mv, no_t)
        out.append(logits)
        m, P = Mv[..., :D], C[..., :D, :D]
    if msg_d is not None:
        return torch.stack(out, dim=-3), (m, P), torch.stack(nlls, dim=-2)
    return torch.stack(out, dim=-3), (m, P)
