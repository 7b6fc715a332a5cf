"""LS channel estimation and one-tap / LMMSE equalisation against NumPy formulas and Monte-Carlo statistics."""

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import make_generator
from metacomm.channels.base import complex_normal
from metacomm.codecs.equalization import (
    estimation_noise_diagonal,
    lmmse_equalize,
    ls_estimate_flat,
    ls_estimate_multipath,
    one_tap_equalize,
    pilot_matrix,
)
from metacomm.codecs.links import qpsk_pilots

torch.set_num_threads(1)
C128 = torch.complex128


def np_toeplitz(taps, n, rows):
    """Causal convolution matrix H[r, s] = taps[r - s] for 0 <= r - s < L (NumPy, written here)."""
    H = np.zeros((rows, n), complex)
    for r in range(rows):
        for s in range(n):
            if 0 <= r - s < len(taps):
                H[r, s] = taps[r - s]
    return H


def test_ls_flat_unbiased_with_mse_n0_over_pilot_energy(device):
    B, P, no = 40000, 8, 0.3
    g = make_generator(0, device)
    h = complex_normal((B, 1), generator=g, dtype=C128)
    p = qpsk_pilots(B, P, generator=g, dtype=C128)
    y_p = h * p + complex_normal((B, P), generator=g, dtype=C128) * no ** 0.5
    h_hat, err = ls_estimate_flat(y_p, p, no)
    assert h_hat.shape == (B, 1) and err.shape == (B, 1)
    e = (h_hat - h).cpu().numpy()
    mse_theory = no / P  # sum |p|^2 = P for unit-energy pilots
    assert err.cpu().numpy() == pytest.approx(mse_theory)
    se = np.sqrt(mse_theory / B)  # std of the sample mean of e
    assert abs(e.mean()) < 5 * se
    # sample MSE of B exponential(mean mse) values: relative std 1/sqrt(B)
    assert np.mean(np.abs(e) ** 2) == pytest.approx(mse_theory, rel=5 / np.sqrt(B))


def test_pilot_matrix_is_toeplitz():
    g = make_generator(1)
    p = qpsk_pilots(2, 6, generator=g, dtype=C128)
    X = pilot_matrix(p, 3).numpy()
    for b in range(2):
        ref = np.array([[p[b, r - ell].item() if 0 <= r - ell < 6 else 0 for ell in range(3)] for r in range(6)])
        np.testing.assert_allclose(X[b], ref)


def test_ls_multipath_exact_without_noise_and_error_covariance():
    from metacomm.channels.multipath import convolve

    B, P, L, no = 5, 12, 3, 0.2
    g = make_generator(2)
    taps = complex_normal((B, L), generator=g, dtype=C128)
    p = qpsk_pilots(B, P, generator=g, dtype=C128)
    y_p = convolve(p, taps)
    torch.testing.assert_close(ls_estimate_multipath(y_p, p, L), taps)
    _, cov = ls_estimate_multipath(y_p, p, L, no)
    for b in range(B):
        X = np.array([[p[b, r - ell].item() if 0 <= r - ell < P else 0 for ell in range(L)] for r in range(P)])
        np.testing.assert_allclose(cov[b].numpy(), no * np.linalg.inv(X.conj().T @ X), rtol=1e-10)


def test_ls_multipath_statistics():
    from metacomm.channels.multipath import convolve

    B, P, L, no = 20000, 8, 3, 0.5
    g = make_generator(3)
    taps = complex_normal((1, L), generator=g, dtype=C128).expand(B, L)
    p = qpsk_pilots(1, P, generator=g, dtype=C128)[0]  # shared pilots: one error covariance
    y_p = convolve(p.expand(B, P), taps) + complex_normal((B, P), generator=g, dtype=C128) * no ** 0.5
    est, cov = ls_estimate_multipath(y_p, p, L, no)
    e = (est - taps).numpy()
    emp = e.T @ e.conj() / B
    theory = cov[0].numpy()
    assert np.abs(e.mean(0)).max() < 5 * np.sqrt(np.diag(theory).real.max() / B)
    np.testing.assert_allclose(np.diag(emp).real, np.diag(theory).real, rtol=0.04)  # ~5.6 sigma of a B-sample variance


def test_one_tap_equalizers():
    g = make_generator(4)
    y = complex_normal((4, 5), generator=g, dtype=C128)
    h = complex_normal((4, 1), generator=g, dtype=C128)
    no, ev = 0.1, 0.05
    x_zf, n_zf = one_tap_equalize(y, h, no, kind="zf", h_err_var=ev)
    yn, hn = y.numpy(), h.numpy()
    np.testing.assert_allclose(x_zf.numpy(), yn / hn)
    np.testing.assert_allclose(n_zf.numpy(), np.broadcast_to((no + ev) / np.abs(hn) ** 2, yn.shape))
    x_m, n_m = one_tap_equalize(y, h, no, kind="mmse")
    np.testing.assert_allclose(x_m.numpy(), hn.conj() * yn / (np.abs(hn) ** 2 + no))
    np.testing.assert_allclose(n_m.numpy(), np.broadcast_to(no / (np.abs(hn) ** 2 + no), yn.shape))
    with pytest.raises(ConfigError, match="kind"):
        one_tap_equalize(y, h, no, kind="ml")


