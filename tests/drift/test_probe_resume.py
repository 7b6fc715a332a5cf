"""Resume checks contents, not paths; shipped learned parts are chosen by the scenario's content, not its file
name (issue: the 447-case probe, items 4 and 13)."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from metacomm.cli.main import main
from metacomm.drift.run import DriftRun

BASE = ["drift", "--frames", "4", "--links", "2", "--payload", "8", "--pilots", "2", "--schemes", "meta,pilot-ls,genie",
        "--quiet"]
BUILTIN = resources.files("metacomm.scenarios").joinpath("data", "doppler-fast.toml").read_text(encoding="utf-8")
CKPT = Path(__file__).resolve().parents[2] / "metacomm" / "checkpoints" / "online_drift_k8n8.pt"


def _interrupted(monkeypatch, argv, after: int):
    """Run ``argv`` and stop it with Ctrl-C after ``after`` frames (the run state is saved every frame)."""
    step = DriftRun.step
    count = {"n": 0}

    def stop(self):
        if count["n"] == after:
            raise KeyboardInterrupt
        count["n"] += 1
        return step(self)

    monkeypatch.setattr(DriftRun, "step", stop)
    assert main(argv) == 130
    monkeypatch.setattr(DriftRun, "step", step)


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_resume_refuses_an_edited_scenario_file(tmp_path, monkeypatch, capsys):
    sc = tmp_path / "mine.toml"
    sc.write_text(BUILTIN.replace('name = "doppler-fast"', 'name = "mine"'))
    argv = [*BASE, "--scenario", str(sc), "--checkpoint", str(CKPT), "--save-every", "1", "--out", str(tmp_path / "o")]
    _interrupted(monkeypatch, argv, 2)
    capsys.readouterr()
    sc.write_text(sc.read_text().replace("rho = 0.5", "rho = 0.9"))  # same path, other experiment
    assert main([*argv, "--resume"]) == 2
    line = _err_line(capsys)
    assert "--resume" in line and "scenario_sha256" in line
    assert not (tmp_path / "o" / "results.json").exists()


def test_resume_refuses_a_replaced_checkpoint(tmp_path, monkeypatch, capsys):
    ck = tmp_path / "codec.pt"
    shutil.copy(CKPT, ck)
    argv = [*BASE, "--scenario", "doppler-fast", "--checkpoint", str(ck), "--save-every", "1",
            "--out", str(tmp_path / "o")]
    _interrupted(monkeypatch, argv, 2)
    capsys.readouterr()
    other = Path(__file__).resolve().parents[2] / "metacomm" / "checkpoints" / "drift_track_doppler-fast_p16.pt"
    shutil.copy(other, ck)  # same path, another codec
    assert main([*argv, "--resume"]) == 2
    assert "checkpoint_sha256" in _err_line(capsys)
    # the same file back: resumes, and equals an uninterrupted run
    shutil.copy(CKPT, ck)
    assert main([*argv, "--resume"]) == 0
    whole = [*BASE, "--scenario", "doppler-fast", "--checkpoint", str(ck), "--out", str(tmp_path / "w")]
    assert main(whole) == 0

    def counts(d):
        doc = json.loads((tmp_path / d / "results.json").read_text())
        return [{s: (r["block_errors"], r["bit_errors"]) for s, r in f["schemes"].items()} for f in doc["frames"]]
    assert counts("o") == counts("w")


def test_seeds_resume_refuses_a_finished_seed_cut_short(tmp_path, capsys):
    out = tmp_path / "s"
    argv = [*BASE, "--scenario", "doppler-fast", "--seeds", "0:1:1", "--out", str(out)]
    assert main(argv) == 0
    rj = out / "seed-1" / "results.json"
    doc = json.loads(rj.read_text())
    doc["frames"] = doc["frames"][:1]
    rj.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    line = _err_line(capsys)
    assert "seed-1" in line and "1 frames" in line and "4" in line


@pytest.mark.parametrize("where", ["sub/doppler-fast.toml", "doppler-fast.toml"])
def test_a_user_file_named_like_a_builtin_gets_no_shipped_tracker(tmp_path, where):
    from metacomm.experiments.drift import DEFAULT_CHECKPOINT, DriftConfig
    p = tmp_path / where
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(BUILTIN.replace("rho = 0.5", "rho = 0.0"))
    cfg = DriftConfig(scenario=str(p), out=str(tmp_path / "o")).validate()
    assert cfg.checkpoint == DEFAULT_CHECKPOINT
    p.write_text(BUILTIN)  # the built-in's exact content: its shipped tracker
    cfg = DriftConfig(scenario=str(p), out=str(tmp_path / "o2")).validate()
    assert cfg.checkpoint.endswith("drift_track_doppler-fast_p16.pt")


def test_dd_mwnet_weighting_is_chosen_by_content_not_by_the_scenario_name(tmp_path, capsys):
    text = resources.files("metacomm.scenarios").joinpath("data", "doppler-slow.toml").read_text(encoding="utf-8")
    p = tmp_path / "other.toml"
    p.write_text(text.replace("rho = 0.99", "rho = 0.5"))  # still name = "doppler-slow"
    tracker = Path(__file__).resolve().parents[2] / "metacomm" / "checkpoints" / "drift_track_doppler-slow_p1.pt"
    argv = ["drift", "--scenario", str(p), "--checkpoint", str(tracker), "--pilots", "1", "--frames", "2", "--links",
            "1", "--payload", "4", "--schemes", "dd-mwnet", "--quiet", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "dd-mwnet has no meta-learned weighting" in _err_line(capsys)


def test_a_tracker_checkpoint_of_a_scenario_file_is_self_contained(tmp_path, capsys):
    """meta-train --drift FILE stores FILE's content: moved, deleted or edited afterwards, the checkpoint still loads
    the scenario it was trained on; a checkpoint naming a path without its content is refused without opening it."""
    import torch

    from metacomm.artefacts import load_checkpoint, save_checkpoint
    here = Path(__file__).resolve().parents[1] / "scenarios" / "data" / "drift_k4n4.toml"
    f = tmp_path / "mine.toml"
    shutil.copy(here, f)
    ck = tmp_path / "ck.pt"
    assert main(["meta-train", "--scenario", "drift", "--set", f"drift={f}", "--set", "pilots=2", "--set",
                 "frames_per_task=4", "--set", "query=8", "--set", "hidden=8", "--meta-steps", "2", "--meta-batch",
                 "2", "--val-every", "2", "--val-tasks", "2", "--out", str(ck), "--quiet"]) == 0
    saved = torch.load(ck, weights_only=True)
    assert saved["scenario_config"]["drift_toml"] == here.read_text()
    f.unlink()  # the file is gone: the checkpoint still loads
    from metacomm.experiments.meta_init import load_meta_init
    sc = load_meta_init(str(ck)).scenario
    assert sc.drift.k == 4 and sc.drift.n == 4
    # a checkpoint that names a path but not its content: refused, and the path is never opened
    ck_d = load_checkpoint(ck, kinds="metacomm-meta", field="checkpoint")
    target = tmp_path / "secret.toml"
    target.write_text(here.read_text())
    ck_d["scenario_config"] = {**ck_d["scenario_config"], "drift": str(target), "drift_toml": None}
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {k: v for k, v in ck_d.items() if k not in ("format", "kind")}, kind="metacomm-meta")
    import builtins
    real_open, opened = builtins.open, []

    def spy(path, *a, **k):
        opened.append(str(path))
        return real_open(path, *a, **k)
    builtins.open = spy
    try:
        capsys.readouterr()
        assert main(["fewshot", "--checkpoint", str(bad), "--out", str(tmp_path / "fs")]) == 2
    finally:
        builtins.open = real_open
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0] and "does not hold its content" in err[0], err
    assert str(target) not in opened
