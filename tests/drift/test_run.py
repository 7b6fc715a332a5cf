"""Drift runs: common random numbers across schemes, genie vs an independent ML recomputation, outputs."""

import json
import os

import numpy as np
import pytest
import torch

from metacomm import ConfigError
from metacomm.drift.run import plot_drift, run_drift
from metacomm.scenarios.drift_scenarios import load_scenario
from metacomm.scenarios.online_drift import DriftAutoencoder, load_meta

torch.set_num_threads(1)
CKPT = os.path.join(os.path.dirname(__file__), "..", "..", "metacomm", "checkpoints", "online_drift_k8n8.pt")


def _model():
    m = DriftAutoencoder(k=8, n=8, num_taps=3, hidden=16)
    m.reset_parameters(torch.Generator().manual_seed(0))
    return m


def _record(store):
    def hook(frame, sig):
        store.append(({k: v.clone() for k, v in frame.state.items()}, frame.no.clone(),
                      {k: v.clone() for k, v in sig.items()}))
    return hook


def test_common_random_numbers_and_independent_genie(tmp_path):
    sc = load_scenario("doppler-fast")
    model = _model()
    a, b = [], []
    ra = run_drift(sc, model, frames=3, pilots=8, links=2, payload=16, schemes=["genie"], seed=5, on_frame=_record(a))
    rb = run_drift(sc, model, frames=3, pilots=8, links=2, payload=16, schemes=["static", "meta", "pilot-ls", "genie"],
                   seed=5, on_frame=_record(b))
    for (sa, na, ga), (sb, nb, gb) in zip(a, b, strict=True):
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)
        torch.testing.assert_close(na, nb, rtol=0, atol=0)
        for k in ga:
            torch.testing.assert_close(ga[k], gb[k], rtol=0, atol=0)
    assert ra.series("genie", "block_errors") == rb.series("genie", "block_errors")
    # Independent genie: numpy convolution of every codeword with the frame's taps, ML by exhaustive search.
    book = model.encoder.codebook().detach().numpy()
    for (state, _no, sig), f in zip(b, rb.frames, strict=True):
        key = next(k for k in state if k.endswith("taps"))
        taps = state[key].numpy()
        y = sig["y_d"].numpy()
        errs = 0
        e_rx = e_tx = 0.0
        for link in range(taps.shape[0]):
            imgs = np.stack([np.convolve(c, taps[link])[:8] for c in book])  # [M, 8]
            e_rx += (np.abs(imgs[sig["msg_d"][link].numpy()]) ** 2).sum() / taps.shape[0]
            e_tx += (np.abs(book[sig["msg_d"][link].numpy()]) ** 2).sum() / taps.shape[0]
            d = (np.abs(y[link][:, None, :] - imgs[None]) ** 2).sum(-1)
            errs += int((d.argmin(-1) != sig["msg_d"][link].numpy()).sum())
        assert errs == f["schemes"]["genie"]["block_errors"]
        # the plotted drift quantity: channel power gain of the link-mean, noise-free payload energies
        assert f["gain_db"]["mean"] == pytest.approx(10 * np.log10(e_rx / e_tx), abs=1e-4)
        assert f["gain_db"]["p10"] <= f["gain_db"]["p90"]


def test_outputs_and_plot(tmp_path):
    sc = load_scenario("doppler-slow")
    res = run_drift(sc, _model(), frames=4, pilots=4, links=2, payload=8, retrain_steps=3, retrain_every=2,
                    schemes=["static", "retrain", "meta", "warm", "online-meta", "pilot-ls", "genie"], seed=1)
    pj, pc = res.save(tmp_path)
    d = json.loads(pj.read_text())
    assert set(d) == {"format", "config", "frames", "summary"} and d["format"] == "metacomm-drift/1"
    assert len(d["frames"]) == 4 and "genie-1dB" in d["summary"]
    assert d["summary"]["meta"]["blocks"] == 4 * 2 * 8
    lines = pc.read_text().strip().splitlines()
    assert len(lines) == 1 + 4 * 8
    assert plot_drift(res, tmp_path / "d.png").stat().st_size > 1000
    assert "mean BLER" in res.summary_table()


