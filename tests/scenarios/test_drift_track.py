"""Scenario ``drift`` (meta-learned tracking on a drift scenario's frame sequences): the tracker learns the
drift correlation it is not told, the training batch reproduces the drift run's signals, bad scenarios are
refused with the field named, and a scenario file the package does not ship meta-trains and runs from the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.adaptation import MetaConfig, MetaTrainer
from metacomm.adaptation.tracking import tap_conv_matrix
from metacomm.cli.main import main
from metacomm.scenarios import make_scenario

DATA = os.path.join(os.path.dirname(__file__), "data")
K4N4 = os.path.join(DATA, "drift_k4n4.toml")  # rho = 0.9, 2 taps, k = 4, n = 4


def _write(tmp_path, name, body):
    p = tmp_path / name
    p.write_text(body)
    return str(p)


_BASE = """ebno_db = 8.0
[codec]
k = {k}
n = {n}
[[segment]]
frames = 50
channel = "{channel}"
{extra}
[segment.drift]
process = "gauss-markov"
rho = {rho}
"""


def test_learned_a_approaches_the_true_rho_it_is_not_told(tmp_path):
    # One-tap AR(1) channel, rho = 0.95; the tracker starts at a = 0.5 and only sees frame sequences.
    f = _write(tmp_path, "ar1.toml", _BASE.format(k=3, n=4, channel="rayleigh", extra="", rho=0.95))
    sc = make_scenario("drift", drift=f, encoder="fixed", hidden=8, pilots=2, query=16, frames_per_task=16,
                       rho_init=0.5, decision_directed=False)
    assert sc.num_taps == 1
    model = sc.build_model(0)
    torch.manual_seed(0)
    cfg = MetaConfig(algo="maml", inner_steps=0, inner_lr=0.0, outer_lr=0.1, meta_batch=8)
    tr = MetaTrainer(model, sc.objective, sc.sample_tasks, cfg, seed=0)
    enc0 = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    tr.train(60, progress=False)
    a, q, p0 = (t.detach() for t in model.tracker.params())
    assert abs(float(a[0]) - 0.95) < 0.03, a
    # the stationary process: q = (1 - rho^2) p0 with p0 = 1 (Rayleigh, unit power)
    assert abs(float(q[0]) - (1 - 0.95 ** 2)) < 0.04, q
    # encoder="fixed": only the tracker learned
    assert all(torch.equal(enc0[n], p) for n, p in model.encoder.named_parameters())


def test_training_signals_equal_the_channels_own_output():
    """The loss's received samples (taps in the receiver's window, truncated convolution) are what the drift
    timeline's channel produces for the same state, codewords and noise."""
    sc = make_scenario("drift", drift=K4N4, encoder="fixed", pilots=2, query=3, frames_per_task=4)
    model = sc.build_model(0)
    b = sc.sample_tasks(2, torch.Generator().manual_seed(1)).query
    seg = sc.drift.segments[0]
    for i in range(2):
        y = sc.objective._rx(model, b["msg_p"][i], b["w_p"][i], b["taps"][i], b["no"][i])
        for t in range(4):
            x = model.encoder.forward_index(b["msg_p"][i, t])
            ref = seg.channel(x, b["no"][i, t].expand(2), state={"taps": b["taps"][i, t].expand(2, -1)},
                              noise=b["w_p"][i, t])
            assert torch.allclose(y[t], ref, atol=1e-5)


def test_tracked_decisions_equal_an_independent_kalman_plus_ml():
    """With the tracker set to the true drift model, `evaluate` decides exactly what a numpy Kalman filter +
    ML over the codebook at the filtered mean decides."""
    sc = make_scenario("drift", drift=K4N4, encoder="fixed", test_frames=6, num_test_sequences=2,
                       decision_directed=False)
    model = sc.build_model(0).double()
    rho, p0 = 0.9, 0.5
    with torch.no_grad():
        model.tracker.a_logit.fill_(float(np.log(rho / (1 - rho))))
        model.tracker.q_raw.fill_(float(np.log(np.expm1((1 - rho ** 2) * p0))))
        model.tracker.p0_raw.fill_(float(np.log(np.expm1(p0))))
    sc.test_taps = sc.test_taps.to(torch.complex128)
    sc.test_no = sc.test_no.double()
    from metacomm.adaptation import params_of
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    e, n = sc.evaluate(params_of(model), model, pilots=1, steps=[0], generator=g1, test_blocks=12)[0]
    book, msg_p, y_p, msg_d, y_d, mask = sc._test_signals(model, 1, 12, g2)
    tmpl = model.decoder.template_symbols().detach().numpy()
    errs = 0
    for c in range(2):
        m, P = np.zeros(2, complex), np.eye(2) * p0
        for t in range(6):
            m, P = rho * m, rho ** 2 * P + np.eye(2) * (1 - rho ** 2) * p0
            X = tap_conv_matrix(torch.from_numpy(tmpl[msg_p[c, t].numpy()]), 2).reshape(-1, 2).numpy()
            no = float(sc.test_no[c, t])
            S = X @ P @ X.conj().T + no * np.eye(X.shape[0])
            K = P @ X.conj().T @ np.linalg.inv(S)
            m = m + K @ (y_p[c, t].reshape(-1).numpy() - X @ m)
            P = (np.eye(2) - K @ X) @ P
            images = tap_conv_matrix(torch.from_numpy(tmpl), 2).numpy() @ m  # [M, n]
            dec = (np.abs(y_d[c, t].numpy()[:, None, :] - images[None]) ** 2).sum(-1).argmin(-1)
            errs += int(((dec != msg_d[c, t].numpy()) & mask[t].numpy()).sum())
    assert (e, n) == (float(errs), 24.0)


