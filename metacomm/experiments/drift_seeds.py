"""Drift runs over many seeds: one independent drift run per seed, each an executor task, pooled by the driver.

``DriftConfig(seeds=[0, 1, 2], ...)`` (``metacomm drift --seeds 0:3``) -> :func:`run_drift_seeds`:

* task ``s`` is the single run ``DriftConfig(seed=s, out=OUT/seed-<s>)`` (:func:`seed_config`) -- the same code
  path as ``metacomm drift --seed s --out OUT/seed-<s>`` (:func:`metacomm.experiments.drift._play`), so its
  counts are the single run's, bit for bit; it returns the run's :class:`~metacomm.sims.drift_result.DriftResult`
  (the frame records) and never writes anything itself, except that with the local executor and ``save_every``
  the task (in the driver's process) writes ``OUT/seed-<s>/run-state.pt`` as a single run does;
* the driver writes ``OUT/seed-<s>/`` (``results.json``, ``results.csv``, ``drift.png``: what the single run
  writes) as each seed finishes, then ``OUT/results.json`` (kind ``metacomm-drift-seeds``, atomic; the pooled
  summary of the seeds finished so far, ``finished: false`` until all are) -- the pooled numbers are sums of
  integer counts in seed order, so they do not depend on where or in which order the tasks ran -- and at the end
  ``OUT/seeds.png`` (:func:`metacomm.sims.drift_pooled.plot_seeds`);
* ``resume``: seeds whose ``seed-<s>/results.json`` exists are read back (their settings checked), a seed with a
  ``run-state.pt`` but no results continues from it (its settings checked exactly as a single ``--resume``
  does), the others run; settings that differ from the interrupted run's (``OUT/results.json``) are refused.
  The seed list itself may change (e.g. ``0:4`` -> ``0:8`` adds four seeds).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

from metacomm._validation import ConfigError

__all__ = ["parse_seeds", "check_seeds_output", "seed_config", "seed_dir", "run_drift_seeds", "MAX_SEEDS"]

MAX_SEEDS = 100_000
SEEDS_KIND = "metacomm-drift-seeds"
_FORMS = "a comma list of seeds (0,1,2), a range A:B meaning A..B-1 (0:8), or both (0:4,10)"


def _int(field: str, text: str, where: str) -> int:
    t = text.strip()
    try:
        v = int(t)
    except ValueError:
        raise ConfigError(field, f"{where!r} is not a seed; expected {_FORMS}") from None
    if v < 0:
        raise ConfigError(field, f"seeds must be non-negative integers, got {v} in {where!r}")
    return v


def parse_seeds(value, field: str = "seeds") -> list[int]:
    """``"0,1,2"`` / ``"0:8"`` (0..7) / ``"0:4,10"`` / a list of ints -> the seeds, in the order given.

    ConfigError naming ``field`` for anything but non-negative integers, for an empty or reversed range, an empty
    list, a seed given twice, or more than :data:`MAX_SEEDS` seeds."""
    if isinstance(value, str):
        items = [t.strip() for t in value.split(",")]
        if not any(items):
            raise ConfigError(field, f"give at least one seed: {_FORMS}")
        out: list[int] = []
        for t in items:
            if not t:
                raise ConfigError(field, f"empty item in {value!r}; expected {_FORMS}")
            if ":" in t:
                a, _, b = t.partition(":")
                if ":" in b:
                    raise ConfigError(field, f"{t!r}: a range is A:B (A..B-1), without a step")
                lo, hi = _int(field, a, t), _int(field, b, t)
                if hi <= lo:
                    raise ConfigError(field, f"empty range {t!r}: A:B means A..B-1 and needs B > A")
                if hi - lo > MAX_SEEDS:
                    raise ConfigError(field, f"{t!r} is more than {MAX_SEEDS} seeds")
                out += range(lo, hi)
            else:
                out.append(_int(field, t, t))
    elif isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(field, f"expected a list of non-negative integer seeds, got {v!r} in {value!r}")
            if v < 0:
                raise ConfigError(field, f"seeds must be non-negative integers, got {v}")
            out.append(int(v))
        if not out:
            raise ConfigError(field, f"give at least one seed: {_FORMS}")
    else:
        raise ConfigError(field, f"expected {_FORMS} (a string), or a list of seeds; got {value!r}")
    if len(out) > MAX_SEEDS:
        raise ConfigError(field, f"{len(out)} seeds; at most {MAX_SEEDS}")
    seen: set[int] = set()
    for s in out:
        if s in seen:
            raise ConfigError(field, f"seed {s} is given twice; every seed runs once")
        seen.add(s)
    return out


def seed_dir(out: str, seed: int) -> str:
    """``out/seed-<seed>``: where seed ``seed`` of a multi-seed run is written."""
    return os.path.join(out, f"seed-{seed}")


def check_seeds_output(cfg) -> None:
    """Before any work: the pooled directory and every seed's directory may be written (never a foreign file or
    a single run's results in the pooled directory), ``resume`` has something to resume, ``save_every`` is asked
    of the local executor only."""
    from metacomm.artefacts import check_output_dir
    from metacomm.experiments._common import check_out_dir
    check_output_dir(cfg.out, results="results.json", kind=SEEDS_KIND, field="out", others=("seeds.png",))
    for s in cfg.seeds:
        check_output_dir(seed_dir(cfg.out, s), results="results.json", kind="metacomm-drift", field="out",
                         others=("results.csv", "drift.png"))
    if cfg.save_every and cfg.executor != "local":
        raise ConfigError("save_every", "periodic run states are written by the local executor only (a remote "
                                        "task returns a whole seed; a resumed run recomputes the unfinished seeds)")
    if cfg.resume and not os.path.exists(os.path.join(cfg.out, "results.json")):
        raise ConfigError("resume", f"nothing to resume: no {os.path.join(cfg.out, 'results.json')} (a multi-seed "
                                    "run writes it when it starts)")
    check_out_dir(cfg.out)


def seed_config(cfg, seed: int):
    """The single run of seed ``seed``: ``cfg`` with ``seed``, ``out = out/seed-<seed>``, no seed list, the local
    executor -- exactly the config of ``metacomm drift ... --seed <seed> --out OUT/seed-<seed>``."""
    return dataclasses.replace(cfg, seed=int(seed), seeds=None, out=seed_dir(cfg.out, seed), resume=False,
                               executor="local", ray_address=None, num_gpus=0.0)


def _scenario_ref(name: str):
    """What a worker needs to rebuild the scenario: a built-in's name, or a file's text (no shared file system)."""
    from metacomm.scenarios.drift_scenarios import load_scenario
    sc = load_scenario(name)
    if str(sc.source).startswith("<builtin>/"):
        return ("name", str(name))
    from pathlib import Path
    p = Path(name)
    return ("text", p.read_text(encoding="utf-8"), str(name), p.stem)


def _seed_context(scenario_ref, checkpoint: str, device: str):
    """What every seed's task shares, built once per worker: ``(scenario, codec, codec settings, checkpoint dict,
    device)`` exactly as the driver builds them."""
    from metacomm.experiments.drift import load_drift_codec
    from metacomm.scenarios.drift_scenarios import load_scenario, parse_scenario
    from metacomm.sims.engine import resolve_device
    dev = resolve_device(device, field="device")
    if scenario_ref[0] == "name":
        sc = load_scenario(scenario_ref[1])
    else:
        sc = parse_scenario(scenario_ref[1], source=scenario_ref[2], default_name=scenario_ref[3])
    model, mcfg, ck = load_drift_codec(checkpoint, device=dev)
    return sc, model, mcfg, ck, dev


def _seed_task(ctx, spec):
    """One seed: ``(single-run config, saved run state or None)`` -> the run's DriftResult (nothing written, except
    the run states of ``save_every`` under the local executor)."""
    from metacomm.experiments.drift import _play, run_kwargs
    sc, model, mcfg, _, dev = ctx
    scfg, state = spec
    return _play(sc, model, scfg, run_kwargs(scfg, sc, mcfg, dev), state=state)


_RESULT_KEYS = ("scenario", "frames", "pilots", "steps", "links", "payload_blocks_per_link", "seed", "lr",
                "schemes", "retrain_every", "retrain_steps", "bler_target", "checkpoint")


def _expected(scfg, sc, mcfg) -> dict:
    """The ``config`` entries a finished seed's results.json must hold for this run (what ``resume`` checks)."""
    return {"scenario": sc.name, "frames": scfg.frames, "pilots": scfg.pilots, "steps": scfg.steps,
            "links": scfg.links, "payload_blocks_per_link": scfg.payload, "seed": scfg.seed,
            "lr": mcfg.inner_lr if scfg.lr is None else scfg.lr, "schemes": list(scfg.schemes),
            "retrain_every": scfg.retrain_every, "retrain_steps": scfg.retrain_steps,
            "bler_target": scfg.bler_target, "checkpoint": os.path.abspath(scfg.checkpoint)}