def test_bad_arguments():
    sc = load_scenario("doppler-fast")
    # the library names its keys (the CLI maps them to flags)
    with pytest.raises(ConfigError, match="^schemes: unknown scheme 'oracle'"):
        run_drift(sc, _model(), frames=2, schemes=["meta", "oracle"])
    with pytest.raises(ConfigError, match="^frames: "):
        run_drift(sc, _model(), frames=0)
    small = DriftAutoencoder(k=4, n=4)
    with pytest.raises(ConfigError, match="^model: the codec has k=4"):
        run_drift(sc, small, frames=2)
    with pytest.raises(ConfigError, match="^schemes: scheme 'retrain' has no setting 'evry'; allowed: every"):
        run_drift(sc, _model(), frames=2, schemes="meta,retrain[evry=3]")
    with pytest.raises(ConfigError, match="^retrain_every: must be"):
        run_drift(sc, _model(), frames=2, schemes="retrain", retrain_every=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["doppler-fast", "doppler-slow"])
def test_adapt_from_meta_within_1db_of_genie_static_far(name):
    """Issue-5 acceptance with the shipped checkpoint (120 frames x 8 links x 64 blocks, seed = scenario's).
    Measured (CPU, deterministic): doppler-fast meta/genie = 1.20 (genie-1dB/genie 1.71, static 75x);
    doppler-slow meta/genie 1.13, warm/genie 1.08 (genie-1dB/genie 1.72, static 42x). Asserts: adapt-from-meta (16 pilots, 1 step) is within 1 dB of the genie -- BLER(meta) <=
    BLER(genie at Eb/N0 - 1 dB), same noise draws -- and <= 1.4 x the genie; the static codec is >= 5 x the genie
    and worse than the 1-dB genie; on doppler-slow (rho = 0.99) warm-start adaptation beats restarting from the
    meta-init."""
    model, cfg, _ = load_meta(CKPT)
    sc = load_scenario(name)
    res = run_drift(sc, model, frames=120, pilots=16, steps=1, links=8, payload=64,
                    schemes=["static", "meta", "warm", "genie"], seed=sc.seed, adapt=cfg.adapt,
                    inner_loss=cfg.inner_loss)
    s = res.summary()
    assert s["meta"]["bler"] <= s["genie-1dB"]["bler"]
    assert s["meta"]["bler"] <= 1.4 * s["genie"]["bler"]
    assert s["static"]["bler"] >= 5 * s["genie"]["bler"]
    assert s["static"]["bler"] > s["genie-1dB"]["bler"]
    if name == "doppler-slow":
        assert s["warm"]["bler"] < s["meta"]["bler"]


def test_a_drift_run_killed_midway_and_resumed_equals_an_uninterrupted_one(tmp_path, capsys, monkeypatch):
    """`drift --save-every 2` killed inside frame 5, then `--resume`: every frame record (errors and counts of
    every scheme, the adaptive ones with their fast weights and detectors, retrain, Kalman) equals the
    uninterrupted run's; a resume with other settings is refused."""
    import json

    from metacomm.cli.main import main
    from metacomm.drift.run import DriftRun
    schemes = "static,retrain,meta,warm,online-meta,on-detection,reset-on-change,pilot-ls,kalman,genie"
    base = ["drift", "--scenario", "doppler-slow", "--frames", "7", "--links", "2", "--payload", "8", "--pilots", "2",
            "--retrain-every", "3", "--retrain-steps", "3", "--schemes", schemes, "--quiet"]
    assert main([*base, "--out", str(tmp_path / "full")]) == 0
    orig = DriftRun.step

    def crash(self):
        if self.position == 4:
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(DriftRun, "step", crash)
    assert main([*base, "--save-every", "2", "--out", str(tmp_path / "cut")]) == 130
    monkeypatch.setattr(DriftRun, "step", orig)
    capsys.readouterr()
    assert main([*base, "--pilots", "4", "--save-every", "2", "--resume", "--out", str(tmp_path / "cut")]) == 2
    assert "pilots" in capsys.readouterr().err
    assert main([*base, "--save-every", "2", "--resume", "--out", str(tmp_path / "cut")]) == 0

    def frames(d):
        fr = json.loads((tmp_path / d / "results.json").read_text())["frames"]
        for f in fr:
            for r in f["schemes"].values():
                r.pop("latency_ms")
        return fr

    assert len(frames("cut")) == 7 and frames("cut") == frames("full")


