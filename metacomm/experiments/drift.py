"""The ``metacomm drift`` command as a library call: :class:`DriftConfig` -> :func:`run_drift_experiment`.

Plays a drift scenario (a built-in name or a TOML file, :mod:`metacomm.scenarios.drift_scenarios`) frame by
frame with an online-drift meta checkpoint or a ``meta-train --scenario drift`` checkpoint (whose codec also
carries the meta-learned tracker of the ``track`` scheme); every scheme (``metacomm drift --help`` lists them,
:mod:`metacomm.drift.registry`) sees the same channel draws. One seed writes ``results.json``, ``results.csv``
and ``drift.png``; several seeds (``seeds``) are one run each, as executor tasks, written to ``OUT/seed-<s>/`` and
pooled into ``OUT/results.json`` and ``OUT/seeds.png`` (:func:`run_drift_seeds`):

* task ``s`` is the single run ``DriftConfig(seed=s, out=OUT/seed-<s>)`` (:func:`seed_config`) -- the same code
  path as ``metacomm drift --seed s --out OUT/seed-<s>`` (:meth:`~metacomm.experiments.drift_session.DriftSession.
  play`), so its counts are the single run's, bit for bit; it returns the run's DriftResult and writes nothing
  itself, except that with the local executor and ``save_every`` it writes ``OUT/seed-<s>/run-state.pt`` as a
  single run does;
* the driver writes ``OUT/seed-<s>/`` as each seed finishes, then ``OUT/results.json`` (kind
  ``metacomm-drift-seeds``, atomic; the pooled summary of the seeds finished so far, ``finished: false`` until all
  are) -- sums of integer counts in seed order, so they do not depend on where or in which order the tasks ran;
* ``resume``: seeds whose ``seed-<s>/results.json`` exists are read back (their settings checked), a seed with a
  ``run-state.pt`` but no results continues from it, the others run; settings that differ from the interrupted
  run's are refused. The seed list itself may change (e.g. ``0:3:1`` -> ``0:7:1`` adds four seeds).

The scenario and the codec are loaded once per command (:class:`~metacomm.experiments.drift_session.DriftSession`)
and the config is validated once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from metacomm._log import info
from metacomm._validation import ConfigError, check_nonneg_int, check_positive_int, check_probability
from metacomm.experiments._common import check_out_dir, parse_seeds
from metacomm.experiments.drift_session import (
    DEFAULT_CHECKPOINT,
    RUN_STATE,
    SEEDS_KIND,
    TRANSFER_NOTE,
    DriftSession,
    check_drift_memory,
    check_seeds_output,
    is_ofdm,
    jamming_twin,
    load_drift_codec,
    read_run_state,
    save_run,
    seed_dir,
    shipped_tracker,
)
from metacomm.scenarios.drift_builtins import builtin_match

__all__ = ["DriftConfig", "DriftOutcome", "run_drift_experiment", "run_drift_seeds", "seed_config",
           "load_drift_codec", "shipped_tracker", "DEFAULT_CHECKPOINT", "RUN_STATE", "parse_seeds"]


@dataclass
class DriftConfig:
    """Settings of a drift run (keys = ``metacomm drift`` flags without ``--``).

    ``checkpoint``: ``None`` = the shipped meta-learned tracker for this scenario and pilot count when there is one
    (and ``track`` joins the default schemes), else the shipped online-drift codec; ``pilots``: pilot messages per
    link and frame; ``steps``: adaptation SGD steps per frame at ``lr`` (``None``:
    the checkpoint's inner rate); ``links``: independent links; ``payload``: data blocks per link and frame;
    ``schemes``: a list or comma string, items ``NAME`` or ``NAME[key=value,...]`` with the scheme's settings
    (``None``: :func:`metacomm.drift.registry.default_schemes` of the scenario and codec); ``seed``: ``None`` = the scenario's;
    ``save_every``: write the run state every N frames (0: never) so that ``resume`` can continue an interrupted
    run -- the resumed result equals an uninterrupted run's.

    ``out``: the output directory; ``None`` keeps a single run's result in memory (``DriftOutcome.result``; nothing
    written; not with ``seeds``, ``save_every`` or ``resume``).

    ``seeds``: ``None`` (one run, seed ``seed``) or several seeds (a list, or a string such as ``"0,1,2"`` or
    ``"0:7:1"`` = 0..7, STOP included, :func:`parse_seeds`): one independent run per seed, each a task of ``executor``
    (``"local"`` | ``"ray"``, with ``ray_address`` and ``num_gpus`` as for ``ber``/``fewshot``), written to
    ``out/seed-<s>/`` exactly as a single run with ``seed = s`` and ``out = out/seed-<s>`` writes it, and pooled
    into ``out/results.json`` (:func:`run_drift_seeds`). Exclusive with ``seed``."""

    scenario: str
    out: str | None = None
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
        """Check every field without loading anything (ConfigError naming the key): executor settings, the seeds,
        the sizes (memory), the output directories, ``resume``; resolves ``checkpoint = None`` to the shipped
        tracker of the scenario and pilot count, else the shipped online-drift codec. The scheme list is resolved
        against the loaded scenario and codec by :func:`run_drift_experiment`. Returns ``self``."""
        from metacomm.experiments.executors import check_executor_settings
        self.executor, self.ray_address, self.num_gpus = check_executor_settings(self.executor, self.ray_address,
                                                                                 self.num_gpus, self.device)
        if self.seeds is not None:
            if self.seed is not None:
                raise ConfigError("seeds", "give either seed (--seed: one run) or seeds (--seeds: one run per "
                                           "seed), not both")
            self.seeds = parse_seeds(self.seeds)
        elif self.executor != "local":
            raise ConfigError("executor", "a single drift run is one task; run several seeds as tasks with seeds "
                                          "(seeds='0:7:1'), or use the local executor")
        if self.checkpoint is None:  # the shipped tracker for this scenario and pilot count, else the online codec
            tracker = shipped_tracker(self.scenario, self.pilots)
            self.checkpoint = tracker or DEFAULT_CHECKPOINT
            self._choice = (f"the shipped tracker {os.path.basename(tracker)} (the scenario is built-in "
                            f"{builtin_match(self.scenario)}, {self.pilots} pilots)" if tracker else
                            f"the shipped online-drift codec {os.path.basename(DEFAULT_CHECKPOINT)} (no shipped tracker "
                            f"for this scenario with {self.pilots} pilots)")
        if self.schemes is not None:
            from metacomm.drift.registry import parse_schemes
            parse_schemes(self.schemes, "schemes")
        check_probability("bler_target", self.bler_target)
        if self.seed is not None:
            self.seed = check_nonneg_int("seed", self.seed)
        self.frames = check_positive_int("frames", self.frames)
        for f in ("retrain_every",):
            setattr(self, f, check_positive_int(f, getattr(self, f)))
        self.retrain_steps = check_nonneg_int("retrain_steps", self.retrain_steps)
        check_drift_memory(self)
        self.save_every = check_nonneg_int("save_every", self.save_every)
        if self.out is None:  # results in memory only (a notebook): nothing to write, so nothing to resume
            for key, bad in (("seeds", self.seeds is not None), ("save_every", self.save_every),
                             ("resume", self.resume)):
                if bad:
                    raise ConfigError(key, "needs out: a many-seed run writes one directory per seed, and run states "
                                           "are files; give out, or run one seed in memory")
            return self
        if self.seeds is not None:  # the pooled directory and every seed's directory
            check_seeds_output(self)
            return self
        from metacomm.artefacts import check_output_dir
        check_output_dir(self.out, results="results.json", kind="metacomm-drift", field="out",
                         others=("results.csv", "drift.png", "belief.png"))
        if self.resume and not os.path.exists(os.path.join(self.out, RUN_STATE)):
            raise ConfigError("resume", f"no saved run state in {self.out} ({RUN_STATE}); was the run started "
                                        "with save_every (--save-every)?")
        check_out_dir(self.out)
        return self


@dataclass
class DriftOutcome:
    """What :func:`run_drift_experiment` returns: ``result`` (the DriftResult of a single run) or ``pooled`` (the
    pooled results dict of a many-seed run), and the files written (``paths``: name -> path)."""

    result: object = None
    pooled: dict | None = None
    paths: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        if self.pooled is not None:
            seeds = self.pooled.get("config", {}).get("seeds", [])
            return f"DriftOutcome(pooled over {len(seeds)} seeds, files={sorted(self.paths)})"
        return f"DriftOutcome(result={self.result!r}, files={sorted(self.paths)})"

    def to_dataframe(self):
        """Long-format table (pandas): one row per frame x scheme of a single run
        (:meth:`~metacomm.drift.result.DriftResult.to_dataframe`), one row per seed x scheme of a many-seed run
        (:func:`~metacomm.drift.pooled.seeds_dataframe`)."""
        if self.pooled is not None:
            from metacomm.drift.pooled import seeds_dataframe
            return seeds_dataframe(self.pooled)
        return self.result.to_dataframe()

    def table(self) -> str:
        """The summary table (per scheme; pooled over the seeds for a many-seed run)."""
        if self.pooled is not None:
            from metacomm.drift.pooled import pooled_table
            return pooled_table(self.pooled)
        table = self.result.summary_table()
        twin = self.result.config.get("jamming_twin")
        if twin:
            summ = self.result.summary()
            lines = [f"{'':16s} with the attacker vs Gaussian jamming of equal power (same frames; the attacker is a "
                     "transfer attack for these receivers):"]
            for s, r in twin["summary"].items():
                if s in summ:
                    lines.append(f"{s:16s} {summ[s]['bler']:10.4g} vs {r['bler']:.4g} (jamming)")
            table += "\n" + "\n".join(lines)
        return table


def _resolve_schemes(cfg: DriftConfig, session: DriftSession) -> None:
    """``cfg.schemes`` -> the run's list of items (names with their ``[key=value]`` settings kept), the defaults of
    the loaded scenario and codec when ``None``; the memory check then sees the real count."""
    from metacomm.drift.registry import parse_schemes
    if cfg.schemes is None:
        cfg.schemes = session.scheme_list(None)[0]
    else:
        parse_schemes(cfg.schemes, "schemes")
        cfg.schemes = _items(cfg.schemes)
    check_drift_memory(cfg)


def _items(schemes) -> list[str]:
    from metacomm.drift.registry import split_items
    raw = split_items(schemes) if isinstance(schemes, str) else list(schemes)
    return [s.strip() for s in raw if s.strip()]


def run_drift_experiment(cfg: DriftConfig, *, log=info, executor=None) -> DriftOutcome:
    """Validate once, load the scenario and the codec once, run one seed (``cfg.seed``) or many (``cfg.seeds``,
    :func:`run_drift_seeds`), save, plot. ``log``: progress lines of a many-seed run; ``executor``: an
    :class:`~metacomm.experiments.executors.Executor` to use instead of ``cfg.executor``'s."""
    from metacomm.scenarios.drift_scenarios import load_scenario
    from metacomm.sims.engine import resolve_device

    dev = resolve_device(cfg.device, field="device")
    cfg.validate()
    choice = getattr(cfg, "_choice", None)
    scenario = load_scenario(cfg.scenario)
    if is_ofdm(scenario) and choice:  # the defaulted block codec is not for OFDM slots
        cfg.checkpoint, choice = None, None
    if choice:
        log(f"drift: no checkpoint given: {choice}")
    session = DriftSession.open(scenario, cfg.checkpoint, dev)
    session.choice = choice
    _resolve_schemes(cfg, session)
    if cfg.seeds is not None:
        doc = _run_seeds(cfg, session, log=log, executor=executor)
        return DriftOutcome(pooled=doc, paths={"results": os.path.join(cfg.out, "results.json"),
                                               "plot": os.path.join(cfg.out, "seeds.png")})
    res = session.play(cfg)
    twin = jamming_twin(session.scenario)
    if twin is not None:  # the attack is a transfer attack for every scheme: jamming of equal power beside it
        log("drift: the scenario has a white-box attacker (a transfer attack for the schemes): running the same "
            "frames with Gaussian jamming of equal power beside it")
        jam = dataclasses.replace(session, scenario=twin).play(
            dataclasses.replace(cfg, save_every=0, resume=False, progress=False))
        res.config["attack_model"] = TRANSFER_NOTE
        res.config["jamming_twin"] = {"summary": {s: {k: r[k] for k in ("bler", "bler_ci", "block_errors", "blocks")}
                                                  for s, r in jam.summary().items()},
                                      "segments": _segment_bler(jam)}
    if cfg.out is None:  # in memory: the caller saves (res.save(dir), plot_drift) if it wants files
        res.config.update(session.recorded(), checkpoint=_abspath(cfg.checkpoint),
                          checkpoint_meta=session.ck.get("meta", {}))
        return DriftOutcome(result=res)
    pj, pc, png = save_run(res, cfg.out, cfg.checkpoint, session.ck, session.recorded())
    return DriftOutcome(result=res, paths={"results": pj, "csv": pc, "plot": png})


