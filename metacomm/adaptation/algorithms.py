r"""Meta-gradients of the MAML family, task-batched (``torch.vmap`` over a task axis) and per-task (reference).

For a meta-batch of :math:`T` tasks with support/query batches :math:`(S_t, Q_t)`, adapted parameters
:math:`\theta_A` (the rest :math:`\theta_F` frozen in the inner loop) and :math:`K` inner steps at rate
:math:`\alpha`, let :math:`\phi_t = U^K_{S_t}(\theta)` be the inner update of
:mod:`metacomm.adaptation.functional`. The meta-loss is :math:`\mathcal L = \frac1T\sum_t
\mathcal L_{Q_t}(\phi_t, \theta_F)` and the algorithms return these meta-gradients (to be fed to an outer
optimiser such as Adam):

* ``maml`` -- second order: :math:`g = \nabla_\theta \mathcal L` through the inner loop (Finn et al. 2017).
* ``fomaml`` -- first order: the inner gradients are treated as constants, so :math:`\partial\phi_t/
  \partial\theta_A = I` and :math:`g_A = \frac1T\sum_t \nabla_{\phi}\mathcal L_{Q_t}(\phi_t)`.
* ``reptile`` -- :math:`g_A = \theta_A - \frac1T\sum_t \phi_t` with :math:`\phi_t` from :math:`K` SGD steps on
  the support batch (Nichol et al. 2018); an outer SGD step of rate :math:`\epsilon` is then
  :math:`\theta \leftarrow \theta + \epsilon(\bar\phi - \theta)`. Frozen parameters get zero gradient. The
  reported loss is the query loss after adaptation.
* ``metasgd`` -- second order with a learned per-parameter inner rate tensor :math:`\alpha_A` (same shape as
  each adapted parameter, Li et al. 2017); returns :math:`\nabla_\theta\mathcal L` and
  :math:`\nabla_\alpha\mathcal L`.
* ``anil`` -- second-order MAML adapting only the head (``adapt="head"`` unless given; Raghu et al. 2020).

Every algorithm takes an ``adapt`` list of names, so "decoder only" or "encoder + decoder" adaptation is the
same code. :func:`meta_gradients` (``batched=True``) runs all tasks as one batched computation (per-task
weights stacked on a task axis, :func:`~metacomm.adaptation.functional.inner_adapt_batched`);
``batched=False`` runs the per-task loop over ``functional_call`` + ``torch.autograd.grad`` (the reference that
tests compare against).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from metacomm._validation import check_choice, check_nonneg, check_nonneg_int
from metacomm.adaptation.functional import batched_loss, call, inner_adapt_autograd, inner_adapt_batched
from metacomm.adaptation.objective import MetaObjective, TaskBatch, num_tasks, task_slice

__all__ = ["ALGORITHMS", "MetaGradient", "meta_gradients", "adapt_and_score", "default_adapt"]

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd", "anil")
SECOND_ORDER = {"maml": True, "fomaml": False, "reptile": False, "metasgd": True, "anil": True}


@dataclass
class MetaGradient:
    """Result of one meta-gradient evaluation.

    ``grads``: ``{name: tensor}`` for every parameter in ``params`` (zeros where the meta-loss does not
    depend on it); ``lr_grads``: gradients of the Meta-SGD rates (``None`` otherwise); ``loss``: the meta-loss
    (mean query loss after adaptation, a detached scalar); ``task_losses``: ``[T]``; ``stats``: the objective's
    query statistics summed over tasks (detached).
    """

    grads: dict[str, torch.Tensor]
    lr_grads: dict[str, torch.Tensor] | None
    loss: torch.Tensor
    task_losses: torch.Tensor
    stats: dict[str, torch.Tensor]


def default_adapt(algo: str, objective: MetaObjective):
    """The adapt spec an algorithm uses: the objective's, except ANIL defaults to ``"head"``."""
    if algo == "anil" and objective.adapt in (None, "all"):
        return "head"
    return objective.adapt


