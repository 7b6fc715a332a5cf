r"""Classical Bayesian tap estimation and tracking: LMMSE with a known Gaussian prior, and the Kalman filter over
frames for Gauss-Markov taps. Pure functions on tensors (no random draws, no state of their own).

Model (one link; batched over a leading ``B``): the ``L`` taps :math:`\mathbf h_t \in \mathbb C^L` of frame ``t``
are observed through the pilot regression of that frame,

.. math::  \mathbf y_t = \mathbf X_t \mathbf h_t + \mathbf w_t, \qquad \mathbf w_t \sim \mathcal{CN}(0, N_0 \mathbf I)

(:math:`\mathbf X_t` ``[R, L]`` the stacked pilot convolution matrix, e.g.
:func:`metacomm.codecs.detection.stacked_pilot_matrix`; :math:`N_0` per complex sample), and evolve as the
first-order Gauss-Markov process of :class:`metacomm.channels.drift.GaussMarkovFading`,

.. math::  \mathbf h_t = \rho\,\mathbf h_{t-1} + \sqrt{1-\rho^2}\,\mathbf u_t, \qquad
           \mathbf u_t \sim \mathcal{CN}(0, \boldsymbol\Sigma), \quad \mathbf h_0 \sim \mathcal{CN}(0, \boldsymbol\Sigma),

with the stationary tap prior :math:`\boldsymbol\Sigma` ``[L, L]`` (Hermitian PSD; diagonal = the power-delay
profile for independent taps).

* :func:`lmmse_update` -- the Gaussian posterior of :math:`\mathbf h` given a prior
  :math:`\mathcal{CN}(\mathbf m, \mathbf P)` and one regression: with the Gram matrix
  :math:`\mathbf G = \mathbf X^H\mathbf X`,
  :math:`\mathbf P^+ = (\mathbf I + \mathbf P\mathbf G/N_0)^{-1}\mathbf P = (\mathbf P^{-1} + \mathbf G/N_0)^{-1}`,
  :math:`\mathbf m^+ = \mathbf m + \mathbf P^+\mathbf X^H(\mathbf y - \mathbf X\mathbf m)/N_0`
  (the first form needs no inverse of :math:`\mathbf P`, so a singular prior -- a static channel's converged
  error, a rank-deficient TDL window -- is fine).
* :func:`lmmse_taps` -- the LMMSE (= MMSE, Gaussian) tap estimate from one frame's pilots with the prior
  :math:`\mathcal{CN}(0, \boldsymbol\Sigma)`; its error covariance is :math:`\mathbf P^+`, closed form
  :func:`lmmse_error_cov`.
* :func:`kalman_predict` -- :math:`\mathbf m^- = \rho\,\mathbf m`,
  :math:`\mathbf P^- = \rho^2\mathbf P + (1-\rho^2)\boldsymbol\Sigma`; :func:`kalman_step` = predict then
  :func:`lmmse_update` (the Kalman filter: the MMSE tracker of the process above).
* :func:`riccati_step`, :func:`kalman_steady_state` -- the error-covariance recursion for a fixed Gram matrix
  and its fixed point (the steady-state filtering error :math:`\mathbf P_\infty`);
  :func:`scalar_steady_state` -- its closed form for one tap and a constant pilot energy
  :math:`e = \sum|x|^2`:

  .. math::  P_\infty = \frac{-(N_0(1-\rho^2) + e q) + \sqrt{(N_0(1-\rho^2) + e q)^2 + 4 e \rho^2 q N_0}}
                             {2 e \rho^2}, \qquad q = (1-\rho^2)\sigma^2,

  the positive root of :math:`e\rho^2 P^2 + (N_0(1-\rho^2) + e q) P - q N_0 = 0`, which is
  :math:`P = (\rho^2 P + q) N_0 / (N_0 + e(\rho^2 P + q))` rearranged (:math:`P = \sigma^2 N_0/(N_0 + e\sigma^2)`,
  the LMMSE error, at :math:`\rho = 0`).

Shapes: ``m`` complex ``[B, L]``, ``P`` / ``Sigma`` complex ``[B, L, L]`` or ``[L, L]`` (broadcast), ``X``
complex ``[B, R, L]``, ``y`` complex ``[B, R]``, ``no`` N0 per complex sample (float or float ``[B]``), ``rho``
float or float ``[B]``. The arithmetic runs in the input's complex dtype; the drift schemes pass complex128.
"""

