"""Benchmark: the scenarios' own meta-step -- task-batched engine (automatic, bmm, vmap paths) vs the per-task loop.

For each scenario (``fading-ae``, ``iq-demod``, ``drift`` on its built-in ``doppler-slow`` timeline), the model,
objective and meta-training settings (meta-batch, inner steps, algorithm, adapted parameters, inner rule) are
built exactly as ``metacomm meta-train --scenario NAME`` builds them with the scenario's defaults
(:func:`metacomm.experiments.meta_train.build`), one meta-batch is drawn from the meta trainer's task sampler
with its own seeded generator (seed 0: the first meta-step's tasks), and the meta-gradient that
:meth:`MetaTrainer.step <metacomm.adaptation.MetaTrainer.step>` computes is timed, interleaved ``--repeats``
times, in a fresh seeded random order each round (median wall and process CPU ms, with the min-max spread of the wall
times):

* ``auto``  -- the task-batched engine as meta-train runs it (``batched=True``, automatic path choice,
  :data:`metacomm.adaptation.functional.FAST_MIN_ELEMENTS`);
* ``bmm``   -- the batched-matmul path forced on (:func:`~metacomm.adaptation.functional.fast_path` ``(True)``);
* ``vmap``  -- the generic ``vmap`` path forced on (``fast_path(False)``);
* ``loop``  -- the per-task reference loop, ``meta_gradients(..., batched=False)``: ``functional_call`` +
  ``torch.autograd.grad(create_graph=...)`` per task (the loop the engine tests compare against).

and, as whole meta-train steps (:meth:`MetaTrainer.step`: draw the meta-batch, meta-gradient, Adam update; two
trainers built like meta-train's, stepped alternately from the same start):

* ``step-auto`` -- ``MetaConfig.batched = True`` (meta-train's default); ``step-loop`` -- ``batched = False``.

The gradients of every way are checked against the loop's (``allclose``, rtol 1e-4, atol 1e-6 x the largest
gradient). Ratios are loop / way (> 1: the way is faster than the loop); meta-steps/s = 1 / median wall.

Measured (2026-12-03) on the 2-core AMD EPYC box shared with 4 other agents' jobs, ``nice``; median wall ms
[min-max] and the ratio loop / way (settings as meta-train's defaults; every way's gradient equals the loop's,
max |diff| <= 3e-9 against max |grad| 2e-3 .. 2e-2):

``--threads 1 --repeats 7`` (``nice python benchmarks/scenario_meta_step.py --repeats 7 --threads 1``):

=================  =============================  ==============================  ===============================
scenario           fading-ae (maml, 20 tasks,     iq-demod (maml, 5 tasks,        drift on doppler-slow (maml,
                   1 inner step; auto = vmap)     1 inner step; auto = vmap)      16 tasks, 0 inner steps; auto =
                                                                                  vmap)
=================  =============================  ==============================  ===============================
loop               51.9 [51.0-52.6]               6.75 [6.59-6.85]                1730 [1174-2712] (CPU 1233)
auto (meta-train)  5.10 [4.74-5.64]  x10.2        3.47 [3.25-3.80]  x1.95         795 [552-1236]  x2.18 (CPU 586)
vmap forced        4.95  x10.5                    3.45  x1.96                     797  x2.17 (CPU 584)
bmm forced         7.48  x6.9                     4.79  x1.41                     827  x2.09 (CPU 613)
whole step (auto   6.38 vs 52.9: 157 vs 18.9      4.41 vs 7.71: 227 vs 130        712 vs 1606: 1.4 vs 0.6
vs loop), steps/s  steps/s (x8.3)                 steps/s (x1.75)                 steps/s (x2.26)
=================  =============================  ==============================  ===============================

A second ``--threads 1`` run (quieter minute, round order rotated): loop/auto x9.50 / x2.11 / x2.18, whole steps
x7.96 / x1.82 / x1.97 (19.1 vs 152, 132 vs 241, 0.9 vs 1.8 steps/s).

``--threads 2 --repeats 5``: loop/auto x10.2 (loop 52.8, auto 5.17 ms) / x2.03 (6.69, 3.30) / x3.40 (1258,
371; spread 369-3021 for auto, up to 21.5 s for the loop: contention spikes); whole steps x8.29 / x1.82 /
x3.95. The loop gains nothing from the second thread, the batched drift step does (795 -> 371 ms). An earlier
``--threads 2`` run in a busier minute (load ~5 on 2 cores) was dominated by oversubscription (fading-ae loop
894, auto 74 ms, spread 14-328 ms; iq-demod loop 113, auto 89 ms, CPU ratio x1.01, spread 7-712 ms; drift loop
13.8 s, auto 3.6 s): with more threads than free cores the numbers measure the scheduler, not the engine.

So the automatic choice never loses to the loop on these scenarios (x1.95 .. x10.5 at one thread). At these
sizes (leaves of 1280-1440 elements for fading-ae / iq-demod) the bmm path is slower than the generic one
(interception cost), and the automatic rule already runs the generic one. ``drift`` has large batches (163840
elements) but adapts only the tracker's per-tap vectors, so no Linear layer has per-task weights for the bmm
path to batch; the old rule (size only) took it anyway, for nothing: CPU 602-616 ms vs 562-571 forced vmap
(3 and 9 repeats). The rule now also requires a stacked per-task matrix (:func:`metacomm.adaptation.functional.
_use_fast`); the drift meta-gradient is bit-identical either way (checked: ``torch.equal`` on every gradient).

    python benchmarks/scenario_meta_step.py [--scenario fading-ae,iq-demod,drift] [--repeats 7] [--threads 1]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

import torch

SCENARIOS = ("fading-ae", "iq-demod", "drift")
WAYS = ("auto", "bmm", "vmap", "loop")
STEP_WAYS = ("step-auto", "step-loop")


def build_step(name: str, seed: int = 0, device: str = "cpu"):
    """``(describe, fns)``: the scenario's meta-step as meta-train builds it; ``fns[way]()`` -> MetaGradient."""
    from metacomm.adaptation.functional import _use_fast, fast_path
    from metacomm.adaptation.objective import num_tasks
    from metacomm.adaptation.params import params_of
    from metacomm.experiments.meta_train import MetaTrainConfig, build

    out = os.path.join(tempfile.mkdtemp(prefix="scenario-meta-step-"), "unused.pt")
    _, meta, _, settings = build(MetaTrainConfig(scenario=name, out=out, seed=seed, progress=False, device=device))
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
    # whole meta-train steps (draw tasks + meta-gradient + Adam), trainers as meta-train builds them; loop: the
    # same trainer with MetaConfig.batched = False
    trainers = {}
    for way, batched in (("step-auto", True), ("step-loop", False)):
        _, tr, _, _ = build(MetaTrainConfig(scenario=name, out=out, seed=seed, progress=False, device=device))
        tr.config.batched = batched
        trainers[way] = tr
    fns.update({way: tr.step for way, tr in trainers.items()})
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


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(name: str, repeats: int, device: str = "cpu") -> dict:
    describe, fns = build_step(name, device=device)
    for fn in fns.values():  # warm-up (first-call costs: vmap tracing caches, allocator)
        fn()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    res = {}
    keys = list(fns)
    order = random.Random(0)
    for _ in range(repeats):  # a fresh (seeded) order each round: no way always runs after the same other one
        order.shuffle(keys)
        for k in keys:
            fn = fns[k]
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            res[k] = fn()
            _sync(device)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    ref = res["loop"]
    names = list(ref.grads)
    scale = max(float(g.abs().max()) for g in ref.grads.values())
    print(describe)
    med = {k: statistics.median(v) for k, v in wall.items()}
    medc = {k: statistics.median(v) for k, v in cpu.items()}
    for k in STEP_WAYS:
        print(f"  {k:9s} {med[k] * 1e3:8.2f} ms wall (min {min(wall[k]) * 1e3:7.2f}, max {max(wall[k]) * 1e3:7.2f})"
              f" {medc[k] * 1e3:8.2f} ms cpu   loop/auto x{med['step-loop'] / med[k]:5.2f} wall x"
              f"{medc['step-loop'] / medc[k]:5.2f} cpu   {1 / med[k]:7.1f} meta-train steps/s (tasks + grad + Adam)")
    ok = True
    for k in WAYS:
        err = _max_err(res[k], ref, names)
        same = all(torch.allclose(res[k].grads[n], ref.grads[n], rtol=1e-4, atol=1e-6 * scale) for n in names)
        if res[k].rule_grads:
            same = same and all(torch.allclose(res[k].rule_grads[n], ref.rule_grads[n], rtol=1e-4,
                                               atol=1e-6 * scale) for n in ref.rule_grads)
        ok = ok and same
        print(f"  {k:9s} {med[k] * 1e3:8.2f} ms wall (min {min(wall[k]) * 1e3:7.2f}, max {max(wall[k]) * 1e3:7.2f})"
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
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
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
    print(f"device={args.device} threads={torch.get_num_threads()} repeats={args.repeats} (interleaved; median, "
          "min-max wall)")
    ok = True
    for name in names:
        ok = run(name, args.repeats, args.device)["ok"] and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
