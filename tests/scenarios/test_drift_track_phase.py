"""The tracker's receiver phase-noise model (a per-frame belief over per-position taps with a learned Wiener
variance): it reduces to the fixed-tap tracker without phase noise, it recovers known phase paths on noiseless
blocks, and a phase-noise file meta-trains and runs from the CLI next to the per-position classical receivers."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch

from metacomm.adaptation.tracking import (
    gaussian_block_logits,
    phase_block_logits,
    phase_frame_update,
    phase_prior,
    regressor_matrix,
    tracker_update,
)
from metacomm.cli.main import main
from metacomm.scenarios import make_scenario

_PN_FILE = """ebno_db = 12.0
[codec]
k = 4
n = 4
[[segment]]
frames = 40
channel = "multipath"
channel_args = { num_taps = 2, mode = "truncate" }
drift = { process = "gauss-markov", rho = 0.95 }
[segment.impairment]
kind = "phase-noise"
position = "rx"
[segment.impairment.params]
variance = 0.05
"""

c128 = torch.complex128


def _crandn(*shape, g):
    return torch.randn(*shape, dtype=c128, generator=g)


def test_zero_phase_variance_is_the_fixed_tap_update_and_decision():
    g = torch.Generator().manual_seed(1)
    L, n, B, M = 3, 6, 5, 7
    m = _crandn(L, g=g)
    A = _crandn(L, L, g=g)
    P = A @ A.conj().T / L + 0.1 * torch.eye(L, dtype=c128)
    x = _crandn(B, n, g=g)
    y = _crandn(B, n, g=g)
    no = torch.tensor(0.2, dtype=torch.float64)
    Mv, C = phase_prior(m, P, torch.tensor(0.0, dtype=torch.float64), n)
    Mv, C = phase_frame_update(Mv, C, regressor_matrix(x, L), y, no)
    # the fixed-tap posterior, by the textbook formula (independent of tracker_update's form)
    X = regressor_matrix(x, L).reshape(B * n, L)
    S = X @ P @ X.conj().T + no * torch.eye(B * n, dtype=c128)
    K = P @ X.conj().T @ torch.linalg.inv(S)
    m_ref = m + K @ (y.reshape(-1) - X @ m)
    P_ref = P - K @ X @ P
    for i in range(n):  # every position carries the same taps, position 0's marginal is the posterior
        assert torch.allclose(Mv.reshape(n, L)[i], m_ref, atol=1e-9)
    assert torch.allclose(C[:L, :L], P_ref, atol=1e-9)
    m2, P2 = tracker_update(m, P, X, y.reshape(-1), no)
    assert torch.allclose(m2, m_ref, atol=1e-9) and torch.allclose(P2, P_ref, atol=1e-9)
    tmpl = _crandn(M, n, g=g)
    yd = _crandn(4, n, g=g)
    assert torch.allclose(phase_block_logits(yd, regressor_matrix(tmpl, L), Mv, no),
                          gaussian_block_logits(yd, tmpl, m_ref, no), atol=1e-8)


def test_phase_prior_moments_are_the_wiener_closed_form():
    # E[g_i] = exp(-s2 i / 2), E[g_i g_k^*] = exp(-s2 |i - k| / 2), checked by simulating the Wiener path
    g = torch.Generator().manual_seed(2)
    n, s2 = 5, 0.3
    m = torch.tensor([1.0 + 0.5j], dtype=c128)
    P = torch.tensor([[0.4 + 0j]], dtype=c128)
    Mv, C = phase_prior(m, P, torch.tensor(s2, dtype=torch.float64), n)
    N = 400000
    phi = torch.cat([torch.zeros(N, 1, dtype=torch.float64),
                     torch.cumsum(math.sqrt(s2) * torch.randn(N, n - 1, generator=g, dtype=torch.float64), 1)], 1)
    h = m + math.sqrt(0.4) * _crandn(N, 1, g=g)  # CN(m, 0.4) (complex randn has unit variance)
    H = torch.exp(1j * phi) * h  # [N, n]
    assert torch.allclose(Mv, H.mean(0), atol=0.01)
    Hc = H - H.mean(0)
    assert torch.allclose(C, Hc.T @ Hc.conj() / N, atol=0.02)


def _noiseless_fit(phi, g):
    L, n, B = 2, 8, 16
    h = _crandn(L, g=g)
    x = torch.exp(1j * (math.pi / 2) * torch.randint(0, 4, (B, n), generator=g)).to(c128)  # QPSK-like pilots
    T = regressor_matrix(x, L)
    y = torch.exp(1j * phi).to(c128) * (T @ h)
    m0, P0 = torch.zeros(L, dtype=c128), torch.eye(L, dtype=c128)
    Mv, _ = phase_prior(m0, P0, torch.tensor(0.1, dtype=torch.float64), n)
    _, C = phase_prior(m0, P0, torch.tensor(0.1, dtype=torch.float64), n)
    Mv, C = phase_frame_update(Mv, C, T, y, torch.tensor(1e-8, dtype=torch.float64))
    return h, Mv.reshape(n, L)


def test_recovers_a_known_phase_ramp_and_a_constant_phase_on_noiseless_blocks():
    g = torch.Generator().manual_seed(3)
    n = 8
    ramp = 0.25 * torch.arange(n, dtype=torch.float64)  # phi_0 = 0, 0.25 rad per symbol
    h, H = _noiseless_fit(ramp, g)
    # (position i sees the causal taps 0..i only: tap 1 never reaches position 0 of a truncated block)
    for i in range(n):
        k = min(i + 1, 2)
        assert torch.allclose(H[i, :k], torch.exp(1j * ramp[i]) * h[:k], atol=1e-4)
    const = torch.full((n,), 0.7, dtype=torch.float64)  # a common phase: absorbed in the taps
    h, H = _noiseless_fit(const, g)
    for i in range(n):
        k = min(i + 1, 2)
        assert torch.allclose(H[i, :k], np.exp(0.7j) * h[:k], atol=1e-4)


def test_tracker_with_a_vanishing_phase_variance_decides_as_the_fixed_tap_tracker():
    from metacomm.scenarios.drift_track import TrackingDriftCodec, track_frames
    g = torch.Generator().manual_seed(4)
    model = TrackingDriftCodec(4, 3, 2, hidden=8, phase_correction=True).double()
    model.reset_parameters(g)
    with torch.no_grad():
        model.tracker.pn_raw.fill_(-40.0)  # s2 = softplus(-40) ~ 4e-18
        for name in ("a_logit", "q_raw", "p0_raw"):
            getattr(model.tracker, name).copy_(getattr(model.linear_tracker, name))
    F, P_, N = 5, 2, 6
    msg_p = torch.randint(0, 16, (F, P_), generator=g)
    y_p = torch.randn(F, P_, 3, dtype=c128, generator=g)
    y_d = torch.randn(F, N, 3, dtype=c128, generator=g)
    no = torch.full((F,), 0.3, dtype=torch.float64)
    with torch.no_grad():
        lg, (m, P) = track_frames(model, msg_p, y_p, y_d, no)
        ref, (m_ref, P_ref) = track_frames(model, msg_p, y_p, y_d, no, linear=True)
    assert torch.allclose(lg, ref, atol=1e-6)
    assert torch.allclose(m, m_ref, atol=1e-8) and torch.allclose(P, P_ref, atol=1e-8)
    # a scenario without phase noise builds today's tracker (no pn_raw, no linear_tracker)
    m0 = make_scenario("drift", drift="doppler-slow", pilots=1).build_model(0)
    assert not m0.tracker.phase_noise and not hasattr(m0, "linear_tracker")


def test_cli_meta_trains_a_phase_noise_file_and_runs_it_next_to_the_per_position_receivers(tmp_path):
    f = tmp_path / "pn.toml"
    f.write_text(_PN_FILE)
    ck = str(tmp_path / "ck.pt")
    assert main(["meta-train", "--scenario", "drift", "--set", f"drift={f}", "--set", "pilots=2",
                 "--set", "frames_per_task=4", "--set", "query=4", "--set", "hidden=8", "--meta-steps", "3",
                 "--meta-batch", "2", "--val-every", "3", "--val-tasks", "2", "--set", "test_frames=4",
                 "--set", "num_test_sequences=2", "--out", ck, "--quiet"]) == 0
    saved = torch.load(ck, weights_only=True)
    assert "tracker.pn_raw" in saved["model"] and "linear_tracker.a_logit" in saved["model"]
    out = str(tmp_path / "run")
    schemes = ("track", "track-linear", "pilot-ls", "kalman", "pn-ls", "pn-kalman", "genie")
    assert main(["drift", "--scenario", str(f), "--checkpoint", ck, "--frames", "6", "--pilots", "2", "--links",
                 "2", "--payload", "4", "--schemes", ",".join(schemes), "--out", out, "--quiet"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert all(res["summary"][s]["blocks"] == 6 * 2 * 4 for s in schemes)
    sc = make_scenario("drift", drift=str(f), pilots=2)
    assert sc.phase_correction and not sc.widely_linear and not sc.pa_correction
