r"""Meta-training loop: outer optimiser, validation, exact-resume checkpoints, NaN/inf guard.

Each meta-step draws ``meta_batch`` tasks from the task sampler with the trainer's own
:class:`torch.Generator`, computes the meta-gradient of the chosen algorithm
(:func:`metacomm.adaptation.algorithms.meta_gradients`, task-batched by default) and takes one step of the
outer optimiser (Adam, rate ``outer_lr``) on the model's parameters *and* the inner update rule's
meta-parameters (:mod:`metacomm.adaptation.update_rules`), in that order, with no special case per algorithm
(``train_init=False``: on the rule's meta-parameters only, the initialisation held fixed).
The rule is ``rule=`` if given, else :func:`default_rule`: ``SGD(inner_lr)``, or for ``algo="metasgd"`` (MAML
with the Meta-SGD rule) per-parameter rates initialised to ``inner_lr`` (``MetaSGD.like``; other initial values
-- per tensor, a range -- by passing ``rule=MetaSGD.like(...)``).

* **NaN/inf guard** -- if the meta-loss or any meta-gradient is not finite, the step is *skipped* (weights,
  optimiser moments and rates untouched), counted in ``skipped`` and reported (``warnings.warn`` + history);
  the task generator has advanced, so the next step sees new tasks.
* **Validation** -- every ``val_every`` steps, the current initialisation is adapted on a fixed set of held-out
  tasks (drawn once from ``val_seed``) and the mean query loss and statistics are recorded.
* **Best initialisation** -- every validation whose mean held-out query loss is the lowest so far snapshots the
  weights (and Meta-SGD rates) as :attr:`MetaTrainer.best` (``None`` until a validation has run). MAML-type meta-training of small codecs is strongly non-monotone and
  seed-dependent (``fading-ae``: held-out BLER after one step wanders between 0.2 and 0.02 over tens of
  thousands of meta-steps), so the validated best, not the last iterate, is the initialisation worth shipping.
* **Checkpoints** -- :meth:`MetaTrainer.state_dict` holds the model, optimiser, the rule's meta-parameters
  (``"rule"``; Meta-SGD rates also under the historical key ``"lrs"``), the generator
  state, the step counter, history and config; :meth:`MetaTrainer.load_state_dict` restores them so that
  training resumed from a checkpoint is bit-identical to an uninterrupted run (same seed, CPU).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from metacomm._validation import (
    ConfigError,
    check_choice,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)
from metacomm.adaptation.algorithms import ALGORITHMS, adapt_and_score, default_adapt, meta_gradients
from metacomm.adaptation.objective import MetaObjective, TaskBatch, num_tasks
from metacomm.adaptation.params import params_of, select_names
from metacomm.adaptation.update_rules import SGD, MetaSGD, UpdateRule

__all__ = ["MetaConfig", "MetaTrainer", "StepReport", "default_rule", "pretrain"]


def default_rule(algo: str, inner_lr: float, adapted: dict[str, torch.Tensor]) -> UpdateRule:
    """The inner rule a :class:`MetaConfig` names: Meta-SGD rates ``full_like(p, inner_lr)`` for every adapted
    tensor when ``algo == "metasgd"``, else ``SGD(inner_lr)``."""
    if algo == "metasgd":
        return MetaSGD.like(adapted, float(inner_lr))
    return SGD(float(inner_lr))


@dataclass
class MetaConfig:
    """Meta-training hyper-parameters (all validated; bad values raise ConfigError naming the field).

    ``inner_lr`` and ``outer_lr`` are step sizes (>= 0 / > 0); ``meta_batch`` tasks per outer update;
    ``inner_steps`` SGD steps per task; ``adapt``: adapt spec (None = the objective's, ANIL: head);
    ``val_every``: validate every N steps (0 = never); ``batched``: vmap over tasks (False: per-task loop).
    """

    algo: str = "maml"
    inner_steps: int = 1
    inner_lr: float = 0.1
    outer_lr: float = 1e-3
    meta_batch: int = 20
    adapt: object = None
    val_every: int = 0
    val_tasks: int = 20
    val_seed: int = 12345
    batched: bool = True

    def validate(self) -> MetaConfig:
        check_choice("algo", self.algo, ALGORITHMS)
        self.inner_steps = check_nonneg_int("inner_steps", self.inner_steps)
        self.inner_lr = check_nonneg("inner_lr", self.inner_lr)
        self.outer_lr = check_positive("outer_lr", self.outer_lr)
        self.meta_batch = check_positive_int("meta_batch", self.meta_batch)
        self.val_every = check_nonneg_int("val_every", self.val_every)
        self.val_tasks = check_positive_int("val_tasks", self.val_tasks)
        if self.algo == "reptile" and self.inner_steps == 0:
            raise ConfigError("inner_steps", "reptile needs at least one inner step")
        return self


@dataclass
class StepReport:
    """What one meta-step did: ``step`` (1-based count after it), ``loss`` (meta-loss, float), ``stats``
    (query statistics summed over the meta-batch), ``skipped`` (True if the NaN guard rejected it)."""

    step: int
    loss: float
    stats: dict[str, float] = field(default_factory=dict)
    skipped: bool = False


def _rate_stats(stats: dict[str, float]) -> dict[str, float]:
    out = dict(stats)
    if "block_errors" in stats and stats.get("blocks"):
        out["bler"] = stats["block_errors"] / stats["blocks"]
    if "errors" in stats and stats.get("count"):
        out["error_rate"] = stats["errors"] / stats["count"]
    return out


class MetaTrainer:
    """Meta-train ``model`` on tasks from ``sampler`` (see module docstring).

    :param model: any module; its parameters are the meta-parameters and are updated in place.
    :param objective: the :class:`~metacomm.adaptation.objective.MetaObjective`.
    :param sampler: ``sampler(num_tasks, generator) -> TaskBatch`` (training tasks).
    :param config: :class:`MetaConfig`.
    :param seed: seed of the task generator.
    :param val_sampler: held-out task sampler (default: none; no validation).
    :param device: device of the model and the generators.
    :param rule: the inner :class:`~metacomm.adaptation.update_rules.UpdateRule` (default:
        :func:`default_rule` of the config). Its meta-parameters must be leaf tensors that require grad; they
        are updated in place by the outer optimiser.
    :param train_init: ``False``: the initialisation (the model's parameters) is held fixed and the outer
        optimiser holds only the rule's meta-parameters (a learned rule for a given codec, e.g. the label-noise
        pack's Meta-Weight-Net); the NaN guard then looks at the meta-loss and the rule's gradients only.
    """

    def __init__(self, model: nn.Module, objective: MetaObjective, sampler: Callable[[int, torch.Generator],
                 TaskBatch], config: MetaConfig | None = None, *, seed: int = 0,
                 val_sampler: Callable[[int, torch.Generator], TaskBatch] | None = None,
                 device: str | torch.device = "cpu", rule: UpdateRule | None = None, train_init: bool = True):
        self.config = (config or MetaConfig()).validate()
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.objective = objective
        self.sampler = sampler
        self.val_sampler = val_sampler
        self.seed = int(seed)
        cfg = self.config
        self.adapt = select_names(model, cfg.adapt if cfg.adapt is not None else default_adapt(cfg.algo, objective),
                                  field="adapt")
        params = params_of(model)
        if rule is None:
            rule = default_rule(cfg.algo, cfg.inner_lr, {n: params[n] for n in self.adapt})
        elif not isinstance(rule, UpdateRule):
            raise ConfigError("rule", f"expected an UpdateRule (SGD, MetaSGD, Adam, ...), got {type(rule).__name__}")
        elif cfg.algo == "metasgd" and not isinstance(rule, MetaSGD):
            raise ConfigError("rule", "algo 'metasgd' is MAML with the Meta-SGD rule; use algo='maml' for "
                                      f"{rule!r}")
        for k, t in rule.meta_params.items():
            if not t.is_leaf or not t.requires_grad:
                raise ConfigError("rule", f"meta-parameter {k!r} of the rule must be a leaf tensor that requires "
                                          "grad (it is trained by the outer optimiser)")
        self.rule = rule
        if not isinstance(train_init, bool):
            raise ConfigError("train_init", f"must be True or False, got {train_init!r}")
        if not train_init and not rule.meta_params:
            raise ConfigError("train_init", f"with the initialisation fixed there is nothing to train: {rule!r} has "
                                            "no meta-parameters")
        self.train_init = train_init
        self.optimizer = torch.optim.Adam((list(params.values()) if train_init else [])
                                          + list(rule.meta_params.values()), lr=cfg.outer_lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.step_count = 0
        self.skipped: list[int] = []
        self.history: list[dict] = []
        self._val_tasks: TaskBatch | None = None
        self.best: dict | None = None

    # --- core -----------------------------------------------------------------------------------------
    #: how a meta-step computes its meta-gradient (a subclass may split it across processes:
    #: :class:`metacomm.adaptation.distributed.DistributedMetaTrainer`)
    _meta_gradients = staticmethod(meta_gradients)

    @property
    def lrs(self) -> dict[str, torch.Tensor] | None:
        """Meta-SGD's per-parameter rates (the rule's meta-parameters) or ``None`` for other rules."""
        return self.rule.rates if isinstance(self.rule, MetaSGD) else None

    def inner_rate(self):
        """Deprecated: the inner learning rate(s), a float or Meta-SGD's per-parameter dict (see :attr:`rule`)."""
        return self.lrs if self.lrs is not None else self.config.inner_lr

    def step(self) -> StepReport:
        """One meta-update (or a reported skip if the meta-gradient is not finite)."""
        cfg = self.config
        tasks = self.sampler(cfg.meta_batch, self.generator)
        got = num_tasks(tasks) if isinstance(tasks, tuple) and len(tasks) == 2 else None
        if got != cfg.meta_batch:
            raise ConfigError("sampler", f"the task sampler returned {got if got is not None else 'no TaskBatch'} "
                                         f"for a meta-batch of {cfg.meta_batch}; it must return "
                                         "TaskBatch(support, query) with num_tasks tasks on dim 0 of every leaf")
        params = params_of(self.model)
        mg = self._meta_gradients(self.model, self.objective, params, tasks, algo=cfg.algo, adapt=self.adapt,
                            inner_steps=cfg.inner_steps, rule=self.rule, batched=cfg.batched)
        self.step_count += 1
        meta = self.rule.meta_params
        grads = (list(mg.grads.values()) if self.train_init else []) + \
            (list(mg.rule_grads.values()) if mg.rule_grads else [])
        finite = bool(torch.isfinite(mg.loss)) and all(bool(torch.isfinite(g).all()) for g in grads)
        stats = _rate_stats({k: float(v) for k, v in mg.stats.items()})
        if not finite:
            self.skipped.append(self.step_count)
            warnings.warn(f"meta-step {self.step_count}: non-finite meta-loss/gradient "
                          f"(loss={float(mg.loss)!r}); step skipped", RuntimeWarning, stacklevel=2)
            report = StepReport(self.step_count, float(mg.loss), stats, skipped=True)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            for n, p in params.items():
                if self.train_init:
                    p.grad = mg.grads[n].to(p.dtype)
            for k, t in meta.items():
                t.grad = mg.rule_grads[k]
            self.optimizer.step()
            report = StepReport(self.step_count, float(mg.loss), stats)
        self.history.append({"step": report.step, "loss": report.loss, "skipped": report.skipped,
                             **{k: v for k, v in stats.items() if k == "bler" or k == "error_rate"}})
        return report

    def validate(self, inner_steps: int | None = None) -> dict[str, float]:
        """Adapt the current initialisation on the held-out tasks; mean query loss and summed statistics."""
        if self.val_sampler is None:
            raise ConfigError("val_sampler", "no held-out task sampler was given")
        if self._val_tasks is None:
            g = torch.Generator(device=self.device)
            g.manual_seed(self.config.val_seed)
            tasks = self.val_sampler(self.config.val_tasks, g)
            got = num_tasks(tasks) if isinstance(tasks, tuple) and len(tasks) == 2 else None
            if got != self.config.val_tasks:
                raise ConfigError("val_sampler", f"returned {got if got is not None else 'no TaskBatch'} for "
                                                 f"{self.config.val_tasks} held-out tasks")
            self._val_tasks = tasks
        steps = self.config.inner_steps if inner_steps is None else inner_steps
        losses, stats = adapt_and_score(self.model, self.objective, params_of(self.model), self._val_tasks,
                                        adapt=self.adapt, inner_steps=steps, rule=self.rule)
        out = {"val_loss": float(losses.mean())}
        out.update({f"val_{k}": v for k, v in _rate_stats({k: float(v) for k, v in stats.items()}).items()})
        return out

    def train(self, num_steps: int, *, progress: bool = True, checkpoint_path: str | None = None,
              checkpoint_every: int = 0, extra_state: Callable[[], dict] | None = None,
              checkpoint_kind: str = "metacomm-meta-trainer",
              on_metrics: Callable[[int, dict], None] | None = None) -> list[dict]:
        """Run meta-steps until ``step_count == num_steps`` (a resumed trainer continues where it stopped).

        Shows a tqdm bar with the meta-loss and query BLER/error rate; validates every ``val_every`` steps;
        writes a checkpoint every ``checkpoint_every`` steps and at the end if ``checkpoint_path`` is given
        (``extra_state()`` is merged into the checkpoint, written as ``checkpoint_kind``). Returns the history.
        ``on_metrics(step, entry)``: called after every meta-step with the history entry's numbers (meta-loss,
        query BLER / error rate, and the held-out ``val_*`` scores on validation steps) -- e.g. a TensorBoard
        writer (:func:`metacomm.experiments.metrics.tensorboard_metrics`).
        """
        num_steps = check_nonneg_int("meta_steps", num_steps)
        checkpoint_every = check_nonneg_int("checkpoint_every", checkpoint_every)
        from tqdm.auto import tqdm
        bar = tqdm(total=num_steps, initial=min(self.step_count, num_steps), disable=not progress,
                   desc=f"meta-train {self.config.algo}", leave=False)
        try:
            while self.step_count < num_steps:
                rep = self.step()
                post = {"loss": f"{rep.loss:.4f}"}
                for key in ("bler", "error_rate"):
                    if key in rep.stats:
                        post[key] = f"{rep.stats[key]:.3f}"
                if self.skipped:
                    post["skipped"] = len(self.skipped)
                if self.config.val_every and self.val_sampler is not None and \
                        self.step_count % self.config.val_every == 0:
                    val = self.validate()
                    self.history[-1].update(val)
                    self.consider_best(val)
                    post.update({k: f"{v:.3g}" for k, v in val.items() if k in ("val_loss", "val_bler")})
                bar.set_postfix(post)
                bar.update(1)
                if on_metrics is not None:
                    on_metrics(self.step_count, {k: float(v) for k, v in self.history[-1].items()
                                                 if isinstance(v, int | float) and not isinstance(v, bool)
                                                 and k != "step"})
                if checkpoint_path and checkpoint_every and self.step_count % checkpoint_every == 0:
                    self.save(checkpoint_path, extra_state() if extra_state else None, kind=checkpoint_kind)
        finally:
            bar.close()
        if checkpoint_path:
            self.save(checkpoint_path, extra_state() if extra_state else None, kind=checkpoint_kind)
        return self.history

    def snapshot(self) -> dict:
        """The current initialisation: ``{"model": state dict, "lrs": Meta-SGD rates or None, "rule": the
        rule's meta-parameters, "step": int}`` (CPU copies)."""
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "lrs": {n: r.detach().cpu().clone() for n, r in self.lrs.items()} if self.lrs is not None else None,
                "rule": self._rule_state(), "step": self.step_count}

    def _rule_state(self) -> dict[str, torch.Tensor]:
        return {k: t.detach().cpu().clone() for k, t in self.rule.meta_params.items()}

    def consider_best(self, val: dict[str, float]) -> bool:
        """Keep the current weights as :attr:`best` if ``val["val_loss"]`` is finite and the lowest so far
        (ties keep the earlier one). Returns whether it became the best."""
        loss = float(val.get("val_loss", float("nan")))
        if not torch.isfinite(torch.tensor(loss)):
            return False
        if self.best is not None and not loss < self.best["val"]["val_loss"]:
            return False
        self.best = {**self.snapshot(), "val": dict(val)}
        return True

    # --- checkpoints ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": "metacomm-meta-trainer/1",
            "config": {k: v for k, v in asdict(self.config).items() if k != "adapt"},
            "adapt": list(self.adapt),
            "seed": self.seed,
            "step": self.step_count,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "lrs": {n: r.detach().cpu().clone() for n, r in self.lrs.items()} if self.lrs is not None else None,
            "rule": self._rule_state(),
            "generator": self.generator.get_state(),
            "skipped": list(self.skipped),
            "history": list(self.history),
            "best": self.best,
        }

    def load_state_dict(self, sd: dict) -> None:
        from metacomm.artefacts import check_kind
        check_kind(sd, "metacomm-meta-trainer", field="checkpoint", source="checkpoint")
        if sd["config"]["algo"] != self.config.algo:
            raise ConfigError("checkpoint", f"checkpoint was trained with algo {sd['config']['algo']!r}, "
                                            f"not {self.config.algo!r}")
        if list(sd["adapt"]) != list(self.adapt):
            raise ConfigError("checkpoint", "checkpoint adapts a different parameter set")
        try:
            self.model.load_state_dict(sd["model"])
        except RuntimeError as e:
            raise ConfigError("checkpoint", f"checkpoint is for a different model: {str(e).splitlines()[0]}") \
                from None
        meta = self.rule.meta_params
        saved = sd.get("rule") if sd.get("rule") is not None else (sd.get("lrs") or {})
        if set(saved) != set(meta):
            raise ConfigError("checkpoint", f"checkpoint's inner-rule meta-parameters {sorted(saved)} do not match "
                                            f"this trainer's rule ({sorted(meta)})")
        with torch.no_grad():
            for k, t in meta.items():
                t.copy_(saved[k].to(t.device))
        self.optimizer.load_state_dict(sd["optimizer"])
        self.generator.set_state(sd["generator"])
        self.step_count = int(sd["step"])
        self.skipped = list(sd["skipped"])
        self.history = list(sd["history"])
        self.best = sd.get("best")

    def save(self, path: str, extra: dict | None = None, *, kind: str = "metacomm-meta-trainer") -> None:
        """Write the checkpoint atomically through :func:`metacomm.artefacts.save_checkpoint` (format tag
        ``kind``; the trainer state's own tag is kept in ``embeds``). ``extra`` entries are added to the
        payload (``"finished": False`` marks a periodic checkpoint of an unfinished run)."""
        from metacomm.artefacts import save_checkpoint
        sd = self.state_dict()
        if extra:
            sd.update(extra)
        save_checkpoint(path, sd, kind=kind, field="checkpoint")

    def load(self, path: str, *, allow_partial: bool = True) -> dict:
        """Load a checkpoint written by :meth:`save` (``torch.load(weights_only=True)``, kind checked); returns
        the whole dict (extra state included). A periodic checkpoint of an unfinished run is what resuming is
        for, so it is accepted unless ``allow_partial=False``."""
        from metacomm.artefacts import load_checkpoint
        sd = load_checkpoint(path, kinds=("metacomm-meta-trainer", "metacomm-meta"), field="resume",
                             allow_partial=allow_partial)
        self.load_state_dict(sd)
        return sd


def pretrain(model: nn.Module, objective: MetaObjective, sampler: Callable[[int, torch.Generator], TaskBatch],
             steps: int, *, lr: float = 1e-3, meta_batch: int = 20, seed: int = 0,
             device: str | torch.device = "cpu", progress: bool = False) -> MetaTrainer:
    """The plain baseline: pretrain (joint / transfer training) ``model`` in place on the pooled tasks, then
    fine-tune it with any rule (:func:`~metacomm.adaptation.algorithms.evaluate_init`).

    Each of ``steps`` Adam updates (rate ``lr``) descends the mean query loss of ``meta_batch`` tasks drawn from
    ``sampler`` with a generator seeded ``seed``, *without* adaptation -- exactly a :class:`MetaTrainer` with
    ``algo="maml"`` and zero inner steps (the joint-training baseline of ``metacomm meta-train``). Returns the
    trainer (history, checkpointing).
    """
    cfg = MetaConfig(algo="maml", inner_steps=0, inner_lr=0.0, outer_lr=lr, meta_batch=meta_batch)
    trainer = MetaTrainer(model, objective, sampler, cfg, seed=seed, device=device)
    trainer.train(check_nonneg_int("steps", steps), progress=progress)
    return trainer