def _zeros_for_missing(params, grads):
    return {n: (grads[n] if grads.get(n) is not None else torch.zeros_like(p)) for n, p in params.items()}


def _detached_stats(stats):
    return {k: v.detach().sum(0) if v.dim() else v.detach() for k, v in stats.items()}


def meta_gradients(model: nn.Module, objective: MetaObjective, params: Mapping[str, torch.Tensor],
                   tasks: TaskBatch, *, algo: str = "maml", adapt: list[str], inner_steps: int = 1,
                   inner_lr: float = 0.1, lrs: Mapping[str, torch.Tensor] | None = None,
                   batched: bool = True) -> MetaGradient:
    r"""Meta-gradient of ``algo`` (module docstring) for a task batch.

    :param params: ``{name: tensor}`` meta-parameters :math:`\theta` (typically ``params_of(model)``); they
        need not require grad (a differentiable copy is used).
    :param tasks: :class:`TaskBatch` with ``T`` tasks stacked on dim 0.
    :param adapt: names adapted by the inner loop (:func:`metacomm.adaptation.params.select_names`).
    :param inner_lr: scalar inner rate (ignored for ``metasgd``, which uses ``lrs``).
    :param lrs: Meta-SGD per-parameter rates ``{name: tensor}`` for every adapted name (required for
        ``metasgd``).
    :param batched: ``True`` -- one vmapped computation over tasks; ``False`` -- per-task reference loop.
    """
    check_choice("algo", algo, ALGORITHMS)
    inner_steps = check_nonneg_int("inner_steps", inner_steps)
    check_nonneg("inner_lr", inner_lr)
    if algo == "metasgd":
        if lrs is None or any(n not in lrs for n in adapt):
            from metacomm._validation import ConfigError
            raise ConfigError("lrs", "metasgd needs a per-parameter rate tensor for every adapted parameter")
        lr_t = {n: lrs[n].detach().requires_grad_(True) for n in adapt}
    else:
        lr_t = None
    theta = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    rate = lr_t if lr_t is not None else float(inner_lr)
    T = num_tasks(tasks)
    if algo == "reptile":
        return _reptile(model, objective, theta, tasks, adapt, inner_steps, rate, batched, T)
    create_graph = SECOND_ORDER[algo]
    if batched:
        phi = inner_adapt_batched(model, theta, tasks.support, objective.inner_loss, num_tasks=T,
                                  steps=inner_steps, lr=rate, create_graph=create_graph, adapt=adapt)
        if not create_graph:  # first order: d phi / d theta_A = I (straight-through)
            phi = {n: theta[n] + (phi[n] - theta[n]).detach() for n in adapt}
        losses, stats = batched_loss(model, theta, objective.outer_loss, tasks.query, phi)
        meta_loss = losses.mean()
        wrt = list(theta.values()) + (list(lr_t.values()) if lr_t else [])
        g = torch.autograd.grad(meta_loss, wrt, allow_unused=True)
        grads = dict(zip(theta, g[:len(theta)], strict=True))
        lr_grads = dict(zip(lr_t, g[len(theta):], strict=True)) if lr_t else None
        stats = _detached_stats(stats)
        task_losses = losses.detach()
    else:
        grads = {n: None for n in theta}
        lr_grads = {n: None for n in lr_t} if lr_t else None
        task_losses, stats = [], {}
        for i in range(T):
            support, query = task_slice(tasks.support, i), task_slice(tasks.query, i)
            phi = inner_adapt_autograd(model, theta, support, objective.inner_loss, steps=inner_steps, lr=rate,
                                       create_graph=create_graph, adapt=adapt)
            loss, st = call(model, phi, objective.outer_loss, query)
            if create_graph:
                wrt_names = list(theta)
                wrt = [theta[n] for n in wrt_names] + (list(lr_t.values()) if lr_t else [])
                g = torch.autograd.grad(loss / T, wrt, allow_unused=True)
                pairs = list(zip(wrt_names, g[:len(wrt_names)], strict=True))
                if lr_t:
                    for n, gn in zip(lr_t, g[len(wrt_names):], strict=True):
                        lr_grads[n] = gn if lr_grads[n] is None else lr_grads[n] + gn
            else:
                # First order: differentiate w.r.t. the (detached) adapted weights and the frozen ones.
                wrt_names = list(theta)
                wrt = [phi[n] if n in adapt else theta[n] for n in wrt_names]
                g = torch.autograd.grad(loss / T, wrt, allow_unused=True)
                pairs = list(zip(wrt_names, g, strict=True))
            for n, gn in pairs:
                if gn is not None:
                    grads[n] = gn if grads[n] is None else grads[n] + gn
            task_losses.append(loss.detach())
            for k, v in st.items():
                stats[k] = stats.get(k, 0) + v.detach()
        task_losses = torch.stack(task_losses)
        meta_loss = task_losses.mean()
    grads = _zeros_for_missing(theta, grads)
    if lr_grads is not None:
        lr_grads = _zeros_for_missing(lr_t, lr_grads)
    return MetaGradient({n: g.detach() for n, g in grads.items()},
                        {n: g.detach() for n, g in lr_grads.items()} if lr_grads else None,
                        meta_loss.detach(), task_losses, stats)


