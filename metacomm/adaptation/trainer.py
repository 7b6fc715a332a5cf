r"""Meta-training loop: outer optimiser, validation, exact-resume checkpoints, NaN/inf guard.

Each meta-step draws ``meta_batch`` tasks from the task sampler with the trainer's own
:class:`torch.Generator`, computes the meta-gradient of the chosen algorithm
(:func:`metacomm.adaptation.algorithms.meta_gradients`, task-batched by default) and takes one step of the
outer optimiser (Adam, rate ``outer_lr``) on the model's parameters and, for Meta-SGD, on the per-parameter
inner rates (initialised to ``inner_lr``).

* **NaN/inf guard** -- if the meta-loss or any meta-gradient is not finite, the step is *skipped* (weights,
  optimiser moments and rates untouched), counted in ``skipped`` and reported (``warnings.warn`` + history);
  the task generator has advanced, so the next step sees new tasks.
* **Validation** -- every ``val_every`` steps, the current initialisation is adapted on a fixed set of held-out
  tasks (drawn once from ``val_seed``) and the mean query loss and statistics are recorded.
* **Best initialisation** -- every validation whose mean held-out query loss is the lowest so far snapshots the
  weights (and Meta-SGD rates) as :attr:`MetaTrainer.best` (``None`` until a validation has run). MAML-type meta-training of small codecs is strongly non-monotone and
  seed-dependent (``fading-ae``: held-out BLER after one step wanders between 0.2 and 0.02 over tens of
  thousands of meta-steps), so the validated best, not the last iterate, is the initialisation worth shipping.
* **Checkpoints** -- :meth:`MetaTrainer.state_dict` holds the model, optimiser, Meta-SGD rates, the generator
  state, the step counter, history and config; :meth:`MetaTrainer.load_state_dict` restores them so that
  training resumed from a checkpoint is bit-identical to an uninterrupted run (same seed, CPU).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from metacomm._io import atomic_torch_save
from metacomm._validation import (
    ConfigError,
    check_choice,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)
from metacomm.adaptation.algorithms import ALGORITHMS, adapt_and_score, default_adapt, meta_gradients
from metacomm.adaptation.objective import MetaObjective, TaskBatch
from metacomm.adaptation.params import params_of, select_names

__all__ = ["MetaConfig", "MetaTrainer", "StepReport"]


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
    """

    def __init__(self, model: nn.Module, objective: MetaObjective, sampler: Callable[[int, torch.Generator],
                 TaskBatch], config: MetaConfig | None = None, *, seed: int = 0,
                 val_sampler: Callable[[int, torch.Generator], TaskBatch] | None = None,
                 device: str | torch.device = "cpu"):
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
        self.lrs: dict[str, torch.Tensor] | None = None
        opt_params = list(params.values())
        if cfg.algo == "metasgd":
            self.lrs = {n: torch.full_like(params[n], cfg.inner_lr).detach().requires_grad_(True)
                        for n in self.adapt}
            opt_params += list(self.lrs.values())
        self.optimizer = torch.optim.Adam(opt_params, lr=cfg.outer_lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.step_count = 0
        self.skipped: list[int] = []
        self.history: list[dict] = []
        self._val_tasks: TaskBatch | None = None
        self.best: dict | None = None

    # --- core -----------------------------------------------------------------------------------------
    def inner_rate(self):
        """The inner learning rate(s): a float, or Meta-SGD's per-parameter dict."""
        return self.lrs if self.lrs is not None else self.config.inner_lr

    def step(self) -> StepReport:
        """One meta-update (or a reported skip if the meta-gradient is not finite)."""
        cfg = self.config
        tasks = self.sampler(cfg.meta_batch, self.generator)
        params = params_of(self.model)
        mg = meta_gradients(self.model, self.objective, params, tasks, algo=cfg.algo, adapt=self.adapt,
                            inner_steps=cfg.inner_steps, inner_lr=cfg.inner_lr, lrs=self.lrs,
                            batched=cfg.batched)
        self.step_count += 1
        grads = list(mg.grads.values()) + (list(mg.lr_grads.values()) if mg.lr_grads else [])
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
                p.grad = mg.grads[n].to(p.dtype)
            if self.lrs is not None:
                for n, r in self.lrs.items():
                    r.grad = mg.lr_grads[n]
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
            self._val_tasks = self.val_sampler(self.config.val_tasks, g)
        steps = self.config.inner_steps if inner_steps is None else inner_steps
        losses, stats = adapt_and_score(self.model, self.objective, params_of(self.model), self._val_tasks,
                                        adapt=self.adapt, inner_steps=steps, inner_lr=self.inner_rate())
        out = {"val_loss": float(losses.mean())}
        out.update({f"val_{k}": v for k, v in _rate_stats({k: float(v) for k, v in stats.items()}).items()})
        return out

    def train(self, num_steps: int, *, progress: bool = True, checkpoint_path: str | None = None,
              checkpoint_every: int = 0, extra_state: Callable[[], dict] | None = None) -> list[dict]:
        """Run meta-steps until ``step_count == num_steps`` (a resumed trainer continues where it stopped).

        Shows a tqdm bar with the meta-loss and query BLER/error rate; validates every ``val_every`` steps;
        writes a checkpoint every ``checkpoint_every`` steps and at the end if ``checkpoint_path`` is given
        (``extra_state()`` is merged into the checkpoint). Returns the history.
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
                if checkpoint_path and checkpoint_every and self.step_count % checkpoint_every == 0:
                    self.save(checkpoint_path, extra_state() if extra_state else None)
        finally:
            bar.close()
        if checkpoint_path:
            self.save(checkpoint_path, extra_state() if extra_state else None)
        return self.history

    def snapshot(self) -> dict:
        """The current initialisation: ``{"model": state dict, "lrs": Meta-SGD rates or None, "step": int}``
        (CPU copies)."""
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "lrs": {n: r.detach().cpu().clone() for n, r in self.lrs.items()} if self.lrs is not None else None,
                "step": self.step_count}

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
            "generator": self.generator.get_state(),
            "skipped": list(self.skipped),
            "history": list(self.history),
            "best": self.best,
        }

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("format") != "metacomm-meta-trainer/1":
            raise ConfigError("checkpoint", "not a metacomm meta-trainer checkpoint")
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
        if self.lrs is not None:
            with torch.no_grad():
                for n, r in self.lrs.items():
                    r.copy_(sd["lrs"][n].to(r.device))
        self.optimizer.load_state_dict(sd["optimizer"])
        self.generator.set_state(sd["generator"])
        self.step_count = int(sd["step"])
        self.skipped = list(sd["skipped"])
        self.history = list(sd["history"])
        self.best = sd.get("best")

    def save(self, path: str, extra: dict | None = None) -> None:
        """Write the checkpoint atomically (``path.tmp`` then rename)."""
        sd = self.state_dict()
        if extra:
            sd.update(extra)
        atomic_torch_save(sd, path)

    def load(self, path: str) -> dict:
        """Load a checkpoint written by :meth:`save`; returns the whole dict (extra state included)."""
        if not os.path.exists(path):
            raise ConfigError("resume", f"no checkpoint at {path!r}")
        sd = torch.load(path, map_location="cpu", weights_only=True)
        self.load_state_dict(sd)
        return sd
