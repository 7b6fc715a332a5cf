"""`drift --seeds`: one drift run per seed as executor tasks, written and pooled by the driver."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from metacomm.cli.main import main

HAS_RAY = importlib.util.find_spec("ray") is not None


def _shuffled_executor_class():
    """The fake remote executor of tests/test_executors.py (reverse order, a fresh context per task)."""
    spec = importlib.util.spec_from_file_location("_executor_tests", Path(__file__).parent.parent / "test_executors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ShuffledExecutor


ShuffledExecutor = _shuffled_executor_class()

SCHEMES = "meta,warm,retrain,pilot-ls,kalman,genie"
ARGS = ["drift", "--scenario", "doppler-fast", "--frames", "3", "--links", "2", "--payload", "8", "--schemes", SCHEMES,
        "--retrain-every", "2", "--retrain-steps", "2", "--quiet"]


def _cfg(out, seeds="0:2:1", **kw):
    from metacomm.experiments.drift import DriftConfig
    base = dict(scenario="doppler-fast", out=str(out), frames=3, links=2, payload=8, schemes=SCHEMES,
                retrain_every=2, retrain_steps=2, progress=False, seeds=seeds)
    base.update(kw)
    return DriftConfig(**base)


def _frames(d):
    """A run's frame records without the (timing) latencies."""
    fr = json.loads((Path(d) / "results.json").read_text())["frames"]
    for f in fr:
        for r in f["schemes"].values():
            r.pop("latency_ms")
    return fr


def _pooled(d):
    """The pooled file without latencies (timings) and the executor name."""
    doc = json.loads((Path(d) / "results.json").read_text())
    for seed in doc["seeds"].values():
        for r in seed.values():
            r.pop("latency_ms_mean")
    for r in doc["summary"].values():
        r.pop("latency_ms_mean")
    doc["config"].pop("executor")
    return doc


def _csv_without_latency(d):
    return [ln.rsplit(",", 1)[0] for ln in (Path(d) / "results.csv").read_text().splitlines()]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    from metacomm.experiments.drift import run_drift_seeds
    out = tmp_path_factory.mktemp("seeds") / "local"
    run_drift_seeds(_cfg(out), log=lambda s: None)
    return out


def test_fake_remote_executor_equals_local_per_seed_and_pooled(local_run, tmp_path):
    """Seeds as tasks run last first, each on a freshly built scenario and codec (as on a fresh worker), merged
    by the driver = the local executor: every seed's frame records, and the pooled file."""
    from metacomm.experiments.drift import run_drift_seeds
    fake = ShuffledExecutor()
    run_drift_seeds(_cfg(tmp_path / "fake"), log=lambda s: None, executor=fake)
    assert fake.calls == 3
    for s in (0, 1, 2):
        assert _frames(tmp_path / "fake" / f"seed-{s}") == _frames(local_run / f"seed-{s}")
    assert _pooled(tmp_path / "fake") == _pooled(local_run)
    assert sorted(os.listdir(tmp_path / "fake")) == ["results.json", "seed-0", "seed-1", "seed-2", "seeds.png"]


def test_a_seed_directory_is_what_a_plain_single_seed_run_writes(local_run, tmp_path):
    """`drift --seed 1 --out D` writes the same files as seed-1 of the multi-seed run: the same config, frame
    records (counts bit for bit) and CSV rows (latencies aside); and the seeds differ from each other."""
    assert main([*ARGS, "--seed", "1", "--out", str(tmp_path / "plain")]) == 0
    got, ref = local_run / "seed-1", tmp_path / "plain"
    assert sorted(os.listdir(got)) == sorted(os.listdir(ref)) == ["drift.png", "results.csv", "results.json"]
    assert json.loads((got / "results.json").read_text())["config"] == \
        json.loads((ref / "results.json").read_text())["config"]
    assert _frames(got) == _frames(ref)
    assert _csv_without_latency(got) == _csv_without_latency(ref)
    assert _frames(local_run / "seed-0") != _frames(got)


