"""The TDL channel along a trajectory (metacomm.channels.ofdm_trajectory) and the OFDM drift scenarios' channel:
equal to Sionna's own TDL at constant speed, continuous across slot boundaries with the model's time correlation
J0(2 pi f_D dt), a speed ramp gives the Doppler it claims, and the closed-form covariances match Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.special import j0

from metacomm._validation import ConfigError
from metacomm.channels.ofdm import OFDMChannel
from metacomm.channels.ofdm_trajectory import (
    SPEED_OF_LIGHT,
    TDLTrajectory,
    sos_time_correlation,
    tdl_covariances,
)
from metacomm.scenarios.drift_scenarios import parse_scenario

torch.set_num_threads(1)
FC, SCS = 3.5e9, 30e3


def _traj(profile, fft=32, rx=2):
    return TDLTrajectory(profile, delay_spread=100e-9, carrier_frequency=FC, num_rx_ant=rx, fft_size=fft,
                         subcarrier_spacing=SCS)


@pytest.mark.parametrize("profile", ["tdl-b", "tdl-d"])
def test_equals_sionna_tdl_at_constant_speed(profile):
    """Same generator state -> the trajectory at d = v s T_sym is Sionna's GenerateOFDMChannel(TDL) output."""
    v = 30.0
    ch = OFDMChannel(profile, fft_size=32, num_ofdm_symbols=14, subcarrier_spacing=SCS, delay_spread=100e-9,
                     carrier_frequency=FC, speed=v, num_rx_ant=2, normalize="none")
    h_sionna = ch.sample_state(5, generator=torch.Generator().manual_seed(7))["h_freq"]
    tr = _traj(profile)
    par = tr.draw(5, torch.Generator().manual_seed(7))
    h = tr.h_freq(par, v * torch.arange(14) * ch.ofdm_symbol_duration)
    assert h.shape == h_sionna.shape
    assert (h - h_sionna).abs().max() < 1e-4


TINY = """
kind = "ofdm"
link = "tdl-b-400hz"
ebno_db = 10.0
[link_overrides]
fft_size = 16
num_guard_carriers = [1, 1]
bits_per_symbol = 2
num_rx_ant = 1
[[segment]]
slots = {slots}
speed = {speed}
"""


def _frames(speed, slots, links, seed=0):
    sc = parse_scenario(TINY.format(slots=slots, speed=speed), default_name="t")
    frames = list(sc.frames(slots, batch_size=links, generator=torch.Generator().manual_seed(seed)))
    h = torch.stack([f.state["h_freq"][:, 0, 0, 0, 0] for f in frames], 1)  # [B, slots, S, F]
    return sc, frames, h.to(torch.complex128)


def _corr(a, b):
    return float((a * b.conj()).mean().real / (a.abs().square().mean() * b.abs().square().mean()).sqrt())


def test_continuous_across_slot_boundaries_with_the_model_time_correlation():
    """The last symbol of slot t and the first of slot t+1 are one symbol apart on the same paths: their
    correlation over many links is J0(2 pi f_D T_sym) (not ~0, as for a fresh draw per slot), and symbol 0 of
    slots t and t+1 (14 symbols apart) correlate as J0(2 pi f_D 14 T_sym)."""
    v = 34.262  # 400 Hz at 3.5 GHz
    sc, frames, h = _frames(v, 3, 1500)
    fd, T = v * FC / SPEED_OF_LIGHT, sc.symbol_duration
    assert abs(frames[0].doppler_hz - fd) < 1e-9
    boundary = _corr(h[:, 0, -1], h[:, 1, 0])
    inside = _corr(h[:, 0, 5], h[:, 0, 6])
    assert abs(boundary - j0(2 * math.pi * fd * T)) < 0.01 and abs(boundary - inside) < 0.01
    slot = _corr(h[:, 0, 0], h[:, 1, 0])
    assert abs(slot - j0(2 * math.pi * fd * 14 * T)) < 0.06  # 0.68: far from both 1 and a jump's 0
    two = _corr(h[:, 0, 0], h[:, 2, 0])
    assert abs(two - j0(2 * math.pi * fd * 28 * T)) < 0.06


def test_a_speed_ramp_gives_the_doppler_it_claims():
    """Within each slot of a 5 -> 35 m/s ramp the correlation between symbols 0 and 13, inverted through J0,
    gives the slot's maximum Doppler v_t f_c / c."""
    sc, frames, h = _frames("{ ramp = [5.0, 35.0] }", 3, 1500, seed=3)
    T = sc.symbol_duration
    for t, f in enumerate(frames):
        assert abs(f.speed - (5.0 + 15.0 * t)) < 1e-9
        rho = _corr(h[:, t, 0], h[:, t, 13])
        x = brentq(lambda z, r=rho: j0(z) - r, 0.0, 2.4)  # J0 is monotone on [0, 2.4]
        fd_est = x / (2 * math.pi * 13 * T)
        assert abs(fd_est - f.doppler_hz) < 0.15 * f.doppler_hz + 5.0, (t, fd_est, f.doppler_hz)


def test_a_profile_switch_draws_new_paths_and_a_speed_change_keeps_them():
    text = TINY.format(slots=2, speed=20.0) + """
[[segment]]
slots = 2
speed = 5.0
[[segment]]
slots = 2
channel = "tdl-a"
speed = 5.0
"""
    sc = parse_scenario(text, default_name="t")
    fr = list(sc.frames(6, batch_size=1500, generator=torch.Generator().manual_seed(1)))
    h = [f.state["h_freq"][:, 0, 0, 0, 0].to(torch.complex128) for f in fr]
    assert fr[1].channel is fr[2].channel and fr[3].channel is not fr[4].channel
    assert _corr(h[1][:, -1], h[2][:, 0]) > 0.95  # speed change: same paths, continuous
    assert abs(_corr(h[3][:, -1], h[4][:, 0])) < 0.1  # new profile: independent paths


@pytest.mark.parametrize("profile", ["tdl-b", "tdl-d"])
def test_closed_form_covariances_match_monte_carlo(profile):
    v = 30.0
    ch = OFDMChannel(profile, fft_size=32, num_ofdm_symbols=14, subcarrier_spacing=SCS, delay_spread=100e-9,
                     carrier_frequency=FC, speed=v, num_rx_ant=2, normalize="none")
    mc = ch.covariances(num_draws=3000, seed=2)
    cf = tdl_covariances(_traj(profile), v, num_ofdm_symbols=14, symbol_duration=ch.ofdm_symbol_duration)
    for a, b in zip(mc, cf, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 0.06


def test_sos_correlation_tends_to_j0():
    x = np.linspace(0, 3, 7)
    rho = sos_time_correlation(x, 2 * np.pi / 20 * (np.arange(1, 21) - 0.5))
    assert np.max(np.abs(rho.real - j0(x))) < 0.01 and np.max(np.abs(rho.imag)) < 1e-9


def test_bad_profile_is_refused():
    with pytest.raises(ConfigError, match="channel"):
        _traj("cdl-c")
