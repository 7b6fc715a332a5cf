"""Kalman tracking and LMMSE tap estimation (metacomm.codecs.tracking) against closed forms and Monte Carlo.

References are independent of the code under test: the scalar steady-state error is the positive root of the
Riccati quadratic solved with numpy; the LMMSE estimate and its error covariance are the textbook
"gain" forms Sigma X^H (X Sigma X^H + N0 I)^{-1} (the code uses the information form); the empirical errors
come from simulating the AR(1) taps and the pilot regression directly."""

import math

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.codecs.tracking import (
    kalman_predict,
    kalman_steady_state,
    kalman_step,
    lmmse_error_cov,
    lmmse_taps,
    lmmse_update,
    scalar_steady_state,
)

C128 = torch.complex128


def _riccati_root(rho, s2, e, n0):
    """Positive root of e rho^2 P^2 + (N0 (1 - rho^2) + e q) P - q N0 = 0, q = (1 - rho^2) s2: the fixed point
    of P = Pm N0 / (N0 + e Pm), Pm = rho^2 P + q (posterior of one tap after a pilot of energy e)."""
    q = (1 - rho**2) * s2
    roots = np.roots([e * rho**2, n0 * (1 - rho**2) + e * q, -q * n0])
    p = float(max(r.real for r in roots if abs(r.imag) < 1e-12))
    pm = rho**2 * p + q
    assert abs(p - pm * n0 / (n0 + e * pm)) < 1e-12  # it is the fixed point
    return p


def _cn(shape, g, var=1.0):
    """CN(0, var) samples, complex128."""
    re = torch.randn(*shape, generator=g, dtype=torch.float64)
    im = torch.randn(*shape, generator=g, dtype=torch.float64)
    return torch.complex(re, im) * math.sqrt(var / 2)


@pytest.mark.parametrize("rho,s2,e,n0", [(0.99, 1 / 3, 8 / 3, 0.25), (0.5, 1.0, 1.0, 0.1), (0.9, 2.0, 5.0, 1.0),
                                          (0.999, 1.0, 0.5, 0.5)])
def test_scalar_steady_state_is_the_riccati_root(rho, s2, e, n0):
    want = _riccati_root(rho, s2, e, n0)
    assert scalar_steady_state(rho, s2, e, n0) == pytest.approx(want, rel=1e-9)
    # the matrix recursion on a single tap converges to the same point
    G = torch.tensor([[e]], dtype=C128)
    P = kalman_steady_state(G, n0, rho, torch.tensor([[s2]], dtype=C128))
    assert float(P.real[0, 0]) == pytest.approx(want, rel=1e-8)
    # rho = 0: the LMMSE error of one frame
    assert scalar_steady_state(0.0, s2, e, n0) == pytest.approx(s2 * n0 / (n0 + e * s2), rel=1e-12)
    # tracking beats one-frame LMMSE, and both beat the prior
    assert want < s2 * n0 / (n0 + e * s2) < s2


def test_kalman_filter_empirical_mse_matches_the_closed_form():
    """Simulate h_t = rho h_{t-1} + sqrt(1 - rho^2) w_t for many independent links, observe it every frame through
    a constant scalar pilot x (y = x h + CN(0, N0)), run the filter; after the transient the error |h - m|^2
    averaged over B links at one frame is P_inf * Exp(1)-distributed per link: mean within 5 sigma of P_inf."""
    rho, s2, n0 = 0.95, 1.0, 0.2
    x = torch.tensor(0.6 + 0.8j, dtype=C128)  # |x|^2 = 1
    B, T = 20000, 80
    g = torch.Generator().manual_seed(1)
    h = _cn((B, 1), g, s2)
    m = torch.zeros(B, 1, dtype=C128)
    P = torch.full((1, 1), s2, dtype=C128)
    X = x.expand(B, 1, 1)
    sigma = torch.tensor([[s2]], dtype=C128)
    errs = []
    for t in range(T):
        if t > 0:
            h = rho * h + math.sqrt(1 - rho**2) * _cn((B, 1), g, s2)
        y = (x * h) + _cn((B, 1), g, n0)
        if t == 0:
            m, P = lmmse_update(m, P, X, y, n0)
        else:
            m, P = kalman_step(m, P, X, y, n0, rho, sigma)
        errs.append(float((h - m).abs().square().mean()))
    p_inf = _riccati_root(rho, s2, 1.0, n0)
    assert float(P.real.max()) == pytest.approx(p_inf, rel=1e-9)  # the filter's own covariance converged
    for e in errs[-5:]:
        assert abs(e - p_inf) < 5 * p_inf / math.sqrt(B), (e, p_inf)
    # and the error really is smaller than one-frame LMMSE would give (the past helps)
    assert np.mean(errs[-20:]) < 0.8 * s2 * n0 / (n0 + s2)


