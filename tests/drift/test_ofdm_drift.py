"""OFDM drift runs (slots of coded OFDM links): scenario files validated with the key named, the classical
receivers on the same draws, the CLI end to end, and (slow) LMMSE with the true covariance beating LS + linear
interpolation at high Doppler with perfect CSI bounding both."""

from __future__ import annotations

import json
import os

import pytest
import torch

from metacomm._validation import ConfigError, error_message
from metacomm.cli.main import main
from metacomm.drift.run import DriftRun, DriftRunConfig
from metacomm.scenarios.drift_scenarios import load_scenario, parse_scenario

torch.set_num_threads(1)

TINY = """
kind = "ofdm"
name = "tiny-ofdm"
link = "tdl-b-400hz"
ebno_db = 3.0
[link_overrides]
fft_size = 32
num_guard_carriers = [2, 2]
bits_per_symbol = 2
num_bp_iter = 5
[[segment]]
slots = 3
speed = { ramp = [10.0, 30.0] }
"""


def _error(text):
    with pytest.raises(ConfigError) as e:
        parse_scenario(text, source="my.toml", default_name="x")
    return e.value.field, error_message(e.value)


@pytest.mark.parametrize("edit, field", [
    (('channel = "tdl-c"\n', 'channel = "cdl-c"\n'), "segment[0].channel"),
    (("slots = 3", "slots = -1"), "segment[0].slots"),
    (("speed = { ramp = [10.0, 30.0] }", "speed = nan"), "segment[0].speed"),
    (("speed = { ramp = [10.0, 30.0] }", "speed = { ramp = [10.0] }"), "segment[0].speed.ramp"),
    (('link = "tdl-b-400hz"', 'link = "no-such-link"'), "link"),
    (("num_bp_iter = 5", 'normalize_channel = "grid"'), "link_overrides.normalize_channel"),
    (("ebno_db = 3.0", "ebno_db = 3.0\nframes = 5"), "frames"),
    (('kind = "ofdm"', 'kind = "ofdm2"'), "kind"),
])
def test_bad_scenario_files_name_the_key(edit, field):
    text = TINY.replace('speed = { ramp', 'channel = "tdl-c"\nspeed = { ramp') if "channel" in edit[0] else TINY
    f, msg = _error(text.replace(*edit))
    assert f.startswith("my.toml") and f.endswith(field), (f, msg)


def test_an_impossible_grid_override_names_the_link_key():
    f, msg = _error(TINY.replace("bits_per_symbol = 2", "bits_per_symbol = 3"))
    assert "link_overrides" in f and "bits_per_symbol" in msg


def test_every_receiver_decides_the_same_slots_and_the_genie_bounds_them():
    sc = parse_scenario(TINY, default_name="tiny")
    seen = []
    run = DriftRun(sc, None, DriftRunConfig(frames=3, links=6, seed=2))
    assert [s.name for s in run.schemes] == ["ls-nn", "ls-lin", "lmmse-cov", "lmmse-cov-turbo", "adaptive",
                                             "perfect-csi"]
    res = run.run(on_frame=lambda f, s: seen.append(s["y"].clone()))
    alone = DriftRun(sc, None, DriftRunConfig(frames=3, links=6, seed=2, schemes=["perfect-csi"]))
    seen2 = []
    res2 = alone.run(on_frame=lambda f, s: seen2.append(s["y"].clone()))
    assert all(torch.equal(a, b) for a, b in zip(seen, seen2, strict=True))  # common random numbers
    summ, summ2 = res.summary(), res2.summary()
    assert summ["perfect-csi"]["block_errors"] == summ2["perfect-csi"]["block_errors"]
    assert summ["perfect-csi"]["kind"] == "reference" and summ["lmmse-cov"]["kind"] == "classical"
    assert summ["perfect-csi"]["block_errors"] <= min(summ[s]["block_errors"] for s in ("ls-nn", "ls-lin"))
    belief = run.schemes[4].state["log_belief"]  # the adaptive receiver's per-link belief moved off the prior
    assert belief.shape[0] == 6 and torch.isfinite(belief).all()
    assert not torch.allclose(belief, run.schemes[4].rx.init_state(6)["log_belief"])
    assert res.config["link"] == "ofdm" and res.config["ofdm_link"]["codeword_length_bits"] == 648
    f0 = res.frames[0]
    assert abs(f0["speed"] - 10.0) < 1e-9 and f0["doppler_hz"] > 0


