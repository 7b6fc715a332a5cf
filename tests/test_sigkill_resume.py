"""Real kills: ``python -m metacomm ...`` runs as a subprocess, is SIGKILLed once its output on disk shows partial
progress, and is resumed with ``--resume``. The artefact left by the kill must be valid and marked unfinished,
and the resumed result must equal an uninterrupted run with the same seeds, count for count and weight for
weight. (The KeyboardInterrupt versions of these tests live next to each command's tests; a SIGKILL runs no
``finally`` blocks and no exception handlers, so only atomic writes and on-disk state can save the run.)"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
#: keys of wall-clock measurements (they differ between any two runs)
TIMING = ("latency", "runtime", "wall", "elapsed", "seconds")


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "metacomm", *args, "--threads", "1"], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "metacomm", *args, "--threads", "1"], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    return p


def _uninterrupted(*args: str) -> None:
    """The reference run, in this process (same code, one thread; saves a interpreter start)."""
    from metacomm.cli.main import main
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0):
    """Poll ``ready()`` every 10 ms while ``proc`` runs; SIGKILL it as soon as ``ready()`` returns a truthy value
    and return that value. Fails if the process ends first (the run was too short to be cut)."""
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed midway: {err[-2000:]}")
            got = ready()
            if got:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=60)
                assert proc.returncode == -signal.SIGKILL
                return got
            time.sleep(0.01)
        pytest.fail("no partial progress on disk before the timeout")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _json_or_none(path: Path):
    """The parsed file, or None when it does not exist yet. A file that exists must always parse: it is only ever
    replaced atomically, so a reader never sees a half-written one."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    return json.loads(text)


def _ckpt_or_none(path: Path):
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        return None


def _same(a, b, at: str = "") -> None:
    """Recursive equality of two payloads (tensors exactly), skipping wall-clock entries."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{at}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            if not any(t in str(k).lower() for t in TIMING):
                _same(a[k], b[k], f"{at}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{at}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{at}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), at
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        assert math.isnan(b), at
    else:
        assert a == b, f"{at}: {a!r} != {b!r}"


# --- ber ---------------------------------------------------------------------------------------------------------

BER = ["ber", "--codec", "bpsk", "--channel", "rayleigh", "--csi", "ls", "--num-pilots", "4", "--ebno-db", "0:14:2",
       "--max-blocks", "8000", "--batch-size", "100", "--target-block-errors", "1000000", "--seed", "4", "--quiet"]


def _counts(points):
    return [{k: v for k, v in p.items() if k != "runtime_s"} for p in points]


def test_ber_sweep_sigkilled_after_two_points_resumes_to_the_uninterrupted_counts(tmp_path):
    cut = tmp_path / "cut"
    proc = _cli(*BER, "--out", str(cut))
    doc = _kill_when(proc, lambda: (d := _json_or_none(cut / "results.json")) and len(d["points"]) >= 2 and d)
    left = _json_or_none(cut / "results.json")  # valid strict JSON after the kill, marked unfinished
    assert left["config"]["finished"] is False and 2 <= len(left["points"]) < 8
    assert len(left["points"]) >= len(doc["points"])
    assert not (cut / "results.csv").exists() and not (cut / "ber.png").exists()
    _run(*BER, "--resume", "--out", str(cut))
    _uninterrupted(*BER, "--out", str(tmp_path / "full"))
    done, full = _json_or_none(cut / "results.json"), _json_or_none(tmp_path / "full" / "results.json")
    assert "finished" not in done["config"] and len(done["points"]) == 8
    assert _counts(done["points"]) == _counts(full["points"])
    # the points finished before the kill were kept as they were, not recomputed
    assert done["points"][:len(left["points"])] == left["points"]


@pytest.mark.slow  # ~10 s more; the test above also reads results.json throughout a killed run
def test_a_kill_at_any_moment_never_leaves_a_truncated_results_json(tmp_path):
    """200 tiny points, each rewriting results.json (fsync + rename) every few ms; the reader polls throughout and
    the run is killed in the middle. Every read and the file left behind parse as complete JSON, with a prefix of
    the uninterrupted sweep's points (a kill inside a write leaves at most a hidden temporary file)."""
    argv = ["ber", "--codec", "bpsk", "--channel", "rayleigh", "--csi", "perfect", "--ebno-db", "0:1.99:0.01",
            "--max-blocks", "20", "--batch-size", "20", "--target-block-errors", "1000", "--seed", "1", "--quiet"]
    sizes = []
    for n, at in enumerate((100,)):
        out = tmp_path / f"k{n}"
        proc = _cli(*argv, "--out", str(out))
        _kill_when(proc, lambda out=out, at=at: (d := _json_or_none(out / "results.json")) and len(d["points"]) >= at)
        left = _json_or_none(out / "results.json")
        assert left["config"]["finished"] is False and at <= len(left["points"]) < 200
        sizes.append(len(left["points"]))
        stray = [p.name for p in out.iterdir() if p.name not in ("results.json",)]
        assert all(s.startswith(".results.json.") and s.endswith(".tmp") for s in stray), stray
    _uninterrupted(*argv, "--out", str(tmp_path / "full"))
    full = _json_or_none(tmp_path / "full" / "results.json")["points"]
    for n, k in enumerate(sizes):
        assert _counts(_json_or_none(tmp_path / f"k{n}" / "results.json")["points"]) == _counts(full[:k])


