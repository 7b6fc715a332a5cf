"""The executor interface: tasks run anywhere, in any order, give the local executor's results."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from metacomm.cli.main import main
from metacomm.experiments.executors import Executor, LocalExecutor, ordered

HAS_RAY = importlib.util.find_spec("ray") is not None


class ShuffledExecutor(Executor):
    """A fake "remote" executor: every task in this process, in reversed order, each with a freshly built context
    (as on a fresh worker process), so nothing can leak from one task to the next through shared state."""

    name = "fake"

    def __init__(self):
        self.calls = 0

    def map(self, fn, specs, *, context=None):
        for i in reversed(range(len(specs))):
            ctx = context[0](*context[1]) if context is not None else None
            self.calls += 1
            yield i, fn(ctx, specs[i])


def _square(ctx, x):
    return ctx + x * x


def test_local_and_shuffled_map_agree():
    specs = [1, 2, 3, 4]
    ctx = (int, ("10",))
    assert ordered(LocalExecutor().map(_square, specs, context=ctx), 4) == [11, 14, 19, 26]
    got = list(ShuffledExecutor().map(_square, specs, context=ctx))
    assert [i for i, _ in got] == [3, 2, 1, 0]
    assert ordered(got, 4) == [11, 14, 19, 26]


def _points(path):
    with open(path) as f:
        pts = json.load(f)["points"]
    keys = ("ebno_db", "bit_errors", "bits", "block_errors", "blocks", "simulated", "stop_reason", "bit_errors_sq")
    return [{k: p.get(k) for k in keys} for p in pts]


def _ber_cfg(out, **kw):
    from metacomm.experiments.ber import BerConfig
    return BerConfig(codec="qpsk", channel="rayleigh", ebno_db="0:50:10", out=str(out), batch_size=64,
                     max_blocks=640, target_block_errors=20, block_length=32, seed=3, progress=False, **kw)


def test_ber_points_out_of_order_equal_sequential_sweep(tmp_path):
    """Points computed as separate tasks, last first, each with its own link, merged by the driver (stopping
    rules included: the sweep stops after the first error-free point) = the sequential sweep of today."""
    from metacomm.experiments import ber
    ref = tmp_path / "local"
    ber.run_ber(_ber_cfg(ref), log=lambda s: None)
    fake = ShuffledExecutor()
    ber.run_ber(_ber_cfg(tmp_path / "fake"), log=lambda s: None, executor=fake)
    assert fake.calls == 6  # last point first: all ran; the driver applies the early stop at 40 dB
    a, b = _points(ref / "results.json"), _points(tmp_path / "fake" / "results.json")
    assert a == b
    assert [p["simulated"] for p in a] == [True] * 5 + [False] and a[4]["block_errors"] == 0


def test_executor_flags_rejected_with_the_flag_named(tmp_path, capsys):
    base = ["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0", "--quiet", "--out", str(tmp_path / "o")]
    assert main(base + ["--executor", "spark"]) == 2
    assert "--executor" in capsys.readouterr().err
    assert main(base + ["--num-gpus", "-1", "--executor", "ray"] if HAS_RAY else base + ["--num-gpus", "-1"]) == 2
    assert "--num-gpus" in capsys.readouterr().err
    assert main(base + ["--ray-address", "auto"]) == 2  # an address without --executor ray
    assert "--ray-address" in capsys.readouterr().err


def test_ray_missing_is_one_clear_line(tmp_path, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    rc = main(["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0", "--quiet", "--out",
               str(tmp_path / "o"), "--executor", "ray"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "--executor" in err and "pip install metacomm[ray]" in err


@pytest.fixture(scope="module")
def tiny_meta(tmp_path_factory):
    d = tmp_path_factory.mktemp("meta")
    assert main(["meta-train", "--scenario", "iq-demod", "--algo", "metasgd", "--meta-steps", "4", "--joint-steps",
                 "2", "--val-every", "2", "--val-tasks", "4", "--checkpoint-every", "0", "--quiet", "--out",
                 str(d / "m.pt")]) == 0
    return d / "m.pt"


def _fewshot_cfg(ck, out, **kw):
    from metacomm.experiments.fewshot import FewShotConfig
    return FewShotConfig(checkpoint=str(ck), out=str(out), pilots="2,8", steps="0,1,2", test_channels=3,
                         test_blocks=100, genie_steps=4, seed=1, **kw)


def _rows(res):
    return [{k: r[k] for k in ("scheme", "pilots", "steps", "block_errors", "blocks")} for r in res["results"]]


def test_fewshot_points_out_of_order_equal_in_order(tiny_meta, tmp_path):
    """Every (scheme, pilot count) point as its own task, last first, each on a freshly loaded checkpoint
    (as on a fresh worker) = the in-order evaluation on one loaded checkpoint."""
    from metacomm.experiments.fewshot import run_fewshot
    ref = run_fewshot(_fewshot_cfg(tiny_meta, tmp_path / "a"), log=lambda s: None)
    fake = ShuffledExecutor()
    cfg = _fewshot_cfg(tiny_meta, tmp_path / "b")  # a non-local executor: the workers load the checkpoint
    got = run_fewshot(cfg, log=lambda s: None, executor=fake)
    assert fake.calls == 3 * 2 + 1 + 2  # (meta, joint, random) x 2 pilot counts + genie + classical x 2
    assert _rows(got) == _rows(ref)


def _mt_cfg(out, **kw):
    from metacomm.experiments.meta_train import MetaTrainConfig
    return MetaTrainConfig(scenario="iq-demod", out=str(out), algo="maml", meta_steps=4, restarts=3, joint_steps=2,
                           val_every=2, val_tasks=4, checkpoint_every=0, seed=5, progress=False, **kw)


def _same_tensors(a, b):
    import torch
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_meta_train_restarts_out_of_order_equal_sequential(tmp_path):
    """Restarts as tasks (last first, each on a freshly built scenario), merged by the driver = the sequential
    restarts: the same selections, the same shipped initialisation, the same final trainer state."""
    import torch

    from metacomm.experiments.meta_train import run_meta_train
    a = run_meta_train(_mt_cfg(tmp_path / "a.pt"), log=lambda s: None)
    fake = ShuffledExecutor()
    b = run_meta_train(_mt_cfg(tmp_path / "b.pt"), log=lambda s: None, executor=fake)
    assert fake.calls == 3
    assert [(r["restart"], r["seed"], r["step"], r["val"]) for r in a["restarts"]] == \
        [(r["restart"], r["seed"], r["step"], r["val"]) for r in b["restarts"]]
    ca = torch.load(tmp_path / "a.pt", weights_only=True)
    cb = torch.load(tmp_path / "b.pt", weights_only=True)
    _same_tensors(ca["init"]["model"], cb["init"]["model"])
    _same_tensors(ca["model"], cb["model"])
    _same_tensors(ca["joint"]["model"], cb["joint"]["model"])
    assert (ca["restart"], ca["step"], ca["finished"]) == (cb["restart"], cb["step"], cb["finished"])


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for the Ray tests; RayExecutor joins it and leaves it running."""
    if not HAS_RAY:
        pytest.skip("ray is not installed (pip install metacomm[ray])")
    import os

    import ray
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    print(f"ray start {time.perf_counter() - t0:.1f} s")
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ber_sweep_through_local_ray_equals_local_executor(local_ray, tmp_path):
    from metacomm.experiments import ber
    ber.run_ber(_ber_cfg(tmp_path / "local"), log=lambda s: None)
    t0 = time.perf_counter()
    ber.run_ber(_ber_cfg(tmp_path / "ray", executor="ray"), log=lambda s: None)
    print(f"ray sweep {time.perf_counter() - t0:.1f} s")
    assert _points(tmp_path / "local" / "results.json") == _points(tmp_path / "ray" / "results.json")