@pytest.mark.parametrize("command", ["drift", "fewshot"])
def test_a_foreign_results_file_is_not_replaced(tmp_path, capsys, command):
    from metacomm.cli.main import main
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"mine": 1}')
    argv = {"drift": ["drift", "--scenario", "doppler-fast", "--frames", "2", "--links", "1", "--payload", "4",
                      "--quiet", "--out", str(out)],
            "fewshot": ["fewshot", "--checkpoint", str(tmp_path / "nothing.pt"), "--out", str(out)]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "refusing to replace" in err[0], err
    assert (out / "results.json").read_text() == '{"mine": 1}'


def test_drift_picks_the_shipped_tracker_for_the_scenario_and_pilot_count(tmp_path):
    """`drift --scenario doppler-slow --pilots 2` without --checkpoint runs the shipped tracker for that setting
    (`track` joins the default schemes); a setting without one falls back to the online-drift codec."""
    import json

    from metacomm.cli.main import main
    assert main(["drift", "--scenario", "doppler-slow", "--pilots", "2", "--frames", "2", "--links", "1",
                 "--payload", "4", "--quiet", "--out", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert "track" in res["summary"] and res["config"]["checkpoint"].endswith("drift_track_doppler-slow_p2.pt")
    assert main(["drift", "--scenario", "doppler-slow", "--pilots", "3", "--frames", "2", "--links", "1",
                 "--payload", "4", "--quiet", "--out", str(tmp_path / "b")]) == 0
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert "track" not in res["summary"] and res["config"]["checkpoint"].endswith("online_drift_k8n8.pt")


@pytest.mark.slow
@pytest.mark.parametrize("name,pilots", [("doppler-slow", 1), ("doppler-slow", 2), ("doppler-slow", 4),
                                         ("doppler-fast", 16)])
def test_shipped_tracker_meets_the_issue_12_targets(name, pilots, tmp_path):
    """Issue 12 targets with the shipped meta-learned trackers (150 frames x 8 links x 64 blocks, default seeds),
    against the classical receivers measured in the same run on the same draws. Measured: doppler-slow P = 1 / 2 / 4
    track 0.0190 / 0.0191 / 0.0183 vs Kalman (knows rho) 0.0271 / 0.0240 / 0.0208 and genie-1dB 0.0267 / 0.0282 /
    0.0272; doppler-fast P = 16 track 0.0142 vs pilot-LS 0.0148. Asserts: within 10 % of the Kalman tracker
    (doppler-slow), at or below the 1-dB genie (P = 2, 4), at or below pilot-LS (doppler-fast)."""
    import json

    from metacomm.cli.main import main
    assert main(["drift", "--scenario", name, "--pilots", str(pilots), "--frames", "150", "--schemes",
                 "track,pilot-ls,kalman,genie", "--quiet", "--out", str(tmp_path / "d")]) == 0
    s = {k: v["bler"] for k, v in json.loads((tmp_path / "d" / "results.json").read_text())["summary"].items()}
    if name == "doppler-slow":
        assert s["track"] <= 1.1 * s["kalman"], s
        if pilots >= 2:
            assert s["track"] <= s["genie-1dB"], s
    else:
        assert s["track"] <= s["pilot-ls"], s


@pytest.mark.slow
def test_shipped_trackers_meet_the_regime_switch_and_iq_drift_targets(tmp_path):
    """Issue 12 targets on the other built-ins (1000 frames x 8 links x 64 blocks, 16 pilots, default seeds), against
    the receivers measured on the same draws. Measured: regime-switch track 0.0408 (segments 0.0119 / 0.0455 / 0.0154 /
    0.0905) vs genie-1dB 0.0203 / 0.0639 / 0.0243 / 0.1075 and 3-tap pilot-LS 0.137 / 0.106 on the TDL segments;
    iq-drift track 0.1342 vs widely-linear LS 0.1404 and IQ-blind LS 0.2762. Asserts: within 1 dB of the genie on
    every regime-switch segment and below 3-tap LS on the TDL ones; on iq-drift clearly below IQ-blind LS (intervals
    apart) and within 1.5x of widely-linear LS. About 4 minutes."""
    import collections
    import json

    from metacomm.cli.main import main
    assert main(["drift", "--scenario", "regime-switch", "--frames", "1000", "--schemes", "track,pilot-ls,genie",
                 "--quiet", "--out", str(tmp_path / "rs")]) == 0
    d = json.loads((tmp_path / "rs" / "results.json").read_text())
    seg = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    for f in d["frames"]:
        for s, r in f["schemes"].items():
            seg[f["segment"]][s][0] += r["block_errors"]
            seg[f["segment"]][s][1] += r["blocks"]
    rate = {g: {s: e / n for s, (e, n) in v.items()} for g, v in seg.items()}
    assert sorted(rate) == [0, 1, 2, 3]
    for g, r in rate.items():
        assert r["track"] <= r["genie-1dB"], (g, r)
    for g in (1, 2):  # TDL-A, TDL-C
        assert rate[g]["track"] < rate[g]["pilot-ls"], (g, rate[g])
    assert main(["drift", "--scenario", "iq-drift", "--frames", "1000", "--schemes", "track,pilot-ls,wl-ls,genie",
                 "--quiet", "--out", str(tmp_path / "iq")]) == 0
    s = json.loads((tmp_path / "iq" / "results.json").read_text())["summary"]
    assert s["track"]["bler_ci"][1] < s["pilot-ls"]["bler_ci"][0], s
    assert s["track"]["bler"] <= 1.5 * s["wl-ls"]["bler"], s


@pytest.mark.slow
def test_shipped_pa_tracker_beats_the_linear_and_pa_blind_receivers_on_pa_drift(tmp_path):
    """Issue 12, PA correction: pa-drift (Rapp PA, back-off 3 -> -6 dB), 1000 frames x 8 links x 64 blocks, 16
    pilots, default seeds. Measured: track 0.0367, track-linear 0.0680, pilot-LS 0.0700, pa-kalman (knows the PA)
    0.0339, genie 0.0320. Asserts: track clearly below the linear tracker and PA-blind LS (intervals apart, < 0.7x)
    and within 1.2x of the PA-aware Kalman receiver. About 1 minute."""
    import json

    from metacomm.cli.main import main
    assert main(["drift", "--scenario", "pa-drift", "--frames", "1000", "--schemes",
                 "track,track-linear,pilot-ls,pa-kalman,genie", "--quiet", "--out", str(tmp_path / "pa")]) == 0
    s = json.loads((tmp_path / "pa" / "results.json").read_text())["summary"]
    for base in ("track-linear", "pilot-ls"):
        assert s["track"]["bler_ci"][1] < s[base]["bler_ci"][0], s
        assert s["track"]["bler"] < 0.7 * s[base]["bler"], s
    assert s["track"]["bler"] <= 1.2 * s["pa-kalman"]["bler"], s


@pytest.mark.slow
def test_shipped_phase_noise_tracker_beats_the_fixed_tap_receivers_on_phase_noise_drift(tmp_path):
    """Issue 12, phase noise: phase-noise-drift (doppler-slow + receiver Wiener phase noise 0.05 rad^2/symbol),
    200 frames x 8 links x 64 blocks, 16 pilots, default seed. Measured: track 0.0066, track-linear 0.0184,
    pilot-LS 0.0195, pn-ls 0.0117, pn-kalman (knows rho, prior, N0, the variance) 0.0076, genie 0.0061. Asserts:
    track clearly below the fixed-tap tracker and pilot-LS (intervals apart, < 0.5x), below per-position LS, within
    1.2x of pn-kalman and not below the genie. About 10 s."""
    import json

    from metacomm.cli.main import main
    assert main(["drift", "--scenario", "phase-noise-drift", "--frames", "200", "--schemes",
                 "track,track-linear,pilot-ls,pn-ls,pn-kalman,genie", "--quiet", "--out", str(tmp_path / "pn")]) == 0
    s = json.loads((tmp_path / "pn" / "results.json").read_text())["summary"]
    for base in ("track-linear", "pilot-ls"):
        assert s["track"]["bler_ci"][1] < s[base]["bler_ci"][0], s
        assert s["track"]["bler"] < 0.5 * s[base]["bler"], s
    assert s["track"]["bler_ci"][1] < s["pn-ls"]["bler_ci"][0], s
    assert s["track"]["bler"] <= 1.2 * s["pn-kalman"]["bler"], s
    assert s["track"]["bler"] >= 0.9 * s["genie"]["bler"], s