# --- drift ---------------------------------------------------------------------------------------------------------

DRIFT = ["drift", "--scenario", "doppler-slow", "--frames", "40", "--links", "2", "--payload", "8", "--pilots", "2",
         "--schemes", "static,meta,online-meta,on-detection,pilot-ls,kalman", "--save-every", "4", "--quiet"]


def _frames(path: Path):
    fr = _json_or_none(path)["frames"]
    for f in fr:
        for r in f["schemes"].values():
            r.pop("latency_ms", None)
    return fr


def test_drift_run_sigkilled_midway_resumes_to_the_uninterrupted_run(tmp_path):
    cut = tmp_path / "cut"
    state = cut / "run-state.pt"
    proc = _cli(*DRIFT, "--out", str(cut))
    _kill_when(proc, lambda: (s := _ckpt_or_none(state)) is not None and s["run"]["position"] >= 8)
    left = torch.load(state, weights_only=True)
    assert left["finished"] is False and left["run"]["position"] % 4 == 0 and 8 <= left["run"]["position"] < 40
    assert len(left["run"]["records"]) == left["run"]["position"]
    assert not (cut / "results.json").exists()  # written only when the run is complete
    _run(*DRIFT, "--resume", "--out", str(cut))
    _uninterrupted(*DRIFT, "--out", str(tmp_path / "full"))
    assert len(_frames(cut / "results.json")) == 40
    assert _frames(cut / "results.json") == _frames(tmp_path / "full" / "results.json")
    a, b = (torch.load(d / "run-state.pt", weights_only=True) for d in (cut, tmp_path / "full"))
    assert a["finished"] is True
    _same(a["run"], b["run"])  # every scheme's weights, fast weights, detectors and generators


# --- meta-train and fewshot ------------------------------------------------------------------------------------------

META = ["meta-train", "--scenario", "fading-ae", "--meta-batch", "4", "--val-every", "0", "--restarts", "1",
        "--seed", "3", "--meta-steps", "300", "--joint-steps", "20", "--checkpoint-every", "10", "--quiet"]


@pytest.fixture(scope="module")
def meta_runs(tmp_path_factory):
    """An uninterrupted meta-train run and one SIGKILLed at a periodic checkpoint, then resumed."""
    d = tmp_path_factory.mktemp("meta")
    cut = d / "cut.pt"
    proc = _cli(*META, "--out", str(cut))
    _kill_when(proc, lambda: (c := _ckpt_or_none(cut)) is not None and c["step"] >= 20)
    left = torch.load(cut, weights_only=True)
    _run(*META, "--resume", str(cut), "--out", str(cut))
    _uninterrupted(*META, "--out", str(d / "full.pt"))
    return left, d


def test_meta_train_sigkilled_at_a_checkpoint_resumes_to_the_uninterrupted_weights(meta_runs):
    left, d = meta_runs
    assert left["finished"] is False and left["step"] % 10 == 0 and 20 <= left["step"] < 300
    a, b = (torch.load(d / n, weights_only=True) for n in ("cut.pt", "full.pt"))
    assert a["finished"] is True and a["step"] == b["step"] == 300
    _same(a, b)  # weights, optimizer state, generator, history, the joint baseline


@pytest.mark.slow  # ~8 s more
def test_fewshot_sigkilled_midway_resumes_to_the_uninterrupted_results(meta_runs, tmp_path):
    _, d = meta_runs
    argv = ["fewshot", "--checkpoint", str(d / "full.pt"), "--pilots", "1,2,4,8", "--steps", "0,1,3",
            "--test-channels", "4", "--test-blocks", "400", "--genie-steps", "30", "--seed", "2"]
    cut = tmp_path / "cut"
    proc = _cli(*argv, "--out", str(cut))
    _kill_when(proc, lambda: (r := _json_or_none(cut / "results.json")) and len(r["progress"]["points"]) >= 2)
    left = _json_or_none(cut / "results.json")
    assert left["config"]["finished"] is False and left["progress"]["done"] < left["progress"]["total"]
    _run(*argv, "--resume", "--out", str(cut))
    _uninterrupted(*argv, "--out", str(tmp_path / "full"))
    a, b = _json_or_none(cut / "results.json"), _json_or_none(tmp_path / "full" / "results.json")
    assert "finished" not in a["config"]
    _same(a["results"], b["results"])
    _same(a["progress"], b["progress"])
