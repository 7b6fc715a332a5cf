r"""The task protocol and the meta-objective hook.

**Task.** One task is one channel realisation (one device, one fading draw). It provides a *support* batch
(the pilots the receiver adapts on) and a *query* batch (fresh data through the same realisation, on which the
adapted model is scored). Each batch is a pytree (tuple or dict) of tensors holding *everything random*:
messages, channel state (taps), pre-drawn unit-variance noise, N0. Nothing is drawn inside the loss, so that
the loss is a deterministic function of ``(weights, batch)`` and can be vmapped over tasks.

A :class:`TaskBatch` stacks ``T`` tasks along dim 0 of every leaf (``support`` leaves ``[T, ...]``). A *task
sampler* is a callable ``sampler(num_tasks, generator) -> TaskBatch`` that draws from the explicit generator.

**MetaObjective.** A scenario says what is learned by subclassing :class:`MetaObjective`:

* :meth:`MetaObjective.loss` ``(model, batch) -> (loss, stats)`` -- the differentiable loss on one task's
  batch (a scalar) and a dict of scalar statistics (e.g. ``"block_errors"``, ``"blocks"``) that are summed
  over tasks for reporting;
* :meth:`MetaObjective.inner_loss` / :meth:`MetaObjective.outer_loss` -- default to :meth:`loss`; override
  to use e.g. a quantised forward pass in the inner loop, sample weights, or adversarial query symbols;
* :attr:`MetaObjective.adapt` -- which parameters the inner loop adapts (an adapt spec, see
  :mod:`metacomm.adaptation.params`); ``"head"`` gives ANIL.

``model`` in these methods is the module evaluated with the weights under consideration swapped in (via
:func:`torch.func.functional_call`); call its sub-modules normally.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_map

from metacomm._validation import ConfigError
from metacomm.adaptation.params import AdaptSpec

__all__ = ["MetaObjective", "TaskBatch", "TaskSampler", "task_slice", "num_tasks", "SupervisedObjective"]


class TaskBatch(NamedTuple):
    """``T`` tasks: ``support`` and ``query`` pytrees whose tensor leaves all have leading dim ``T``."""

    support: Any
    query: Any


TaskSampler = Callable[[int, torch.Generator], TaskBatch]


def task_slice(tree: Any, i) -> Any:
    """Task ``i`` (an int or slice) of a task-stacked pytree."""
    return tree_map(lambda t: t[i] if isinstance(t, torch.Tensor) else t, tree)


def num_tasks(tasks: TaskBatch) -> int:
    """``T``: the leading dim of the first tensor leaf of ``tasks.support`` (a
    :class:`~metacomm.ConfigError` naming ``tasks`` when there is none)."""
    from torch.utils._pytree import tree_leaves
    for leaf in tree_leaves(tasks.support):
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    raise ConfigError("tasks", "task batch has no tensor leaf with a task axis")


class MetaObjective:
    """Base class of meta-objectives (module docstring). Subclasses implement :meth:`loss`.

    Attributes: ``adapt`` (adapt spec, default ``"all"``).
    """

    adapt: AdaptSpec = "all"

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def inner_loss(self, model: nn.Module, support: Any) -> torch.Tensor:
        """Scalar loss minimised by the inner loop on the support batch."""
        return self.loss(model, support)[0]

    def outer_loss(self, model: nn.Module, query: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, stats)`` of the adapted model on the query batch (the meta-loss of one task)."""
        return self.loss(model, query)


_REGRESSION = (F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss)
_CLASSIFICATION = (F.cross_entropy, F.nll_loss)


@dataclass
class SupervisedObjective(MetaObjective):
    """``batch = (inputs, targets)``; loss = ``criterion(model(inputs), targets)`` (mean), stats = the loss.

    A convenience for model-agnostic uses (tests, benchmarks, few-shot regression, demodulators where the
    channel is in the data). With ``classify=True`` also reports ``errors`` (argmax != target count) and
    ``count``.

    Shapes (per task, inside the engine's ``vmap``): for a regression criterion (``mse_loss``, ``l1_loss``,
    ``smooth_l1_loss``, ``huber_loss``) the targets must have the output's shape (e.g. ``[K, 1]`` for ``[K, 1]``
    outputs: a ``[K]`` target would silently broadcast to ``[K, K]``); for ``cross_entropy``/``nll_loss`` or
    ``classify=True`` they are class indices of the output's shape without the last (class) dim (or, for
    ``cross_entropy``, probabilities of the output's shape). Anything else raises
    :class:`~metacomm.ConfigError` naming ``targets``. Other criteria are not checked.
    """

    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.mse_loss
    adapt: AdaptSpec = "all"
    classify: bool = False

    def _check(self, out: torch.Tensor, y: torch.Tensor) -> None:
        if self.classify or self.criterion in _CLASSIFICATION:
            ok = tuple(y.shape) == tuple(out.shape[:-1]) or (
                self.criterion is F.cross_entropy and tuple(y.shape) == tuple(out.shape))
            if not ok:
                raise ConfigError("targets", f"class-index targets of shape {tuple(out.shape[:-1])} expected for "
                                             f"outputs {tuple(out.shape)}, got {tuple(y.shape)}")
        elif self.criterion in _REGRESSION and tuple(y.shape) != tuple(out.shape):
            raise ConfigError("targets", f"targets must have the output's shape {tuple(out.shape)} (per task), "
                                         f"got {tuple(y.shape)}; e.g. reshape them to [..., 1] for a 1-output "
                                         "model")

    def loss(self, model, batch):
        x, y = batch
        out = model(x)
        self._check(out, y)
        loss = self.criterion(out, y)
        stats = {}
        if self.classify:
            stats["errors"] = (out.argmax(-1) != y).sum().to(out.dtype)
            stats["count"] = torch.tensor(float(y.numel()), dtype=out.dtype, device=out.device)
        return loss, stats
