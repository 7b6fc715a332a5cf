"""The 3GPP OFDM channel (metacomm.channels.ofdm.OFDMChannel): shapes, explicit randomness, power, statistics,
validation. Tiny grids only (the default run must stay fast)."""

import math

import numpy as np
import pytest
import sionna.phy
import torch

from metacomm import ConfigError
from metacomm.channels.base import make_generator
from metacomm.channels.ofdm import PROFILES, OFDMChannel

GRID = {"fft_size": 24, "num_ofdm_symbols": 4, "subcarrier_spacing": 30e3}


def _rng_states():
    return sionna.phy.config.torch_rng("cpu").get_state().clone(), torch.random.get_rng_state().clone()


@pytest.mark.parametrize("profile", ["cdl-c", "cdl-d", "tdl-a", "tdl-e", "umi"])
@pytest.mark.parametrize("num_rx_ant", [1, 2])
def test_shapes_dtypes_and_reproducibility(profile, num_rx_ant):
    ch = OFDMChannel(profile, **GRID, speed=3.0, num_rx_ant=num_rx_ant)
    before = _rng_states()
    a = ch.sample_state(3, generator=make_generator(7))["h_freq"]
    b = ch.sample_state(3, generator=make_generator(7))["h_freq"]
    c = ch.sample_state(3, generator=make_generator(8))["h_freq"]
    after = _rng_states()
    assert a.shape == (3, 1, num_rx_ant, 1, 1, 4, 24) and a.dtype == torch.complex64
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Sionna's global generator and torch's default generator are neither used nor changed
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))
    x = torch.ones(3, 1, 1, 4, 24, dtype=torch.complex64)
    y = ch(x, 0.0, state={"h_freq": a}, generator=make_generator(0))
    assert y.shape == (3, 1, num_rx_ant, 4, 24) and y.dtype == torch.complex64
    torch.testing.assert_close(y, a[:, :, :, 0, 0])  # N0 = 0: y = H x exactly


def test_double_precision_and_batch_size_changes():
    ch = OFDMChannel("umi", **GRID, speed=1.0, num_rx_ant=2)
    h1 = ch.sample_state(4, generator=make_generator(1), dtype=torch.complex128)["h_freq"]
    h2 = ch.sample_state(2, generator=make_generator(1), dtype=torch.complex128)["h_freq"]
    h3 = ch.sample_state(4, generator=make_generator(1), dtype=torch.complex128)["h_freq"]
    assert h1.dtype == torch.complex128 and h2.shape[0] == 2
    assert torch.equal(h1, h3)  # a draw does not depend on the previous batch (UMi topology reset)


def test_noise_is_cn0_n0_from_the_generator():
    ch = OFDMChannel("tdl-b", **GRID, num_rx_ant=2)
    g = make_generator(3)
    st = ch.sample_state(64, generator=g)
    x = torch.zeros(64, 1, 1, 4, 24, dtype=torch.complex64)
    y1 = ch.apply(x, 0.25, st, generator=make_generator(5))
    y2 = ch.apply(x, 0.25, st, generator=make_generator(5))
    assert torch.equal(y1, y2)
    n = y1.numel()
    p = float(y1.abs().square().mean())
    assert abs(p - 0.25) < 5 * 0.25 / math.sqrt(n)  # |w|^2 ~ Exp(N0): std N0 / sqrt(n)
    w = torch.randn(64, 1, 2, 4, 24, dtype=torch.complex64)
    torch.testing.assert_close(ch.apply(x, 4.0, st, noise=w), 2.0 * w)


@pytest.mark.parametrize("profile", ["tdl-a", "tdl-c"])
def test_tdl_power_per_subcarrier_and_antenna_is_one(profile):
    """normalize = "none": E|H_r[s, f]|^2 = sum_m p_m = 1 (the tabulated powers are normalised) for every
    subcarrier and receive antenna. Each |H|^2 has variance ~1 (Rayleigh, NLoS), so the mean of N independent
    draws per (f, r) has standard deviation ~1/sqrt(N); the symbols are nearly fully correlated (no gain)."""
    N = 3000
    ch = OFDMChannel(profile, **GRID, speed=0.0, num_rx_ant=2, normalize="none")
    h = ch.sample_state(N, generator=make_generator(11))["h_freq"][:, 0, :, 0, 0]  # [N, R, S, F]
    p = h.abs().square().mean(dim=(0, 2))  # [R, F]
    assert float((p - 1).abs().max()) < 5.0 / math.sqrt(N), p
    assert abs(float(p.mean()) - 1.0) < 3.0 / math.sqrt(N)


