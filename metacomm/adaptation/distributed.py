r"""Multi-process meta-training: the tasks of a meta-batch split across the ranks of a ``torch.distributed`` group.

DistributedDataParallel cannot be used (it does not support the double backward of second-order MAML), so the
meta-gradient is reduced explicitly. Every rank draws the *same* meta-batch of :math:`T` tasks (the trainer's
generator is seeded identically on every rank), keeps its contiguous shard of :math:`T_r` tasks
(:func:`shard`: the first ``T mod W`` ranks get one task more), computes the meta-gradient of its shard with
:func:`~metacomm.adaptation.algorithms.meta_gradients` (a mean over its :math:`T_r` tasks), and one
``all_reduce(SUM)`` of :math:`\frac{T_r}{T} g_r` gives every rank the full-batch mean

.. math:: g = \frac1T\sum_t g_t = \sum_r \frac{T_r}{T}\, \bar g_r,

for the model's parameters *and* the update rule's meta-parameters (Meta-SGD rates), and for Reptile's
:math:`\theta - \bar\phi` (linear in the per-task :math:`\phi_t`). The meta-loss is reduced the same way, the
per-task losses are placed at their task indices and summed, the query statistics (sums over tasks) are summed.
Every rank then takes the same outer step, so the replicas stay identical (validation is replicated too); only
rank 0 writes checkpoints.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) ``metacomm meta-train`` does this by itself::

    torchrun --nproc_per_node 4 -m metacomm meta-train --scenario fading-ae --device cuda --out meta.pt

(NCCL on CUDA: rank ``r`` uses ``cuda:LOCAL_RANK``; gloo on CPU).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.distributed as dist

from metacomm.adaptation.algorithms import MetaGradient, meta_gradients
from metacomm.adaptation.objective import TaskBatch, num_tasks, task_slice
from metacomm.adaptation.trainer import MetaTrainer

__all__ = ["env_world", "init_from_env", "is_active", "rank", "world_size", "shard", "distributed_meta_gradients",
           "DistributedMetaTrainer"]


def env_world() -> tuple[int, int, int]:
    """``(WORLD_SIZE, RANK, LOCAL_RANK)`` from the environment (``torchrun`` sets them; ``(1, 0, 0)`` without)."""
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))))


def is_active() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def init_from_env(device: str | torch.device = "cpu") -> bool:
    """Initialise the default process group from ``torchrun``'s environment (``env://``) when ``WORLD_SIZE > 1``:
    NCCL for a CUDA ``device``, gloo otherwise. Returns whether training is distributed."""
    world, _, _ = env_world()
    if world <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_world_size() > 1


def shard(T: int, world: int, r: int) -> slice:
    """The contiguous tasks of rank ``r`` among ``world`` ranks: sizes ``T // world`` (+1 for the first
    ``T % world`` ranks)."""
    base, extra = divmod(int(T), int(world))
    lo = r * base + min(r, extra)
    return slice(lo, lo + base + (1 if r < extra else 0))


def distributed_meta_gradients(model, objective, params: Mapping[str, torch.Tensor], tasks: TaskBatch, *,
                               group=None, **kwargs) -> MetaGradient:
    """:func:`~metacomm.adaptation.algorithms.meta_gradients` of the whole task batch, computed on this rank's
    shard and all-reduced (module docstring). Every rank must pass the same ``tasks`` and ``params``; all get the
    same result (equal to the single-process meta-gradient up to float summation order)."""
    if not is_active():
        return meta_gradients(model, objective, params, tasks, **kwargs)
    W, r = dist.get_world_size(group), dist.get_rank(group)
    T = num_tasks(tasks)
    sl = shard(T, W, r)
    n = sl.stop - sl.start
    if n > 0:
        local = TaskBatch(task_slice(tasks.support, sl), task_slice(tasks.query, sl))
        mg = meta_gradients(model, objective, params, local, **kwargs)
    else:  # more ranks than tasks: this rank contributes nothing (shapes from a one-task evaluation)
        local = TaskBatch(task_slice(tasks.support, slice(0, 1)), task_slice(tasks.query, slice(0, 1)))
        mg = meta_gradients(model, objective, params, local, **kwargs)
    w = n / T
    names = list(mg.grads)
    rkeys = list(mg.rule_grads or {})
    skeys = sorted(mg.stats)
    dev = next(iter(mg.grads.values())).device
    losses = torch.zeros(T, dtype=mg.task_losses.dtype, device=dev)
    if n > 0:
        losses[sl] = mg.task_losses.to(dev)
    parts = [mg.grads[k].reshape(-1) * w for k in names] + [mg.rule_grads[k].reshape(-1) * w for k in rkeys]
    parts += [(mg.loss * w).reshape(1).to(dev), losses]
    parts += [(mg.stats[k] * (1.0 if n > 0 else 0.0)).reshape(-1).to(dev) for k in skeys]
    sizes = [p.numel() for p in parts]
    flat = torch.cat([p.to(torch.float64) for p in parts])  # one reduction, summed in float64
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    out = list(torch.split(flat, sizes))
    grads = {k: out[i].reshape(mg.grads[k].shape).to(mg.grads[k].dtype) for i, k in enumerate(names)}
    o = len(names)
    rule = {k: out[o + i].reshape(mg.rule_grads[k].shape).to(mg.rule_grads[k].dtype) for i, k in enumerate(rkeys)}
    o += len(rkeys)
    loss = out[o].reshape(()).to(mg.loss.dtype)
    task_losses = out[o + 1].to(mg.task_losses.dtype)
    o += 2
    stats = {k: out[o + i].reshape(mg.stats[k].shape).to(mg.stats[k].dtype) for i, k in enumerate(skeys)}
    return MetaGradient(grads, rule if mg.rule_grads is not None else None, loss, task_losses, stats)


class DistributedMetaTrainer(MetaTrainer):
    """A :class:`~metacomm.adaptation.trainer.MetaTrainer` whose meta-gradients are split across the ranks of the
    default process group (:func:`distributed_meta_gradients`) and that writes checkpoints on rank 0 only. Every
    rank must be built with the same model seed, task seed and config; outside a process group it is a plain
    MetaTrainer."""

    def _meta_gradients(self, *args, **kwargs) -> MetaGradient:
        return distributed_meta_gradients(*args, **kwargs)

    def save(self, path, extra=None, *, kind="metacomm-meta-trainer") -> None:
        if rank() == 0:
            super().save(path, extra, kind=kind)
