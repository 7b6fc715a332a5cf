"""Benchmark: the scenarios' own meta-step -- task-batched engine (automatic, bmm, vmap paths) vs the per-task loop.

For each scenario (``fading-ae``, ``iq-demod``, ``drift`` on its built-in ``doppler-slow`` timeline), the model,
objective and meta-training settings (meta-batch, inner steps, algorithm, adapted parameters, inner rule) are
built exactly as ``metacomm meta-train --scenario NAME`` builds them with the scenario's defaults
(:func:`metacomm.experiments.meta_train.build`), one meta-batch is drawn from the meta trainer's task sampler
with its own seeded generator (seed 0: the first meta-step's tasks), and the meta-gradient that
:meth:`MetaTrainer.step <metacomm.adaptation.MetaTrainer.step>` computes is timed, interleaved ``--repeats``
times, the order rotated each round (median wall and process CPU ms, with the min-max spread of the wall
times):

* ``auto``  -- the task-batched engine as meta-train runs it (``batched=True``, automatic path choice,
  :data:`metacomm.adaptation.functional.FAST_MIN_ELEMENTS`);
* ``bmm``   -- the batched-matmul path forced on (:func:`~metacomm.adaptation.functional.fast_path` ``(True)``);
* ``vmap``  -- the generic ``vmap`` path forced on (``fast_path(False)``);
* ``loop``  -- the per-task reference loop, ``meta_gradients(..., batched=False)``: ``functional_call`` +
  ``torch.autograd.grad(create_graph=...)`` per task (the loop the engine tests compare against).

The gradients of every way are checked against the loop's (``allclose``, rtol 1e-4, atol 1e-6 x the largest
gradient). Ratios are loop / way (> 1: the way is faster than the loop); meta-steps/s = 1 / median wall.

Measured on the 2-core AMD EPYC box (shared with 4 other agents' jobs, so read the spread), ``nice``,
``--repeats 7``: see the table in ``benchmarks/README.md`` (copied from the runs below).

    python benchmarks/scenario_meta_step.py [--scenario fading-ae,iq-demod,drift] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

SCENARIOS = ("fading-ae", "iq-demod", "drift")
WAYS = ("auto", "bmm", "vmap", "loop")


def build_step(name: str, seed: int = 0):
    """``(describe, fns)``: the scenario's meta-step as meta-train builds it; ``fns[way]()`` -> MetaGradient."""
    from metacomm.adaptation.functional import _use_fast, fast_path
    from metacomm.adaptation.objective import num_tasks
    from metacomm.adaptation.params import params_of
    from metacomm.experiments.meta_train import MetaTrainConfig, build

    out = os.path.join(tempfile.mkdtemp(prefix="scenario-meta-step-"), "unused.pt")
    _, meta, _, settings = build(MetaTrainConfig(scenario=name, out=out, seed=seed, progress=False))
    cfg = meta.config
    tasks = meta.sampler(cfg.meta_batch, meta.generator)
    params = params_of(meta.model)

    def grad(batched: bool, fast):
        def fn():
            with fast_path(fast):
                return meta._meta_gradients(meta.model, meta.objective, params, tasks, algo=cfg.algo,
                                            adapt=meta.adapt, inner_steps=cfg.inner_steps, rule=meta.rule,
                                            batched=batched)
        return fn

    fns = {"auto": grad(True, None), "bmm": grad(True, True), "vmap": grad(True, False), "loop": grad(False, None)}
    from torch.utils._pytree import tree_leaves
    largest = max(t.numel() for t in tree_leaves(tasks) if isinstance(t, torch.Tensor))
    stacked = {n: params[n].unsqueeze(0) for n in meta.adapt}  # shapes of the per-task weights ([1, ...] here)
    auto = "bmm" if (_use_fast(tasks.support, stacked) and cfg.inner_steps) or _use_fast(tasks.query, stacked) \
        else "vmap"
    n_params = sum(p.numel() for p in params.values())
    describe = (f"{name}: algo={cfg.algo} meta_batch={num_tasks(tasks)} inner_steps={cfg.inner_steps} "
                f"inner_lr={cfg.inner_lr:g} adapt={len(meta.adapt)}/{len(params)} tensors, {n_params} parameters, "
                f"largest batch leaf {largest} elements -> automatic path: {auto}"
                + (f" (drift={settings['scenario_config'].get('drift')})" if name == "drift" else ""))
    return describe, fns


def _max_err(a, b, names):
    return max(float((a.grads[n] - b.grads[n]).abs().max()) for n in names)


def run(name: str, repeats: int) -> dict:
    describe, fns = build_step(name)
    for fn in fns.values():  # warm-up (first-call costs: vmap tracing caches, allocator)
        fn()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    res = {}
    keys = list(fns)
    for r in range(repeats):  # rotate the order each round: no way always runs right after the same other one
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn = fns[k]
            t0, c0 = time.perf_counter(), time.process_time()
            res[k] = fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    ref = res["loop"]
    names = list(ref.grads)
    scale = max(float(g.abs().max()) for g in ref.grads.values())
    print(describe)
    med = {k: statistics.median(v) for k, v in wall.items()}
    medc = {k: statistics.median(v) for k, v in cpu.items()}
    ok = True
    for k in WAYS:
        err = _max_err(res[k], ref, names)
        same = all(torch.allclose(res[k].grads[n], ref.grads[n], rtol=1e-4, atol=1e-6 * scale) for n in names)
        if res[k].rule_grads:
            same = same and all(torch.allclose(res[k].rule_grads[n], ref.rule_grads[n], rtol=1e-4,
                                               atol=1e-6 * scale) for n in ref.rule_grads)
        ok = ok and same
        print(f"  {k:5s} {med[k] * 1e3:8.2f} ms wall (min {min(wall[k]) * 1e3:7.2f}, max {max(wall[k]) * 1e3:7.2f})"
              f" {medc[k] * 1e3:8.2f} ms cpu   loop/{k} x{med['loop'] / med[k]:5.2f} wall x"
              f"{medc['loop'] / medc[k]:5.2f} cpu   {1 / med[k]:7.1f} meta-steps/s   "
              f"max |grad diff| {err:.1e} {'ok' if same else 'MISMATCH'}")
    print(f"  (max |grad| = {scale:.2e})")
    return {"ok": ok, "wall": med, "cpu": medc}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=",".join(SCENARIOS),
                    help=f"comma-separated scenarios (default: {','.join(SCENARIOS)})")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median and spread reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.scenario.split(",") if s.strip()]
    from metacomm.scenarios import scenario_names
    bad = [s for s in names if s not in scenario_names()]
    if bad or not names:
        print(f"error: --scenario: unknown {', '.join(bad) or '(none)'}; allowed: {', '.join(scenario_names())}",
              file=sys.stderr)
        return 2
    if args.repeats < 1 or args.threads < 1:
        print("error: --repeats and --threads must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    print(f"device=cpu threads={torch.get_num_threads()} repeats={args.repeats} (interleaved; median, min-max wall)")
    ok = True
    for name in names:
        ok = run(name, args.repeats)["ok"] and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
