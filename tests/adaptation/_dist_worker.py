"""One rank of the 2-process gloo tests (tests/adaptation/test_distributed.py), started with torchrun's
environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). argv: OUT_DIR MODE ("grads" or "train")."""

import math
import os
import sys

import torch
from torch import nn

torch.set_num_threads(1)

from metacomm.adaptation import (  # noqa: E402
    MetaConfig,
    MetaSGD,
    SupervisedObjective,
    TaskBatch,
    params_of,
)
from metacomm.adaptation import distributed as D  # noqa: E402

T = 5  # split 3 / 2 over two ranks: the weights T_r / T matter


def tasks(T, g, k=10):
    A = 0.1 + 4.9 * torch.rand(T, 1, 1, generator=g)
    ph = math.pi * torch.rand(T, 1, 1, generator=g)
    xs = -5 + 10 * torch.rand(T, k, 1, generator=g)
    xq = -5 + 10 * torch.rand(T, k, 1, generator=g)
    return TaskBatch((xs, A * torch.sin(xs + ph)), (xq, A * torch.sin(xq + ph)))


def mlp(seed):
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return m


def objective():
    return SupervisedObjective(nn.functional.mse_loss)


def grads_case(algo):
    model = mlp(0)
    params = params_of(model)
    batch = tasks(T, torch.Generator().manual_seed(1))
    kw = {"algo": algo, "inner_steps": 2, "adapt": "all"}
    if algo == "metasgd":
        kw["rule"] = MetaSGD.like(params, 0.05)
    else:
        kw["inner_lr"] = 0.05
    return model, params, batch, kw


def main(out, mode):
    assert D.init_from_env("cpu") and D.world_size() == 2
    res = {}
    if mode == "grads":
        for algo in ("maml", "fomaml", "reptile", "metasgd"):
            model, params, batch, kw = grads_case(algo)
            mg = D.distributed_meta_gradients(model, objective(), params, batch, **kw)
            res[algo] = {"grads": mg.grads, "rule": mg.rule_grads, "loss": mg.loss, "task_losses": mg.task_losses}
    else:
        cfg = MetaConfig(algo="maml", inner_steps=1, inner_lr=0.05, outer_lr=1e-2, meta_batch=T)
        tr = D.DistributedMetaTrainer(mlp(0), objective(), tasks, cfg, seed=3)
        tr.train(4, progress=False, checkpoint_path=os.path.join(out, "ck.pt"))
        res["weights"] = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
    torch.save(res, os.path.join(out, f"rank{D.rank()}.pt"))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
