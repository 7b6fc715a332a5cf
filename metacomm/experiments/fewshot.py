"""Few-shot evaluation as a library call: :class:`FewShotConfig` -> :func:`run_fewshot` -> ``results.json`` + plots.

For every scheme -- ``meta`` (the meta-learned initialisation a ``meta-train`` checkpoint ships: its ``init``
entry, i.e. the restart and step selected on held-out tasks), ``joint`` (the joint-training baseline of the same
checkpoint, selected the same way), ``random`` (a fresh random initialisation) -- and every number of pilots
``P``, each test task's copy is adapted (step 1: the inner update rule the initialisation was meta-trained with,
as the checkpoint records it -- :func:`metacomm.experiments.meta_init.load_meta_init` -- SGD at the inner rate or
Meta-SGD's learned rates; later steps: Adam ``adam_lr``; the parameters adapted are
those the checkpoint was meta-trained to adapt, e.g. only the head for ANIL) on ``P`` pilots, and the error rate
is measured after each number of steps. References: ``genie`` (a codec trained from scratch on each test task,
``genie_steps``) and the scenario's classical schemes (``classical_schemes``: ``pilot-ls-ml`` for ``fading-ae``,
``pilot-mmse-ml`` for ``iq-demod``). Writes ``results.json`` (error rates with Clopper-Pearson 95 % intervals
pooled over the test tasks) and ``{metric}_vs_steps.png``, ``{metric}_vs_pilots.png``.

What a scenario decides (its declared attributes, :mod:`metacomm.scenarios.base`): ``metric`` (``"ser"``:
results carry ``ser``/``ser_ci`` too and plots are ``ser_vs_*.png``), ``classical_schemes``, ``pilots_meaning``
and ``common_random_numbers`` (all schemes see the same pilots and test data). Each (scheme, pilot count) point is
a pure function of the config: its generator is seeded from ``(seed, scheme index, pilot index)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from metacomm._log import info
from metacomm._validation import (
    MAX_WORK,
    ConfigError,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)
from metacomm.adaptation.functional import SGD, Adam
from metacomm.adaptation.params import params_of
from metacomm.artefacts import retire_files
from metacomm.experiments._common import check_out_dir, int_list, resolve_device

__all__ = ["FewShotConfig", "run_fewshot", "load_meta_checkpoint", "LEARNED", "all_schemes"]

LEARNED = ("meta", "joint", "random", "genie")
RESULTS_KIND = "metacomm-fewshot"
#: the figures an evaluation may leave in its directory (``{metric}_vs_steps.png``, ``{metric}_vs_pilots.png``)
FIGURES = ("bler_vs_steps.png", "bler_vs_pilots.png", "ser_vs_steps.png", "ser_vs_pilots.png")


def all_schemes() -> tuple[str, ...]:
    """Every scheme name some registered scenario offers: the learned ones and each scenario's classical
    references (the scenario of the checkpoint decides which are available)."""
    from metacomm.scenarios import scenario_class, scenario_names
    classical = [s for n in scenario_names() for s in scenario_class(n).classical_schemes]
    return (*LEARNED, *dict.fromkeys(classical))


@dataclass
class FewShotConfig:
    """Settings of a few-shot evaluation (keys = ``metacomm fewshot`` flags without ``--``).

    ``pilots``: pilot counts ``P`` (>= 1); ``steps``: adaptation steps at which the error rate is measured
    (>= 0); both a list or a comma string. ``schemes``: ``None`` = all the checkpoint's scenario offers;
    ``test_channels``: ``None`` = the scenario's number of test tasks; ``test_blocks``: test messages/symbols
    per test task and point; ``adam_lr``: Adam rate of steps >= 2; ``genie_steps``: training steps of the genie;
    ``allow_partial``: evaluate a periodic checkpoint of an unfinished ``meta-train`` run (refused otherwise;
    the results then say ``"checkpoint_finished": false``).
    """

    checkpoint: str
    out: str
    pilots: object = (1, 4, 16, 64)
    steps: object = (0, 1, 5, 100)
    schemes: object = None
    test_channels: int | None = None
    test_blocks: int = 10000
    adam_lr: float = 1e-3
    genie_steps: int = 2000
    seed: int = 0
    device: str = "cpu"
    allow_partial: bool = False
    resume: bool = False
    executor: str = "local"
    ray_address: str | None = None
    num_gpus: float = 0.0

    def validate(self) -> FewShotConfig:
        from metacomm.experiments.executors import check_executor_settings
        self.executor, self.ray_address, self.num_gpus = check_executor_settings(self.executor, self.ray_address,
                                                                                 self.num_gpus, self.device)
        self.pilots = int_list("pilots", self.pilots, minimum=1)
        self.steps = int_list("steps", self.steps, minimum=0)
        if isinstance(self.schemes, str):
            self.schemes = [s.strip() for s in self.schemes.split(",") if s.strip()]
        known = all_schemes()
        for s in self.schemes or ():
            if s not in known:
                raise ConfigError("schemes", f"unknown scheme {s!r}; allowed: {', '.join(known)}")
        if self.test_channels is not None:
            self.test_channels = check_positive_int("test_channels", self.test_channels)
        self.test_blocks = check_positive_int("test_blocks", self.test_blocks, maximum=MAX_WORK)
        from metacomm._validation import check_memory
        # per test task: pilots and test blocks with their codewords, noise and block logits (~1 KiB each)
        check_memory(("pilots", "test_blocks", "test_channels"),
                     1024.0 * (max(self.pilots) + self.test_blocks) * (self.test_channels or 20),
                     "the test tasks' pilots and test blocks")
        self.adam_lr = check_positive("adam_lr", self.adam_lr)
        self.genie_steps = check_nonneg_int("genie_steps", self.genie_steps)
        check_nonneg("seed", self.seed)
        check_out_dir(self.out)
        from metacomm.artefacts import check_output_dir
        check_output_dir(self.out, results="results.json", kind=RESULTS_KIND, field="out", others=FIGURES)
        for name in FIGURES:  # would be refused only when written, after the results
            if os.path.isdir(os.path.join(self.out, name)):
                raise ConfigError("out", f"{os.path.join(self.out, name)!r} is a directory; refusing to replace it")
        return self


def load_meta_checkpoint(path: str, device, field: str = "checkpoint", *, allow_partial: bool = False) -> tuple:
    """``(scenario, meta model, step-1 rule, joint model or None, checkpoint dict)`` of a ``meta-train``
    checkpoint: :func:`metacomm.experiments.meta_init.load_meta_init` as a tuple (the rule is the checkpoint's
    :class:`~metacomm.adaptation.update_rules.UpdateRule`: ``SGD(inner_lr)``, ``MetaSGD`` with the learned rates,
    ...). ConfigError naming ``field``."""
    from metacomm.experiments.meta_init import load_meta_init
    mi = load_meta_init(path, device=device, field=field, allow_partial=allow_partial)
    return mi.scenario, mi.model, mi.rule, mi.joint, mi.checkpoint


def _point_context(checkpoint, device, allow_partial, test_channels, seed, schemes):
    """What the points of a few-shot evaluation share, built on a worker: ``(scenario, inits, checkpoint, device)``
    with ``inits = {scheme: (model, step-1 rule)}`` exactly as :func:`run_fewshot` builds them."""
    from metacomm.experiments.meta_init import load_meta_init
    dev = resolve_device(device)
    mi = load_meta_init(checkpoint, device=dev, allow_partial=allow_partial)
    sc, meta_model, first, joint_model, ck = mi.scenario, mi.model, mi.rule, mi.joint, mi.checkpoint
    if test_channels is not None:
        sc.set_test_tasks(test_channels)
    inner_lr = float(ck["meta_config"]["inner_lr"])
    inits = {}
    if "meta" in schemes:
        inits["meta"] = (meta_model, first)
    if "joint" in schemes:
        inits["joint"] = (joint_model, SGD(inner_lr))
    if "random" in schemes:
        inits["random"] = (sc.build_model(10_000 + int(seed)), SGD(inner_lr))
    return sc, inits, ck, dev


def _point_task(ctx, spec):
    """One few-shot point: ``("learned", scheme, P, gen seed, settings)`` -> ``{steps: (errors, count)}``;
    ``("genie", ...)`` / ``("classical", name, P, ...)`` -> ``(errors, count)`` (pooled over the test tasks)."""
    sc, inits, ck, dev = ctx
    kind, scheme, p, gseed, st = spec
    g = torch.Generator(device=dev).manual_seed(gseed)
    if kind == "learned":
        model, first_opt = inits[scheme]
        res = sc.evaluate(params_of(model), model, pilots=p, steps=st["steps"], generator=g,
                          test_blocks=st["test_blocks"], first=first_opt, rest=Adam(st["adam_lr"]), adapt=ck["adapt"])
        return {int(s): (v[0], v[1]) for s, v in res.items()}
    if kind == "genie":
        return sc.genie(20_000 + st["seed"], generator=g, train_steps=st["genie_steps"],
                        test_blocks=st["test_blocks"])
    return sc.classical(scheme, pilots=p, generator=g, test_blocks=st["test_blocks"])


def run_fewshot(cfg: FewShotConfig, *, log: Callable[[str], None] = info, executor=None) -> dict:
    """Run the evaluation of ``cfg``; writes ``cfg.out/results.json`` and the two plots; returns the results
    dict (``{"config", "results"}``: one row per scheme, pilot count and step count). Every (scheme, pilot
    count) point is a task of ``cfg.executor`` (``executor``: an :class:`~metacomm.experiments.executors.Executor`
    to use instead)."""
    from metacomm.experiments.meta_init import load_meta_init
    from metacomm.sims.stats import clopper_pearson
    cfg.validate()
    dev = resolve_device(cfg.device)
    mi = load_meta_init(cfg.checkpoint, device=dev, allow_partial=cfg.allow_partial)
    sc, meta_model, first, joint_model, ck = mi.scenario, mi.model, mi.rule, mi.joint, mi.checkpoint
    finished = ck.get("finished", True) is not False
    if not finished:
        log(f"fewshot: WARNING: {cfg.checkpoint} is a periodic checkpoint of an unfinished meta-train run (step "
            f"{ck.get('step')} of {ck.get('meta_steps')}); evaluated because of allow_partial")
    classical = dict(sc.classical_schemes)
    offered = (*LEARNED, *classical)
    schemes = list(offered) if cfg.schemes is None else list(cfg.schemes)
    for s in schemes:
        if s not in offered:
            raise ConfigError("schemes", f"scheme {s!r} is not offered by scenario {ck['scenario']}; "
                                         f"allowed: {', '.join(offered)}")
    left_out = {}
    if "joint" in schemes and joint_model is None:
        why = "the checkpoint has no joint-training baseline (meta-train --joint-steps 0)"
        if cfg.schemes is not None:  # asked for by name: refused
            raise ConfigError("schemes", f"scheme 'joint' needs a joint-training baseline, but {cfg.checkpoint} "
                                         "was meta-trained without one (meta-train --joint-steps 0); leave joint out "
                                         "(the default schemes do)")
        schemes.remove("joint")  # the default list: every scheme the checkpoint can offer
        left_out["joint"] = why
        log(f"fewshot: scheme joint left out: {why}")
    metric = sc.metric
    crn = bool(sc.common_random_numbers)
    if cfg.test_channels is not None:
        sc.set_test_tasks(cfg.test_channels)
    n_test = sc.num_test_tasks
    os.makedirs(cfg.out, exist_ok=True)
    rows = []
    seed, pilots, steps = int(cfg.seed), cfg.pilots, cfg.steps

    def add(scheme, p, s, errs, blocks):
        lo, hi = clopper_pearson(errs, blocks)
        rows.append({"scheme": scheme, "pilots": p, "steps": s, "bler": errs / blocks, "ser": errs / blocks,
                     "block_errors": errs, "blocks": blocks, "bler_ci": [lo, hi], "ser_ci": [lo, hi]})

    inner_lr = float(ck["meta_config"]["inner_lr"])
    inits = {}
    if "meta" in schemes:
        inits["meta"] = (meta_model, first)
    if "joint" in schemes:
        inits["joint"] = (joint_model, SGD(inner_lr))
    if "random" in schemes:
        inits["random"] = (sc.build_model(10_000 + seed), SGD(inner_lr))
    # One task per point; its generator seed is a function of (seed, scheme index k, pilot index j) only.
    specs = []
    for k, scheme in enumerate(inits):
        for j, p in enumerate(pilots):
            specs.append(("learned", scheme, p, seed * 1000 + 17 * j + (0 if crn else k)))
    if "genie" in schemes and cfg.genie_steps:
        specs.append(("genie", "genie", None, seed * 1000 + 999))
    for name in classical:
        if name in schemes:
            specs += [("classical", name, p, seed * 1000 + 500 + j) for j, p in enumerate(pilots)]
    settings = {"steps": steps, "test_blocks": cfg.test_blocks, "adam_lr": cfg.adam_lr,
                "genie_steps": cfg.genie_steps, "seed": seed}
    from metacomm.experiments.executors import LocalExecutor, make_executor
    if (cfg.executor == "local" and executor is None) or isinstance(executor, LocalExecutor):
        context = (lambda: (sc, inits, ck, dev), ())  # in process: the objects loaded above
    else:
        context = (_point_context, (os.path.abspath(cfg.checkpoint), cfg.device, cfg.allow_partial,
                                    cfg.test_channels, seed, tuple(inits)))
    config = {"checkpoint": os.path.abspath(cfg.checkpoint), "scenario": ck["scenario"],
              "scenario_config": ck["scenario_config"], "algo": ck["algo"], "meta_steps": ck["step"],
              "pilots": pilots, "steps": steps, "schemes": schemes, "test_channels": n_test,
              "test_blocks_per_channel": cfg.test_blocks, "adam_lr": cfg.adam_lr, "genie_steps": cfg.genie_steps,
              "seed": seed, "ci": "Clopper-Pearson 95%, blocks pooled over test channels",
              "step1": "SGD at the meta-training inner rate (Meta-SGD: learned rates); steps >= 2: Adam",
              "inner_rule": type(first).spec_name or type(first).__name__,
              "metric": metric, "common_random_numbers": crn, "pilots_meaning": sc.pilots_meaning,
              "checkpoint_finished": finished}
    if left_out:
        config["schemes_left_out"] = left_out
    # What a resumed evaluation must share with the interrupted one (each point depends on these only).
    key = {k: config[k] for k in ("checkpoint", "scenario", "scenario_config", "algo", "meta_steps", "pilots",
                                   "steps", "schemes", "test_channels", "test_blocks_per_channel", "adam_lr",
                                   "genie_steps", "seed")}
    key = json.loads(json.dumps(key))  # as it reads back from results.json (tuples -> lists)
    ids = [f"{kind}/{scheme}/{p}/{gseed}" for kind, scheme, p, gseed in specs]
    outs: dict = _finished_points(cfg.out, key, log) if cfg.resume else {}
    outs = {i: outs[i] for i in ids if i in outs}
    if cfg.resume and outs:
        log(f"fewshot: resuming {cfg.out}: {len(outs)} of {len(ids)} points finished, computing the rest")
    retired = []

    def write(doc):
        # The previous run's figures describe results this run replaces: they go before its first write, so the
        # directory never shows them beside this run's (partial or final) results.
        if not retired:
            retire_files(cfg.out, FIGURES)
            retired.append(True)
        write_results(doc, cfg.out)

    def rows_of(done):
        rows.clear()
        for (kind, scheme, p, _), pid in zip(specs, ids, strict=True):
            res = done.get(pid)
            if res is None:
                continue
            if kind == "learned":
                for s, e, b in res:
                    add(scheme, p, s, e, b)
            elif kind == "genie":
                add("genie", None, cfg.genie_steps, *res)
            else:
                add(scheme, p, None, *res)
        return list(rows)

    def report(kind, scheme, p, res):
        if kind == "learned":
            log(f"{scheme:7s} pilots={p:4d} {metric} after steps " + " ".join(f"{s}:{e / b:.4f}" for s, e, b in res))
        elif kind == "genie":
            log(f"genie   ({cfg.genie_steps} steps/channel) {res[0] / res[1]:.5f}")
        else:
            log(f"{scheme} pilots={p:4d} {res[0] / res[1]:.5f}")

    def progress():
        return {"key": key, "points": outs, "done": len(outs), "total": len(ids)}

    todo = [j for j, pid in enumerate(ids) if pid not in outs]
    if todo:
        ex = executor or make_executor(cfg.executor, ray_address=cfg.ray_address, num_gpus=cfg.num_gpus)
        try:
            for t, res in ex.map(_point_task, [(*specs[j], settings) for j in todo], context=context):
                j = todo[t]
                kind, scheme, p, _ = specs[j]
                res = [[int(s), e, b] for s, (e, b) in sorted(res.items())] if kind == "learned" else list(res)
                outs[ids[j]] = res
                report(kind, scheme, p, res)
                if len(outs) < len(ids):  # every finished point is on disk at once (atomic): resume continues
                    write({"config": dict(config, finished=False), "results": rows_of(outs),
                           "progress": progress()})
        finally:
            if executor is None:
                ex.close()
    results = {"config": config, "results": rows_of(outs), "progress": progress()}
    write(results)
    _plots(rows, pilots, steps, cfg.out, metric=metric, classical=tuple(classical))
    return results


def _finished_points(out: str, key: dict, log: Callable[[str], None] = info) -> dict:
    """The points an interrupted evaluation with the same settings left in ``out/results.json`` (by point id);
    none (the evaluation starts) when there is no results.json yet: a run killed before its first point finished
    wrote nothing. A results file of another evaluation is refused."""
    from metacomm.artefacts import read_json
    path = os.path.join(out, "results.json")
    if not os.path.lexists(path):
        log(f"fewshot: nothing to resume in {out} (no results.json: no point had finished); starting the evaluation")
        return {}
    old = read_json(path, kind=RESULTS_KIND, field="resume")
    prog = old.get("progress")
    if not isinstance(prog, dict) or not isinstance(prog.get("points"), dict):
        raise ConfigError("resume", f"{path} holds no per-point progress (written by an older metacomm?); "
                                    "run without resume")
    saved = prog.get("key") or {}
    if saved != key:
        diff = sorted(k for k in key if saved.get(k) != key[k])
        raise ConfigError("resume", f"{path} is from another evaluation (differs in {', '.join(diff) or 'format'});"
                                    " resume with the settings of the interrupted run")
    return dict(prog["points"])


def write_results(results: dict, out: str) -> str:
    """``out/results.json`` (strict JSON, atomic, ``format: metacomm-fewshot/1``)."""
    from metacomm.artefacts import write_json
    return str(write_json(os.path.join(out, "results.json"), results, kind=RESULTS_KIND, field="out", indent=1))


def _plots(rows, pilots, steps, out, metric="bler", classical=("pilot-ls-ml",)):
    """``{metric}_vs_steps.png`` (learned schemes at 16 pilots or the largest P against the adaptation steps, on a
    symmetric-log axis so that 0 steps sits at 0; genie and classical references as horizontal lines) and
    ``{metric}_vs_pilots.png`` (learned schemes after 1 step or the first step > 0; classical curves). Every point
    has its 95 % interval (``{metric}_ci``); a rate with no error is drawn as an open downward triangle at the
    interval's upper bound (a reference line with no error: at that bound, labelled so), with one legend entry
    saying so; legends sit outside the data."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    from metacomm.artefacts import save_figure
    label = metric.upper()
    p_ref = 16 if 16 in pilots else pilots[-1]
    s_ref = 1 if 1 in steps else next((s for s in steps if s > 0), steps[0])
    learned = {"meta": ("C0", "o"), "joint": ("C1", "s"), "random": ("C2", "^")}

    def rate(r):
        return float(r.get(metric, r["bler"]))

    def ci(r):
        c = r.get(f"{metric}_ci") or r.get("bler_ci")
        return (float(c[0]), float(c[1])) if c else (rate(r), rate(r))

    def curve(ax, pts, color, marker, ls, lab):
        """``pts``: (x, record) pairs; error bars, zero-error points as upper limits. Returns whether any was 0."""
        pos = [(x, r) for x, r in pts if rate(r) > 0]
        zero = [(x, r) for x, r in pts if rate(r) <= 0]
        if pos:
            y = [rate(r) for _, r in pos]
            err = [[v - ci(r)[0] for v, (_, r) in zip(y, pos, strict=True)],
                   [ci(r)[1] - v for v, (_, r) in zip(y, pos, strict=True)]]
            ax.errorbar([x for x, _ in pos], y, yerr=err, color=color, marker=marker, ms=5, ls=ls, lw=1.3,
                        capsize=2, label=lab)
        if zero:
            ax.plot([x for x, _ in zero], [ci(r)[1] for _, r in zero], "v", mfc="none", ms=7, color=color,
                    ls="none", label="_nolegend_" if pos else f"{lab} (no errors)")
        return bool(zero)

    def finish(ax, any_zero, xlabel, title):
        if any_zero:
            ax.plot([], [], "v", mfc="none", ms=7, color="0.35", ls="none", label="no errors: 95% upper bound")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)

    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    zero = False
    for scheme, (color, marker) in learned.items():
        pts = sorted(((r["steps"], r) for r in rows if r["scheme"] == scheme and r["pilots"] == p_ref),
                     key=lambda xr: xr[0])
        if pts:
            zero |= curve(ax, pts, color, marker, "-", scheme)
    refs = [r for r in rows if r["scheme"] == "genie"] + \
        [r for r in rows if r["scheme"] in classical and r["pilots"] == p_ref]
    for r in refs:
        genie = r["scheme"] == "genie"
        j = classical.index(r["scheme"]) if r["scheme"] in classical else 0
        lab = ("genie" if genie else f"{r['scheme']} ({p_ref} pilots)")
        y = rate(r)
        if y <= 0:
            y, lab = ci(r)[1], lab + ": no errors, at its 95% upper bound"
        ax.axhline(y, ls="--" if genie else ":", c="k" if genie else ("gray", "tab:brown", "tab:olive")[j % 3],
                   lw=1.2, label=lab)
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.6)
    ax.xaxis.set_major_locator(ticker.FixedLocator(sorted(set(steps))))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    finish(ax, zero, "adaptation steps (symmetric log axis: 0 at 0)", f"{label} vs steps, {p_ref} pilots "
           "(95% intervals)")
    save_figure(fig, os.path.join(out, f"{metric}_vs_steps.png"), dpi=120)
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    zero = False
    for scheme, (color, marker) in learned.items():
        pts = sorted(((r["pilots"], r) for r in rows if r["scheme"] == scheme and r["steps"] == s_ref),
                     key=lambda xr: xr[0])
        if pts:
            zero |= curve(ax, pts, color, marker, "-", f"{scheme} ({s_ref} step{'s' if s_ref != 1 else ''})")
    for j, name in enumerate(classical):
        pts = sorted(((r["pilots"], r) for r in rows if r["scheme"] == name), key=lambda xr: xr[0])
        if pts:
            zero |= curve(ax, pts, ("gray", "tab:brown", "tab:olive")[j % 3], "D", ":", name)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.FixedLocator(sorted(set(pilots))))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    finish(ax, zero, "pilots", f"{label} vs pilots (95% intervals)")
    save_figure(fig, os.path.join(out, f"{metric}_vs_pilots.png"), dpi=120)