def test_grid_normalisation_is_exact_per_example():
    for profile in ("cdl-c", "tdl-d", "umi"):
        ch = OFDMChannel(profile, **GRID, speed=5.0, num_rx_ant=2)
        h = ch.sample_state(8, generator=make_generator(2))["h_freq"]
        e = h.abs().square().mean(dim=(1, 2, 3, 4, 5, 6))
        torch.testing.assert_close(e, torch.ones(8), rtol=1e-5, atol=1e-5)


def test_frequency_covariance_matches_the_power_delay_profile():
    """TDL frequency covariance R_f[f, f'] = sum_m p_m exp(-j 2 pi (f - f') df tau_m) (closed form); the
    Monte-Carlo estimate averages N draws x S symbols x R antennas (symbols nearly fully correlated)."""
    N = 2000
    ch = OFDMChannel("tdl-a", **GRID, delay_spread=300e-9, speed=0.0, num_rx_ant=2, normalize="none")
    ct, cf, cs = ch.covariances(num_draws=N, seed=4, subcarriers=list(range(0, 24, 3)))
    tdl = ch._blocks.get("cpu", "single")[0]
    tau = tdl.delays.double().numpy()
    p = tdl.mean_powers.double().numpy()
    f = np.arange(0, 24, 3) * 30e3
    ref = (p[None, None, :] * np.exp(-2j * np.pi * (f[:, None, None] - f[None, :, None]) * tau[None, None, :])).sum(-1)
    tol = 5.0 / math.sqrt(N * 2)
    assert np.abs(cf.numpy() - ref).max() < tol
    assert ct.shape == (4, 4) and cs.shape == (2, 2)
    assert np.abs(np.diag(cs.numpy()) - 1).max() < tol
    # cached per settings, draws and seed
    assert ch.covariances(num_draws=N, seed=4, subcarriers=list(range(0, 24, 3)))[1] is not None


def test_time_covariance_follows_jakes():
    """Sum-of-sinusoids Rayleigh fading: E[h(t) h*(t + d)] ~ J0(2 pi f_D d) (Clarke/Jakes), d = symbol lag x
    T_sym. Tolerance: Monte-Carlo (1/sqrt(N)) plus the finite-sinusoid approximation error (~0.05)."""
    from scipy.special import j0
    N = 2000
    ch = OFDMChannel("tdl-a", fft_size=12, num_ofdm_symbols=6, subcarrier_spacing=15e3, speed=300.0,
                     carrier_frequency=3.5e9, num_rx_ant=1, normalize="none")
    ct, _, _ = ch.covariances(num_draws=N, seed=9)
    lags = np.arange(6) * ch.ofdm_symbol_duration
    ref = j0(2 * np.pi * ch.doppler * lags)
    assert ch.doppler == pytest.approx(300.0 * 3.5e9 / 299792458.0)
    assert np.abs(ct.numpy()[0].real - ref).max() < 0.05 + 5.0 / math.sqrt(N)


@pytest.mark.parametrize(("kwargs", "field", "text"), [
    ({"profile": "cdl-x"}, "profile", "allowed: cdl-a"),
    ({"profile": "tdl-a", "speed": float("nan")}, "speed", ">= 0"),
    ({"speed": -1.0}, "speed", ">= 0"),
    ({"num_rx_ant": 5}, "num_rx_ant", "1..4"),
    ({"num_rx_ant": 0}, "num_rx_ant", "1..4"),
    ({"num_rx_ant": 2.5}, "num_rx_ant", "1..4"),
    ({"num_tx_ant": 3}, "num_tx_ant", "allowed 1, 2"),
    ({"num_rx_ant": 3, "rx_polarization": "VH"}, "rx_polarization", "even number"),
    ({"delay_spread": 0.0}, "delay_spread", "> 0"),
    ({"delay_spread": 100.0}, "delay_spread", "seconds"),
    ({"carrier_frequency": float("inf")}, "carrier_frequency", "> 0"),
    ({"normalize": "unit"}, "normalize", "allowed: grid, none"),
    ({"fft_size": 0}, "fft_size", "positive"),
])
def test_bad_settings_name_the_key(kwargs, field, text):
    with pytest.raises(ConfigError) as e:
        OFDMChannel(**{**GRID, **kwargs})
    assert e.value.field == field and text in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_field_names_follow_the_caller_and_profiles_listed():
    with pytest.raises(ConfigError) as e:
        OFDMChannel("rayleigh", **GRID, field_names={"profile": "channel"})
    assert e.value.field == "channel" and all(p in str(e.value) for p in PROFILES)
