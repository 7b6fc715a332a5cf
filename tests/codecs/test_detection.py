"""Classical estimation and detection (metacomm.codecs.detection) against NumPy computations written here:
Toeplitz matrices by their definition, np.convolve, np.linalg.lstsq, brute-force distances, and the LMMSE
estimate from its covariance form C_hy C_yy^-1 y."""

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.channels.multipath import MultipathBlockFading
from metacomm.codecs.detection import (
    convolve_codewords,
    lmmse_flat,
    ls_solve,
    ls_taps,
    matrix_images,
    min_distance_decide,
    ml_block_logits,
    noiseless_images,
    pilot_ls_decide,
    pilot_matrix,
    sq_distances,
    stacked_pilot_matrix,
)

torch.set_num_threads(1)
C128 = torch.complex128
RNG = np.random.default_rng(7)


def crandn(*shape):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)) / np.sqrt(2)


def np_conv(c, h):
    """Causal convolution truncated to len(c) (NumPy)."""
    return np.convolve(c, h)[: len(c)]


def np_pilot_matrix(p, L, lag0=0):
    """X[r, l] = p[r - l + lag0] (0 <= r - l + lag0 < n): column l = the pilots delayed by l - lag0."""
    n = len(p)
    return np.array([[p[r - ell + lag0] if 0 <= r - ell + lag0 < n else 0 for ell in range(L)] for r in range(n)])


def test_pilot_matrices_are_the_delayed_pilots():
    B, P, n, L = 2, 3, 5, 3
    x = crandn(B, P, n)
    X = stacked_pilot_matrix(torch.tensor(x, dtype=C128), L).numpy()
    assert X.shape == (B, P * n, L)
    for b in range(B):
        ref = np.concatenate([np_pilot_matrix(x[b, p], L) for p in range(P)])
        np.testing.assert_allclose(X[b], ref, atol=1e-12)
    np.testing.assert_allclose(pilot_matrix(torch.tensor(x[0], dtype=C128), L).numpy()[1], np_pilot_matrix(x[0, 1], L))


@pytest.mark.parametrize("method", ["normal", "lstsq", "auto"])
def test_ls_taps_match_numpy_lstsq_and_are_exact_without_noise(method):
    B, P, n, L = 3, 4, 6, 3
    x = crandn(B, P, n)
    h = crandn(B, L)
    clean = np.stack([np.stack([np_conv(x[b, p], h[b]) for p in range(P)]) for b in range(B)])
    y = clean + 0.3 * crandn(B, P, n)
    got = ls_taps(torch.tensor(x, dtype=C128), torch.tensor(y, dtype=C128), L, method=method).numpy()
    for b in range(B):
        A = np.concatenate([np_pilot_matrix(x[b, p], L) for p in range(P)])
        ref = np.linalg.lstsq(A, y[b].reshape(-1), rcond=None)[0]
        np.testing.assert_allclose(got[b], ref, atol=1e-10)
    exact = ls_taps(torch.tensor(x, dtype=C128), torch.tensor(clean, dtype=C128), L, method=method).numpy()
    np.testing.assert_allclose(exact, h, atol=1e-10)


