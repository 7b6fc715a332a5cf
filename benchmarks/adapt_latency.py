"""Adaptation latency of AdaptiveCodec.observe: 16 pilots, 1 SGD step, the drift AE decoder (shipped checkpoint).

    python benchmarks/adapt_latency.py [--device cpu|cuda] [--links 1,8,64,1000] [--repeats 50] [--loss ce]

Prints the median wall time of one whole observe() call (input checks included; all links adapted in one call),
the median of the adaptation alone (``latency_s``), and links per ms. The pilot loss is the checkpoint's
(``pilot-fit``) unless ``--loss`` says otherwise. The target of issue 5: < 5 ms for one link on one CPU core;
>= 1000 links per call in < 10 ms on a GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

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
    p.add_argument("--loss", default=None, help="pilot loss (ce, pilot-fit; default: the checkpoint's)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    model, cfg, _ = load_meta(CKPT, device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    loss = args.loss or cfg.inner_loss
    print(f"device {dev}, threads {args.threads}, adapt {cfg.adapt}, loss {loss}, 16 pilots, 1 step")
    for B in [int(v) for v in args.links.split(",")]:
        ac = AdaptiveCodec(model, num_links=B, adapt=cfg.adapt, steps=1, lr=cfg.inner_lr, loss=loss).to(dev)
        msg = torch.randint(0, 2 ** cfg.k, (B, 16), generator=g, device=dev)
        y = torch.randn(B, 16, cfg.n, generator=g, device=dev, dtype=torch.complex64)
        for _ in range(5):
            ac.observe(msg, y)
        calls, inner = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            info = ac.observe(msg, y)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            calls.append((time.perf_counter() - t0) * 1e3)
            inner.append(info["latency_s"] * 1e3)
        med, med_in = statistics.median(calls), statistics.median(inner)
        print(f"links {B:5d}: median {med:8.3f} ms per observe() call, {med_in:8.3f} ms adaptation "
              f"({B / med:8.1f} links/ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