def _abspath(path):
    return None if path is None else os.path.abspath(path)


def _segment_bler(res) -> dict:
    """Mean BLER per segment and scheme of a run: ``{segment: {scheme: bler}}`` (segment indices as strings)."""
    out: dict[str, dict] = {}
    for f in res.frames:
        seg = out.setdefault(str(f["segment"]), {})
        for s, r in f["schemes"].items():
            e, n = seg.get(s, (0, 0))
            seg[s] = (e + r["block_errors"], n + r["blocks"])
    return {k: {s: e / n for s, (e, n) in v.items()} for k, v in out.items()}


def run_drift_seeds(cfg: DriftConfig, *, log=info, executor=None) -> dict:
    """The many-seed run of ``cfg`` (``cfg.seeds`` given; module docstring): returns the pooled dict."""
    if cfg.seeds is None:
        raise ConfigError("seeds", "give the seeds to run (e.g. seeds='0:7:1')")
    return run_drift_experiment(cfg, log=log, executor=executor).pooled


def seed_config(cfg, seed: int):
    """The single run of seed ``seed``: ``cfg`` with ``seed``, ``out = out/seed-<seed>``, no seed list, the local
    executor -- exactly the config of ``metacomm drift ... --seed <seed> --out OUT/seed-<seed>``."""
    return dataclasses.replace(cfg, seed=int(seed), seeds=None, out=seed_dir(cfg.out, seed), resume=False,
                               executor="local", ray_address=None, num_gpus=0.0)