def test_pooled_counts_are_the_sums_of_the_per_seed_files(local_run):
    """Independent recomputation from the seed directories' frame records: pooled counts, BLER, Clopper-Pearson
    interval (scipy's beta quantiles), per-seed BLERs and their sample standard deviation, kinds."""
    import numpy as np
    from scipy.stats import beta
    doc = json.loads((local_run / "results.json").read_text())
    assert doc["format"] == "metacomm-drift-seeds/1" and doc["finished"] is True
    assert doc["config"]["seeds"] == [0, 1, 2]
    per = {s: json.loads((local_run / f"seed-{s}" / "results.json").read_text()) for s in (0, 1, 2)}
    schemes = list(per[0]["summary"])
    assert list(doc["summary"]) == schemes and "genie-1dB" in schemes
    for name in schemes:
        tot = {k: sum(f["schemes"][name][k] for s in per for f in per[s]["frames"])
               for k in ("block_errors", "blocks", "bit_errors", "bits")}
        r = doc["summary"][name]
        assert {k: r[k] for k in tot} == tot
        assert tot["blocks"] == 3 * 3 * 2 * 8  # seeds x frames x links x blocks
        x, n = tot["block_errors"], tot["blocks"]
        assert r["bler"] == x / n
        lo = 0.0 if x == 0 else beta.ppf(0.025, x, n - x + 1)
        hi = 1.0 if x == n else beta.ppf(0.975, x + 1, n - x)
        assert r["bler_ci"] == pytest.approx([lo, hi], rel=1e-9, abs=1e-12)
        blers = [sum(f["schemes"][name]["block_errors"] for f in per[s]["frames"]) / 48 for s in (0, 1, 2)]
        assert r["seed_bler"] == pytest.approx(blers, abs=1e-15)
        assert r["seed_bler_sd"] == pytest.approx(float(np.std(blers, ddof=1)), abs=1e-12)
        assert r["kind"] == per[0]["summary"][name]["kind"]
    assert doc["summary"]["kalman"]["kind"] == "classical" and doc["summary"]["genie"]["kind"] == "reference"
    assert doc["summary"]["meta"]["kind"] == "adaptive"