@pytest.mark.parametrize("body, field, what", [
    (_BASE.format(k=13, n=13, channel="multipath", extra="[segment.channel_args]\nnum_taps = 2\nmode = \"truncate\"",
                  rho=0.9), "drift", "k must be <= 12"),
    (_BASE.format(k=4, n=4, channel="multipath", extra="[segment.channel_args]\nnum_taps = 2\nmode = \"full\"",
                  rho=0.9), "drift", "cannot model"),
    # a PA behind the fading channel (y = f(h x) + w) is a nonlinearity the tracker cannot model (tx is modelled)
    (_BASE.format(k=4, n=4, channel="multipath", extra="[segment.channel_args]\nnum_taps = 2\nmode = \"truncate\"\n"
                  "[segment.impairment]\nkind = \"rapp\"\nposition = \"rx\"\n[segment.impairment.params]\n"
                  "smoothness = 2.0", rho=0.9), "drift", "'rapp' PA at position = \"rx\""),
])
def test_scenarios_the_receiver_cannot_model_are_refused(tmp_path, body, field, what):
    f = _write(tmp_path, "bad.toml", body)
    with pytest.raises(ConfigError, match=what) as ei:
        make_scenario("drift", drift=f)
    assert ei.value.field == field


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError) as ei:
        make_scenario("drift", drift=K4N4, num_taps=1)  # the 2-tap channel does not fit a 1-tap window
    assert ei.value.field == "num_taps"
    with pytest.raises(ConfigError) as ei:
        make_scenario("drift", drift=K4N4, encoder="shipped")
    assert ei.value.field == "encoder"
    with pytest.raises(ConfigError) as ei:
        make_scenario("drift", drift="no-such-scenario")
    assert ei.value.field == "drift"


def test_cli_meta_trains_and_runs_a_scenario_file_the_package_does_not_ship(tmp_path, capsys):
    ck = str(tmp_path / "ck.pt")
    rc = main(["meta-train", "--scenario", "drift", "--set", f"drift={K4N4}", "--set", "pilots=2",
               "--set", "frames_per_task=4", "--set", "query=8", "--set", "hidden=8", "--meta-steps", "3",
               "--meta-batch", "2", "--val-every", "3", "--val-tasks", "2", "--out", ck, "--quiet"])
    assert rc == 0
    saved = torch.load(ck, weights_only=True)
    assert saved["scenario"] == "drift" and saved["meta_config"]["inner_steps"] == 0
    assert saved["joint_steps"] == 0
    out = str(tmp_path / "run")
    rc = main(["drift", "--scenario", K4N4, "--checkpoint", ck, "--frames", "4", "--pilots", "2", "--links", "2",
               "--payload", "8", "--schemes", "meta,warm,track,pilot-ls,genie", "--out", out, "--quiet"])
    assert rc == 0
    res = json.load(open(os.path.join(out, "results.json")))
    for s in ("meta", "warm", "track", "pilot-ls", "genie"):
        assert res["summary"][s]["blocks"] == 4 * 2 * 8
    assert res["config"]["checkpoint_meta"]["scenario"] == "drift"
    # the tracker needs a tracking codec: the shipped online-drift checkpoint has none
    rc = main(["drift", "--scenario", "doppler-slow", "--frames", "2", "--schemes", "track",
               "--out", str(tmp_path / "r2"), "--quiet"])
    assert rc == 2
    assert "track" in capsys.readouterr().err