def _check_counts(doc: dict, scfg, path: str) -> None:
    """A finished seed's results must hold every frame of its config, every scheme with ``links x payload`` blocks
    per frame (a file cut short or edited would be pooled as if it were the run)."""
    frames = doc.get("frames")
    if not isinstance(frames, list) or len(frames) != scfg.frames:
        raise ConfigError("resume", f"{path} holds {len(frames) if isinstance(frames, list) else 'no'} frames, its "
                                    f"config {scfg.frames}: not a finished run of these settings")
    want = scfg.links * scfg.payload
    for i, f in enumerate(frames):
        rows = f.get("schemes") if isinstance(f, dict) else None
        if not isinstance(rows, dict) or not rows or any(not isinstance(r, dict) or r.get("blocks") != want
                                                         for r in rows.values()):
            raise ConfigError("resume", f"{path}: frame {i} does not hold {want} blocks per scheme")


def _expected(scfg, session: DriftSession) -> dict:
    """The ``config`` entries a finished seed's results.json must hold for this run (what ``resume`` checks): the
    settings and the contents' digests."""
    sc, mcfg = session.scenario, session.codec
    names = [s.split("[")[0].strip() for s in scfg.schemes]
    out = {**session.digests, "scenario": sc.name, "frames": scfg.frames, "pilots": scfg.pilots, "steps": scfg.steps,
           "links": scfg.links, "payload_blocks_per_link": scfg.payload, "seed": scfg.seed,
           "lr": mcfg.inner_lr if scfg.lr is None else scfg.lr, "schemes": names,
           "bler_target": scfg.bler_target, "checkpoint": _abspath(scfg.checkpoint)}
    if "retrain" in names:  # the retrain scheme's settings (recorded with their defaults otherwise)
        out.update(retrain_every=scfg.retrain_every, retrain_steps=scfg.retrain_steps)
    return out


