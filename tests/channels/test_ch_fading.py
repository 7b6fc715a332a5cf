"""Flat Rayleigh / Rician block fading against closed forms."""

import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from metacomm import ConfigError
from metacomm.channels import RayleighBlockFading, RicianBlockFading, make_generator


def test_rayleigh_gain_is_cn01(device):
    h = RayleighBlockFading().sample_state(200_000, 4, generator=make_generator(0, device), device=device)["h"]
    assert h.shape == (200_000, 1)
    h = h.cpu().numpy().ravel().astype(np.complex128)
    assert abs(h.mean()) < 0.01
    assert abs(np.mean(np.abs(h) ** 2) - 1.0) < 0.01
    assert abs(np.mean(h * h)) < 0.01  # circular: E h^2 = 0
    # |h|^2 ~ Exp(1)
    assert st.kstest(np.abs(h[:20000]) ** 2, "expon").pvalue > 1e-3


def test_rayleigh_output_is_h_times_x():
    g = make_generator(1)
    x = torch.randn(3, 5, dtype=torch.complex64, generator=g)
    ch = RayleighBlockFading()
    s = ch.sample_state(3, 5, generator=g)
    np.testing.assert_allclose(ch(x, 0.0, s).numpy(), s["h"].numpy() * x.numpy(), rtol=1e-6)


def _moment_k_estimate(h: np.ndarray) -> float:
    """Method-of-moments K estimate (Greenstein, Michelson & Erceg 1999) from |h|^2 samples."""
    p = np.abs(h) ** 2
    omega, v = p.mean(), p.var()
    r = math.sqrt(max(1.0 - v / omega**2, 0.0))
    return r / (1.0 - r)


@pytest.mark.parametrize("k_db", [0.0, 3.0, 10.0])
@pytest.mark.parametrize("random_phase", [False, True])
def test_rician_k_from_samples(k_db, random_phase):
    ch = RicianBlockFading(k_db, random_los_phase=random_phase)
    h = ch.sample_state(400_000, 1, generator=make_generator(2))["h"].numpy().ravel().astype(np.complex128)
    k = 10 ** (k_db / 10)
    assert abs(np.mean(np.abs(h) ** 2) - 1.0) < 0.01
    k_hat = _moment_k_estimate(h)
    assert abs(k_hat - k) / k < 0.06, (k_hat, k)
    mean_expected = 0.0 if random_phase else math.sqrt(k / (k + 1))
    assert abs(h.mean() - mean_expected) < 0.01


def test_rician_fixed_los_phase_and_linear_k():
    ch = RicianBlockFading(k_factor=4.0, los_phase=math.pi / 3)
    h = ch.sample_state(200_000, 1, generator=make_generator(3))["h"].numpy().ravel()
    expected = math.sqrt(4 / 5) * np.exp(1j * math.pi / 3)
    assert abs(h.mean() - expected) < 0.01
    # scattered part has variance 1/(K+1)
    assert abs(np.var(h) - 1 / 5) < 0.005
    assert ch.k_factor_db == pytest.approx(10 * math.log10(4))


def test_rician_k0_is_rayleigh():
    h = RicianBlockFading(k_factor=0.0).sample_state(20000, 1, generator=make_generator(4))["h"].numpy().ravel()
    assert st.kstest(np.abs(h) ** 2, "expon").pvalue > 1e-3


def test_rician_bad_input():
    with pytest.raises(ConfigError, match="k_factor_db"):
        RicianBlockFading(3.0, k_factor=2.0)
    with pytest.raises(ConfigError, match="k_factor"):
        RicianBlockFading(k_factor=-1.0)
    with pytest.raises(ConfigError, match="k_factor_db"):
        RicianBlockFading(float("nan"))
    with pytest.raises(ConfigError, match="dtype"):
        RayleighBlockFading().sample_state(2, 2, dtype=torch.float32)
