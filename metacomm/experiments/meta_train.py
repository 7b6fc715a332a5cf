"""Meta-training as a library call: :class:`MetaTrainConfig` -> :func:`run_meta_train` -> a checkpoint file.

For the scenario named in the config (any registered :class:`~metacomm.scenarios.base.FewShotScenario`), meta-learn
an initialisation with one of the MAML-family algorithms, and train its joint-training baseline on the same
tasks with the same outer optimiser and number of updates (the inner loop switched off).

Model selection: every ``val_every`` steps the initialisation is adapted on ``val_tasks`` held-out tasks (fresh
draws, disjoint from the training and test tasks) and scored by the mean query cross-entropy. ``select="best"``
ships the initialisation with the lowest held-out loss, ``"last"`` the final iterate. ``restarts = N`` runs N
independent meta-trainings (weights and task stream from seeds ``seed``, ``seed + 1``, ...: restart ``r`` is a
pure function of the config and ``seed + r``) and ships the one whose selected initialisation has the lowest
held-out loss (second-order MAML on ``fading-ae`` is strongly seed dependent, so a few restarts buy a reliable
result). The shipped initialisation is the checkpoint's ``init`` entry (``restart``, ``seed``, ``step``, held-out
``val``); ``restarts`` lists every restart's selection, ``joint_init`` the joint baseline's.

The checkpoint (``kind = "metacomm-meta/1"``) also holds the trainer state, so ``resume`` continues an
interrupted run exactly (CPU, same seed: bit-identical to an uninterrupted run), and the inner update rule the
shipped initialisation was meta-trained for: ``inner_rule = {"name", "config", "tensors"}`` (e.g. ``{"name":
"metasgd", "config": {}, "tensors": the shipped init's rates}`` or ``{"name": "sgd", "config": {"lr": inner_lr},
"tensors": {}}``), which :func:`metacomm.experiments.meta_init.load_meta_init` turns back into the rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from metacomm._log import info
from metacomm._validation import (
    ConfigError,
    check_choice,
    check_finite,
    check_nonneg_int,
    check_positive_int,
    error_message,
)
from metacomm.adaptation import ALGORITHMS, MetaConfig, MetaTrainer
from metacomm.experiments._common import check_out_file, resolve_device
from metacomm.experiments.meta_init import KIND

__all__ = ["MetaTrainConfig", "run_meta_train", "build", "make_meta_trainer", "FORMAT", "SELECT"]

FORMAT = "metacomm-meta/1"
SELECT = ("best", "last")


@dataclass
class MetaTrainConfig:
    """Settings of one meta-training run (keys = ``metacomm meta-train`` flags without ``--``).

    ``scenario``: registered scenario name; ``scenario_config``: overrides of its config fields;
    ``ebno_db`` (Eb/N0, dB per information bit) or ``snr_db`` (Es/N0, dB per channel symbol): the training SNR,
    converted to the scenario's own SNR field (``snr_kind``); ``support_pilots``: support-set size per task
    (the scenario's ``support_field``). ``meta_steps``, ``meta_batch``, ``outer_lr``, ``restarts``: ``None`` = the
    scenario's ``meta_defaults`` (``restarts``: 1 unless the scenario says otherwise); ``inner_steps``: ``None`` = the scenario's
    ``meta_defaults["inner_steps"]`` if it has one, else 1; ``joint_steps``: ``None`` = the scenario's
    ``meta_defaults["joint_steps"]`` if it has one, else ``meta_steps``; 0 = no joint baseline. An existing ``out`` is
    refused unless it is the ``resume`` checkpoint or ``overwrite`` is set; ``resume`` refuses a checkpoint made
    with other meta-training settings (``meta_steps``, ``joint_steps`` and ``restarts`` may grow).
    """

    scenario: str
    out: str
    algo: str = "maml"
    meta_steps: int | None = None
    restarts: int | None = None
    select: str = "best"
    meta_batch: int | None = None
    inner_steps: int | None = None
    inner_lr: float = 0.1
    outer_lr: float | None = None
    adapt: object = None
    joint_steps: int | None = None
    scenario_config: dict = field(default_factory=dict)
    ebno_db: float | None = None
    snr_db: float | None = None
    support_pilots: int | None = None
    val_every: int = 250
    val_tasks: int = 200
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "cpu"
    resume: str | None = None
    overwrite: bool = False
    progress: bool = True
    #: a directory for TensorBoard scalars of every meta-step (meta-loss, query BLER, held-out scores; one tag
    #: prefix per restart), or None
    tensorboard: str | None = None
    executor: str = "local"
    ray_address: str | None = None
    num_gpus: float = 0.0

    def validate(self) -> MetaTrainConfig:
        from metacomm.experiments.executors import check_executor_settings
        from metacomm.scenarios import scenario_class
        self.executor, self.ray_address, self.num_gpus = check_executor_settings(self.executor, self.ray_address,
                                                                                 self.num_gpus, self.device)
        scenario_class(self.scenario)
        check_choice("algo", self.algo, ALGORITHMS)
        check_choice("select", self.select, SELECT)
        if self.restarts is not None:
            self.restarts = check_positive_int("restarts", self.restarts)
        if not isinstance(self.scenario_config, dict):
            raise ConfigError("scenario_config", f"expected a table of scenario settings, got {self.scenario_config!r}")
        if self.meta_steps is not None:
            self.meta_steps = check_nonneg_int("meta_steps", self.meta_steps)
        if self.joint_steps is not None:
            self.joint_steps = check_nonneg_int("joint_steps", self.joint_steps)
        self.checkpoint_every = check_nonneg_int("checkpoint_every", self.checkpoint_every)
        self.seed = check_nonneg_int("seed", self.seed)
        if self.support_pilots is not None:
            self.support_pilots = check_positive_int("support_pilots", self.support_pilots)
        check_out_file(self.out)
        return self

    def check_out_is_free(self) -> None:
        """An existing ``out`` is replaced only when it is the run being resumed or ``overwrite`` is set."""
        import os
        if os.path.exists(self.out) and not self.overwrite and not (
                self.resume and os.path.abspath(self.resume) == os.path.abspath(self.out)):
            raise ConfigError("out", f"{self.out} exists; continue that run with resume={self.out!r} (--resume "
                                     f"{self.out}) or replace it with overwrite=True (--overwrite)")


def _scenario_overrides(cfg: MetaTrainConfig, cls) -> dict:
    """The scenario config overrides implied by ``cfg`` (SNR converted to the scenario's kind)."""
    overrides = dict(cfg.scenario_config)
    if cfg.ebno_db is not None and cfg.snr_db is not None:
        raise ConfigError("snr_db", "give snr_db (Es/N0) or ebno_db (Eb/N0), not both")
    if cls.snr_kind == "esno":
        if cfg.ebno_db is not None:  # Es/N0 = Eb/N0 + 10 log10(bits per symbol) dB
            rho = cls.bits_per_symbol(cls.config_class(**overrides))
            overrides[cls.snr_field] = check_finite("ebno_db", cfg.ebno_db) + 10.0 * math.log10(rho)
        elif cfg.snr_db is not None:
            overrides[cls.snr_field] = check_finite("snr_db", cfg.snr_db)
    else:
        if cfg.snr_db is not None:
            raise ConfigError("snr_db", f"scenario {cls.name} sets its SNR as Eb/N0; give ebno_db instead")
        if cfg.ebno_db is not None:
            overrides[cls.snr_field] = cfg.ebno_db
    if cfg.support_pilots is not None:
        overrides[cls.support_field] = cfg.support_pilots
    return overrides


def build(cfg: MetaTrainConfig):
    """``(scenario, meta trainer, joint trainer, settings)`` of a validated config (restart 0)."""
    from metacomm.scenarios import make_scenario, scenario_class
    cfg.validate()
    cls = scenario_class(cfg.scenario)
    dev = resolve_device(cfg.device)
    overrides = _scenario_overrides(cfg, cls)
    try:
        sc = make_scenario(cfg.scenario, device=dev, **overrides)
    except ConfigError as e:  # the scenario's support field is set by support_pilots: name that key
        if cfg.support_pilots is not None and e.field == cls.support_field:
            raise ConfigError("support_pilots", error_message(e)) from None
        raise
    d = sc.meta_defaults
    meta_steps = d["meta_steps"] if cfg.meta_steps is None else cfg.meta_steps
    joint_steps = d.get("joint_steps", meta_steps) if cfg.joint_steps is None else cfg.joint_steps
    inner_steps = d.get("inner_steps", 1) if cfg.inner_steps is None else cfg.inner_steps
    mcfg = MetaConfig(algo=cfg.algo, adapt=cfg.adapt, inner_steps=inner_steps, inner_lr=cfg.inner_lr,
                      outer_lr=d["outer_lr"] if cfg.outer_lr is None else cfg.outer_lr,
                      meta_batch=d["meta_batch"] if cfg.meta_batch is None else cfg.meta_batch,
                      val_every=cfg.val_every, val_tasks=cfg.val_tasks).validate()
    _check_task_memory(sc, mcfg, dev)
    cfg.check_out_is_free()
    meta = make_meta_trainer(sc, mcfg, cfg.seed, dev)
    jcfg = MetaConfig(algo="maml", inner_steps=0, inner_lr=0.0, outer_lr=mcfg.outer_lr, meta_batch=mcfg.meta_batch,
                      val_every=mcfg.val_every, val_tasks=mcfg.val_tasks)
    joint = _trainer_class()(sc.build_model(cfg.seed), sc.objective, sc.sample_tasks, jcfg, seed=cfg.seed + 1,
                             val_sampler=sc.sample_val_tasks, device=dev)
    settings = {"scenario": cfg.scenario, "scenario_config": sc.config_dict(), "algo": cfg.algo,
                "meta_steps": meta_steps, "joint_steps": joint_steps, "seed": cfg.seed,
                "num_restarts": d.get("restarts", 1) if cfg.restarts is None else cfg.restarts,
                "select": cfg.select,
                "meta_config": {k: v for k, v in vars(mcfg).items() if k != "adapt"}, "adapt": meta.adapt}
    return sc, meta, joint, settings


def _trainer_class():
    """:class:`DistributedMetaTrainer` inside a multi-process group (``torchrun``), else :class:`MetaTrainer`."""
    from metacomm.adaptation import distributed
    return distributed.DistributedMetaTrainer if distributed.is_active() else MetaTrainer


def _start_distributed(cfg: MetaTrainConfig) -> bool:
    """Join ``torchrun``'s process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, rank on ``cuda:LOCAL_RANK``;
    gloo on CPU). Returns whether this call initialised it."""
    import torch.distributed as dist

    from metacomm.adaptation import distributed
    world, _, local = distributed.env_world()
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if cfg.executor != "local":
        raise ConfigError("executor", "under torchrun the meta-batch is split across the ranks; use the local "
                                      "executor (no --executor ray)")
    if str(cfg.device) == "cuda":
        cfg.device = f"cuda:{local}"
    distributed.init_from_env(cfg.device)
    return True


def make_meta_trainer(sc, cfg: MetaConfig, seed: int, dev) -> MetaTrainer:
    """The meta trainer of one restart: weights and task stream from ``seed``."""
    return _trainer_class()(sc.build_model(seed), sc.objective, sc.sample_tasks, cfg, seed=seed,
                       val_sampler=sc.sample_val_tasks, device=dev)


def _selection(trainer: MetaTrainer, select: str, restart: int, *, score: bool = True) -> dict:
    """The initialisation a restart offers: its validated best or its last iterate, with the held-out score it
    was selected by (``score=False``: no new validation; ``val`` is None for an unvalidated last iterate)."""
    if select == "best" and trainer.best is not None:
        snap = dict(trainer.best)
    else:
        val = trainer.validate() if score and trainer.val_sampler is not None else None
        snap = {**trainer.snapshot(), "val": val}
    snap["restart"] = restart
    snap["seed"] = trainer.seed
    return snap


def _val_loss(sel: dict | None) -> float:
    v = (sel or {}).get("val") or {}
    x = v.get("val_loss")
    return float("inf") if x is None or not math.isfinite(float(x)) else float(x)


def _load_resume(path: str, settings: dict) -> dict:
    from metacomm.artefacts import load_checkpoint
    ck = load_checkpoint(path, kinds=KIND, field="resume", allow_partial=True)
    for key in ("scenario", "scenario_config", "algo", "seed", "adapt", "select"):
        if ck.get(key) != settings[key]:
            raise ConfigError("resume", f"checkpoint has {key}={ck.get(key)!r}, this run {settings[key]!r}; "
                                        "resume with the settings of the interrupted run")
    old, new = ck.get("meta_config") or {}, settings["meta_config"]
    for key in sorted(set(old) | set(new)):
        if key != "batched" and old.get(key) != new.get(key):
            raise ConfigError("resume", f"checkpoint was trained with {key}={old.get(key)!r}, this run has "
                                        f"{new.get(key)!r}; resume with the settings of the interrupted run")
    return ck


def _check_task_memory(sc, mcfg, dev) -> None:
    """Refuse up front a meta-batch whose tensors cannot fit: one task is sampled from a throw-away generator and
    its batch bytes are scaled by the meta-batch (x 32 for activations and the second-order graph) and the held-out
    tasks (x 8)."""
    from torch.utils._pytree import tree_leaves

    from metacomm._validation import check_memory
    from metacomm.channels import make_generator
    try:
        one = sc.sample_tasks(1, make_generator(0, dev))
    except (RuntimeError, MemoryError) as e:  # a scenario setting so large that one task does not fit
        raise ConfigError("scenario_config", f"one task of this scenario cannot be built: "
                                             f"{str(e).splitlines()[0][:200]}") from None
    import torch
    per_task = sum(t.numel() * t.element_size() for t in tree_leaves(one) if isinstance(t, torch.Tensor))
    check_memory(("meta_batch", "val_tasks"), per_task * (32 * mcfg.meta_batch + 8 * mcfg.val_tasks),
                 f"a meta-batch of {mcfg.meta_batch} tasks ({per_task / 2**20:.3g} MiB each)")


def _restart_context(cfg: MetaTrainConfig):
    """What a restart task needs, built on a worker: ``(scenario, meta trainer config, settings, device)``."""
    import dataclasses
    wcfg = dataclasses.replace(cfg, resume=None, overwrite=True, progress=False, executor="local", ray_address=None,
                               num_gpus=0.0)
    sc, meta, _, settings = build(wcfg)
    return sc, meta.config, settings, meta.device


def _restart_task(ctx, r: int) -> dict:
    """Restart ``r`` alone (weights and task stream from ``seed + r``): ``{"restart", "selection", "state"}`` --
    its selected initialisation and its final trainer state (a checkpoint payload)."""
    sc, mcfg, settings, dev = ctx
    meta = make_meta_trainer(sc, mcfg, settings["seed"] + r, dev)
    meta.train(settings["meta_steps"], progress=False)
    return {"restart": r, "selection": _selection(meta, settings["select"], r), "state": meta.state_dict()}


def run_meta_train(cfg: MetaTrainConfig, *, log: Callable[[str], None] = info, executor=None) -> dict:
    """Run (or resume) the meta-training of ``cfg`` and write the checkpoint ``cfg.out``.

    With a non-local ``cfg.executor`` (or ``executor``, an :class:`~metacomm.experiments.executors.Executor`),
    the restarts run as parallel tasks (each a pure function of ``seed + r``) and the driver writes the checkpoint
    whenever the finished restarts form a longer prefix (a restart in progress is not checkpointed; a resumed run
    recomputes it); the joint baseline is then trained on the driver. The result equals the local run's.

    Returns a summary: ``{"out", "init"`` (the shipped selection), ``"restarts"``, ``"joint_val"`` (held-out
    scores of the joint baseline, ``{}`` without one), ``"metric"``, ``"steps"``, ``"skipped"}``."""
    cfg.validate()
    metrics = None
    if cfg.tensorboard is not None:  # scalars of every meta-step of the local restarts
        from metacomm.experiments.metrics import tensorboard_metrics
        metrics = tensorboard_metrics(cfg.tensorboard)
    started = _start_distributed(cfg)
    try:
        return _run_meta_train(cfg, log=log, executor=executor, metrics=metrics)
    finally:
        if metrics is not None:
            metrics.close()
        if started:
            import torch.distributed as dist
            dist.barrier()
            dist.destroy_process_group()


def _run_meta_train(cfg: MetaTrainConfig, *, log, executor, metrics=None) -> dict:
    from metacomm.adaptation import distributed
    from metacomm.experiments.executors import LocalExecutor, make_executor
    from metacomm.experiments.meta_init import RULE_KEY, rule_entry
    if distributed.rank() != 0:  # one voice: rank 0 logs, shows progress and writes the checkpoint
        log = lambda s: None  # noqa: E731
        cfg.progress = False
    sc, meta, joint, settings = build(cfg)
    out = cfg.out
    restart, results = 0, []
    if cfg.resume:
        ck = _load_resume(cfg.resume, settings)
        restart = int(ck.get("restart", 0))
        results = list(ck.get("restarts", []))
        if restart:
            meta = make_meta_trainer(sc, meta.config, cfg.seed + restart, meta.device)
        meta.load_state_dict(ck)
        joint.load_state_dict(ck["joint"])

    def chosen():
        done = [r for r in results if r is not None]
        return min(done, key=_val_loss) if done else None

    joint_init = None  # the joint baseline's selection, once it has finished training

    def extra(finished: bool = False):
        # Periodic checkpoints record the current restart's state without validating again; they are marked
        # unfinished (commands that evaluate a checkpoint refuse them unless told --allow-partial).
        init = chosen() or _selection(meta, settings["select"], restart, score=False)
        return {"kind": FORMAT, **settings, "joint": joint.state_dict(), "restart": restart,
                "restarts": results, "init": init, RULE_KEY: rule_entry(meta.rule, init),
                "joint_init": joint_init, "finished": finished}

    every = cfg.checkpoint_every
    metric = sc.metric.upper()
    remote = executor is not None and not isinstance(executor, LocalExecutor) or \
        executor is None and cfg.executor != "local"
    if not remote:
        while True:
            meta.train(settings["meta_steps"], progress=cfg.progress, checkpoint_path=out, checkpoint_every=every,
                       extra_state=extra, checkpoint_kind=KIND,
                       on_metrics=None if metrics is None else metrics.with_prefix(f"restart{restart}/"))
            if len(results) <= restart:
                results.append(_selection(meta, settings["select"], restart))
                sel = results[restart]
                val = sel.get("val") or {}
                if settings["num_restarts"] > 1:
                    log(f"restart {restart + 1}/{settings['num_restarts']} (seed {sel['seed']}): selected step "
                        f"{sel['step']}, held-out loss {_val_loss(sel):.4f}"
                        + (f", {metric} {val['val_bler']:.4f}" if "val_bler" in val else ""))
            if restart + 1 >= settings["num_restarts"]:
                break
            restart += 1
            meta = make_meta_trainer(sc, meta.config, cfg.seed + restart, meta.device)
            meta.save(out, extra(), kind=KIND)
    else:
        n = settings["num_restarts"]
        results = results[:n]
        todo = list(range(len(results), n))
        done: dict[int, dict] = {}
        ex = executor or make_executor(cfg.executor, ray_address=cfg.ray_address, num_gpus=cfg.num_gpus)
        try:
            for _, payload in ex.map(_restart_task, todo, context=(_restart_context, (cfg,))):
                done[payload["restart"]] = payload
                grew = False
                while len(results) in done:  # the finished prefix grew: checkpoint it (resumable)
                    r = len(results)
                    results.append(done[r]["selection"])
                    sel = results[r]
                    val = sel.get("val") or {}
                    if n > 1:
                        log(f"restart {r + 1}/{n} (seed {sel['seed']}): selected step {sel['step']}, held-out "
                            f"loss {_val_loss(sel):.4f}" + (f", {metric} {val['val_bler']:.4f}" if "val_bler" in val
                                                            else ""))
                    grew = True
                if grew:
                    restart = len(results) - 1
                    meta = make_meta_trainer(sc, meta.config, cfg.seed + restart, meta.device)
                    meta.load_state_dict(done[restart]["state"])
                    meta.save(out, extra(), kind=KIND)
        finally:
            if executor is None:
                ex.close()
    if settings["joint_steps"]:
        # Joint-baseline checkpoints are written through the meta trainer (one file holds both).
        while joint.step_count < settings["joint_steps"]:
            joint.train(min(settings["joint_steps"], joint.step_count + (every or settings["joint_steps"])),
                        progress=cfg.progress)
            meta.save(out, extra(), kind=KIND)
        joint_init = _selection(joint, settings["select"], 0)
    meta.save(out, extra(finished=True), kind=KIND)
    init = chosen()
    jl = joint.validate() if settings["joint_steps"] else {}
    return {"out": out, "init": init, "restarts": results, "joint_val": jl, "joint_steps": joint.step_count,
            "metric": sc.metric, "steps": meta.step_count, "skipped": len(meta.skipped),
            "scenario": cfg.scenario, "algo": cfg.algo, "inner_steps": meta.config.inner_steps,
            "num_restarts": settings["num_restarts"], "rank": distributed.rank(),
            "world_size": distributed.world_size()}