@pytest.mark.parametrize("spec", ["", "a", "-1", "1,1", "0:2:1,2", "4:2:1", "0:8", "1:2:0", "0,,1", "1.5"])
def test_bad_seeds_exit_2_with_one_line(tmp_path, capsys, spec):
    assert main([*ARGS, "--seeds", spec, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds" in err, err
    assert not (tmp_path / "o").exists()


def test_seed_and_seeds_exclusive_and_ray_needs_seeds(tmp_path, capsys):
    assert main([*ARGS, "--seed", "1", "--seeds", "0:1:1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds" in err and "--seed" in err
    assert main([*ARGS, "--num-gpus", "1", "--seeds", "0:1:1", "--out", str(tmp_path / "o")]) == 2
    assert "--num-gpus" in capsys.readouterr().err
    if HAS_RAY:
        assert main([*ARGS, "--executor", "ray", "--out", str(tmp_path / "o")]) == 2
        assert "--executor" in capsys.readouterr().err
        assert main([*ARGS, "--executor", "ray", "--seeds", "0:1:1", "--save-every", "1", "--out",
                     str(tmp_path / "o")]) == 2
        assert "--save-every" in capsys.readouterr().err
    assert main([*ARGS, "--seeds", "0:1:1", "--links", "100000000000", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err  # the single run's memory check, up front
    assert err.count("\n") == 1 and "--links" in err and "GiB" in err
    assert not (tmp_path / "o").exists()
    from metacomm.experiments.drift import parse_seeds
    assert parse_seeds("0:3:1,10") == [0, 1, 2, 3, 10] and parse_seeds([5, 2]) == [5, 2]
    for bad in (3, [1, True], [-1], []):
        with pytest.raises(Exception, match="seeds"):
            parse_seeds(bad)


class _DiesAfter(ShuffledExecutor):
    """Runs tasks in order and is killed after ``n`` of them."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def map(self, fn, specs, *, context=None):
        for i in range(len(specs)):
            if self.calls == self.n:
                raise KeyboardInterrupt
            ctx = context[0](*context[1])
            self.calls += 1
            yield i, fn(ctx, specs[i])


def test_resume_skips_finished_seeds_and_adds_new_ones(local_run, tmp_path, capsys):
    """Killed after 2 of 3 seeds: the pooled file says 2 done; --resume runs only seed 2 (1 task) and equals the
    uninterrupted run; resuming with --seeds 0:3:1 runs only seed 3; other settings are refused."""
    from metacomm.experiments.drift import run_drift_seeds
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_drift_seeds(_cfg(out), log=lambda s: None, executor=_DiesAfter(2))
    doc = json.loads((out / "results.json").read_text())
    assert doc["finished"] is False and doc["progress"]["seeds_done"] == [0, 1]
    assert not (out / "seed-2").exists()
    fake = ShuffledExecutor()
    run_drift_seeds(_cfg(out, resume=True), log=lambda s: None, executor=fake)
    assert fake.calls == 1
    assert _pooled(out) == _pooled(local_run)
    fake = ShuffledExecutor()
    run_drift_seeds(_cfg(out, seeds="0:3:1", resume=True), log=lambda s: None, executor=fake)
    assert fake.calls == 1 and json.loads((out / "results.json").read_text())["config"]["seeds"] == [0, 1, 2, 3]
    capsys.readouterr()
    assert main([*ARGS, "--pilots", "8", "--seeds", "0:3:1", "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "pilots" in err
    assert main([*ARGS, "--seeds", "0:1:1", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_resume_continues_a_half_finished_seed_from_its_run_state(local_run, tmp_path, monkeypatch):
    """Local executor with --save-every 1, killed inside seed 1's third frame: --resume keeps seed 0, continues
    seed 1 from its run state (1 frame played), runs seed 2 (3 frames); every seed equals the uninterrupted run."""
    from metacomm.drift.run import DriftRun
    out = tmp_path / "half"
    orig = DriftRun.step
    played = []

    def crash(self):
        if self.config.seed == 1 and self.position == 2:
            raise KeyboardInterrupt
        played.append(self.config.seed)
        return orig(self)

    monkeypatch.setattr(DriftRun, "step", crash)
    assert main([*ARGS, "--seeds", "0:2:1", "--save-every", "1", "--out", str(out)]) == 130
    assert (out / "seed-1" / "run-state.pt").exists() and not (out / "seed-1" / "results.json").exists()
    monkeypatch.setattr(DriftRun, "step", lambda self: (played.append(self.config.seed), orig(self))[1])
    played.clear()
    assert main([*ARGS, "--seeds", "0:2:1", "--save-every", "1", "--resume", "--out", str(out)]) == 0
    assert played == [1, 2, 2, 2]
    for s in (0, 1, 2):
        assert _frames(out / f"seed-{s}") == _frames(local_run / f"seed-{s}")


def test_plot_takes_the_pooled_directory_and_names_the_seed_dirs_when_mixed(local_run, tmp_path, capsys):
    assert main(["plot", str(local_run), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert main(["plot", str(local_run), str(local_run / "seed-0"), "--out", str(tmp_path / "q.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and os.path.join(str(local_run), "seed-1") in err
    # a pooled directory is never taken for a single run, nor the reverse
    assert main([*ARGS, "--out", str(local_run)]) == 2
    assert "refusing to replace" in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_ray():
    if not HAS_RAY:
        pytest.skip("ray is not installed (pip install metacomm[ray])")
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    yield
    ray.shutdown()


@pytest.mark.slow
def test_seeds_through_local_ray_equal_local(local_ray, local_run, tmp_path):
    from metacomm.experiments.drift import run_drift_seeds
    run_drift_seeds(_cfg(tmp_path / "ray", executor="ray"), log=lambda s: None)
    for s in (0, 1, 2):
        assert _frames(tmp_path / "ray" / f"seed-{s}") == _frames(local_run / f"seed-{s}")
    assert _pooled(tmp_path / "ray") == _pooled(local_run)
    assert not math.isnan(json.loads((tmp_path / "ray" / "results.json").read_text())["summary"]["meta"]["bler"])


def test_experiment_file_takes_the_seeds_key(tmp_path, capsys):
    toml = tmp_path / "d.toml"
    body = ('command = "drift"\nscenario = "doppler-fast"\nframes = 2\nlinks = 1\npayload = 4\n'
            'schemes = "meta,pilot-ls,genie"\nprogress = false\n')
    toml.write_text(body + "seeds = 3\n")
    assert main(["run", str(toml), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seeds" in err
    toml.write_text(body + "seeds = [4, 1]\n")
    assert main(["run", str(toml), "--out", str(tmp_path / "ok")]) == 0
    doc = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert doc["config"]["seeds"] == [4, 1] and list(doc["seeds"]) == ["4", "1"]
    assert (tmp_path / "ok" / "seed-4" / "results.json").exists() and (tmp_path / "ok" / "experiment.json").exists()