def test_ls_taps_uses_the_first_n_samples_and_ridge_shrinks():
    B, P, n, L = 2, 2, 4, 2
    x, h = crandn(B, P, n), crandn(B, L)
    clean = np.stack([np.stack([np.convolve(x[b, p], h[b]) for p in range(P)]) for b in range(B)])  # n + L - 1
    got = ls_taps(torch.tensor(x, dtype=C128), torch.tensor(clean, dtype=C128), L).numpy()
    np.testing.assert_allclose(got, h, atol=1e-10)  # the tail beyond n is ignored (truncated model)
    eps = 5.0
    ridge = ls_taps(torch.tensor(x, dtype=C128), torch.tensor(clean, dtype=C128), L, ridge=eps).numpy()
    for b in range(B):
        A = np.concatenate([np_pilot_matrix(x[b, p], L) for p in range(P)])
        yb = clean[b, :, :n].reshape(-1)
        ref = np.linalg.solve(A.conj().T @ A + eps * np.eye(L), A.conj().T @ yb)
        np.testing.assert_allclose(ridge[b], ref, atol=1e-10)
    with pytest.raises(ConfigError, match="method"):
        ls_solve(torch.zeros(1, 3, 2, dtype=C128), torch.zeros(1, 3, 1, dtype=C128), method="qr")
    with pytest.raises(ConfigError, match="ridge"):
        ls_solve(torch.zeros(1, 3, 2, dtype=C128), torch.zeros(1, 3, 1, dtype=C128), ridge=1.0, method="lstsq")
    with pytest.raises(ConfigError, match="num_pilots"):
        ls_taps(torch.ones(1, 1, 2, dtype=C128), torch.ones(1, 1, 2, dtype=C128), 3)


