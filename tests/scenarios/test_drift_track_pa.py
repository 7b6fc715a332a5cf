"""Scenario ``drift`` with a transmitter PA: the learned memoryless correction f_theta (PACorrection) can represent
a Rapp curve, the corrected tracker is the linear Kalman recursion on f_theta(templates) (the linear one when
f_theta is the identity, and no correction at all without a PA), the exact PA map used for training is the
channel's own, a user's Rapp-PA file meta-trains and runs from the CLI next to the PA-aware classical receivers,
and a PA the receiver cannot model (behind the fading channel) gets one exit-2 line naming it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from metacomm.adaptation.tracking import PACorrection, pa_apply, pa_params, tap_conv_matrix
from metacomm.channels.impairments import RappPA, SalehPA
from metacomm.cli.main import main
from metacomm.scenarios import make_scenario

_RAPP_FILE = """ebno_db = 12.0
[codec]
k = 4
n = 2
[[segment]]
frames = 40
channel = "multipath"
channel_args = {{ num_taps = 2, mode = "truncate" }}
drift = {{ process = "gauss-markov", rho = 0.95 }}
[segment.impairment]
kind = "rapp"
position = "{position}"
[segment.impairment.params]
smoothness = 2.0
input_backoff_db = {{ ramp = [2.0, -4.0] }}
"""


def _tiny_meta_train(drift_file, ck: str, steps: int) -> int:
    """`metacomm meta-train --scenario drift` on ``drift_file`` at toy sizes (2 pilots, 4-frame tasks)."""
    return main(["meta-train", "--scenario", "drift", "--set", f"drift={drift_file}", "--set", "pilots=2",
                 "--set", "frames_per_task=4", "--set", "query=4", "--set", "hidden=8", "--meta-steps", str(steps),
                 "--meta-batch", "2", "--val-every", str(steps), "--val-tasks", "2", "--set", "test_frames=4",
                 "--set", "num_test_sequences=2", "--out", ck, "--quiet"])


def test_f_theta_represents_a_closed_form_rapp_curve():
    # fit f_theta's complex gain to the Rapp AM/AM (p = 2, A_sat = 1: IBO 0 dB; no AM/PM) on |x| in [0, 2.5] (the
    # shipped k = n = 8 codebook's samples: median 0.84, 99th percentile 2.04, max 2.59)
    torch.manual_seed(0)
    f = PACorrection(16)
    r = torch.linspace(0.0, 2.5, 101)
    target = (1 + r ** 4) ** -0.25  # |y| / |x| = (1 + (|x| / A)^(2p))^(-1/(2p))
    opt = torch.optim.Adam(f.parameters(), lr=0.03)
    for _ in range(1500):
        opt.zero_grad()
        loss = (f.gain(r ** 2) - target).abs().square().mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        g = f.gain(r ** 2)
        y = f(r.to(torch.complex64))
    assert float((g.abs() - target).abs().max()) < 0.01  # AM/AM gain within 0.01 of the closed form
    assert float((y.abs() - r * target).abs().max()) < 0.025  # output amplitude (saturation 1)
    assert float(g.angle().abs().max()) < 0.01  # no AM/PM (rad)
    assert float((g.abs() - 1).abs().max()) > 0.5  # (a curve far from the identity was learned)
    # identity at initialisation (the linear receiver until trained); unit small-signal gain always
    z = torch.randn(64, 8, dtype=torch.complex64)
    assert torch.equal(PACorrection(8)(z), z)
    assert torch.allclose(f.gain(torch.zeros(1)), torch.ones(1, dtype=torch.complex64))


@pytest.mark.parametrize("pa", [RappPA(2.0, input_backoff_db=-3.0), RappPA(1.0, saturation=0.7),
                                SalehPA(input_backoff_db=2.0), SalehPA(normalize_gain=False), None])
def test_pa_map_in_the_batch_equals_the_channels_own(pa):
    x = 1.3 * torch.randn(6, 5, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    ref = x if pa is None else pa.apply(x, None, {}, None, None)
    got = pa_apply(x, torch.tensor(pa_params(pa)).expand(6, 1, 1, 6))
    assert torch.allclose(got, ref, atol=1e-6)


def _numpy_track(tmpl, msg_p, y_p, y_d, no, a, q, p0, L):
    """Independent numpy Kalman filter (per frame predict, update on the pilots) + ML logits at the mean."""
    m, P = np.zeros(L, complex), np.diag(p0).astype(complex)
    out = []
    for t in range(msg_p.shape[0]):
        m, P = a * m, np.outer(a, a) * P + np.diag(q)
        X = tap_conv_matrix(torch.from_numpy(tmpl[msg_p[t]]), L).reshape(-1, L).numpy()
        S = X @ P @ X.conj().T + no[t] * np.eye(X.shape[0])
        K = P @ X.conj().T @ np.linalg.inv(S)
        m = m + K @ (y_p[t].reshape(-1) - X @ m)
        P = (np.eye(L) - K @ X) @ P
        images = tap_conv_matrix(torch.from_numpy(tmpl), L).numpy() @ m
        out.append(-(np.abs(y_d[t][:, None, :] - images[None]) ** 2).sum(-1) / no[t])
    return np.stack(out)


def test_corrected_tracker_is_the_linear_kalman_recursion_on_f_theta_of_the_templates():
    # (imported here: importing the drift pack at collection would change the scenario registry's order)
    from metacomm.scenarios.drift_track import TrackingDriftCodec, track_frames
    g = torch.Generator().manual_seed(3)
    model = TrackingDriftCodec(4, 3, 2, hidden=8, pa_correction=True).double()
    model.reset_parameters(g)
    F, P_, N = 5, 2, 6
    msg_p = torch.randint(0, 16, (F, P_), generator=g)
    y_p = torch.randn(F, P_, 3, dtype=torch.complex128, generator=g)
    y_d = torch.randn(F, N, 3, dtype=torch.complex128, generator=g)
    no = torch.full((F,), 0.3, dtype=torch.float64)
    a, q, p0 = (t.detach().numpy() for t in model.tracker.params())
    tmpl = model.decoder.template_symbols().detach().numpy()
    with torch.no_grad():
        # f_theta = identity at init: the corrected tracker decides exactly as the linear recursion on the templates
        lg, _ = track_frames(model, msg_p, y_p, y_d, no)
        ref = _numpy_track(tmpl, msg_p.numpy(), y_p.numpy(), y_d.numpy(), no.numpy(), a, q, p0, 2)
        assert np.allclose(lg.numpy(), ref, atol=1e-8)
        # a non-trivial f_theta (amplitude-dependent gain and phase): the same recursion on f_theta(templates)
        model.pa.out.weight.copy_(torch.randn(2, 16, generator=g, dtype=torch.float64) * 0.3)
        ft = model.pa(model.decoder.template_symbols()).numpy()
        assert not np.allclose(ft, tmpl)
        lg, _ = track_frames(model, msg_p, y_p, y_d, no)
        ref = _numpy_track(ft, msg_p.numpy(), y_p.numpy(), y_d.numpy(), no.numpy(), a, q, p0, 2)
        assert np.allclose(lg.numpy(), ref, atol=1e-8)
    # without a PA in the scenario there is no correction: the codec is today's linear tracker
    sc = make_scenario("drift", drift="doppler-slow", pilots=1)
    m0 = sc.build_model(0)
    assert not hasattr(m0, "pa") and not hasattr(m0, "linear_tracker")
    assert make_scenario("drift", drift="pa-drift", pilots=16).build_model(0).pa is not None


def test_cli_meta_trains_a_rapp_pa_file_and_runs_it_next_to_the_pa_aware_receivers(tmp_path):
    f = tmp_path / "pa.toml"
    f.write_text(_RAPP_FILE.format(position="tx"))
    ck = str(tmp_path / "ck.pt")
    assert _tiny_meta_train(f, ck, steps=3) == 0
    saved = torch.load(ck, weights_only=True)
    assert saved["scenario"] == "drift"
    out = str(tmp_path / "run")
    schemes = ("track", "track-linear", "pilot-ls", "kalman", "pa-ls", "pa-kalman", "genie")
    assert main(["drift", "--scenario", str(f), "--checkpoint", ck, "--frames", "6", "--pilots", "2", "--links",
                 "2", "--payload", "4", "--schemes", ",".join(schemes), "--out", out, "--quiet"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert all(res["summary"][s]["blocks"] == 6 * 2 * 4 for s in schemes)
    sc = make_scenario("drift", drift=str(f), pilots=2)
    assert sc.has_pa and sc.pa_correction and sc.start == "random" and not sc.widely_linear


def test_a_pa_behind_the_channel_is_refused_with_one_exit_2_line(tmp_path, capsys):
    f = tmp_path / "rx.toml"
    f.write_text(_RAPP_FILE.format(position="rx"))
    rc = main(["meta-train", "--scenario", "drift", "--set", f"drift={f}", "--meta-steps", "1",
               "--out", str(tmp_path / "ck.pt"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'rapp' PA at position = \"rx\"" in err and "cannot model" in err
    # a drift run of a tracker on that file is refused the same way (no silent mismatched-model numbers); the
    # classical receivers still run on it
    out = tmp_path / "run"
    base = ["drift", "--scenario", str(f), "--frames", "2", "--pilots", "2", "--links", "1", "--payload", "4",
            "--quiet"]
    tx = tmp_path / "tx.toml"
    tx.write_text(_RAPP_FILE.format(position="tx"))
    ck = str(tmp_path / "tx.pt")
    assert _tiny_meta_train(tx, ck, steps=1) == 0
    capsys.readouterr()
    rc = main([*base, "--checkpoint", ck, "--schemes", "track,pilot-ls", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "scheme 'track'" in err and "cannot model" in err, err
    assert not (out / "results.json").exists()
    assert main([*base, "--checkpoint", ck, "--schemes", "pilot-ls,genie", "--out", str(tmp_path / "cls")]) == 0


def test_pa_drift_defaults_run_the_shipped_pa_tracker_and_every_baseline(tmp_path):
    from metacomm.experiments.drift import DriftConfig
    from metacomm.experiments.drift_session import DriftSession
    from metacomm.scenarios.drift_scenarios import load_scenario

    def defaults(cfg):  # what run_drift_experiment resolves schemes=None to: the loaded scenario's and codec's
        return DriftSession.open(load_scenario(cfg.scenario), cfg.checkpoint, "cpu").scheme_list(None)[0]

    cfg = DriftConfig(scenario="pa-drift", out=str(tmp_path / "o")).validate()
    assert cfg.checkpoint.endswith("drift_track_pa-drift_p16.pt")
    for s in ("track", "track-linear", "pilot-ls", "kalman", "pa-ls", "pa-kalman", "genie"):
        assert s in defaults(cfg)
    plain = DriftConfig(scenario="doppler-slow", pilots=1, out=str(tmp_path / "p")).validate()
    assert not {"track-linear", "pa-ls", "pa-kalman"} & set(defaults(plain))