def _key(cfg) -> dict:
    """The settings a resumed multi-seed run must share with the interrupted one (a seed's run-state settings
    without the seed), as they read back from JSON."""
    from metacomm.experiments.drift import _fingerprint
    fp = _fingerprint(seed_config(cfg, 0))
    fp.pop("seed")
    return json.loads(json.dumps(fp))


def run_drift_seeds(cfg, *, log=print, executor=None) -> dict:
    """Run the seeds of ``cfg`` (a :class:`~metacomm.experiments.drift.DriftConfig` with ``seeds``) as tasks of
    ``cfg.executor`` (``executor``: an :class:`~metacomm.experiments.executors.Executor` to use instead), write every
    seed's directory and the pooled ``results.json`` (module docstring); returns the pooled dict."""
    from metacomm.artefacts import read_json, write_json
    from metacomm.experiments.drift import RUN_STATE, _fingerprint, load_drift_codec, read_run_state, save_run
    from metacomm.experiments.executors import LocalExecutor, make_executor
    from metacomm.scenarios.drift_scenarios import load_scenario
    from metacomm.sims.drift_pooled import plot_seeds, pool_seeds, seed_summary
    from metacomm.sims.drift_result import DriftResult
    from metacomm.sims.engine import resolve_device

    dev = resolve_device(cfg.device, field="device")
    cfg.validate()
    if cfg.seeds is None:
        raise ConfigError("seeds", "give the seeds to run (e.g. seeds='0:8')")
    local = isinstance(executor, LocalExecutor) if executor is not None else cfg.executor == "local"
    if cfg.save_every and not local:
        raise ConfigError("save_every", "periodic run states are written by the local executor only")
    sc = load_scenario(cfg.scenario)
    model, mcfg, ck = load_drift_codec(cfg.checkpoint, device=dev)
    k, n = int(model.num_info_bits), int(model.num_channel_uses)
    if sc.k != k or math.ceil(sc.n) != n:
        raise ConfigError("checkpoint", f"the codec has k={k}, n={n} complex uses but scenario {sc.name!r} is for "
                                        f"k={sc.k}, n={sc.n:g}")
    seeds = list(cfg.seeds)
    key = _key(cfg)
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
                want = _expected(scfg, sc, mcfg)
                have = {k: doc.get("config", {}).get(k) for k in _RESULT_KEYS}
                if json.loads(json.dumps(want)) != have:
                    diff = sorted(k for k in want if json.loads(json.dumps(want[k])) != have[k])
                    raise ConfigError("resume", f"{rj} was made with other settings ({', '.join(diff)}); resume "
                                                "with the settings of the interrupted run")
                per_seed[s] = seed_summary(DriftResult.from_dict(doc))
            elif os.path.exists(rs):
                states[s] = read_run_state(rs, _fingerprint(scfg))
        log(f"drift: resuming {cfg.out}: {len(per_seed)} of {len(seeds)} seeds finished, {len(states)} continue "
            "from their run state, the rest start")

    config = {**key, "checkpoint": os.path.abspath(cfg.checkpoint), "scenario_name": sc.name, "seeds": seeds,
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
            context = (lambda: (sc, model, mcfg, ck, dev), ())  # in process: the objects loaded above
        else:
            context = (_seed_context, (_scenario_ref(cfg.scenario), os.path.abspath(cfg.checkpoint), cfg.device))
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
                save_run(res, seed_dir(cfg.out, s), cfg.checkpoint, ck)
                per_seed[s] = seed_summary(res)
                doc = write(len(per_seed) == len(seeds))
                log(f"drift: seed {s} done ({len(per_seed)}/{len(seeds)}) -> {seed_dir(cfg.out, s)}")
        finally:
            if executor is None:
                ex.close()
    plot_seeds(doc, os.path.join(cfg.out, "seeds.png"))
    return doc