@pytest.mark.slow
def test_fewshot_and_restarts_through_local_ray_equal_local(local_ray, tiny_meta, tmp_path):
    import torch

    from metacomm.experiments.fewshot import run_fewshot
    from metacomm.experiments.meta_train import run_meta_train
    ref = run_fewshot(_fewshot_cfg(tiny_meta, tmp_path / "a"), log=lambda s: None)
    got = run_fewshot(_fewshot_cfg(tiny_meta, tmp_path / "b", executor="ray"), log=lambda s: None)
    assert _rows(got) == _rows(ref)
    run_meta_train(_mt_cfg(tmp_path / "a.pt"), log=lambda s: None)
    run_meta_train(_mt_cfg(tmp_path / "b.pt", executor="ray"), log=lambda s: None)
    ca = torch.load(tmp_path / "a.pt", weights_only=True)
    cb = torch.load(tmp_path / "b.pt", weights_only=True)
    _same_tensors(ca["init"]["model"], cb["init"]["model"])
    _same_tensors(ca["model"], cb["model"])


class Interrupted(Exception):
    pass


class DiesAfter(ShuffledExecutor):
    """Runs ``n`` tasks (reversed order), then dies as a killed run would (the next task never reports)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def map(self, fn, specs, *, context=None):
        for k, item in enumerate(super().map(fn, specs, context=context)):
            if k == self.n:
                raise Interrupted
            yield item


def test_fewshot_resume_skips_finished_points_and_equals_uninterrupted(tiny_meta, tmp_path, capsys):
    from metacomm.artefacts import read_json
    from metacomm.experiments.fewshot import run_fewshot
    ref = run_fewshot(_fewshot_cfg(tiny_meta, tmp_path / "ref"), log=lambda s: None)
    out = tmp_path / "cut"
    with pytest.raises(Interrupted):
        run_fewshot(_fewshot_cfg(tiny_meta, out), log=lambda s: None, executor=DiesAfter(4))
    part = read_json(out / "results.json", kind="metacomm-fewshot", field="out")
    assert part["config"]["finished"] is False and part["progress"]["done"] == 4  # written point by point
    # a changed setting is refused, naming the flag
    argv = ["fewshot", "--checkpoint", str(tiny_meta), "--pilots", "2,8", "--steps", "0,1,2", "--test-channels",
            "3", "--test-blocks", "100", "--genie-steps", "4", "--out", str(out), "--resume"]
    assert main([*argv, "--seed", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    rest = ShuffledExecutor()
    got = run_fewshot(_fewshot_cfg(tiny_meta, out, resume=True), log=lambda s: None, executor=rest)
    assert rest.calls == 9 - 4  # finished points are not recomputed
    assert _rows(got) == _rows(ref)
    final = read_json(out / "results.json", kind="metacomm-fewshot", field="out")
    assert _rows(final) == _rows(ref) and "finished" not in final["config"]
    # --resume with nothing written yet starts the run (a script that always passes --resume keeps working)
    none = [a if a != str(out) else str(tmp_path / "none") for a in argv]
    assert main([*none, "--seed", "1"]) == 0
    assert _rows(read_json(tmp_path / "none" / "results.json", kind="metacomm-fewshot", field="out")) == _rows(ref)


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install metacomm[ray])")
def test_unreachable_ray_cluster_fails_fast_naming_the_flag(tmp_path, capsys):
    import ray

    from metacomm import ConfigError
    from metacomm.experiments.executors import _check_reachable
    with pytest.raises(ConfigError, match="127.0.0.1:1"):
        _check_reachable("ray://127.0.0.1:1")
    if ray.is_initialized():  # a Ray of this session (the slow tests' fixture) would be joined instead
        return
    t0 = time.perf_counter()
    rc = main(["ber", "--codec", "bpsk", "--channel", "awgn", "--ebno-db", "0", "--quiet", "--out",
               str(tmp_path / "o"), "--executor", "ray", "--ray-address", "127.0.0.1:1"])
    assert rc == 2 and "--ray-address" in capsys.readouterr().err
    assert time.perf_counter() - t0 < 30  # Ray alone would wait 60 s and then kill the process
    assert not (tmp_path / "o" / "results.json").exists()


class InOrderDiesAfter(Executor):
    """Fresh context per task, in order, dies after ``n`` tasks (a remote run killed midway)."""

    def __init__(self, n):
        self.n = n

    def map(self, fn, specs, *, context=None):
        for i, spec in enumerate(specs):
            if i == self.n:
                raise Interrupted
            yield i, fn(context[0](*context[1]), spec)


def test_meta_train_restarts_checkpointed_by_the_driver_resume_exactly(tmp_path):
    """The checkpoint the driver writes when restart 0 of 3 finished on a worker resumes (locally) to the
    uninterrupted run's result."""
    import torch

    from metacomm.experiments.meta_train import run_meta_train
    run_meta_train(_mt_cfg(tmp_path / "a.pt"), log=lambda s: None)
    with pytest.raises(Interrupted):
        run_meta_train(_mt_cfg(tmp_path / "b.pt"), log=lambda s: None, executor=InOrderDiesAfter(1))
    part = torch.load(tmp_path / "b.pt", weights_only=True)
    assert part["finished"] is False and len(part["restarts"]) == 1
    run_meta_train(_mt_cfg(tmp_path / "b.pt", resume=str(tmp_path / "b.pt")), log=lambda s: None)
    ca = torch.load(tmp_path / "a.pt", weights_only=True)
    cb = torch.load(tmp_path / "b.pt", weights_only=True)
    _same_tensors(ca["init"]["model"], cb["init"]["model"])
    _same_tensors(ca["model"], cb["model"])
    _same_tensors(ca["joint"]["model"], cb["joint"]["model"])
    assert [r["val"] for r in ca["restarts"]] == [r["val"] for r in cb["restarts"]]