def test_codeword_images_three_ways_match_numpy_convolution():
    B, M, n, L = 2, 5, 6, 3
    book, h = crandn(M, n), crandn(B, L)
    ref = np.stack([np.stack([np_conv(book[m], h[b]) for m in range(M)]) for b in range(B)])  # [B, M, n]
    tb, th = torch.tensor(book, dtype=C128), torch.tensor(h, dtype=C128)
    np.testing.assert_allclose(convolve_codewords(tb, th).numpy(), ref, atol=1e-12)
    H = np.stack([np.stack([np_conv(np.eye(n)[s], h[b]) for s in range(n)], axis=1) for b in range(B)])
    np.testing.assert_allclose(matrix_images(torch.tensor(H, dtype=C128), tb).numpy(), ref, atol=1e-12)
    ch = MultipathBlockFading(num_taps=L, mode="truncate")
    imgs = noiseless_images(ch, tb.expand(B, M, n).contiguous(), {"taps": th})
    np.testing.assert_allclose(imgs.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("expanded", [False, True])
def test_distances_and_min_distance_decision_brute_force(expanded):
    B, N, M, n = 3, 7, 6, 4
    y, imgs = crandn(B, N, n), crandn(B, M, n)
    d = sq_distances(torch.tensor(y, dtype=C128), torch.tensor(imgs, dtype=C128), expanded=expanded).numpy()
    ref = (np.abs(y[:, :, None, :] - imgs[:, None, :, :]) ** 2).sum(-1)  # [B, N, M]
    if expanded:  # the common ||y||^2 is dropped
        ref = ref - (np.abs(y) ** 2).sum(-1)[..., None]
    np.testing.assert_allclose(d, ref, atol=1e-10)
    dec = min_distance_decide(torch.tensor(y, dtype=C128), torch.tensor(imgs, dtype=C128), expanded=expanded)
    np.testing.assert_array_equal(dec.numpy(), ref.argmin(-1))


def test_ml_block_logits_are_scaled_negative_distances():
    B, M, n, L = 2, 4, 5, 2
    y, book, h = crandn(B, n), crandn(M, n), crandn(B, L)
    no = np.array([0.5, 2.0])
    got = ml_block_logits(torch.tensor(y, dtype=C128), torch.tensor(book, dtype=C128), torch.tensor(h, dtype=C128),
                          torch.tensor(no)).numpy()
    ref = np.stack([[-(np.abs(y[b] - np_conv(book[m], h[b])) ** 2).sum() / no[b] for m in range(M)]
                    for b in range(B)])
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_lmmse_flat_equals_covariance_form():
    P, no = 5, 0.4
    x, y = crandn(3, P), crandn(3, P)
    got = lmmse_flat(torch.tensor(x, dtype=C128), torch.tensor(y, dtype=C128), no).numpy()
    for b in range(3):
        xb = x[b][:, None]  # y = x h + w, h ~ CN(0,1): C_hy = x^H, C_yy = x x^H + N0 I
        ref = (xb.conj().T @ np.linalg.inv(xb @ xb.conj().T + no * np.eye(P)) @ y[b]).item()
        assert got[b] == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("lag0", [0, 2])
@pytest.mark.parametrize("images,expanded,method,ridge", [("matrix", True, "normal", 1e-9),
                                                          ("regressor", False, "normal", 1e-9),
                                                          ("matrix", False, "lstsq", 0.0)])
def test_pilot_ls_decide_matches_numpy_lstsq_and_brute_force_nearest_codeword(lag0, images, expanded, method, ridge):
    """Leading dims [2, 3]; taps at lags -lag0 .. L-1-lag0; received blocks longer than n (tails ignored). The
    reference: np.linalg.lstsq on the stacked window matrix written out by hand, the images by the window's
    convolution sum, and the nearest codeword by trying every one."""
    lead, P, N, M, n, L = (2, 3), 3, 9, 8, 6, 4
    book = crandn(M, n)
    x = book[RNG.integers(0, M, (*lead, P))]  # pilot codewords [2, 3, P, n]
    msg = RNG.integers(0, M, (*lead, N))
    h = crandn(*lead, L)

    def window_conv(c, taps):  # r[i] = sum_l taps[l] c[i - l + lag0], n outputs
        return np.array([sum(taps[ell] * c[i - ell + lag0] for ell in range(L) if 0 <= i - ell + lag0 < n)
                         for i in range(n)])

    def rx(blocks, taps, tail=2):
        clean = np.stack([window_conv(c, taps) for c in blocks])
        return np.concatenate([clean + 0.3 * crandn(*clean.shape), crandn(len(blocks), tail)], axis=-1)

    y_p = np.empty((*lead, P, n + 2), complex)
    y_d = np.empty((*lead, N, n + 2), complex)
    want = np.empty((*lead, N), np.int64)
    for idx in np.ndindex(*lead):
        y_p[idx], y_d[idx] = rx(x[idx], h[idx]), rx(book[msg[idx]], h[idx])
        A = np.concatenate([np_pilot_matrix(x[idx][p], L, lag0) for p in range(P)])  # [P n, L]
        h_hat = np.linalg.lstsq(A, y_p[idx][:, :n].reshape(-1), rcond=None)[0]
        imgs = np.stack([window_conv(c, h_hat) for c in book])  # [M, n]
        d = np.array([[np.sum(np.abs(yj[:n] - r) ** 2) for r in imgs] for yj in y_d[idx]])
        want[idx] = d.argmin(-1)
    t = lambda a: torch.tensor(a, dtype=C128)  # noqa: E731
    got = pilot_ls_decide(t(x), t(y_p), t(y_d), t(book), L, lag0=lag0, ridge=ridge, method=method, images=images,
                          expanded=expanded)
    assert got.shape == (*lead, N) and got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), want)
    assert (want != msg).mean() < 0.5  # a real detection problem, not noise
    # no leading dims, complex64 inputs estimated in complex128 (dtype=): the same decisions for that link
    one = pilot_ls_decide(t(x)[0, 1].to(torch.complex64), t(y_p)[0, 1].to(torch.complex64),
                          t(y_d)[0, 1].to(torch.complex64), t(book).to(torch.complex64), L, lag0=lag0, dtype=C128,
                          ridge=ridge, method=method, images=images, expanded=expanded)
    assert one.shape == (N,)
    np.testing.assert_array_equal(one.numpy(), want[0, 1])