def test_one_tap_post_equalisation_noise_variance():
    B, n, no = 20000, 4, 0.25
    g = make_generator(5)
    h = torch.full((B, 1), 0.6 - 0.3j, dtype=C128)
    x = qpsk_pilots(B, n, generator=g, dtype=C128)
    y = h * x + complex_normal((B, n), generator=g, dtype=C128) * no ** 0.5
    x_hat, no_eff = one_tap_equalize(y, h, no)
    err = (x_hat - x).numpy()
    assert np.mean(np.abs(err) ** 2) == pytest.approx(no_eff[0, 0].item(), rel=0.03)


def np_lmmse(y, H, no):
    """Unbiased LMMSE, written out: G = (H^H H + N0 I)^-1 H^H, x = diag(GH)^-1 G y, var = 1/diag(GH) - 1."""
    n = H.shape[1]
    Gm = np.linalg.solve(H.conj().T @ H + no * np.eye(n), H.conj().T)
    d = np.diag(Gm @ H)
    return (Gm @ y) / d, (1 / d - 1).real


@pytest.mark.parametrize("rows_extra", [0, 2])
def test_lmmse_against_numpy_formula(rows_extra, device):
    B, n, L, no = 3, 8, 3, 0.15
    g = make_generator(6)
    rows = n + rows_extra
    taps = complex_normal((B, L), generator=g, dtype=C128).numpy()
    H = np.stack([np_toeplitz(taps[b], n, rows) for b in range(B)])
    y = complex_normal((B, rows), generator=g, dtype=C128).numpy()
    x_hat, no_eff = lmmse_equalize(torch.tensor(y, device=device), torch.tensor(H, device=device), no)
    assert x_hat.shape == (B, n) and no_eff.shape == (B, n)
    for b in range(B):
        rx, rv = np_lmmse(y[b], H[b], no)
        np.testing.assert_allclose(x_hat[b].cpu().numpy(), rx, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(no_eff[b].cpu().numpy(), rv, rtol=1e-8, atol=1e-10)


def test_lmmse_unbiased_and_effective_noise_monte_carlo():
    """For a fixed channel, x_hat - x has mean 0 given x and variance no_eff (unit-energy i.i.d. symbols)."""
    from metacomm.channels.multipath import convolution_matrix

    B, n, no = 30000, 6, 0.2
    g = make_generator(7)
    taps = torch.tensor([[0.8 + 0.1j, -0.4 + 0.3j, 0.2j]], dtype=C128)
    H = convolution_matrix(taps, n).expand(B, n, n)
    x = qpsk_pilots(B, n, generator=g, dtype=C128)
    y = (H @ x.unsqueeze(-1)).squeeze(-1) + complex_normal((B, n), generator=g, dtype=C128) * no ** 0.5
    x_hat, no_eff = lmmse_equalize(y, H, no)
    err = (x_hat - x).numpy()
    np.testing.assert_allclose(np.mean(np.abs(err) ** 2, 0), no_eff[0].numpy(), rtol=0.05)
    # unbiased: regressing x_hat on x gives slope 1
    slope = (x_hat.numpy() * x.numpy().conj()).mean(0) / (np.abs(x.numpy()) ** 2).mean(0)
    np.testing.assert_allclose(slope.real, 1.0, atol=0.03)


def test_estimation_noise_diagonal_against_explicit_sum():
    L, n = 3, 5
    g = make_generator(8)
    A = complex_normal((1, L, L), generator=g, dtype=C128)
    cov = A @ A.mH  # Hermitian PSD error covariance
    d = estimation_noise_diagonal(cov, n).numpy()[0]
    C = [np_toeplitz(np.eye(L)[ell], n, n) for ell in range(L)]
    ref = sum(cov[0, a, b].item() * C[a] @ C[b].conj().T for a in range(L) for b in range(L))
    np.testing.assert_allclose(d, np.diag(ref).real, rtol=1e-10)


def test_bad_inputs():
    y = torch.zeros(2, 4, dtype=torch.complex64)
    with pytest.raises(ConfigError, match="y_p"):
        ls_estimate_flat(torch.zeros(2, 4), torch.ones(4, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="num_pilots"):
        ls_estimate_multipath(y[:, :2], torch.ones(2, dtype=torch.complex64), 3)
    with pytest.raises(ConfigError, match="H"):
        lmmse_equalize(y, torch.zeros(2, 5, 4, dtype=torch.complex64), 0.1)
    with pytest.raises(ConfigError, match="no"):
        one_tap_equalize(y, torch.ones(2, 1, dtype=torch.complex64), torch.ones(2, 3, 3))