def _reptile(model, objective, theta, tasks, adapt, steps, rate, batched, T) -> MetaGradient:
    theta_d = {n: t.detach() for n, t in theta.items()}
    if batched:
        phis = inner_adapt_batched(model, theta_d, tasks.support, objective.inner_loss, num_tasks=T, steps=steps,
                                   lr=rate, create_graph=False, adapt=adapt)
        with torch.no_grad():
            losses, stats = batched_loss(model, theta_d, objective.outer_loss, tasks.query, phis)
        phi_mean = {n: phis[n].mean(0) for n in adapt}
        stats = _detached_stats(stats)
    else:
        phi_sum = {n: torch.zeros_like(theta_d[n]) for n in adapt}
        losses, stats = [], {}
        for i in range(T):
            support, query = task_slice(tasks.support, i), task_slice(tasks.query, i)
            phi = inner_adapt_autograd(model, theta_d, support, objective.inner_loss, steps=steps, lr=rate,
                                       create_graph=False, adapt=adapt)
            with torch.no_grad():
                loss, st = call(model, phi, objective.outer_loss, query)
            for n in adapt:
                phi_sum[n] = phi_sum[n] + phi[n].detach()
            losses.append(loss.detach())
            for k, v in st.items():
                stats[k] = stats.get(k, 0) + v.detach()
        losses = torch.stack(losses)
        phi_mean = {n: phi_sum[n] / T for n in adapt}
    grads = {n: (theta_d[n] - phi_mean[n]).detach() if n in adapt else torch.zeros_like(t)
             for n, t in theta_d.items()}
    losses = losses.detach()
    return MetaGradient(grads, None, losses.mean(), losses, stats)


def adapt_and_score(model: nn.Module, objective: MetaObjective, params: Mapping[str, torch.Tensor],
                    tasks: TaskBatch, *, adapt: list[str], inner_steps: int, inner_lr,
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Validation: adapt every task (no meta-gradient) and return the per-task query losses ``[T]`` and the
    query statistics summed over tasks. ``inner_lr`` may be a Meta-SGD rate dict."""
    theta = {n: p.detach() for n, p in params.items()}
    rate = {n: v.detach() for n, v in inner_lr.items()} if isinstance(inner_lr, Mapping) else float(inner_lr)

    phi = inner_adapt_batched(model, theta, tasks.support, objective.inner_loss, num_tasks=num_tasks(tasks),
                              steps=inner_steps, lr=rate, create_graph=False, adapt=adapt)
    with torch.no_grad():
        losses, stats = batched_loss(model, theta, objective.outer_loss, tasks.query, phi)
    return losses.detach(), _detached_stats(stats)