def test_kalman_vector_steady_state_and_mse():
    """Three taps with a non-uniform profile and a fixed 8 x 3 pilot matrix: the empirical error covariance trace
    matches the steady-state Riccati solution (and each diagonal entry)."""
    rho, n0 = 0.9, 0.3
    pdp = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    sigma = torch.diag(pdp).to(C128)
    g = torch.Generator().manual_seed(2)
    X1 = _cn((8, 3), g, 1 / 3)
    G = X1.mH @ X1
    P_inf = kalman_steady_state(G, n0, rho, sigma)
    B, T = 8000, 60
    X = X1.expand(B, 8, 3)
    h = _cn((B, 3), g) * pdp.sqrt()
    y = (X @ h[..., None])[..., 0] + _cn((B, 8), g, n0)
    m, P = lmmse_update(torch.zeros(B, 3, dtype=C128), sigma, X, y, n0)
    mw, Pw = m, P  # a filter told the wrong rho (0.3)
    for _ in range(T):
        h = rho * h + math.sqrt(1 - rho**2) * _cn((B, 3), g) * pdp.sqrt()
        y = (X @ h[..., None])[..., 0] + _cn((B, 8), g, n0)
        m, P = kalman_step(m, P, X, y, n0, rho, sigma)
        mw, Pw = kalman_step(mw, Pw, X, y, n0, 0.3, sigma)
    err = (h - m).abs().square().mean(0)
    torch.testing.assert_close(P[0], P_inf, rtol=1e-8, atol=1e-12)
    diag = P_inf.real.diagonal()
    for i in range(3):
        assert abs(float(err[i]) - float(diag[i])) < 5 * float(diag[i]) / math.sqrt(B)
    # the filter told the wrong rho is measurably worse on the same draws: the comparison can fail
    assert float((h - mw).abs().square().sum(-1).mean()) > 1.1 * float(diag.sum())


def test_lmmse_estimate_and_mse_against_the_gain_form():
    """LMMSE with a known prior: the estimate equals Sigma X^H (X Sigma X^H + N0 I)^{-1} y (numpy), its error
    covariance Sigma - Sigma X^H (X Sigma X^H + N0 I)^{-1} X Sigma, and the empirical MSE matches that trace."""
    g = torch.Generator().manual_seed(3)
    pdp = np.array([0.6, 0.3, 0.1])
    sigma = torch.diag(torch.tensor(pdp)).to(C128)
    n0 = 0.4
    B = 20000
    X1 = _cn((6, 3), g, 1 / 3)
    X = X1.expand(B, 6, 3)
    h = _cn((B, 3), g) * torch.tensor(pdp).sqrt()
    y = (X @ h[..., None])[..., 0] + _cn((B, 6), g, n0)
    est = lmmse_taps(X, y, sigma, n0)
    Xn, S = X1.numpy(), np.diag(pdp).astype(complex)
    W = S @ Xn.conj().T @ np.linalg.inv(Xn @ S @ Xn.conj().T + n0 * np.eye(6))
    np.testing.assert_allclose(est.numpy(), y.numpy() @ W.T, rtol=1e-9, atol=1e-12)
    E = S - W @ Xn @ S
    np.testing.assert_allclose(lmmse_error_cov(sigma, X1.mH @ X1, n0).numpy(), E, rtol=1e-9, atol=1e-12)
    mse = float((h - est).abs().square().sum(-1).mean())
    tr = float(np.trace(E).real)
    # per-link error energy: sum of 3 independent scaled Exp(1): std <= tr; 5 sigma over B links
    assert abs(mse - tr) < 5 * tr / math.sqrt(B)
    # LMMSE beats LS (error N0 tr((X^H X)^-1)) in the same draw
    ls = torch.linalg.solve(X.mH @ X, X.mH @ y[..., None])[..., 0]
    assert float((h - ls).abs().square().sum(-1).mean()) > mse


def test_per_link_n0_and_rho_and_bad_input():
    g = torch.Generator().manual_seed(4)
    X = _cn((2, 4, 1), g)
    y = _cn((2, 4), g)
    sigma = torch.ones(1, 1, dtype=C128)
    no = torch.tensor([0.1, 2.0], dtype=torch.float64)
    both = lmmse_taps(X, y, sigma, no)
    for b in range(2):
        one = lmmse_taps(X[b:b + 1], y[b:b + 1], sigma, float(no[b]))
        torch.testing.assert_close(both[b:b + 1], one)
    m, P = kalman_predict(torch.ones(2, 1, dtype=C128), torch.zeros(2, 1, 1, dtype=C128),
                          torch.tensor([0.5, 1.0], dtype=torch.float64), sigma)
    torch.testing.assert_close(m[:, 0], torch.tensor([0.5, 1.0], dtype=C128))
    torch.testing.assert_close(P[:, 0, 0], torch.tensor([0.75, 0.0], dtype=C128))
    with pytest.raises(ConfigError, match="rho"):
        scalar_steady_state(1.5, 1.0, 1.0, 1.0)
    with pytest.raises(ConfigError, match="no"):
        scalar_steady_state(0.5, 1.0, 1.0, 0.0)
