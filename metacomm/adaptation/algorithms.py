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
* ``metasgd`` -- MAML with the Meta-SGD update rule (:class:`~metacomm.adaptation.update_rules.MetaSGD`: a
  learned per-parameter inner rate tensor :math:`\alpha_A` of each adapted parameter's shape, Li et al.
  2017); returns :math:`\nabla_\theta\mathcal L` and :math:`\nabla_\alpha\mathcal L`.
* ``anil`` -- second-order MAML adapting only the head (``adapt="head"`` unless given; Raghu et al. 2020).

The inner update is a pluggable :class:`~metacomm.adaptation.update_rules.UpdateRule` (``rule=``; default
``SGD(inner_lr)``): for the second-order algorithms the meta-gradient includes the gradient w.r.t. the rule's
meta-parameters (:attr:`MetaGradient.rule_grads`), so any rule with learned parameters (Meta-SGD rates, a
learned gradient transform, a learned example weighting) is meta-trained by the same code. Every algorithm takes
an ``adapt`` spec (``"all"``, ``"decoder"``, ``"head"``, globs or a list of names; default: the objective's),
so "decoder only" or "encoder + decoder" adaptation is the same code. :func:`meta_gradients` (``batched=True``) runs all tasks as one batched computation (per-task
weights stacked on a task axis, :func:`~metacomm.adaptation.functional.inner_adapt_batched`);
``batched=False`` runs the per-task loop over ``functional_call`` + ``torch.autograd.grad`` (the reference that
tests compare against).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from metacomm._validation import ConfigError, check_choice, check_nonneg, check_nonneg_int
from metacomm.adaptation.functional import batched_loss, call, inner_adapt_autograd, inner_adapt_batched
from metacomm.adaptation.objective import MetaObjective, TaskBatch, num_tasks, task_slice
from metacomm.adaptation.params import AdaptSpec, resolve_adapt
from metacomm.adaptation.update_rules import MetaSGD, UpdateRule, as_rule

__all__ = ["ALGORITHMS", "MetaGradient", "TaskScores", "meta_gradients", "adapt_and_score", "evaluate_init",
           "default_adapt", "resolve_rule"]

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd", "anil")
SECOND_ORDER = {"maml": True, "fomaml": False, "reptile": False, "metasgd": True, "anil": True}


@dataclass
class MetaGradient:
    """Result of one meta-gradient evaluation.

    ``grads``: ``{name: tensor}`` for every parameter in ``params`` (zeros where the meta-loss does not
    depend on it); ``rule_grads``: gradients of the update rule's meta-parameters ``{key: tensor}`` (Meta-SGD
    rates; zeros for the first-order algorithms), ``None`` when the rule has none; ``loss``: the meta-loss
    (mean query loss after adaptation, a detached scalar); ``task_losses``: ``[T]``; ``stats``: the
    objective's query statistics summed over tasks (detached). ``lr_grads`` is the former name of
    ``rule_grads``.
    """

    grads: dict[str, torch.Tensor]
    rule_grads: dict[str, torch.Tensor] | None
    loss: torch.Tensor
    task_losses: torch.Tensor
    stats: dict[str, torch.Tensor]

    @property
    def lr_grads(self) -> dict[str, torch.Tensor] | None:
        """Deprecated name of :attr:`rule_grads` (the Meta-SGD rate gradients)."""
        return self.rule_grads


class TaskScores(NamedTuple):
    """Per-task query losses ``losses`` float ``[T]`` and the objective's statistics summed over the tasks."""

    losses: torch.Tensor
    stats: dict[str, torch.Tensor]

    @property
    def mean(self) -> float:
        """Mean query loss over the tasks."""
        return float(self.losses.mean())


def default_adapt(algo: str, objective: MetaObjective):
    """The adapt spec an algorithm uses: the objective's, except ANIL defaults to ``"head"``."""
    if algo == "anil" and objective.adapt in (None, "all"):
        return "head"
    return objective.adapt


def _zeros_for_missing(params, grads):
    return {n: (grads[n] if grads.get(n) is not None else torch.zeros_like(p)) for n, p in params.items()}


def _detached_stats(stats):
    return {k: v.detach().sum(0) if v.dim() else v.detach() for k, v in stats.items()}


def _check_tasks(tasks) -> int:
    if not isinstance(tasks, TaskBatch):
        if isinstance(tasks, tuple) and len(tasks) == 2:
            tasks = TaskBatch(*tasks)
        else:
            raise ConfigError("tasks", f"expected a TaskBatch(support, query), got {type(tasks).__name__}")
    T = num_tasks(tasks)
    if T == 0:
        raise ConfigError("tasks", "the task batch holds no task (leading dim 0); give at least one task")
    return T


def resolve_rule(algo: str, rule: UpdateRule | Mapping | None = None, inner_lr=None,
                 lrs: Mapping[str, torch.Tensor] | None = None, names: Iterable[str] | None = None) -> UpdateRule:
    """The inner update rule of ``algo`` from the accepted spellings (see :func:`meta_gradients`):
    ``rule`` (an :class:`UpdateRule`), the deprecated ``lrs=`` (Meta-SGD rates, ``metasgd`` only) and
    ``inner_lr=`` (a scalar SGD rate; ignored by ``metasgd``). ``names``: the adapted names (Meta-SGD needs a
    rate for each; rates of other names are dropped)."""
    if lrs is not None and algo != "metasgd":
        raise ConfigError("lrs", f"per-parameter rates are Meta-SGD's: lrs= needs algo='metasgd', not {algo!r} "
                                 "(or pass rule=MetaSGD(...))")
    if lrs is not None and rule is not None:
        raise ConfigError("rule", "give the inner update either as rule= or as lrs= (deprecated), not both")
    if algo == "metasgd":
        if rule is None:
            rule = lrs
        if rule is None:
            raise ConfigError("lrs", "metasgd needs a per-parameter rate tensor for every adapted parameter "
                                     "(rule=MetaSGD.like(...) or lrs={name: tensor})")
        rule = as_rule(rule)
        if not isinstance(rule, MetaSGD):
            raise ConfigError("rule", f"algo 'metasgd' is MAML with the Meta-SGD rule; got {rule!r} "
                                      "(use algo='maml' for other rules)")
        if names is not None:
            names = list(names)
            missing = [n for n in names if n not in rule.rates]
            if missing:
                raise ConfigError("lrs", "metasgd needs a per-parameter rate tensor for every adapted parameter; "
                                         f"missing: {', '.join(missing)}")
            if set(rule.rates) != set(names):
                rule = MetaSGD({n: rule.rates[n] for n in names})
        return rule
    if rule is not None:
        if inner_lr is not None:
            raise ConfigError("rule", "give the inner update either as rule= or as inner_lr= (deprecated), "
                                      "not both")
        return as_rule(rule)
    return as_rule(None, lr=inner_lr)


def meta_gradients(model: nn.Module, objective: MetaObjective, params: Mapping[str, torch.Tensor],
                   tasks: TaskBatch, *, algo: str = "maml", adapt: AdaptSpec = None, inner_steps: int = 1,
                   rule: UpdateRule | None = None, batched: bool = True, inner_lr: float | None = None,
                   lrs: Mapping[str, torch.Tensor] | None = None) -> MetaGradient:
    r"""Meta-gradient of ``algo`` (module docstring) for a task batch.

    :param params: ``{name: tensor}`` meta-parameters :math:`\theta` (typically ``params_of(model)``); they
        need not require grad (a differentiable copy is used).
    :param tasks: :class:`TaskBatch` with ``T >= 1`` tasks stacked on dim 0.
    :param adapt: adapt spec or list of names adapted by the inner loop (default: the objective's
        ``adapt``, ``"head"`` for ANIL; :func:`metacomm.adaptation.params.resolve_adapt`).
    :param rule: the inner :class:`~metacomm.adaptation.update_rules.UpdateRule` (default ``SGD(inner_lr)``,
        ``inner_lr`` default 0.1); ``metasgd`` needs a :class:`~metacomm.adaptation.update_rules.MetaSGD`. The
        second-order algorithms also return the gradient w.r.t. ``rule.meta_params``.
    :param batched: ``True`` -- one vmapped computation over tasks; ``False`` -- per-task reference loop.
    :param inner_lr: deprecated spelling of ``rule=SGD(inner_lr)`` (a float >= 0; ignored by ``metasgd``).
    :param lrs: deprecated spelling of ``rule=MetaSGD(lrs)`` (``metasgd`` only).
    """
    check_choice("algo", algo, ALGORITHMS)
    inner_steps = check_nonneg_int("inner_steps", inner_steps)
    if inner_lr is not None and not isinstance(inner_lr, torch.Tensor):
        check_nonneg("inner_lr", inner_lr)
    T = _check_tasks(tasks)
    theta = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    names = resolve_adapt(model, theta, default_adapt(algo, objective) if adapt is None else adapt)
    rule = resolve_rule(algo, rule, None if algo == "metasgd" else inner_lr, lrs, names)
    create_graph = SECOND_ORDER[algo]
    meta = {k: v.detach().requires_grad_(True) if create_graph else v.detach()
            for k, v in rule.meta_params.items()}
    if algo == "reptile":
        return _reptile(model, objective, theta, tasks, names, inner_steps, rule, meta, batched, T)
    meta_wrt = list(meta.values()) if create_graph else []
    if batched:
        phi = inner_adapt_batched(model, theta, tasks.support, objective.inner_loss, num_tasks=T,
                                  steps=inner_steps, rule=rule, meta_params=meta, create_graph=create_graph,
                                  adapt=names)
        if not create_graph:  # first order: d phi / d theta_A = I (straight-through)
            phi = {n: theta[n] + (phi[n] - theta[n]).detach() for n in names}
        losses, stats = batched_loss(model, theta, objective.outer_loss, tasks.query, phi)
        meta_loss = losses.mean()
        wrt = list(theta.values()) + meta_wrt
        g = torch.autograd.grad(meta_loss, wrt, allow_unused=True)
        grads = dict(zip(theta, g[:len(theta)], strict=True))
        rule_grads = dict(zip(meta, g[len(theta):], strict=True)) if meta_wrt else {}
        stats = _detached_stats(stats)
        task_losses = losses.detach()
    else:
        grads = {n: None for n in theta}
        rule_grads = {}
        task_losses, stats = [], {}
        for i in range(T):
            support, query = task_slice(tasks.support, i), task_slice(tasks.query, i)
            phi = inner_adapt_autograd(model, theta, support, objective.inner_loss, steps=inner_steps, rule=rule,
                                       meta_params=meta, create_graph=create_graph, adapt=names)
            loss, st = call(model, phi, objective.outer_loss, query)
            wrt_names = list(theta)
            if create_graph:
                wrt = [theta[n] for n in wrt_names] + meta_wrt
                g = torch.autograd.grad(loss / T, wrt, allow_unused=True)
                pairs = list(zip(wrt_names, g[:len(wrt_names)], strict=True))
                for k, gk in zip(meta, g[len(wrt_names):], strict=False):
                    if gk is not None:
                        rule_grads[k] = gk if rule_grads.get(k) is None else rule_grads[k] + gk
            else:
                # First order: differentiate w.r.t. the (detached) adapted weights and the frozen ones.
                wrt = [phi[n] if n in names else theta[n] for n in wrt_names]
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
    rule_grads = _zeros_for_missing(meta, rule_grads) if meta else None
    return MetaGradient({n: g.detach() for n, g in grads.items()},
                        {k: g.detach() for k, g in rule_grads.items()} if rule_grads else None,
                        meta_loss.detach(), task_losses, stats)


def _reptile(model, objective, theta, tasks, adapt, steps, rule, meta, batched, T) -> MetaGradient:
    theta_d = {n: t.detach() for n, t in theta.items()}
    if batched:
        phis = inner_adapt_batched(model, theta_d, tasks.support, objective.inner_loss, num_tasks=T, steps=steps,
                                   rule=rule, meta_params=meta, create_graph=False, adapt=adapt)
        with torch.no_grad():
            losses, stats = batched_loss(model, theta_d, objective.outer_loss, tasks.query, phis)
        phi_mean = {n: phis[n].mean(0) for n in adapt}
        stats = _detached_stats(stats)
    else:
        phi_sum = {n: torch.zeros_like(theta_d[n]) for n in adapt}
        losses, stats = [], {}
        for i in range(T):
            support, query = task_slice(tasks.support, i), task_slice(tasks.query, i)
            phi = inner_adapt_autograd(model, theta_d, support, objective.inner_loss, steps=steps, rule=rule,
                                       meta_params=meta, create_graph=False, adapt=adapt)
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
    rule_grads = {k: torch.zeros_like(v) for k, v in meta.items()} or None
    return MetaGradient(grads, rule_grads, losses.mean(), losses, stats)


def _eval_rule(rule, inner_lr) -> UpdateRule:
    if rule is not None and inner_lr is not None:
        raise ConfigError("rule", "give the inner update either as rule= or as inner_lr= (deprecated), not both")
    return as_rule(rule, lr=inner_lr).detached()


def adapt_and_score(model: nn.Module, objective: MetaObjective, params: Mapping[str, torch.Tensor],
                    tasks: TaskBatch, *, adapt: AdaptSpec = None, inner_steps: int = 1,
                    rule: UpdateRule | None = None, inner_lr=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Validation: adapt every task (no meta-gradient) and return the per-task query losses ``[T]`` and the
    query statistics summed over tasks.

    ``adapt``: adapt spec (default: the objective's); ``rule``: the inner update rule (its meta-parameters are
    used detached); ``inner_lr``: deprecated spelling (a float or a Meta-SGD rate dict). Works inside
    :func:`torch.no_grad` (the inner loop enables grad locally)."""
    T = _check_tasks(tasks)
    rule = _eval_rule(rule, inner_lr)
    theta = {n: p.detach() for n, p in params.items()}
    names = resolve_adapt(model, theta, objective.adapt if adapt is None else adapt)
    phi = inner_adapt_batched(model, theta, tasks.support, objective.inner_loss, num_tasks=T,
                              steps=check_nonneg_int("inner_steps", inner_steps), rule=rule, create_graph=False,
                              adapt=names)
    with torch.no_grad():
        losses, stats = batched_loss(model, theta, objective.outer_loss, tasks.query, phi)
    return losses.detach(), _detached_stats(stats)


def evaluate_init(model: nn.Module, objective: MetaObjective, tasks: TaskBatch, *,
                  rule: UpdateRule | None = None, steps: int | Iterable[int] = 1, adapt: AdaptSpec = None,
                  params: Mapping[str, torch.Tensor] | None = None) -> dict[int, TaskScores]:
    """Score an initialisation on one's own tasks: adapt it on every task's support batch with ``rule`` and
    report the query losses after each number of steps in ``steps``.

    :param model: the model whose current weights are the initialisation (or see ``params``); not modified.
    :param objective: the :class:`~metacomm.adaptation.objective.MetaObjective` (``inner_loss`` is descended on
        the support batch, ``outer_loss`` scores the query batch).
    :param tasks: :class:`TaskBatch` with ``T >= 1`` tasks (leading dim of every leaf).
    :param rule: inner update rule (default ``SGD(0.1)``); e.g. a trained :class:`MetaSGD` (used detached),
        or ``SGD(lr)`` for a pretrained / random initialisation.
    :param steps: a number of steps ``K >= 0`` or several (e.g. ``[0, 1, 10]``; 0 = no adaptation).
    :param adapt: adapt spec (default: the objective's).
    :param params: initial weights ``{name: tensor}`` (default ``params_of(model)``).
    :returns: ``{K: TaskScores(losses [T], stats)}`` for every requested ``K`` (ascending). Runs under
        :func:`torch.no_grad` too.
    """
    from metacomm.adaptation.params import params_of
    T = _check_tasks(tasks)
    rule = _eval_rule(rule, None)
    if isinstance(steps, numbers.Integral) or (isinstance(steps, torch.Tensor) and steps.dim() == 0):
        steps = [steps]
    try:
        record = sorted({check_nonneg_int("steps", s) for s in steps})
    except TypeError:
        raise ConfigError("steps", f"expected an int >= 0 or a list of them, got {steps!r}") from None
    if not record:
        raise ConfigError("steps", "give at least one number of adaptation steps")
    theta = {n: p.detach() for n, p in (params_of(model) if params is None else params).items()}
    names = resolve_adapt(model, theta, objective.adapt if adapt is None else adapt)
    out: dict[int, TaskScores] = {}

    def score(j, phi):
        if j in record:
            with torch.no_grad():
                losses, stats = batched_loss(model, theta, objective.outer_loss, tasks.query, phi)
            out[j] = TaskScores(losses.detach(), _detached_stats(stats))

    inner_adapt_batched(model, theta, tasks.support, objective.inner_loss, num_tasks=T, steps=record[-1],
                        rule=rule, create_graph=False, adapt=names, on_step=score)
    return out
