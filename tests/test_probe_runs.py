"""Defects found by a hostile-user probe, each pinned by a regression test through ``metacomm.cli.main.main``.

* A command that writes several artefacts never leaves files of two runs side by side: a kill (KeyboardInterrupt)
  or a full disk (OSError) at any write, or mid-sweep, leaves either the previous run's files untouched or only
  files of the new run -- ``pack compression``'s ``codecs.pt`` is marked unfinished until its results are written,
  and both record the same run id and the codecs' SHA-256; the previous run's figures / CSV go before the first
  write of ``ber``, ``fewshot``, ``pack adversarial``, ``pack label-noise`` and ``train --overwrite``.
* ``fewshot`` with the default schemes on a checkpoint without a joint baseline (``meta-train --joint-steps 0``,
  the shipped drift trackers) leaves ``joint`` out and says so; ``--schemes joint`` is refused with one line.
* ``ber --resume`` (and ``fewshot --resume``) after a kill before the first point finished starts the run.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch

from metacomm import artefacts
from metacomm._validation import ConfigError
from metacomm.cli.main import main

REPO = Path(__file__).resolve().parents[1]
TRACKER = REPO / "metacomm" / "checkpoints" / "drift_track_doppler-fast_p16.pt"


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()} if out.is_dir() else {}


def _one_line_error(capsys, command: str, flag: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"metacomm {command}: error: {flag}: "), err
    return err[0]


class _WriteFails:
    """``artefacts.atomic_write_bytes`` that raises ``exc`` at its ``at``-th call (1-based; nothing written then)."""

    def __init__(self, at: int, exc: BaseException):
        self.at, self.exc, self.calls = at, exc, 0
        self.real = artefacts.atomic_write_bytes

    def __call__(self, path, data):
        self.calls += 1
        if self.calls == self.at:
            raise self.exc
        return self.real(path, data)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny fading-ae meta-train checkpoint without a joint baseline (``--joint-steps 0``)."""
    torch.set_num_threads(1)
    ck = tmp_path_factory.mktemp("base") / "fading.pt"
    assert main(["meta-train", "--scenario", "fading-ae", "--meta-steps", "2", "--meta-batch", "2", "--restarts", "1",
                 "--joint-steps", "0", "--val-every", "0", "--quiet", "--set", "num_train_channels=4",
                 "--out", str(ck)]) == 0
    return ck


# --- pack compression: codecs.pt and results.json always from one run ---------------------------------------------

CMP = ["--bits", "8", "--sparsity", "0", "--method", "ptq,metaquant", "--test-blocks", "8",
       "--test-channels", "1", "--genie-steps", "0", "--adc-bits", "", "--heldout-at-bits", "", "--heldout-channel",
       "none", "--meta-steps", "1", "--meta-batch", "2", "--quiet"]
RUN_A = [*CMP, "--steps", "0,1", "--ebno-db", "10,20", "--plot-ebno-db", "20", "--seed", "0"]
#: other numbers, weights and figure titles: no file of run B equals run A's
RUN_B = [*CMP, "--steps", "0,2", "--ebno-db", "10,15", "--plot-ebno-db", "15", "--seed", "1"]
#: what a finished run leaves, and how many writes it makes: codecs.pt (unfinished), results.json, 2 figures,
#: codecs.pt (finished)
CMP_FILES = {"codecs.pt", "results.json", "bler_vs_bits.png", "db_loss_vs_bytes.png"}
CMP_WRITES = 5


def _compression(base, out, argv) -> int:
    return main(["pack", "compression", "--base", str(base), *argv, "--out", str(out)])