def _key(cfg, session: DriftSession) -> dict:
    """The settings a resumed multi-seed run must share with the interrupted one (a seed's run-state settings
    without the seed, with the contents' digests), as they read back from JSON."""
    fp = session.fingerprint(seed_config(cfg, 0))
    fp.pop("seed")
    return json.loads(json.dumps(fp))


def _seed_context(ref, device: str) -> DriftSession:
    """What every seed's task shares, built once per worker, exactly as the driver built it."""
    return DriftSession.from_ref(ref, device)


def _seed_task(session: DriftSession, spec):
    """One seed: ``(single-run config, saved run state or None)`` -> the run's DriftResult (nothing written, except
    the run states of ``save_every`` under the local executor)."""
    scfg, state = spec
    return session.play(scfg, state=state)


def _run_seeds(cfg: DriftConfig, session: DriftSession, *, log=info, executor=None) -> dict:
    """Run the seeds of ``cfg`` as tasks of ``cfg.executor`` (or ``executor``), write every seed's directory and
    the pooled ``results.json`` (module docstring); returns the pooled dict."""
    from metacomm.artefacts import read_json, write_json
    from metacomm.drift.pooled import plot_seeds, pool_seeds, seed_summary
    from metacomm.drift.result import DriftResult
    from metacomm.experiments.executors import LocalExecutor, make_executor

    local = isinstance(executor, LocalExecutor) if executor is not None else cfg.executor == "local"
    if cfg.save_every and not local:
        raise ConfigError("save_every", "periodic run states are written by the local executor only")
    sc, mcfg, ck = session.scenario, session.codec, session.ck
    seeds = list(cfg.seeds)
    key = _key(cfg, session)
    pooled_path = os.path.join(cfg.out, "results.json")
    per_seed: dict[int, dict] = {}
    states: dict[int, dict] = {}
    if cfg.resume:
        old = read_json(pooled_path, kind=SEEDS_KIND, field="resume")
        saved = (old.get("progress") or {}).get("key") or {}
        if saved != key:
            diff = sorted(k for k in set(key) | set(saved) if saved.get(k) != key.get(k))
            raise ConfigError("resume", f"{pooled_path} is from a run with other settings ({', '.join(diff)}); "
                                        "resume with the settings of the interrupted run")
        for s in seeds:
            scfg = seed_config(cfg, s)
            rj, rs = os.path.join(scfg.out, "results.json"), os.path.join(scfg.out, RUN_STATE)
            if os.path.exists(rj):
                doc = read_json(rj, kind="metacomm-drift", field="resume")
                want = _expected(scfg, session)
                have = {k: doc.get("config", {}).get(k) for k in want}
                if json.loads(json.dumps(want)) != have:
                    diff = sorted(k for k in want if json.loads(json.dumps(want[k])) != have[k])
                    raise ConfigError("resume", f"{rj} was made with other settings ({', '.join(diff)}); resume "
                                                "with the settings of the interrupted run")
                _check_counts(doc, scfg, rj)
                per_seed[s] = seed_summary(DriftResult.from_dict(doc))
            elif os.path.exists(rs):
                states[s] = read_run_state(rs, session.fingerprint(scfg))
        log(f"drift: resuming {cfg.out}: {len(per_seed)} of {len(seeds)} seeds finished, {len(states)} continue "
            "from their run state, the rest start")

    config = {**key, "checkpoint": _abspath(cfg.checkpoint), "scenario_name": sc.name, "seeds": seeds,
              "seed_dirs": {str(s): os.path.basename(seed_dir(cfg.out, s)) for s in seeds},
              "lr": mcfg.inner_lr if cfg.lr is None else cfg.lr, "adapt": mcfg.adapt, "inner_loss": mcfg.inner_loss,
              "checkpoint_meta": ck.get("meta", {}), "executor": cfg.executor,
              "ci": "bler_ci/ber_ci: Clopper-Pearson 95% over the blocks/bits pooled over seeds, frames and links; "
                    "seed_bler_ci: Student-t 95% interval of the mean of the per-seed BLERs"}

    def write(finished: bool) -> dict:
        doc = {"config": config, "finished": finished,
               "progress": {"key": key, "done": len(per_seed), "total": len(seeds),
                            "seeds_done": [s for s in seeds if s in per_seed]},
               "seeds": {str(s): per_seed[s] for s in seeds if s in per_seed},
               "summary": pool_seeds(per_seed, seeds, cfg.frames)}
        write_json(pooled_path, doc, kind=SEEDS_KIND, field="out", indent=1)
        return doc

    todo = [s for s in seeds if s not in per_seed]
    doc = write(not todo)
    if todo:
        if local:
            context = (lambda: session, ())  # in process: the objects loaded above
        else:
            context = (_seed_context, (session.ref(), cfg.device))
        specs = []
        for s in todo:
            scfg = seed_config(cfg, s)
            if not local:
                scfg = dataclasses.replace(scfg, progress=False, save_every=0)
            specs.append((scfg, states.get(s)))
        ex = executor or make_executor(cfg.executor, ray_address=cfg.ray_address, num_gpus=cfg.num_gpus)
        try:
            for t, res in ex.map(_seed_task, specs, context=context):
                s = todo[t]
                save_run(res, seed_dir(cfg.out, s), cfg.checkpoint, ck, session.recorded())
                per_seed[s] = seed_summary(res)
                doc = write(len(per_seed) == len(seeds))
                log(f"drift: seed {s} done ({len(per_seed)}/{len(seeds)}) -> {seed_dir(cfg.out, s)}")
        finally:
            if executor is None:
                ex.close()
    plot_seeds(doc, os.path.join(cfg.out, "seeds.png"))
    return doc
