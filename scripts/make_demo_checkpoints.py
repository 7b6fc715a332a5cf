"""Produce the small checkpoint(s) shipped in ``metacomm/checkpoints/`` for ``metacomm demo``.

    python scripts/make_demo_checkpoints.py [--meta-steps 2500] [--matched-steps 1500] [--seed 0]
                                            [--out metacomm/checkpoints]

Writes ``online_drift_k8n8.pt``: the online-drift codec (:mod:`metacomm.scenarios.online_drift`, Park et al.
SPAWC 2020 geometry: k = 8, n = 8 complex uses, 3-tap Rayleigh, Eb/N0 10 dB) meta-trained with second-order
MAML: the inner loop adapts the decoder's channel belief (``decoder.taps``) with one SGD step at rate 0.1 on
the generative pilot-fit loss of 16 pilot messages, preconditioned by the meta-learned warp; outer Adam 3e-3,
20 channels per meta-update. Phase 1 (``--meta-steps``) trains everything; phase 2 (``--matched-steps``) ties
the receiver templates to the codebook and meta-trains the adaptation machinery only
(:func:`metacomm.scenarios.online_drift.meta_train`). Deterministic for a given seed on CPU. About 2-3 minutes
on one CPU core.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from metacomm.adaptation.params import params_of
from metacomm.scenarios.online_drift import OnlineDriftConfig, meta_train, save_meta

NAME = "online_drift_k8n8.pt"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meta-steps", type=int, default=2500)
    p.add_argument("--matched-steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "metacomm", "checkpoints"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = OnlineDriftConfig()
    t0 = time.perf_counter()
    sc, model, trainer = meta_train(cfg, meta_steps=args.meta_steps, matched_steps=args.matched_steps,
                                     seed=args.seed, progress=True)
    secs = time.perf_counter() - t0
    g = torch.Generator().manual_seed(args.seed + 7)
    res = sc.evaluate(params_of(model), model, pilots=cfg.messages_per_task, steps=[0, 1], generator=g,
                      test_blocks=2000, adapt=trainer.adapt)
    bler = {str(s): e / b for s, (e, b) in res.items()}
    path = os.path.join(args.out, NAME)
    save_meta(path, model, cfg, {"meta_steps": args.meta_steps, "matched_steps": args.matched_steps,
                                 "inner_loss": cfg.inner_loss, "seed": args.seed, "algo": "maml",
                                 "outer_lr": 3e-3, "meta_batch": 20, "train_seconds": round(secs, 1),
                                 "heldout_bler_16_pilots": bler,
                                 "produced_by": "scripts/make_demo_checkpoints.py"})
    print(f"{path}: {os.path.getsize(path) / 1024:.1f} kB, {secs:.0f} s, held-out BLER (16 pilots) "
          f"0 steps {bler['0']:.4f}, 1 step {bler['1']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
