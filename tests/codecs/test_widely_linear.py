"""Widely-linear LS (metacomm.codecs.widely_linear): the IQ-imbalance coefficients against the channel's own
iq_imbalance, exact recovery of known H1/H2 from noiseless pilots, consistency (error -> 0 at the closed-form
rate N0 tr((A^H A)^-1)) from noisy ones, and the images against the real impaired channel."""

import math

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.channels.compose import Compose
from metacomm.channels.impairments import IQImbalance, iq_imbalance
from metacomm.channels.multipath import MultipathBlockFading, convolution_matrix, convolve
from metacomm.codecs.detection import noiseless_images
from metacomm.codecs.widely_linear import (
    iq_coefficients,
    stacked_conv_pilot_matrix,
    widely_linear_regressor,
    wl_images,
    wl_ls_taps,
    wl_pilot_matrix,
)

C128 = torch.complex128


def _cn(shape, g, var=1.0):
    re = torch.randn(*shape, generator=g, dtype=torch.float64)
    im = torch.randn(*shape, generator=g, dtype=torch.float64)
    return torch.complex(re, im) * math.sqrt(var / 2)


@pytest.mark.parametrize("renorm", [True, False])
@pytest.mark.parametrize("eps,delta_deg", [(0.0, 0.0), (0.15, 15.0), (-0.1, 40.0)])
def test_iq_coefficients_reproduce_iq_imbalance(eps, delta_deg, renorm):
    g = torch.Generator().manual_seed(0)
    x = _cn((1000,), g)
    k1, k2 = iq_coefficients(eps, math.radians(delta_deg), renormalize=renorm)
    want = iq_imbalance(x, eps, math.radians(delta_deg), renormalize=renorm)
    torch.testing.assert_close(k1 * x + k2 * x.conj(), want, rtol=1e-12, atol=1e-12)


def _iq_link(B, P, n, L, eps, delta, g, no=0.0):
    """Pilots through tx IQ imbalance then an L-tap causal channel (truncated), the real channel functions."""
    x = _cn((B, P, n), g, 1.0)
    h = _cn((B, L), g, 1.0 / L)
    s = iq_imbalance(x, eps[:, None, None], delta[:, None, None])
    y = convolve(s.reshape(B * P, n), h.repeat_interleave(P, 0)).reshape(B, P, n)
    if no:
        y = y + _cn((B, P, n), g, no)
    return x, h, y


def test_noiseless_pilots_recover_h1_h2_exactly():
    g = torch.Generator().manual_seed(1)
    B, P, n, L = 6, 2, 8, 3
    eps = torch.rand(B, generator=g, dtype=torch.float64) * 0.3 - 0.15
    delta = torch.rand(B, generator=g, dtype=torch.float64) * 0.5
    x, h, y = _iq_link(B, P, n, L, eps, delta, g)
    h1, h2 = wl_ls_taps(x, y, L)
    k1, k2 = iq_coefficients(eps, delta)
    torch.testing.assert_close(h1, k1[:, None] * h, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h2, k2[:, None] * h, rtol=1e-9, atol=1e-10)
    # the IQ parameters themselves follow from the ratio K2/K1 (h cancels): recover eps and delta
    r = (h2 / h1).mean(-1)
    # K2/K1 = (eps cos d - j sin d) / (cos d + j eps sin d): solve numerically per link and compare
    for b in range(B):
        def ratio(e, d):
            return (e * math.cos(d) - 1j * math.sin(d)) / (math.cos(d) + 1j * e * math.sin(d))
        assert abs(ratio(float(eps[b]), float(delta[b])) - complex(r[b])) < 1e-9


def test_noisy_pilots_are_consistent_at_the_closed_form_rate():
    """Unbiased LS: E||theta_hat - theta||^2 = N0 tr((A^H A)^-1) per link. Check the mean over many links against
    that closed form (5 sigma), and that 16x more pilots cut the error ~16x (consistency)."""
    g = torch.Generator().manual_seed(2)
    B, n, L, no = 4000, 8, 3, 0.1
    eps = torch.full((B,), 0.1, dtype=torch.float64)
    delta = torch.full((B,), math.radians(10.0), dtype=torch.float64)
    k1, k2 = iq_coefficients(eps, delta)
    mse = {}
    for P in (2, 32):
        x, h, y = _iq_link(B, P, n, L, eps, delta, g, no)
        h1, h2 = wl_ls_taps(x, y, L)
        err = (h1 - k1[:, None] * h).abs().square().sum(-1) + (h2 - k2[:, None] * h).abs().square().sum(-1)
        A = wl_pilot_matrix(x, L)
        tr = no * torch.linalg.inv(A.mH @ A).diagonal(dim1=-2, dim2=-1).real.sum(-1)  # per link
        # the error energy of one link is a sum of 2L scaled Exp(1): std <= its mean
        assert abs(float(err.mean()) - float(tr.mean())) < 5 * float(tr.mean()) / math.sqrt(B)
        mse[P] = float(err.mean())
    assert mse[32] < mse[2] / 10  # consistency: the error vanishes as the pilots grow


def test_wl_images_match_the_impaired_channel():
    """Images through (h1, h2) = (K1 h, K2 h) are the noiseless outputs of Compose(IQImbalance, Multipath)."""
    g = torch.Generator().manual_seed(3)
    M, n, L, B = 16, 8, 3, 2
    book = _cn((M, n), g).to(torch.complex64)
    h = _cn((B, L), g, 1 / L).to(torch.complex64)
    eps, delta_deg = 0.12, 9.0
    ch = Compose(IQImbalance(eps, delta_deg), MultipathBlockFading(num_taps=L))
    want = noiseless_images(ch, book.expand(B, M, n).contiguous(), {"1.taps": h})
    k1, k2 = iq_coefficients(eps, math.radians(delta_deg))
    got = wl_images(book.to(C128), k1 * h.to(C128), k2 * h.to(C128))
    np.testing.assert_allclose(got.numpy(), want.to(C128).numpy(), rtol=1e-5, atol=1e-5)


def test_too_few_pilot_samples():
    g = torch.Generator().manual_seed(4)
    x = _cn((1, 1, 2), g)
    with pytest.raises(ConfigError, match="num_pilots"):
        wl_ls_taps(x, x, 3)


@pytest.mark.parametrize("lag0", [0, 1])
def test_one_widely_linear_regressor_for_pilots_and_tracker(lag0):
    """wl_pilot_matrix and the tracker's stacked regressor (metacomm.adaptation.tracking, widely_linear=True) are
    the same [T(x), T(conj x)] (widely_linear_regressor), bit for bit, for the truncated window with lag0
    pre-cursor taps; and the conj(x) half is the regressor of the conjugated pilots."""
    from metacomm.adaptation.tracking import stacked_conv_matrix
    g = torch.Generator().manual_seed(5)
    B, P, n, L = 3, 2, 6, 3
    x = _cn((B, P, n), g)
    conv = lambda t, m: convolution_matrix(t, m, lag0=lag0)  # noqa: E731
    A = wl_pilot_matrix(x, L, conv)
    assert A.shape == (B, P * n, 2 * L)
    assert torch.equal(A, stacked_conv_matrix(x, L, lag0, widely_linear=True))
    assert torch.equal(A, widely_linear_regressor(lambda s: stacked_conv_pilot_matrix(s, L, conv), x))
    assert torch.equal(A[..., :L], stacked_conv_pilot_matrix(x, L, conv))
    np.testing.assert_array_equal(A[..., L:].numpy(), stacked_conv_pilot_matrix(x, L, conv).numpy().conj())