@pytest.fixture(scope="module")
def run_a(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "a"
    assert _compression(base, out, RUN_A) == 0
    assert set(_files(out)) == CMP_FILES
    return out


def _fresh(run_a, tmp_path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    shutil.copytree(run_a, out)
    return out, _files(out)


def _assert_one_run(out: Path, old: dict[str, bytes]) -> None:
    """``out`` holds files of one run only: all of them the previous run's (byte for byte) or none; codecs.pt and
    results.json name the same run; a codecs.pt a reader accepts (finished) matches the results beside it, an
    unfinished one is refused."""
    from metacomm.experiments.compression import CODECS_KIND, check_codecs_pair, codecs_sha256
    from metacomm.experiments.export import load_export_codec
    files = _files(out)
    from_old = {n for n, b in files.items() if old.get(n) == b}
    assert not from_old or from_old == set(files), f"files of two runs: old {sorted(from_old)}, all {sorted(files)}"
    if "codecs.pt" not in files:
        return
    ck = artefacts.load_checkpoint(out / "codecs.pt", kinds=CODECS_KIND, field="checkpoint", allow_partial=True)
    assert ck["weights_sha256"] == codecs_sha256(ck["methods"])
    if "results.json" in files:
        res = json.loads(files["results.json"])
        assert res["run_id"] == res["codecs"]["run_id"] == ck["run_id"]
        assert res["codecs"]["weights_sha256"] == ck["weights_sha256"]
    if ck.get("finished") is False:
        with pytest.raises(ConfigError, match="unfinished"):
            load_export_codec(str(out / "codecs.pt"), "ptq")
    else:
        # finished without results beside it: only the previous run's, whose results were being replaced
        assert "results.json" in files or files["codecs.pt"] == old.get("codecs.pt")
        check_codecs_pair(ck, out / "codecs.pt")
        load_export_codec(str(out / "codecs.pt"), "ptq")


def _assert_complete(out: Path) -> None:
    from metacomm.experiments.compression import check_codecs_pair
    assert set(_files(out)) == CMP_FILES
    ck = torch.load(out / "codecs.pt", weights_only=True)
    res = json.loads((out / "results.json").read_text())
    assert ck["finished"] is True and ck["run_id"] == res["run_id"] == res["codecs"]["run_id"]
    check_codecs_pair(ck, out / "codecs.pt")


def test_compression_results_and_codecs_record_one_run(run_a):
    from metacomm.experiments.compression import codecs_sha256
    _assert_complete(run_a)
    ck = torch.load(run_a / "codecs.pt", weights_only=True)
    assert len(ck["run_id"]) == 32 and ck["weights_sha256"] == codecs_sha256(ck["methods"])


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")])
def test_compression_stopped_mid_sweep_leaves_the_previous_run_untouched(base, run_a, tmp_path, monkeypatch, exc):
    """A kill or an I/O error during the evaluation sweep (after the in-run meta-training): nothing was written,
    the previous run's codecs.pt, results.json and figures are all still there, byte for byte."""
    from metacomm.scenarios.fewshot_compression import QuantFadingScenario
    out, old = _fresh(run_a, tmp_path)
    real, calls = QuantFadingScenario.evaluate, []

    def evaluate(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise exc
        return real(self, *a, **kw)

    monkeypatch.setattr(QuantFadingScenario, "evaluate", evaluate)
    if isinstance(exc, KeyboardInterrupt):
        assert _compression(base, out, RUN_B) == 130
    else:
        with pytest.raises(OSError):
            _compression(base, out, RUN_B)
    assert len(calls) == 2 and _files(out) == old


def test_compression_writes_are_counted(base, run_a, tmp_path, monkeypatch):
    out, _ = _fresh(run_a, tmp_path)
    spy = _WriteFails(0, KeyboardInterrupt())
    monkeypatch.setattr(artefacts, "atomic_write_bytes", spy)
    assert _compression(base, out, RUN_B) == 0
    assert spy.calls == CMP_WRITES  # the parametrisation below cuts each of them
    _assert_complete(out)


@pytest.mark.parametrize("at", range(1, CMP_WRITES + 1))
def test_compression_killed_at_any_write_never_pairs_two_runs(base, run_a, tmp_path, monkeypatch, capsys, at):
    """A kill before write ``at`` (1: the codecs marked unfinished, 2: results.json, 3-4: the figures, 5: the
    codecs finished): the directory holds files of one run; a rerun completes it."""
    out, old = _fresh(run_a, tmp_path)
    monkeypatch.setattr(artefacts, "atomic_write_bytes", _WriteFails(at, KeyboardInterrupt()))
    assert _compression(base, out, RUN_B) == 130
    _assert_one_run(out, old)
    monkeypatch.undo()
    capsys.readouterr()
    assert _compression(base, out, RUN_B) == 0, capsys.readouterr().err
    _assert_complete(out)


def test_compression_full_disk_at_the_results_is_one_line_and_never_pairs_two_runs(base, run_a, tmp_path,
                                                                                     monkeypatch, capsys):
    out, old = _fresh(run_a, tmp_path)
    monkeypatch.setattr(artefacts, "atomic_write_bytes", _WriteFails(2, OSError(errno.ENOSPC, "No space left")))
    assert _compression(base, out, RUN_B) == 2
    assert "No space left" in _one_line_error(capsys, "pack compression", "--out")
    _assert_one_run(out, old)
    assert set(_files(out)) == {"codecs.pt"}  # this run's, marked unfinished: no results describe it yet


def test_compression_refuses_what_it_could_not_write_before_running(base, run_a, tmp_path, capsys):
    """A directory where a figure goes would fail the write after the run: refused up front, nothing changed."""
    out, old = _fresh(run_a, tmp_path)
    (out / "db_loss_vs_bytes.png").unlink()
    (out / "db_loss_vs_bytes.png").mkdir()
    old = _files(out)
    assert _compression(base, out, RUN_B) == 2
    assert "is a directory" in _one_line_error(capsys, "pack compression", "--out")
    assert _files(out) == old


def test_check_codecs_pair_refuses_codecs_of_another_run(base, run_a, tmp_path):
    """What ``metacomm export`` (or any reader of both files) checks: the codecs.pt beside a results.json must be
    the one those results describe (run id and SHA-256); weights that do not match their recorded SHA-256 are
    damaged; a pair written before run ids existed (neither records one) cannot be checked and is accepted."""
    from metacomm.experiments.compression import check_codecs_pair
    out, _ = _fresh(run_a, tmp_path)
    other = tmp_path / "b"
    assert _compression(base, other, RUN_B) == 0
    shutil.copy(other / "codecs.pt", out / "codecs.pt")  # a mixed directory, as the old write order could leave
    ck = torch.load(out / "codecs.pt", weights_only=True)
    with pytest.raises(ConfigError, match="does not belong to the results beside it") as e:
        check_codecs_pair(ck, out / "codecs.pt")
    assert e.value.field == "checkpoint"
    check_codecs_pair(ck, other / "codecs.pt")  # its own directory
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(other / "codecs.pt", alone / "codecs.pt")
    check_codecs_pair(ck, alone / "codecs.pt")  # copied away from its results: nothing to contradict
    tampered = {**ck, "methods": {**ck["methods"]}}
    m = next(iter(tampered["methods"]))
    model = {k: v.clone() for k, v in ck["methods"][m]["model"].items()}
    next(iter(model.values())).add_(1.0)
    tampered["methods"][m] = {**ck["methods"][m], "model": model}
    with pytest.raises(ConfigError, match="damaged"):
        check_codecs_pair(tampered, other / "codecs.pt")
    legacy = tmp_path / "legacy"
    shutil.copytree(run_a, legacy)
    res = json.loads((legacy / "results.json").read_text())
    for k in ("run_id", "codecs"):
        res.pop(k)
    (legacy / "results.json").write_text(json.dumps(res))
    old_ck = {k: v for k, v in torch.load(legacy / "codecs.pt", weights_only=True).items()
              if k not in ("run_id", "weights_sha256")}
    check_codecs_pair(old_ck, legacy / "codecs.pt")


# --- fewshot: default schemes without a joint baseline --------------------------------------------------------------

FS = ["--pilots", "2,4", "--steps", "0,1", "--test-blocks", "16", "--test-channels", "2", "--genie-steps", "1"]


def test_fewshot_default_schemes_leave_joint_out_without_a_joint_baseline(base, tmp_path, capsys):
    out = tmp_path / "fs"
    assert main(["fewshot", "--checkpoint", str(base), *FS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "joint left out" in printed and "--joint-steps 0" in printed
    res = json.loads((out / "results.json").read_text())
    assert "joint" not in res["config"]["schemes"] and {"meta", "random"} <= set(res["config"]["schemes"])
    assert "joint" in res["config"]["schemes_left_out"]
    assert {r["scheme"] for r in res["results"]} >= {"meta", "random", "pilot-ls-ml"}
    assert "joint" not in {r["scheme"] for r in res["results"]}


def test_fewshot_explicit_joint_without_a_joint_baseline_is_one_line(base, tmp_path, capsys):
    assert main(["fewshot", "--checkpoint", str(base), *FS, "--schemes", "meta,joint", "--out",
                 str(tmp_path / "fs")]) == 2
    line = _one_line_error(capsys, "fewshot", "--schemes")
    assert "joint" in line and "--joint-steps 0" in line
    assert not (tmp_path / "fs").exists()


def test_fewshot_on_a_shipped_drift_tracker_runs_with_the_default_schemes(tmp_path, capsys):
    ck = torch.load(TRACKER, weights_only=True)
    assert ck["joint_steps"] == 0  # the shipped trackers have no joint baseline
    out = tmp_path / "fs"
    assert main(["fewshot", "--checkpoint", str(TRACKER), "--pilots", "4", "--steps", "0,1", "--test-blocks", "16",
                 "--test-channels", "1", "--genie-steps", "1", "--out", str(out)]) == 0
    assert "joint left out" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert "joint" not in res["config"]["schemes"] and "meta" in res["config"]["schemes"]


def test_fewshot_killed_midway_never_shows_the_previous_runs_figures(base, tmp_path, monkeypatch, capsys):
    from metacomm.experiments import fewshot
    out = tmp_path / "fs"
    assert main(["fewshot", "--checkpoint", str(base), *FS, "--out", str(out)]) == 0
    assert {"bler_vs_steps.png", "bler_vs_pilots.png"} <= set(_files(out))
    real, calls = fewshot._point_task, []

    def task(ctx, spec):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(ctx, spec)

    monkeypatch.setattr(fewshot, "_point_task", task)
    argv = ["fewshot", "--checkpoint", str(base), *FS, "--seed", "3", "--out", str(out)]
    assert main(argv) == 130
    left = json.loads((out / "results.json").read_text())
    assert left["config"]["finished"] is False and left["config"]["seed"] == 3
    assert set(_files(out)) == {"results.json"}  # the previous run's figures went before the first write
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    assert {"results.json", "bler_vs_steps.png", "bler_vs_pilots.png"} <= set(_files(out))


def test_fewshot_resume_with_nothing_written_yet_starts(base, tmp_path, capsys):
    out = tmp_path / "fs"
    assert main(["fewshot", "--checkpoint", str(base), *FS, "--schemes", "meta", "--resume", "--out", str(out)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["config"]["schemes"] == ["meta"]


# --- ber --resume after a kill before the first point ---------------------------------------------------------------

BER = ["ber", "--codec", "bpsk", "--channel", "rayleigh", "--csi", "ls", "--num-pilots", "4", "--ebno-db", "0:4:2",
       "--max-blocks", "600", "--batch-size", "200", "--target-block-errors", "50", "--quiet"]


def _counts(out: Path):
    return [(p["ebno_db"], p["bit_errors"], p["bits"], p["block_errors"], p["blocks"])
            for p in json.loads((out / "results.json").read_text())["points"]]


def _ber_killed_at_point(monkeypatch, argv, point: int) -> None:
    from metacomm.sims import engine
    real, calls = engine._run_point, []

    def run_point(*a, **kw):
        calls.append(1)
        if len(calls) == point:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(engine, "_run_point", run_point)
    try:
        assert main(argv) == 130
    finally:
        monkeypatch.setattr(engine, "_run_point", real)


@pytest.fixture(scope="module")
def ber_full(tmp_path_factory):
    out = tmp_path_factory.mktemp("ber") / "full"
    assert main([*BER, "--out", str(out)]) == 0
    return _counts(out)


def test_ber_resume_after_a_kill_before_the_first_point_starts_the_sweep(ber_full, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cut"
    _ber_killed_at_point(monkeypatch, [*BER, "--out", str(out)], 1)
    assert not (out / "results.json").exists()
    capsys.readouterr()
    assert main([*BER, "--resume", "--out", str(out)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert _counts(out) == ber_full


def test_ber_resume_of_a_partial_file_with_no_point_starts_and_a_mismatched_one_is_refused(ber_full, tmp_path,
                                                                                          monkeypatch, capsys):
    out = tmp_path / "cut"
    _ber_killed_at_point(monkeypatch, [*BER, "--out", str(out)], 2)
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["finished"] is False and len(doc["points"]) == 1
    doc["points"] = []
    (out / "results.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main([*BER[:-1], "--seed", "9", "--quiet", "--resume", "--out", str(out)]) == 2  # another sweep's file
    assert "seed" in _one_line_error(capsys, "ber", "--resume")
    assert main([*BER, "--resume", "--out", str(out)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert _counts(out) == ber_full


def test_ber_resume_still_refuses_a_foreign_results_file(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text('{"hello": "world"}')
    assert main([*BER, "--resume", "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert (out / "results.json").read_text() == '{"hello": "world"}'


def test_ber_partial_results_never_sit_beside_the_previous_runs_csv_and_plot(tmp_path, monkeypatch):
    out = tmp_path / "o"
    assert main([*BER, "--out", str(out)]) == 0
    assert {"results.json", "results.csv", "ber.png"} <= set(_files(out))
    _ber_killed_at_point(monkeypatch, [*BER[:-1], "--seed", "7", "--quiet", "--out", str(out)], 2)
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["finished"] is False and doc["config"]["sweep"]["seed"] == 7
    assert set(_files(out)) == {"results.json"}


# --- the other commands that write several artefacts -----------------------------------------------------------------

def test_label_noise_without_a_plot_removes_the_previous_runs_figure(tmp_path):
    argv = ["pack", "label-noise", "--base", "scratch", "--base-steps", "1", "--meta-batch", "2", "--noise",
            "symmetric", "--rate", "0,0.2", "--method", "naive", "--test-channels", "2", "--test-blocks", "16",
            "--meta-steps", "0", "--quiet", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    assert "bler_vs_rate.png" in _files(tmp_path / "o")
    assert main([*argv, "--seed", "1", "--no-plot"]) == 0
    assert set(_files(tmp_path / "o")) == {"results.json"}
    assert json.loads((tmp_path / "o" / "results.json").read_text())["figures"] == []


@pytest.fixture(scope="module")
def ae74(tmp_path_factory):
    ck = tmp_path_factory.mktemp("ae") / "ae.pt"
    assert main(["train", "--codec", "ae", "--n", "7", "--k", "4", "--steps", "2", "--train-ebno-db", "3",
                 "--out", str(ck)]) == 0
    return ck


def test_adversarial_removes_the_figures_of_the_previous_runs_grid(ae74, tmp_path):
    argv = ["pack", "adversarial", "--base", str(ae74), "--attack", "jam-gauss", "--defence", "none", "--psr-db=-6",
            "--test-blocks", "20", "--no-uar", "--quiet", "--out", str(tmp_path / "o")]
    assert main([*argv, "--ebno-db", "8,10"]) == 0
    assert {"bler_vs_psr_8dB.png", "bler_vs_psr_10dB.png"} <= set(_files(tmp_path / "o"))
    assert main([*argv, "--ebno-db", "8"]) == 0
    assert set(_files(tmp_path / "o")) == {"results.json", "bler_vs_psr_8dB.png"}
    assert json.loads((tmp_path / "o" / "results.json").read_text())["figures"] == ["bler_vs_psr_8dB.png"]


TRAIN = ["train", "--codec", "ae", "--n", "7", "--k", "4", "--steps", "2", "--train-ebno-db", "3"]


def test_train_overwrite_killed_after_the_checkpoint_leaves_no_old_side_files(tmp_path, monkeypatch):
    ck = tmp_path / "ae.pt"
    assert main([*TRAIN, "--out", str(ck)]) == 0
    old = _files(tmp_path)
    assert set(old) == {"ae.pt", "ae_curve.csv", "ae_curve.png", "ae_codec.png"}
    spy = _WriteFails(2, KeyboardInterrupt())  # the checkpoint is written, the curve CSV is not
    monkeypatch.setattr(artefacts, "atomic_write_bytes", spy)
    assert main([*TRAIN, "--seed", "1", "--overwrite", "--out", str(ck)]) == 130
    assert spy.calls == 2
    left = _files(tmp_path)
    assert set(left) == {"ae.pt"} and left["ae.pt"] != old["ae.pt"]


def test_train_refuses_a_linked_side_file_before_training(tmp_path, capsys):
    ck = tmp_path / "ae.pt"
    assert main([*TRAIN, "--out", str(ck)]) == 0
    target = tmp_path / "elsewhere.png"
    target.write_bytes(b"not mine")
    (tmp_path / "ae_curve.png").unlink()
    (tmp_path / "ae_curve.png").symlink_to(target)
    old = ck.read_bytes()
    capsys.readouterr()
    assert main([*TRAIN, "--seed", "1", "--overwrite", "--out", str(ck)]) == 2
    assert "symbolic link" in _one_line_error(capsys, "train", "--out")
    assert ck.read_bytes() == old and target.read_bytes() == b"not mine"
