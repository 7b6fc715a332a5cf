"""Adaptation latency of AdaptiveCodec.observe: 16 pilots, 1 SGD step, the drift AE decoder (shipped checkpoint).

    python benchmarks/adapt_latency.py [--device cpu|cuda] [--links 1,8,64,1000] [--repeats 50]

Prints the median wall time of one observe() call (all links adapted in one call) and links per ms. The
target of issue 5: < 5 ms for one link on one CPU core; >= 1000 links per call in < 10 ms on a GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from metacomm.adaptation.online import AdaptiveCodec
from metacomm.scenarios.online_drift import load_meta

CKPT = os.path.join(os.path.dirname(__file__), "..", "metacomm", "checkpoints", "online_drift_k8n8.pt")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--links", default="1,8,64,1000")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1 = one core)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    model, cfg, _ = load_meta(CKPT, device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    print(f"device {dev}, threads {args.threads}, adapt {cfg.adapt}, 16 pilots, 1 step")
    for B in [int(v) for v in args.links.split(",")]:
        ac = AdaptiveCodec(model, num_links=B, adapt=cfg.adapt, steps=1, lr=cfg.inner_lr).to(dev)
        msg = torch.randint(0, 2 ** cfg.k, (B, 16), generator=g, device=dev)
        y = torch.randn(B, 16, cfg.n, generator=g, device=dev, dtype=torch.complex64)
        for _ in range(5):
            ac.observe(msg, y)
        times = []
        for _ in range(args.repeats):
            times.append(ac.observe(msg, y)["latency_s"] * 1e3)
        med = statistics.median(times)
        print(f"links {B:5d}: median {med:8.3f} ms per observe() ({B / med:8.1f} links/ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