def test_pilot_ls_decide_rejects_bad_windows_and_shapes():
    x = torch.ones(2, 3, 4, dtype=C128)
    book = torch.ones(5, 4, dtype=C128)
    with pytest.raises(ConfigError, match="lag0"):
        pilot_ls_decide(x, x, x, book, 3, lag0=3)
    with pytest.raises(ConfigError, match="images"):
        pilot_ls_decide(x, x, x, book, 3, images="toeplitz")
    with pytest.raises(ConfigError, match="y_p"):
        pilot_ls_decide(x, x[:1], x, book, 3)
    with pytest.raises(ConfigError, match="num_pilots"):  # no ridge: needs P n >= L
        pilot_ls_decide(x[:, :1, :2], x[:, :1, :2], x, book[:, :2], 3, ridge=0.0)


# --- the fused score-and-decide kernel ---------------------------------------------------------------------------
def _np_loglik(y, imgs, no):
    """-||y - r||^2 / N0 per block and codeword by brute force (NumPy), [B, N, M]."""
    return -(np.abs(y[:, :, None, :] - imgs[:, None, :, :]) ** 2).sum(-1) / no[:, None, None]


@pytest.mark.parametrize("shared", [False, True])
def test_codeword_scores_are_the_log_likelihoods_up_to_the_block_constant(shared):
    from metacomm.codecs.detection import codeword_scores
    B, N, M, n = 3, 9, 16, 5
    y, imgs, no = crandn(B, N, n), crandn(M, n) if shared else crandn(B, M, n), np.array([0.1, 1.0, 3.0])
    full = np.broadcast_to(imgs, (B, M, n)) if shared else imgs
    ref = _np_loglik(y, full, no) + (np.abs(y) ** 2).sum(-1)[..., None] / no[:, None, None]  # + ||y||^2 / N0
    got = codeword_scores(torch.tensor(y, dtype=C128), torch.tensor(imgs, dtype=C128), torch.tensor(1 / no))
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)
    got1 = codeword_scores(torch.tensor(y, dtype=C128), torch.tensor(imgs, dtype=C128))  # scale 1
    np.testing.assert_allclose(got1.numpy(), ref * no[:, None, None], atol=1e-10)


def test_score_decide_gives_the_ml_decision_and_its_log_posterior():
    from metacomm.codecs.detection import ScoreWorkspace, score_decide
    B, N, M, n = 4, 33, 64, 6
    y, imgs, no = crandn(B, N, n), crandn(B, M, n), np.array([0.05, 0.2, 1.0, 4.0])
    ref = _np_loglik(y, imgs, no)
    ref_lp = ref - np.log(np.exp(ref - ref.max(-1, keepdims=True)).sum(-1, keepdims=True)) - ref.max(-1, keepdims=True)
    ws = ScoreWorkspace()
    for dt in (C128, torch.complex64):
        best, kappa, S, smax = score_decide(torch.tensor(y, dtype=dt), torch.tensor(imgs, dtype=dt),
                                            torch.tensor(1 / no), workspace=ws)
        np.testing.assert_array_equal(best.numpy(), ref.argmax(-1))
        np.testing.assert_allclose(kappa.numpy(), ref_lp.max(-1), atol=1e-9 if dt == C128 else 2e-4)
        np.testing.assert_allclose(S.numpy(), np.exp(-ref_lp.max(-1)), rtol=1e-9 if dt == C128 else 1e-4)
    best2, k2, _, _ = score_decide(torch.tensor(y, dtype=C128), torch.tensor(imgs, dtype=C128), torch.tensor(1 / no),
                                   confidence=False)
    assert k2 is None and torch.equal(best2, best)


def test_expanded_distances_by_baddbmm_are_bit_identical_to_the_matmul_form():
    g = torch.Generator().manual_seed(3)
    y = torch.randn(16, 64, 8, dtype=torch.complex64, generator=g)
    r = torch.randn(16, 256, 8, dtype=torch.complex64, generator=g)
    yr, ir = torch.view_as_real(y).flatten(-2), torch.view_as_real(r).flatten(-2)
    old = -2.0 * yr @ ir.transpose(-1, -2) + ir.square().sum(-1).unsqueeze(-2)  # the form the golden runs used
    assert torch.equal(sq_distances(y, r, expanded=True), old)
