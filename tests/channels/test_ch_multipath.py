"""L-tap multipath block fading against numpy.convolve and closed-form PDPs."""

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.channels import MultipathBlockFading, convolution_matrix, convolve, make_generator


@pytest.mark.parametrize("mode", ["truncate", "full"])
@pytest.mark.parametrize("num_taps", [1, 3, 5])
def test_against_numpy_convolve(mode, num_taps, device):
    ch = MultipathBlockFading(num_taps, 2.0, mode=mode)
    g = make_generator(0, device)
    n = 9
    x = torch.randn(4, n, dtype=torch.complex128, generator=g, device=device)
    s = ch.sample_state(4, n, generator=g, device=device, dtype=torch.complex128)
    y = ch(x, 0.0, s).cpu().numpy()
    taps = s["taps"].cpu().numpy()
    assert y.shape == (4, ch.output_length(n))
    for b in range(4):
        ref = np.convolve(x[b].cpu().numpy(), taps[b])  # full, n + L - 1
        np.testing.assert_allclose(y[b], ref if mode == "full" else ref[:n], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["truncate", "full"])
def test_toeplitz_matrix_times_x_is_the_convolution(mode, device):
    ch = MultipathBlockFading(4, mode=mode)
    g = make_generator(1, device)
    n = 7
    x = torch.randn(3, n, dtype=torch.complex64, generator=g, device=device)
    s = ch.sample_state(3, n, generator=g, device=device)
    H = ch.convolution_matrix(s, n)
    assert H.shape == (3, ch.output_length(n), n)
    torch.testing.assert_close((H @ x[..., None])[..., 0], ch(x, 0.0, s), rtol=1e-5, atol=1e-6)
    # Toeplitz structure written out: H[t, s] = h[t - s] for 0 <= t - s < L
    taps = s["taps"].cpu().numpy()
    Hn = H.cpu().numpy()
    for t in range(Hn.shape[1]):
        for c in range(n):
            d = t - c
            expected = taps[:, d] if 0 <= d < 4 else 0.0
            np.testing.assert_allclose(Hn[:, t, c], expected)


def test_time_varying_convolution_and_lag0():
    """convolve / convolution_matrix with per-output taps and a non-causal zero-lag index."""
    g = make_generator(2)
    n, L, lag0 = 6, 3, 1
    x = torch.randn(2, n, dtype=torch.complex128, generator=g)
    taps = torch.randn(2, n + L - 1, L, dtype=torch.complex128, generator=g)
    xn, hn = x.numpy(), taps.numpy()
    ref = np.zeros((2, n + L - 1), dtype=np.complex128)
    for b in range(n + L - 1):
        for k in range(L):
            if 0 <= b - k < n:
                ref[:, b] += hn[:, b, k] * xn[:, b - k]
    np.testing.assert_allclose(convolve(x, taps, mode="full").numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(convolve(x, taps, mode="truncate", lag0=lag0).numpy(), ref[:, lag0:lag0 + n],
                               atol=1e-12)
    for mode in ("full", "truncate"):
        H = convolution_matrix(taps, n, mode=mode, lag0=lag0)
        np.testing.assert_allclose((H @ x[..., None])[..., 0].numpy(),
                                   convolve(x, taps, mode=mode, lag0=lag0).numpy(), atol=1e-12)


@pytest.mark.parametrize("decay_db", [0.0, 3.0])
def test_tap_powers_follow_pdp(decay_db):
    L = 4
    ch = MultipathBlockFading(L, decay_db)
    p = 10.0 ** (-decay_db * np.arange(L) / 10.0)
    p /= p.sum()
    np.testing.assert_allclose(ch.pdp, p, rtol=1e-12)
    taps = ch.sample_state(100_000, 8, generator=make_generator(3))["taps"].numpy()
    np.testing.assert_allclose(np.mean(np.abs(taps) ** 2, axis=0), p, rtol=0.03)
    assert np.abs(taps.mean(axis=0)).max() < 0.01
    # independent taps
    c = np.mean(taps[:, 0] * np.conj(taps[:, 1]))
    assert abs(c) < 0.01


def test_park_uniform_taps_cn_1_over_l():
    taps = MultipathBlockFading(3).sample_state(100_000, 4, generator=make_generator(4))["taps"].numpy()
    np.testing.assert_allclose(np.var(taps.real, axis=0), 1 / 6, rtol=0.03)
    np.testing.assert_allclose(np.var(taps.imag, axis=0), 1 / 6, rtol=0.03)


def test_explicit_pdp_and_errors():
    ch = MultipathBlockFading(pdp=[2.0, 1.0, 1.0])
    assert ch.num_taps == 3 and ch.pdp == pytest.approx([0.5, 0.25, 0.25])
    with pytest.raises(ConfigError, match="pdp"):
        MultipathBlockFading(pdp=[-1.0, 1.0])
    with pytest.raises(ConfigError, match="num_taps"):
        MultipathBlockFading(0)
    with pytest.raises(ConfigError, match="decay_db_per_tap"):
        MultipathBlockFading(3, -1.0)
    with pytest.raises(ConfigError, match="mode"):
        MultipathBlockFading(3, mode="same")
    with pytest.raises(ConfigError, match="taps"):
        convolution_matrix(torch.ones(3), 4)