def test_decision_directed_update_equals_kalman_with_the_payload_as_pilots():
    """At high SNR every payload decision is right and confident: the decision-directed belief is then the Kalman
    posterior that also used the payload blocks (true messages) as pilots, frame after frame (numpy reference)."""
    from metacomm.scenarios.drift_track import TrackingDriftCodec, track_frames

    torch.manual_seed(0)
    model = TrackingDriftCodec(3, 4, 2, hidden=8, rho_init=0.8, decision_directed=True, dd_threshold=0.5,
                               dd_redecode=True).double()
    model.reset_parameters(torch.Generator().manual_seed(1))
    model = model.double()
    g = torch.Generator().manual_seed(2)
    F, P, N = 5, 1, 6
    tmpl = model.decoder.template_symbols().detach()
    msg_p = torch.randint(0, 8, (F, P), generator=g)
    msg_d = torch.randint(0, 8, (F, N), generator=g)
    no = torch.full((F,), 1e-4, dtype=torch.float64)
    h = torch.randn(F, 2, dtype=torch.complex128, generator=g)
    T = tap_conv_matrix(tmpl, 2)  # [M, n, L]
    noise = lambda *s: 1e-2 * torch.randn(*s, dtype=torch.complex128, generator=g)  # noqa: E731
    y_p = torch.einsum("fpnl,fl->fpn", T[msg_p], h) + noise(F, P, 4)
    y_d = torch.einsum("fpnl,fl->fpn", T[msg_d], h) + noise(F, N, 4)
    with torch.no_grad():
        logits, (m_t, P_t) = track_frames(model, msg_p, y_p, y_d, no)
    assert torch.equal(logits.argmax(-1), msg_d)
    a, q, p0 = (t.detach().numpy() for t in model.tracker.params())
    m, Pm = np.zeros(2, complex), np.diag(p0).astype(complex)
    for t in range(F):
        m, Pm = a * m, np.diag(a) @ Pm @ np.diag(a) + np.diag(q)
        for rows_msg, y in ((msg_p[t], y_p[t]), (msg_d[t], y_d[t])):
            X = T[rows_msg].reshape(-1, 2).numpy()
            S = X @ Pm @ X.conj().T + float(no[t]) * np.eye(X.shape[0])
            K = Pm @ X.conj().T @ np.linalg.inv(S)
            m = m + K @ (y.reshape(-1).numpy() - X @ m)
            Pm = (np.eye(2) - K @ X) @ Pm
    np.testing.assert_allclose(m_t.numpy(), m, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(P_t.numpy(), Pm, rtol=1e-5, atol=1e-12)


_IQ = """ebno_db = 12.0
[codec]
k = 4
n = {n}
[[segment]]
frames = 40
channel = "{channel}"
{extra}
[segment.drift]
process = "gauss-markov"
rho = 0.95
[segment.impairment]
kind = "iq-imbalance"
position = "{position}"
[segment.impairment.params]
epsilon = {{ ramp = [0.0, 0.3] }}
delta_deg = 20.0
"""


@pytest.mark.parametrize("name", ["regime-switch", "iq-drift", "rx-iq", "tx-iq-multipath"])
def test_probed_channel_equals_the_frames_own_channel(tmp_path, name):
    """The exact per-frame channel ``y = A x + B conj(x)`` (probed from the timeline) reproduces the frame's
    noiseless channel output (impairment stage + fading, the channel classes' own code) for random blocks, in every
    segment of a regime switch and for IQ imbalance at the transmitter or the receiver."""
    if name == "rx-iq":
        name = _write(tmp_path, "rx.toml", _IQ.format(n=4, channel="rayleigh", extra="", position="rx"))
    elif name == "tx-iq-multipath":
        name = _write(tmp_path, "tx.toml", _IQ.format(
            n=4, channel="multipath", extra="[segment.channel_args]\nnum_taps = 2\nmode = \"truncate\"",
            position="tx"))
    sc = make_scenario("drift", drift=name, pilots=2)
    assert sc._exact and sc.widely_linear
    g = torch.Generator().manual_seed(3)
    n, B = sc.n, 3
    every = max(1, sc.drift.num_frames // 12)
    checked = set()
    for fr in sc.drift.frames(sc.drift.num_frames, batch_size=B, generator=g, num_symbols=n):
        if fr.index % every:
            continue
        A, Bm = sc._probe(fr, B)
        x = torch.complex(torch.randn(B, n, generator=g), torch.randn(B, n, generator=g))
        # noiseless (a receiver-side impairment also acts on the noise: the training signals add it after)
        w = torch.zeros(B, fr.channel.output_length(n), dtype=torch.complex64)
        ref = fr.channel(x, fr.no, state=fr.state, noise=w)[:, :n]
        y = (A @ x[..., None])[..., 0] + (Bm @ x.conj()[..., None])[..., 0]
        assert torch.allclose(y, ref, atol=1e-5), (fr.index, (y - ref).abs().max())
        checked.add(fr.segment)
    assert checked == set(range(len(sc.drift.segments)))


def test_widely_linear_regressor_and_tracker():
    """``regressor_matrix(widely_linear=True)`` is ``[T(x), T(conj x)]``; the widely-linear tracker's belief
    covers 2L coefficients and, fed noiseless pilots of a known ``y = h x + g conj(x)``, recovers (h, g)."""
    from metacomm.adaptation.tracking import KalmanTracker, regressor_matrix
    g = torch.Generator().manual_seed(0)
    x = torch.complex(torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g))
    R = regressor_matrix(x, 2, 0, widely_linear=True)
    assert R.shape == (5, 4, 4)
    assert torch.equal(R[..., :2], tap_conv_matrix(x, 2)) and torch.equal(R[..., 2:], tap_conv_matrix(x.conj(), 2))
    tr = KalmanTracker(1, widely_linear=True, rho=0.5, p0=1.0)
    assert tr.dim == 2 and tr.params()[2].shape == (2,)
    h, gg = torch.tensor(0.8 - 0.3j), torch.tensor(0.2 + 0.1j)
    sym = torch.complex(torch.randn(1, 8, 1, generator=g), torch.randn(1, 8, 1, generator=g))
    y = h * sym + gg * sym.conj()
    m, P = tr.init((1,))
    with torch.no_grad():
        m, P = tr.step(m, P, sym, y, torch.tensor([1e-6]))
    assert torch.allclose(m[0], torch.stack([h, gg]), atol=1e-3), m


def test_regime_switch_and_iq_drift_tasks_use_the_exact_channel():
    """regime-switch (4 segments, an IQ-imbalanced device in the last) and iq-drift (k = 4, n = 1) are accepted:
    widely-linear tracker, sequences from random starts (they cover later segments), the window clipped to the
    lags that reach an 8-sample block."""
    sc = make_scenario("drift", drift="regime-switch", pilots=4, query=4, frames_per_task=3)
    assert sc.widely_linear and sc.start == "random" and sc.precursor <= sc.n - 1
    assert sc.num_taps - sc.precursor <= sc.n
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(6):
        b = sc.sample_tasks(2, g).support
        assert set(b) >= {"A", "B"} and b["A"].shape == (2, 3, 8, 8)
        starts.add(round(float(b["A"].abs().sum()), 3))
    assert len(starts) == 6
    m = sc.build_model(0)
    assert m.tracker.widely_linear and m.tracker.dim == 2 * sc.num_taps
    loss, st = sc.objective.loss(m, {k: v[0] for k, v in b.items()})
    assert torch.isfinite(loss) and float(st["blocks"]) == 12
    iq = make_scenario("drift", drift="iq-drift", pilots=4)
    assert (iq.k, iq.n, iq.num_taps) == (4, 1, 1) and iq.widely_linear and iq.encoder_mode == "train"
    assert make_scenario("drift", drift="doppler-slow").start == "first"  # stationary: unchanged


def test_cli_meta_trains_and_runs_an_iq_imbalanced_regime_switch_file(tmp_path):
    """A user's file with two segments (multipath, then flat Rayleigh behind a receiver IQ imbalance) meta-trains a
    widely-linear tracker from the CLI and runs with it, next to widely-linear LS, on the same draws."""
    body = """ebno_db = 10.0
[codec]
k = 3
n = 2
[[segment]]
frames = 6
channel = "multipath"
channel_args = { num_taps = 2, mode = "truncate" }
drift = { process = "gauss-markov", rho = 0.9 }
[[segment]]
frames = 6
channel = "rayleigh"
drift = { process = "gauss-markov", rho = 0.9 }
[segment.impairment]
kind = "iq-imbalance"
position = "rx"
[segment.impairment.params]
epsilon = 0.2
delta_deg = 10.0
"""
    f = _write(tmp_path, "user.toml", body)
    ck = str(tmp_path / "ck.pt")
    assert main(["meta-train", "--scenario", "drift", "--set", f"drift={f}", "--set", "pilots=2",
                 "--set", "frames_per_task=4", "--set", "query=4", "--set", "hidden=8", "--meta-steps", "3",
                 "--meta-batch", "2", "--val-every", "3", "--val-tasks", "2", "--out", ck, "--quiet"]) == 0
    out = str(tmp_path / "run")
    assert main(["drift", "--scenario", f, "--checkpoint", ck, "--frames", "12", "--pilots", "2", "--links", "2",
                 "--payload", "4", "--schemes", "track,wl-ls,genie", "--out", out, "--quiet"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert all(res["summary"][s]["blocks"] == 12 * 2 * 4 for s in ("track", "wl-ls", "genie"))
    sc = make_scenario("drift", drift=f, pilots=2)
    assert sc.widely_linear and sc.start == "random" and (sc.num_taps, sc.precursor) == (2, 0)
