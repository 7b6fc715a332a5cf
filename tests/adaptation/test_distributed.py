"""Multi-process meta-gradients: 2 gloo ranks on CPU (started with torchrun's environment) give the
single-process meta-gradient of the whole meta-batch, computed here by the per-task reference loop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from metacomm.adaptation import MetaTrainer, meta_gradients
from metacomm.adaptation.distributed import shard

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _dist_worker as W  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out, mode, timeout=240):
    port = _free_port()
    procs = []
    for r in range(2):
        env = dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "_dist_worker.py"), str(out), mode],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-3000:]
    return [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=True) for r in range(2)]


def test_shard_covers_every_task_once():
    for T in range(0, 9):
        for world in (1, 2, 3, 4):
            got = [i for r in range(world) for i in range(T)[shard(T, world, r)]]
            assert got == list(range(T))


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_two_gloo_ranks_give_the_single_process_meta_gradient(tmp_path):
    ranks = _launch(tmp_path, "grads")
    for algo in ("maml", "fomaml", "reptile", "metasgd"):
        model, params, batch, kw = W.grads_case(algo)
        ref = meta_gradients(model, W.objective(), params, batch, batched=False, **kw)  # per-task loop
        for res in ranks:
            got = res[algo]
            for n in ref.grads:
                _close(got["grads"][n], ref.grads[n])
            assert any(float(g.abs().max()) > 1e-4 for g in ref.grads.values())
            _close(got["loss"], ref.loss)
            _close(got["task_losses"], ref.task_losses)
            if algo == "metasgd":  # the learned rates' meta-gradient is reduced too
                for k in ref.rule_grads:
                    _close(got["rule"][k], ref.rule_grads[k])
                assert any(float(g.abs().max()) > 1e-6 for g in ref.rule_grads.values())
        for n in ref.grads:  # both ranks hold the same reduced gradient
            assert torch.equal(ranks[0][algo]["grads"][n], ranks[1][algo]["grads"][n])


@pytest.mark.slow
def test_two_gloo_ranks_train_like_one_process(tmp_path):
    """4 outer steps of DistributedMetaTrainer on 2 ranks = MetaTrainer in one process (float tolerance);
    only rank 0 writes the checkpoint."""
    ranks = _launch(tmp_path, "train")
    from metacomm.adaptation import MetaConfig
    cfg = MetaConfig(algo="maml", inner_steps=1, inner_lr=0.05, outer_lr=1e-2, meta_batch=W.T)
    tr = MetaTrainer(W.mlp(0), W.objective(), W.tasks, cfg, seed=3)
    tr.train(4, progress=False)
    for k, v in tr.model.state_dict().items():
        _close(ranks[0]["weights"][k], v)
        assert torch.equal(ranks[0]["weights"][k], ranks[1]["weights"][k])
    assert (tmp_path / "ck.pt").exists()
    assert not torch.equal(ranks[0]["weights"]["0.weight"], W.mlp(0)[0].weight.detach())  # it did train


@pytest.mark.slow
def test_meta_train_command_under_two_ranks(tmp_path):
    """`metacomm meta-train` started as 2 ranks (torchrun's environment) writes one checkpoint (rank 0) equal,
    to float tolerance, to the single-process run's."""
    port = _free_port()
    argv = ["-m", "metacomm", "meta-train", "--scenario", "iq-demod", "--meta-steps", "3", "--meta-batch", "4",
            "--joint-steps", "2", "--val-every", "0", "--checkpoint-every", "0", "--quiet", "--threads", "1"]
    procs = []
    for r in range(2):
        env = dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, *argv, "--out", str(tmp_path / "d.pt")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = []
    try:
        logs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-3000:]
    assert "meta-train iq-demod" in logs[0] and "meta-train iq-demod" not in logs[1]  # rank 0 speaks
    from metacomm.cli.main import main
    assert main([*argv[2:], "--out", str(tmp_path / "s.pt")]) == 0
    a = torch.load(tmp_path / "d.pt", weights_only=True)
    b = torch.load(tmp_path / "s.pt", weights_only=True)
    for k in b["model"]:
        _close(a["model"][k], b["model"][k])
        _close(a["joint"]["model"][k], b["joint"]["model"][k])
