"""Full-quality autoencoder benchmark (issue 3): AE(7,4) vs Hamming(7,4), AE(2,2) and AE(8,8) vs uncoded BPSK.

Trains the autoencoders on AWGN, measures BLER over Eb/N0 0..8 dB by Monte Carlo and prints the Eb/N0 gaps (dB)
at BLER 1e-3 and 1e-4 (log-linear interpolation between measured points). References:

* Hamming(7,4) soft ML: exhaustive correlation decoder over the 16 BPSK codewords (Monte Carlo, same noise
  convention: rate 4/7 bit per real use, sigma^2 = 1/(2 R Eb/N0) per real dimension);
* Hamming(7,4) hard: closed form 1 - (1-p)^7 - 7p(1-p)^6, p = Q(sqrt(2 R Eb/N0));
* uncoded BPSK, k bits: 1 - (1 - Q(sqrt(2 Eb/N0)))^k;
* Shannon's 1959 sphere-packing lower bound for the AE's (n, k) (:mod:`metacomm.codecs.bounds`): a learned
  BLER below it at any Eb/N0 would mean an Eb/N0 <-> sigma bug; the script prints the margin in dB.

Usage: python benchmarks/train_ae.py [--quick] [--device cpu|cuda]  (single-threaded; a few minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import torch

from metacomm.channels import AWGN, make_generator
from metacomm.codecs.autoencoder import Autoencoder
from metacomm.codecs.base import random_bits
from metacomm.codecs.bounds import sphere_packing_bound
from metacomm.codecs.training import train

#: the device everything runs on (``--device``)
DEV = torch.device("cpu")
EBNO = np.arange(0.0, 8.01, 0.5)
EBNO_22 = np.arange(0.0, 9.01, 0.5)  # AE(2,2) needs ~8.4 dB to reach BLER 1e-4
EBNO_REF = np.arange(0.0, 12.01, 0.25)  # closed-form references: cheap, extended so every crossing exists


def q(x):
    return 0.5 * math.erfc(x / math.sqrt(2))


@torch.no_grad()
def bler_ae(ae, eb, max_blocks, target, g):
    err = n = 0
    while n < max_blocks and err < target:
        bits = random_bits(200_000, ae.num_info_bits, generator=g, device=DEV)
        no = 1.0 / (ae.rate * 10 ** (eb / 10))
        y = AWGN()(ae.encoder(bits), no, generator=g)
        err += int((ae.decide(y, no) != bits).any(-1).sum())
        n += bits.shape[0]
    return err / n


G = torch.tensor([[1, 0, 0, 0, 1, 1, 0], [0, 1, 0, 0, 1, 0, 1], [0, 0, 1, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 1]],
                 dtype=torch.float32)
MSGS = torch.tensor(list(itertools.product([0, 1], repeat=4)), dtype=torch.float32)
SIGNALS = 1 - 2 * ((MSGS @ G) % 2)


@torch.no_grad()
def bler_hamming_ml(eb, max_blocks, target, g):
    err = n = 0
    sigma = math.sqrt(1 / (2 * 4 / 7 * 10 ** (eb / 10)))
    while n < max_blocks and err < target:
        sig = SIGNALS.to(DEV)
        idx = torch.randint(0, 16, (200_000,), generator=g, device=DEV)
        y = sig[idx] + sigma * torch.randn(200_000, 7, generator=g, device=DEV)
        err += int(((y @ sig.T).argmax(-1) != idx).sum())
        n += 200_000
    return err / n


def hamming_hard(eb):
    p = q(math.sqrt(2 * 4 / 7 * 10 ** (eb / 10)))
    return 1 - (1 - p) ** 7 - 7 * p * (1 - p) ** 6


def bpsk_bler(eb, k):
    return 1 - (1 - q(math.sqrt(2 * 10 ** (eb / 10)))) ** k


def crossing(ebs, blers, level):
    """Eb/N0 (dB) where the BLER curve crosses ``level`` (log-linear interpolation), or nan."""
    for i in range(len(ebs) - 1):
        a, b = blers[i], blers[i + 1]
        if a >= level > b and b > 0:
            t = (math.log10(a) - math.log10(level)) / (math.log10(a) - math.log10(b))
            return ebs[i] + t * (ebs[i + 1] - ebs[i])
    return float("nan")


def curve(fn, grid=EBNO):
    return [fn(eb) for eb in grid]


def sphere_packing_line(name, n, k, grid, blers):
    """Print whether the measured curve stays above SP59 and the margin (dB) at BLER 1e-3 / 1e-4."""
    sp = [sphere_packing_bound(n, k, eb) for eb in EBNO_REF]
    ratio = min(b / sphere_packing_bound(n, k, eb) for eb, b in zip(grid, blers, strict=True))
    margins = [crossing(grid, blers, lv) - crossing(EBNO_REF, sp, lv) for lv in (1e-3, 1e-4)]
    print(f"sphere-packing bound SP59({n},{k}): min over Eb/N0 of {name} BLER / bound = {ratio:.3f} (must be "
          f">= 1 up to Monte-Carlo noise); margin "
          f"{margins[0]:+.2f} dB at BLER 1e-3, {margins[1]:+.2f} dB at 1e-4")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller budgets (a rough check)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    global DEV
    DEV = torch.device(args.device)
    scale = 0.25 if args.quick else 1.0
    max_blocks, target = int(4e6 * scale), 300
    g = make_generator(12345, DEV)

    print("== AE(7,4), real uses, hidden 64, AWGN, train Eb/N0 5 dB")
    ae = Autoencoder(4, 7, hidden=64).to(DEV)
    h = train(ae, AWGN(), train_ebno_db=5.0, steps=int(6000 * scale), batch_size=1000, lr=0.01, seed=args.seed,
              progress=False, restarts=1, device=DEV)
    print(f"training time {h.seconds:.1f} s ({h.steps} steps x 1000 blocks, 1 thread)")
    t0 = time.perf_counter()
    b_ae = curve(lambda eb: bler_ae(ae, eb, max_blocks, target, g))
    b_ml = curve(lambda eb: bler_hamming_ml(eb, max_blocks, target, g))
    b_hd = curve(hamming_hard)
    b_hd_ext = curve(hamming_hard, EBNO_REF)
    print(f"(evaluation {time.perf_counter() - t0:.1f} s)")
    print(" Eb/N0   AE(7,4)    Ham-ML     Ham-hard")
    for eb, a, m, d in zip(EBNO, b_ae, b_ml, b_hd, strict=True):
        print(f" {eb:4.1f}   {a:.3e}  {m:.3e}  {d:.3e}")
    for level in (1e-3, 1e-4):
        e_ae, e_ml = (crossing(EBNO, b, level) for b in (b_ae, b_ml))
        e_hd = crossing(EBNO_REF, b_hd_ext, level)
        print(f"BLER {level:.0e}: AE {e_ae:.2f} dB, Hamming ML {e_ml:.2f} dB, hard {e_hd:.2f} dB -> "
              f"AE - ML = {e_ae - e_ml:+.2f} dB, AE - hard = {e_ae - e_hd:+.2f} dB")
    sphere_packing_line("AE(7,4)", 7, 4, EBNO, b_ae)

    print("== AE(2,2), real uses (one complex use), hidden 16, 3 restarts, train Eb/N0 4 dB")
    ae22 = Autoencoder(2, 2, hidden=16).to(DEV)
    h = train(ae22, AWGN(), train_ebno_db=4.0, steps=int(2000 * scale), batch_size=1000, lr=0.01,
              seed=args.seed, progress=False, restarts=3, device=DEV)
    print(f"training time {h.seconds:.1f} s; restart validation BLERs {[round(s[0], 4) for s in h.restart_scores]}")
    b22 = curve(lambda eb: bler_ae(ae22, eb, max_blocks, target, g), EBNO_22)
    ref22 = curve(lambda eb: bpsk_bler(eb, 2), EBNO_REF)
    for level in (1e-3, 1e-4):
        e1, e2 = crossing(EBNO_22, b22, level), crossing(EBNO_REF, ref22, level)
        print(f"BLER {level:.0e}: AE(2,2) {e1:.2f} dB, uncoded QPSK {e2:.2f} dB -> gap {e1 - e2:+.2f} dB")
    sphere_packing_line("AE(2,2)", 2, 2, EBNO_22, b22)

    print("== AE(8,8), real uses, hidden 256, train Eb/N0 5 dB")
    ae88 = Autoencoder(8, 8, hidden=256).to(DEV)
    h = train(ae88, AWGN(), train_ebno_db=5.0, steps=int(4000 * scale), batch_size=2000, lr=0.005,
              seed=args.seed, progress=False, device=DEV)
    print(f"training time {h.seconds:.1f} s")
    b88 = curve(lambda eb: bler_ae(ae88, eb, max_blocks // 2, target, g))
    ref88 = curve(lambda eb: bpsk_bler(eb, 8), EBNO_REF)
    for eb, a in zip(EBNO, b88, strict=True):
        if eb in (0.0, 2.0, 4.0, 6.0, 8.0):
            print(f" {eb:4.1f}   AE(8,8) {a:.3e}   uncoded BPSK x8 {bpsk_bler(eb, 8):.3e}")
    for level in (1e-3, 1e-4):
        e1, e2 = crossing(EBNO, b88, level), crossing(EBNO_REF, ref88, level)
        print(f"BLER {level:.0e}: AE(8,8) {e1:.2f} dB, uncoded BPSK {e2:.2f} dB -> gap {e1 - e2:+.2f} dB")
    sphere_packing_line("AE(8,8)", 8, 8, EBNO, b88)


if __name__ == "__main__":
    main()