from __future__ import annotations

import math

import torch

from metacomm._validation import ConfigError, check_nonneg, check_positive

__all__ = [
    "kalman_predict",
    "kalman_steady_state",
    "kalman_step",
    "lmmse_error_cov",
    "lmmse_taps",
    "lmmse_update",
    "riccati_step",
    "scalar_steady_state",
]


def _no(no, like: torch.Tensor) -> torch.Tensor:
    """N0 as a real tensor broadcastable to ``[B, 1, 1]``."""
    t = torch.as_tensor(no, dtype=like.real.dtype, device=like.device)
    if t.dim() == 0:
        return t
    return t.reshape(-1, 1, 1)


def _rho(rho, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(rho, dtype=like.real.dtype, device=like.device)
    return t if t.dim() == 0 else t.reshape(-1, 1)


def _eye(L: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(L, dtype=like.dtype, device=like.device)


def lmmse_update(m: torch.Tensor, P: torch.Tensor, X: torch.Tensor, y: torch.Tensor, no
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Posterior of the taps after one linear-Gaussian observation (module docstring):
    prior :math:`\mathcal{CN}(\mathbf m, \mathbf P)`, observation :math:`\mathbf y = \mathbf X\mathbf h +
    \mathcal{CN}(0, N_0\mathbf I)`.

    :param m: prior mean, complex ``[B, L]``.
    :param P: prior covariance, complex ``[B, L, L]`` or ``[L, L]``.
    :param X: regression matrix, complex ``[B, R, L]``.
    :param y: observations, complex ``[B, R]``.
    :param no: N0 per complex sample (> 0), float or ``[B]``.
    :returns: ``(m_post [B, L], P_post [B, L, L])``.
    """
    L = X.shape[-1]
    N0 = _no(no, X)
    G = X.mH @ X
    P = P.expand(X.shape[0], L, L) if P.dim() == 2 else P
    P_post = torch.linalg.solve(_eye(L, X) + P @ G / N0, P)
    P_post = 0.5 * (P_post + P_post.mH)  # keep it Hermitian against round-off
    resid = y - (X @ m.unsqueeze(-1)).squeeze(-1)
    gain = (P_post @ (X.mH @ resid.unsqueeze(-1))).squeeze(-1)
    m_post = m + gain / (N0.reshape(-1, 1) if N0.dim() else N0)
    return m_post, P_post


def lmmse_taps(X: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor, no) -> torch.Tensor:
    r"""LMMSE tap estimate with the known prior :math:`\mathbf h \sim \mathcal{CN}(0, \boldsymbol\Sigma)`:
    :math:`\hat{\mathbf h} = (\mathbf I + \boldsymbol\Sigma\mathbf G/N_0)^{-1}\boldsymbol\Sigma\mathbf X^H\mathbf y
    / N_0 = \boldsymbol\Sigma\mathbf X^H(\mathbf X\boldsymbol\Sigma\mathbf X^H + N_0\mathbf I)^{-1}\mathbf y`.
    ``X`` ``[B, R, L]``, ``y`` ``[B, R]``, ``sigma`` ``[L, L]`` or ``[B, L, L]`` -> complex ``[B, L]``."""
    m0 = torch.zeros(X.shape[0], X.shape[-1], dtype=X.dtype, device=X.device)
    return lmmse_update(m0, sigma.to(X.dtype), X, y, no)[0]


def lmmse_error_cov(sigma: torch.Tensor, G: torch.Tensor, no) -> torch.Tensor:
    r"""Error covariance of :func:`lmmse_taps`, :math:`(\boldsymbol\Sigma^{-1} + \mathbf G/N_0)^{-1}` computed as
    :math:`(\mathbf I + \boldsymbol\Sigma\mathbf G/N_0)^{-1}\boldsymbol\Sigma`; ``G = X^H X`` ``[..., L, L]``."""
    L = G.shape[-1]
    N0 = _no(no, G)
    S = sigma.to(G.dtype)
    return torch.linalg.solve(_eye(L, G) + S @ G / N0, S.expand_as(G) if S.dim() < G.dim() else S)


def kalman_predict(m: torch.Tensor, P: torch.Tensor, rho, sigma: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Time update of the Gauss-Markov model: :math:`\mathbf m^- = \rho\mathbf m`,
    :math:`\mathbf P^- = \rho^2\mathbf P + (1-\rho^2)\boldsymbol\Sigma` (``rho`` float or ``[B]``)."""
    r = _rho(rho, m)
    r2 = (r * r).unsqueeze(-1) if r.dim() else r * r
    return r * m, r2 * P + (1.0 - r2) * sigma.to(P.dtype)


def kalman_step(m: torch.Tensor, P: torch.Tensor, X: torch.Tensor, y: torch.Tensor, no, rho,
                sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One Kalman step: :func:`kalman_predict` from the previous posterior ``(m, P)`` then :func:`lmmse_update`
    with this frame's pilots. Returns the filtered ``(m_t|t [B, L], P_t|t [B, L, L])``."""
    mp, Pp = kalman_predict(m, P, rho, sigma)
    return lmmse_update(mp, Pp, X, y, no)


def riccati_step(P: torch.Tensor, G: torch.Tensor, no, rho, sigma: torch.Tensor) -> torch.Tensor:
    r"""The filtering error covariance after one more frame with Gram matrix ``G``:
    :math:`\mathbf P \mapsto (\mathbf I + \mathbf P^-\mathbf G/N_0)^{-1}\mathbf P^-`,
    :math:`\mathbf P^- = \rho^2\mathbf P + (1-\rho^2)\boldsymbol\Sigma`."""
    L = G.shape[-1]
    r2 = float(rho) ** 2
    Pp = r2 * P + (1.0 - r2) * sigma.to(P.dtype)
    return torch.linalg.solve(_eye(L, G) + Pp @ G / _no(no, G), Pp)


def kalman_steady_state(G: torch.Tensor, no, rho: float, sigma: torch.Tensor, *, tol: float = 1e-13,
                        max_iter: int = 100_000) -> torch.Tensor:
    r"""Steady-state filtering error :math:`\mathbf P_\infty` of the Kalman filter with a constant Gram matrix
    ``G`` ``[L, L]`` per frame: the fixed point of :func:`riccati_step`, iterated from the prior
    :math:`\boldsymbol\Sigma` until the largest entry changes by less than ``tol`` (ConfigError ``max_iter`` if
    it does not converge). ``rho`` in [0, 1]. Returns complex ``[L, L]``."""
    rho = float(rho)
    if not 0.0 <= rho <= 1.0:
        raise ConfigError("rho", f"must lie in [0, 1], got {rho}")
    check_positive("no", float(no))
    P = sigma.to(G.dtype).clone()
    for _ in range(int(max_iter)):
        nxt = riccati_step(P, G, no, rho, sigma)
        if float((nxt - P).abs().max()) < tol:
            return nxt
        P = nxt
    raise ConfigError("max_iter", f"the Riccati recursion did not converge in {max_iter} iterations")


def scalar_steady_state(rho: float, sigma2: float, energy: float, no: float) -> float:
    r"""Closed-form steady-state filtering error of one tap with prior variance ``sigma2``, pilot energy
    ``energy`` :math:`= \sum_p|x_p|^2` per frame and N0 ``no`` (module docstring). ``rho = 0`` gives the
    LMMSE error :math:`\sigma^2 N_0/(N_0 + e\sigma^2)`; ``rho = 1`` gives 0 (a static tap is learnt
    exactly)."""
    rho = float(rho)
    if not 0.0 <= rho <= 1.0:
        raise ConfigError("rho", f"must lie in [0, 1], got {rho}")
    s2, e, n0 = check_nonneg("sigma2", sigma2), check_positive("energy", energy), check_positive("no", no)
    q = (1.0 - rho * rho) * s2
    if rho == 0.0:
        return s2 * n0 / (n0 + e * s2)
    b = n0 * (1.0 - rho * rho) + e * q
    return (-b + math.sqrt(b * b + 4.0 * e * rho * rho * q * n0)) / (2.0 * e * rho * rho)
