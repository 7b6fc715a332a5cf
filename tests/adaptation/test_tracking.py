"""The learned tracker's recursion against an independent numpy Kalman filter, its convolution model against the
channel's, and its soft likelihood against a direct evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.adaptation.tracking import (
    KalmanTracker,
    gaussian_block_logits,
    inv_softplus,
    logit,
    stacked_conv_matrix,
    tap_conv_matrix,
)
from metacomm.channels.multipath import convolve
from metacomm.codecs.detection import stacked_pilot_matrix


def _cn(g, *shape):
    return (torch.randn(*shape, generator=g, dtype=torch.float64)
            + 1j * torch.randn(*shape, generator=g, dtype=torch.float64)) / np.sqrt(2)


def _numpy_kalman(ys, Xs, no, rho, q, p0):
    """Textbook Kalman filter (covariance form, gain K = P X^H (X P X^H + N0 I)^-1)."""
    L = len(p0)
    m = np.zeros(L, complex)
    P = np.diag(p0).astype(complex)
    A = np.diag(rho)
    out = []
    for y, X in zip(ys, Xs, strict=True):
        m = A @ m
        P = A @ P @ A.conj().T + np.diag(q)
        S = X @ P @ X.conj().T + no * np.eye(X.shape[0])
        K = P @ X.conj().T @ np.linalg.inv(S)
        m = m + K @ (y - X @ m)
        P = (np.eye(L) - K @ X) @ P
        out.append((m.copy(), P.copy()))
    return out


def test_conv_matrix_matches_the_channel_convolution():
    g = torch.Generator().manual_seed(0)
    x = _cn(g, 5, 8).to(torch.complex64)
    h = _cn(g, 5, 3).to(torch.complex64)
    T = tap_conv_matrix(x, 3)
    assert torch.allclose((T @ h[..., None])[..., 0], convolve(x, h, mode="truncate"), atol=1e-6)
    xp = x.reshape(1, 5, 8)
    assert torch.allclose(stacked_conv_matrix(xp, 3), stacked_pilot_matrix(xp, 3), atol=0)
    # one pre-cursor tap: y_i = h_0 x_{i+1} + h_1 x_i + h_2 x_{i-1}
    Tp = tap_conv_matrix(x, 3, precursor=1)
    xs = torch.nn.functional.pad(x, (1, 1))
    ref = h[:, 0:1] * xs[:, 2:10] + h[:, 1:2] * xs[:, 1:9] + h[:, 2:3] * xs[:, 0:8]
    assert torch.allclose((Tp @ h[..., None])[..., 0], ref, atol=1e-6)


def test_recursion_with_true_parameters_is_the_kalman_filter():
    g = torch.Generator().manual_seed(1)
    L, n, P, frames, B = 3, 8, 2, 12, 4
    rho, p0 = 0.95, 1.0 / L
    q = (1 - rho ** 2) * p0
    no = torch.tensor([0.1, 0.05, 0.2, 0.3], dtype=torch.float64)
    tr = KalmanTracker(L, rho=rho, p0=p0, q=q).double()
    with torch.no_grad():  # exact in double (the float32 init rounds the raw values)
        tr.a_logit.fill_(logit(rho))
        tr.q_raw.fill_(inv_softplus(q))
        tr.p0_raw.fill_(inv_softplus(p0))
    a, qq, pp = (t.detach() for t in tr.params())
    assert torch.allclose(a, torch.full((L,), rho, dtype=torch.float64), rtol=1e-14)
    assert torch.allclose(qq, torch.full((L,), q, dtype=torch.float64), rtol=1e-14)
    assert torch.allclose(pp, torch.full((L,), p0, dtype=torch.float64), rtol=1e-14)
    h = _cn(g, B, L) * np.sqrt(p0)
    m, Pm = tr.init((B,), dtype=torch.complex128)
    ys, Xs, ours = [], [], []
    for _ in range(frames):
        h = rho * h + np.sqrt(q) * _cn(g, B, L)
        x = _cn(g, B, P, n)
        y = (tap_conv_matrix(x, L) @ h[:, None, :, None])[..., 0] + no.sqrt()[:, None, None] * _cn(g, B, P, n)
        with torch.no_grad():
            m, Pm = tr.step(m, Pm, x, y, no)
        ours.append((m.clone(), Pm.clone()))
        ys.append(y.reshape(B, -1).numpy())
        Xs.append(stacked_conv_matrix(x, L).numpy())
    for b in range(B):
        ref = _numpy_kalman([yy[b] for yy in ys], [X[b] for X in Xs], float(no[b]), np.full(L, rho),
                            np.full(L, q), np.full(L, p0))
        for (mt, Pt), (mr, Pr) in zip(ours, ref, strict=True):
            np.testing.assert_allclose(mt[b].numpy(), mr, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(Pt[b].numpy(), Pr, rtol=1e-8, atol=1e-12)


def test_soft_logits_equal_the_direct_gaussian_likelihood():
    g = torch.Generator().manual_seed(2)
    M, n, L, N = 6, 5, 3, 4
    t = _cn(g, M, n)
    m = _cn(g, L)
    R = _cn(g, L, L) * 0.3
    Pm = R @ R.conj().T + 0.01 * torch.eye(L, dtype=torch.complex128)
    no = torch.tensor(0.2, dtype=torch.float64)
    y = _cn(g, N, n)
    got = gaussian_block_logits(y, t, m, no, Pm)
    T = tap_conv_matrix(t, L).numpy()
    for i in range(N):
        ref = []
        for j in range(M):
            C = T[j] @ Pm.numpy() @ T[j].conj().T + float(no) * np.eye(n)
            e = y[i].numpy() - T[j] @ m.numpy()
            ref.append(-(e.conj() @ np.linalg.solve(C, e)).real - np.linalg.slogdet(C)[1])
        ref = np.array(ref)
        d = got[i].numpy() - ref  # equal up to a constant common to all messages
        np.testing.assert_allclose(d - d.mean(), 0, atol=1e-6)  # 1e-9 jitter on P
    # without P: plain distance metric
    hard = gaussian_block_logits(y, t, m, no)
    ref = -((y[:, None, :] - torch.einsum("mnl,l->mn", tap_conv_matrix(t, L), m)[None]).abs() ** 2).sum(-1) / no
    assert torch.allclose(hard, ref)


def test_bad_window_raises():
    with pytest.raises(ConfigError, match="precursor"):
        KalmanTracker(3, precursor=3)


def test_nll_equals_the_direct_gaussian_density():
    g = torch.Generator().manual_seed(4)
    B, n, L = 3, 6, 2
    x = _cn(g, B, n)
    m = _cn(g, L)
    R = _cn(g, L, L) * 0.4
    Pm = R @ R.conj().T + 0.02 * torch.eye(L, dtype=torch.complex128)
    no = torch.tensor(0.3, dtype=torch.float64)
    y = _cn(g, B, n)
    tr = KalmanTracker(L).double()
    got = tr.nll(y, x, m, Pm, no)
    T = tap_conv_matrix(x, L).numpy()
    for b in range(B):
        C = T[b] @ Pm.numpy() @ T[b].conj().T + float(no) * np.eye(n)
        e = y[b].numpy() - T[b] @ m.numpy()
        ref = ((e.conj() @ np.linalg.solve(C, e)).real + np.linalg.slogdet(C)[1]) / n
        assert abs(float(got[b]) - ref) < 1e-6