def test_the_cli_runs_an_ofdm_scenario_file(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "run"
    rc = main(["drift", "--scenario", str(path), "--frames", "2", "--links", "2", "--out", str(out),
               "--schemes", "ls-nn,ls-lin,lmmse-cov,lmmse-cov-turbo,adaptive,perfect-csi"])
    assert rc in (0, None)
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["link"] == "ofdm" and doc["config"]["checkpoint"] is None
    assert set(doc["summary"]) == {"ls-nn", "ls-lin", "lmmse-cov", "lmmse-cov-turbo", "adaptive", "perfect-csi"}
    assert doc["summary"]["adaptive"]["kind"] == "adaptive"
    assert os.path.getsize(out / "drift.png") > 0


def test_a_checkpoint_for_an_ofdm_scenario_is_refused(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    try:
        rc = main(["drift", "--scenario", str(path), "--checkpoint", "x.pt", "--frames", "1", "--out",
                   str(tmp_path / "o")])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "OFDM" in err and "Traceback" not in err


def test_the_builtins_are_ofdm_scenarios():
    for name in ("ofdm-speed-ramp", "ofdm-high-doppler", "ofdm-profile-switch"):
        sc = load_scenario(name)
        assert sc.link_kind == "ofdm" and sc.link.normalize_channel == "none"
    hd = load_scenario("ofdm-high-doppler")
    assert hd.segments[0].channel == "tdl-b" and hd.link.bits_per_symbol == 4
    assert abs(next(iter(hd.frames(1, batch_size=1))).doppler_hz - 400.0) < 0.1
    ramp = load_scenario("ofdm-speed-ramp").segments[0].speed
    assert abs(ramp.start * 3.6 - 3.0) < 0.01 and abs(ramp.end * 3.6 - 120.0) < 0.01


@pytest.mark.slow
def test_lmmse_with_the_true_covariance_beats_ls_linear_at_high_doppler():
    """ofdm-high-doppler (TDL-B at 400 Hz, pilots on symbols 2 and 11 only): LMMSE filtering with the exact
    time/frequency statistics beats LS + linear interpolation, and perfect CSI bounds both (95 % intervals apart)."""
    sc = load_scenario("ofdm-high-doppler")
    sc.segments[0] = type(sc.segments[0])(**{**sc.segments[0].__dict__, "ebno_db": type(sc.segments[0].ebno_db)(
        7.0, 7.0, sc.segments[0].slots)})
    res = DriftRun(sc, None, DriftRunConfig(frames=40, links=16, seed=0,
                                            schemes=["ls-lin", "lmmse-cov", "perfect-csi"])).run()
    s = res.summary()
    lo = lambda k: s[k]["bler_ci"][0]  # noqa: E731
    hi = lambda k: s[k]["bler_ci"][1]  # noqa: E731
    assert hi("lmmse-cov") < lo("ls-lin"), s
    assert s["perfect-csi"]["bler"] <= s["lmmse-cov"]["bler"]


def test_the_adaptive_rows_carry_its_beliefs_and_belief_png_draws_them(tmp_path):
    from metacomm.drift.result import plot_belief
    sc = parse_scenario(TINY, default_name="tiny")
    res = DriftRun(sc, None, DriftRunConfig(frames=2, links=2, seed=0, schemes=["adaptive", "ls-lin"])).run()
    rows = [f["schemes"]["adaptive"] for f in res.frames]
    assert all(r["doppler_hz_est"] > 0 and r["delay_spread_s_est"] > 0 for r in rows)
    assert "doppler_hz_est" not in res.frames[0]["schemes"]["ls-lin"]
    assert res.frames[0]["delay_spread_s"] == sc.segments[0].delay_spread
    p = plot_belief(res, tmp_path / "belief.png")
    assert p is not None and p.stat().st_size > 0
    no = DriftRun(sc, None, DriftRunConfig(frames=1, links=2, seed=0, schemes=["ls-lin"])).run()
    assert plot_belief(no, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_a_drift_run_in_memory_writes_nothing(tmp_path, monkeypatch):
    from metacomm.experiments.drift import DriftConfig, run_drift_experiment
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = run_drift_experiment(DriftConfig(scenario=str(path), frames=1, links=2, schemes="ls-lin,perfect-csi",
                                           progress=False))
    assert out.paths == {} and sorted(out.result.summary()) == ["ls-lin", "perfect-csi"]
    assert sorted(os.listdir(tmp_path)) == ["tiny.toml"] and "DriftOutcome(result=DriftResult(" in repr(out)
    with pytest.raises(ConfigError) as e:
        run_drift_experiment(DriftConfig(scenario=str(path), frames=1, seeds="0,1"))
    assert e.value.field == "seeds"
