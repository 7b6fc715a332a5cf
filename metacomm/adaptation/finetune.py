r"""Few-shot fine-tuning of many independent copies of a model at once (test channels, devices).

:func:`finetune_batched` runs the run-time adaptation protocol of Park, Simeone & Kang (ICASSP 2020) for
``T`` tasks in parallel: every copy starts from the same initialisation :math:`\theta` (meta-learned, jointly
trained or random), and at step :math:`s = 1, 2, \dots` takes one gradient step on a fresh pilot batch of its
own task, with optimiser ``first`` at step 1 (by default SGD, the inner rule the initialisation was
meta-trained for) and ``rest`` afterwards (by default Adam 1e-3, fresh state at step 2); both are inner update
rules (:mod:`metacomm.adaptation.update_rules`: SGD, Meta-SGD, Adam or any other rule, used with their
meta-parameters detached). Per-task weights are
stacked on a task axis (one vmapped forward, one autograd backward of the summed losses: slice ``t`` of the
gradient is task ``t``'s own gradient). ``on_record(step, params)`` is called at every step listed in
``record`` (0 = before any update) with the stacked weights ``{name: [T, ...]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from metacomm._validation import ConfigError, check_nonneg_int
from metacomm.adaptation.functional import _zeros_if_unused, batched_loss
from metacomm.adaptation.params import AdaptSpec, resolve_adapt
from metacomm.adaptation.update_rules import SGD, Adam, UpdateRule, as_rule

__all__ = ["finetune_batched"]


def finetune_batched(model: nn.Module, params: Mapping[str, torch.Tensor], loss_fn: Callable, *,
                     num_tasks: int, draw_batch: Callable[[int], Any], record: Iterable[int],
                     on_record: Callable[[int, dict[str, torch.Tensor]], None], adapt: AdaptSpec = None,
                     first: UpdateRule | Mapping[str, torch.Tensor] | None = None, rest: UpdateRule | None = None
                     ) -> dict[str, torch.Tensor]:
    """Fine-tune ``num_tasks`` copies (module docstring); returns the final stacked adapted weights.

    :param params: initial weights ``{name: tensor}`` (shared by all copies).
    :param loss_fn: ``(model, batch) -> scalar`` for one task's batch.
    :param draw_batch: ``step -> batch`` with a leading task dim ``num_tasks`` on every leaf (fresh pilots of
        every task's own channel; draw from an explicit generator).
    :param record: steps (>= 0) at which ``on_record`` is called; the run lasts ``max(record)`` steps.
    :param adapt: adapt spec or names adapted (default: all of ``params``).
    :param first: update rule of step 1: an :class:`~metacomm.adaptation.update_rules.UpdateRule`, or
        Meta-SGD's per-parameter rate dict (``MetaSGD(first)``). Default ``SGD(0.1)``.
    :param rest: update rule of steps >= 2 (default ``Adam(1e-3)``; its state starts fresh at step 2).
    """
    record = sorted({check_nonneg_int("steps", s) for s in record})
    if not record:
        raise ConfigError("steps", "give at least one number of adaptation steps")
    names = resolve_adapt(model, params, adapt)
    shared = {n: t.detach() for n, t in params.items() if n not in names}
    phi = {n: params[n].detach().unsqueeze(0).expand(num_tasks, *params[n].shape).clone() for n in names}
    first = (SGD(0.1) if first is None else as_rule(first, field="first")).detached()
    rest = (Adam(1e-3) if rest is None else as_rule(rest, field="rest")).detached()
    state = None
    last = record[-1]
    for step in range(0, last + 1):
        if step > 0:
            batch = draw_batch(step)
            phi = {n: t.requires_grad_(True) for n, t in phi.items()}
            losses = batched_loss(model, shared, loss_fn, batch, phi)
            grads: Any = _zeros_if_unused(torch.autograd.grad(losses.sum(), [phi[n] for n in names], allow_unused=True),
                                     [phi[n] for n in names])
            grads = dict(zip(names, grads, strict=True))
            with torch.no_grad():
                if step == 1:
                    phi, _ = first.step(phi, grads, first.init(phi))
                else:
                    if state is None:
                        state = rest.init(phi)
                    phi, state = rest.step(phi, grads, state)
            phi = {n: t.detach() for n, t in phi.items()}
        if step in record:
            with torch.no_grad():
                on_record(step, {**{n: t.unsqueeze(0).expand(num_tasks, *t.shape) for n, t in shared.items()},
                                 **phi})
    return phi

