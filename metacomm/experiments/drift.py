"""A drift run as a library call: :class:`DriftConfig` -> :func:`run_drift_experiment` -> results + plot.

Plays a drift scenario (a built-in name or a TOML file, :mod:`metacomm.scenarios.drift_scenarios`) frame by
frame with an online-drift meta checkpoint or a ``meta-train --scenario drift`` checkpoint (whose codec also
carries the meta-learned tracker of the ``track`` scheme, :func:`load_drift_codec`); every scheme (static, retrain, meta, warm, online-meta,
on-detection, reset-on-change, pilot-ls, genie; :mod:`metacomm.sims.drift_run`) sees the same channel draws.
Writes ``results.json``, ``results.csv`` and ``drift.png`` (BLER/BER over frames with the drift value on a
second axis).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from metacomm._validation import ConfigError, check_nonneg_int, check_positive_int, check_probability
from metacomm.experiments._common import check_out_dir

__all__ = ["DriftConfig", "run_drift_experiment", "load_drift_codec", "DEFAULT_CHECKPOINT", "RUN_STATE"]

#: the run-state file a drift run with ``save_every`` writes into its output directory
RUN_STATE = "run-state.pt"
RUN_KIND = "metacomm-drift-run"

#: the shipped online-drift meta checkpoint (k = 8 bits on n = 8 complex uses, 3-tap channel belief)
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "checkpoints", "online_drift_k8n8.pt")


@dataclass
class DriftConfig:
    """Settings of a drift run (keys = ``metacomm drift`` flags without ``--``).

    ``checkpoint``: ``None`` = the shipped meta-learned tracker for this scenario and pilot count when there is one
    (and ``track`` joins the default schemes), else the shipped online-drift codec; ``pilots``: pilot messages per
    link and frame; ``steps``: adaptation SGD steps per frame at ``lr`` (``None``:
    the checkpoint's inner rate); ``links``: independent links; ``payload``: data blocks per link and frame;
    ``schemes``: a list or comma string (``None``: the default set); ``seed``: ``None`` = the scenario's;
    ``save_every``: write the run state every N frames (0: never) so that ``resume`` can continue an interrupted
    run -- the resumed result equals an uninterrupted run's.

    ``seeds``: ``None`` (one run, seed ``seed``) or several seeds (a list, or a string such as ``"0,1,2"`` or
    ``"0:8"`` = 0..7, :func:`parse_seeds`): one independent run per seed, each a task of ``executor``
    (``"local"`` | ``"ray"``, with ``ray_address`` and ``num_gpus`` as for ``ber``/``fewshot``), written to
    ``out/seed-<s>/`` exactly as a single run with ``seed = s`` and ``out = out/seed-<s>`` writes it, and pooled
    into ``out/results.json`` (:mod:`metacomm.experiments.drift_seeds`). Exclusive with ``seed``."""

    scenario: str
    out: str
    checkpoint: str | None = None
    frames: int = 200
    pilots: int = 16
    steps: int = 1
    lr: float | None = None
    schemes: object = None
    links: int = 8
    payload: int = 64
    retrain_every: int = 10
    retrain_steps: int = 100
    bler_target: float = 0.1
    seed: int | None = None
    device: str = "cpu"
    save_every: int = 0
    resume: bool = False
    progress: bool = True
    seeds: object = None
    executor: str = "local"
    ray_address: str | None = None
    num_gpus: float = 0.0

    def validate(self) -> DriftConfig:
        from metacomm.experiments.executors import check_executor_settings
        from metacomm.sims.drift_run import DEFAULT_SCHEMES, parse_schemes
        self.executor, self.ray_address, self.num_gpus = check_executor_settings(self.executor, self.ray_address,
                                                                                 self.num_gpus, self.device)
        if self.seeds is not None:
            from metacomm.experiments.drift_seeds import parse_seeds
            if self.seed is not None:
                raise ConfigError("seeds", "give either seed (--seed: one run) or seeds (--seeds: one run per "
                                           "seed), not both")
            self.seeds = parse_seeds(self.seeds)
        elif self.executor != "local":
            raise ConfigError("executor", "a single drift run is one task; run several seeds as tasks with seeds "
                                          "(--seeds 0:8), or use the local executor")
        defaults = list(DEFAULT_SCHEMES)
        if self.checkpoint is None:  # the shipped tracker for this scenario and pilot count, else the online codec
            tracker = shipped_tracker(self.scenario, self.pilots)
            self.checkpoint = tracker or DEFAULT_CHECKPOINT
            if tracker:
                defaults.insert(defaults.index("online-meta") + 1, "track")
            if _has_tx_pa(self.scenario):  # the PA-aware classical receivers (and the shipped linear tracker)
                defaults[defaults.index("kalman") + 1:defaults.index("kalman") + 1] = ["pa-ls", "pa-kalman"]
                if tracker:
                    defaults.insert(defaults.index("track") + 1, "track-linear")
            if _has_phase_noise(self.scenario):  # per-position classical receivers (and the fixed-tap tracker)
                defaults[defaults.index("kalman") + 1:defaults.index("kalman") + 1] = ["pn-ls", "pn-kalman"]
                if tracker:
                    defaults.insert(defaults.index("track") + 1, "track-linear")
        self.schemes = parse_schemes(defaults if self.schemes is None else self.schemes, "schemes")
        check_probability("bler_target", self.bler_target)
        if self.seed is not None:
            self.seed = check_nonneg_int("seed", self.seed)
        self.frames = check_positive_int("frames", self.frames)
        check_drift_memory(self)
        self.save_every = check_nonneg_int("save_every", self.save_every)
        if self.seeds is not None:  # the pooled directory and every seed's directory
            from metacomm.experiments.drift_seeds import check_seeds_output
            check_seeds_output(self)
            return self
        from metacomm.artefacts import check_output_dir
        check_output_dir(self.out, results="results.json", kind="metacomm-drift", field="out",
                         others=("results.csv", "drift.png"))
        if self.resume and not os.path.exists(os.path.join(self.out, RUN_STATE)):
            raise ConfigError("resume", f"no saved run state in {self.out} ({RUN_STATE}); was the run started "
                                        "with save_every (--save-every)?")
        check_out_dir(self.out)
        return self


@dataclass
class _CodecSettings:
    """The run-time settings a drift checkpoint implies for the adaptive schemes."""

    inner_lr: float
    adapt: str
    inner_loss: str


def load_drift_codec(path: str, *, device="cpu", field: str = "checkpoint"):
    """The codec of a drift checkpoint: ``(model on device, settings (inner_lr, adapt, inner_loss), checkpoint
    dict)``. Accepts an online-drift checkpoint (:func:`metacomm.scenarios.online_drift.save_meta`) or a finished
    ``meta-train --scenario drift`` checkpoint (its selected initialisation: a
    :class:`~metacomm.scenarios.drift_track.TrackingDriftCodec` with the meta-learned tracker, scheme ``track``);
    ConfigError naming ``field`` for anything else."""
    from metacomm.artefacts import load_checkpoint
    from metacomm.experiments.meta_train import KIND as META_KIND
    from metacomm.scenarios.online_drift import load_meta

    ck = load_checkpoint(path, kinds=("metacomm-online-meta", META_KIND), field=field, allow_partial=True)
    if not str(ck.get("kind", "")).startswith(META_KIND + "/"):
        model, mcfg, ck = load_meta(path, device=device, field=field)
        return model, _CodecSettings(mcfg.inner_lr, mcfg.adapt, mcfg.inner_loss), ck
    if ck.get("scenario") != "drift":
        raise ConfigError(field, f"{path}: a meta-train checkpoint of scenario {ck.get('scenario')!r}; a drift run "
                                 "takes one of `meta-train --scenario drift` or an online-drift checkpoint")
    from metacomm.experiments.fewshot import load_meta_checkpoint
    _, model, _, _, ck = load_meta_checkpoint(path, device, field=field)
    inner_lr = float(ck.get("meta_config", {}).get("inner_lr", 0.1))
    init = ck.get("init") or {}
    ck = {**ck, "meta": {"scenario": "drift", "scenario_config": ck.get("scenario_config"),
                         "init_step": init.get("step"), "init_seed": init.get("seed"), "val": init.get("val"),
                         "meta_steps": ck.get("meta_steps")}}
    return model, _CodecSettings(inner_lr, "decoder.taps", model.meta_inner_loss), ck


def check_drift_memory(cfg) -> None:
    """Refuse up front sizes whose tensors cannot fit: per frame every scheme holds the links' pilot and payload
    blocks (codewords, noise, received samples and 2^k block logits: about 1 KiB per block for the k = 8
    built-ins), and the result keeps a record per frame and scheme (about 512 bytes)."""
    from metacomm._validation import check_memory
    for f in ("links", "pilots", "payload"):
        if getattr(cfg, f, None) is not None:
            setattr(cfg, f, check_positive_int(f, getattr(cfg, f)))
    blocks = (getattr(cfg, "links", None) or 8) * ((getattr(cfg, "pilots", None) or 16)
                                                  + (getattr(cfg, "payload", None) or 64))
    sizes = sorted(("payload", "pilots", "links"), key=lambda f: -(getattr(cfg, f, None) or 0))  # largest first
    check_memory(tuple(sizes), 1024.0 * blocks, "one frame of pilot and payload blocks")
    schemes = len(getattr(cfg, "schemes", None) or ()) or 16
    check_memory("frames", 512.0 * cfg.frames * schemes, "the per-frame results")


def _has_tx_pa(scenario) -> bool:
    """Whether drift scenario ``scenario`` (name or file; False when it does not load) has a transmitter PA."""
    from metacomm.scenarios.drift_scenarios import load_scenario
    from metacomm.scenarios.drift_track import PA_IMPAIRMENTS
    try:
        segs = load_scenario(scenario).segments
    except ConfigError:
        return False
    return any(s.impairment is not None and s.impairment.name in PA_IMPAIRMENTS and s.impairment.position == "tx"
               for s in segs)


def _has_phase_noise(scenario) -> bool:
    """Whether drift scenario ``scenario`` has a Wiener phase-noise stage (False when it does not load)."""
    from metacomm.scenarios.drift_scenarios import load_scenario
    try:
        segs = load_scenario(scenario).segments
    except ConfigError:
        return False
    return any(s.impairment is not None and s.impairment.name == "phase-noise" for s in segs)


def shipped_tracker(scenario, pilots) -> str | None:
    """The shipped meta-learned tracking codec for built-in drift scenario ``scenario`` and ``pilots`` pilots per
    frame (``metacomm/checkpoints/drift_track_<scenario>_p<pilots>.pt``), or None."""
    path = os.path.join(os.path.dirname(DEFAULT_CHECKPOINT),
                        f"drift_track_{os.path.basename(str(scenario))}_p{pilots}.pt")
    return path if os.path.exists(path) else None


def run_drift_experiment(cfg: DriftConfig):
    """Validate, run, save, plot: returns ``(DriftResult, results.json path, results.csv path, plot path)``."""

    from metacomm.scenarios.drift_scenarios import load_scenario
    from metacomm.sims.engine import resolve_device

    dev = resolve_device(cfg.device, field="device")
    cfg.validate()
    if cfg.seeds is not None:
        raise ConfigError("seeds", "several seeds run through metacomm.experiments.drift_seeds.run_drift_seeds")
    sc = load_scenario(cfg.scenario)
    model, mcfg, ck = load_drift_codec(cfg.checkpoint, device=dev)
    res = _play(sc, model, cfg, run_kwargs(cfg, sc, mcfg, dev))
    return (res, *save_run(res, cfg.out, cfg.checkpoint, ck))


def run_kwargs(cfg: DriftConfig, sc, mcfg, dev) -> dict:
    """The :class:`~metacomm.sims.drift_run.DriftRunConfig` keywords of the (single-seed) run ``cfg``."""
    return dict(
        frames=cfg.frames, pilots=cfg.pilots, steps=cfg.steps, schemes=cfg.schemes, links=cfg.links,
        payload=cfg.payload, seed=sc.seed if cfg.seed is None else cfg.seed, device=dev,
        lr=mcfg.inner_lr if cfg.lr is None else cfg.lr, adapt=mcfg.adapt, inner_loss=mcfg.inner_loss,
        retrain_every=cfg.retrain_every, retrain_steps=cfg.retrain_steps, bler_target=cfg.bler_target)


def save_run(res, out: str, checkpoint: str, ck: dict):
    """Write a finished run into ``out``: ``results.json`` (with the checkpoint's path and meta data in its config),
    ``results.csv`` and ``drift.png``; returns the three paths."""
    from metacomm.sims.drift_run import plot_drift
    res.config["checkpoint"] = os.path.abspath(checkpoint)
    res.config["checkpoint_meta"] = ck.get("meta", {})
    os.makedirs(out, exist_ok=True)
    pj, pc = res.save(out)
    png = plot_drift(res, os.path.join(out, "drift.png"))
    return pj, pc, png


def _fingerprint(cfg: DriftConfig) -> dict:
    """The settings a resumed run must share with the interrupted one (where the run executes is not one)."""
    skip = ("out", "progress", "resume", "save_every", "seeds", "executor", "ray_address", "num_gpus")
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}


def read_run_state(path: str, fingerprint: dict) -> dict:
    """The saved run state at ``path``; ConfigError naming ``resume`` when it was made with other settings."""
    from metacomm.artefacts import load_checkpoint
    state = load_checkpoint(path, kinds=RUN_KIND, field="resume", allow_partial=True)
    if state.get("settings") != fingerprint:
        diff = sorted(k for k in set(fingerprint) | set(state.get("settings", {}))
                      if fingerprint.get(k) != state.get("settings", {}).get(k))
        raise ConfigError("resume", f"the saved run {path} was made with other settings ({', '.join(diff)}); resume "
                                    "with the settings of the interrupted run")
    return state


def _play(sc, model, cfg: DriftConfig, kw: dict, *, state: dict | None = None):
    """Play the run frame by frame; every ``save_every`` frames write the run state (``RUN_STATE`` in the output
    directory: frames played, their records, every scheme's state; ``finished`` False until the end), and with
    ``resume`` continue from it (the played frames' draws are replayed, so the result equals an uninterrupted
    run's). ``state``: a run state already read (and checked) by the caller, resumed instead of reading the file
    (a remote task of a multi-seed run)."""
    from tqdm.auto import tqdm

    from metacomm._validation import ConfigError
    from metacomm.artefacts import save_checkpoint
    from metacomm.sims.drift_run import CLI_FLAGS, DriftRun, DriftRunConfig
    try:
        run = DriftRun(sc, model, DriftRunConfig(**kw))
    except ConfigError as e:
        if e.field in CLI_FLAGS:
            raise ConfigError(CLI_FLAGS[e.field].lstrip("-").replace("-", "_"), str(e)[len(e.field) + 2:]) from None
        raise
    path = os.path.join(cfg.out, RUN_STATE)
    fingerprint = _fingerprint(cfg)
    if state is not None:
        run.load_state_dict(state["run"])
    elif cfg.resume:
        run.load_state_dict(read_run_state(path, fingerprint)["run"])
    elif cfg.save_every:
        for s in run.schemes:  # refuse up front a scheme whose state cannot be saved
            s.state_dict()
    every = cfg.save_every
    left = cfg.frames - run.position
    with tqdm(total=left, disable=not cfg.progress, desc=f"drift {sc.name}" + (f" seed {cfg.seed}" if cfg.seed is not None else ""),
              leave=False) as bar:
        while not run.done:
            run.step()
            bar.update(1)
            if every and (run.position % every == 0 or run.done):
                save_checkpoint(path, {"settings": fingerprint, "run": run.state_dict(), "finished": run.done},
                                kind=RUN_KIND, field="out")
    return run.result
