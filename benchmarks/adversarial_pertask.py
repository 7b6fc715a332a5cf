"""Per-attacker BLER of an ``adversarial`` meta-train checkpoint on the scenario's held-out attackers (family x PSR),
after one adaptation step on clean pilots, next to its joint-training baseline and Hamming(7,4)+ML.

    python benchmarks/adversarial_pertask.py CKPT [--pilots 64] [--blocks 5000] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import torch

from metacomm.adaptation.functional import SGD
from metacomm.adaptation.params import params_of
from metacomm.experiments.fewshot import load_meta_checkpoint


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--pilots", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=5000)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device(a.device)
    sc, meta, rate, joint, _ = load_meta_checkpoint(a.checkpoint, dev)
    inner = float(sc.meta_defaults.get("inner_lr", 0.1))
    print("| attack | PSR dB | meta | joint | hamming-ml |\n|---|---|---|---|---|")
    for kind in sc.config.test_attacks:
        for psr in sc.config.test_psr_db:
            out = {}
            for name, m, first in (("meta", meta, rate), ("joint", joint, SGD(inner))):
                if m is None:
                    out[name] = float("nan")
                    continue
                r = sc.evaluate(params_of(m), m, pilots=a.pilots, steps=[1], generator=torch.Generator(dev).manual_seed(5),
                                test_blocks=a.blocks, first=first, tasks=[(kind, psr)])
                out[name] = r[1][0] / r[1][1]
            e, n = sc.hamming_ml(pilots=1, generator=torch.Generator(dev).manual_seed(5), test_blocks=a.blocks,
                                 tasks=[(kind, psr)])
            print(f"| {kind} | {psr:g} | {out['meta']:.4f} | {out['joint']:.4f} | {e / n:.4f} |")


if __name__ == "__main__":
    main()
