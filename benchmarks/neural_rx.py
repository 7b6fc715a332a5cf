"""Neural receiver vs pilot-LS + LMMSE vs perfect-CSI LMMSE on 3-tap truncated Rayleigh multipath (issue 3).

QPSK, 16 data symbols, 8 fixed QPSK pilots (the receiver's sequence is given to the classical PilotLink too,
so the comparison is like-for-like; the random-pilot PilotLink is printed for reference), pilot energy not
counted in Eb. BER by Monte Carlo (10 x 4000 blocks per point, seed 77) at Eb/N0 5/10/15 dB for:
the classical links, the untrained receiver (classical iterative: LS+LMMSE, then data-aided re-estimation +
LMMSE-PIC) and the trained one (Adam, BCE, Eb/N0 uniform in [5, 15] dB).

Usage: python benchmarks/neural_rx.py [--steps 600] [--lr 5e-4] [--iterations 2]   (single-threaded)
"""

from __future__ import annotations

import argparse

import torch

from metacomm.channels import make_generator
from metacomm.channels.multipath import MultipathBlockFading
from metacomm.codecs.base import CodecLink
from metacomm.codecs.links import PilotLink
from metacomm.codecs.neural_rx import NeuralReceiver
from metacomm.codecs.qam import UncodedQAM
from metacomm.codecs.training import train

EBNO = (5.0, 10.0, 15.0)


def ber(link, eb, n=10, bs=4000, seed=77):
    g = make_generator(seed)
    e = t = 0
    for _ in range(n):
        b, bh = link(bs, eb, g)
        e += int((b != bh).sum())
        t += b.numel()
    return e / t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--iterations", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ch = MultipathBlockFading(3, mode="truncate")
    rx = NeuralReceiver(2, 16, 8, 3, "truncate", num_iterations=args.iterations)
    pilots = rx.encoder.pilots
    rows = {
        "pilot-LS + LMMSE (fixed pilots)": PilotLink(UncodedQAM(2, 16), ch, 8, "ls", pilots=pilots),
        "pilot-LS + LMMSE (random pilots)": PilotLink(UncodedQAM(2, 16), ch, 8, "ls"),
        "perfect-CSI LMMSE": PilotLink(UncodedQAM(2, 16), ch, 8, "perfect", pilots=pilots),
        "receiver, untrained": CodecLink(NeuralReceiver(2, 16, 8, 3, "truncate", num_iterations=args.iterations),
                                         ch),
    }
    h = train(rx, ch, train_ebno_db=(5.0, 15.0), steps=args.steps, batch_size=256, lr=args.lr, seed=0,
              progress=False, val_batch_size=2000)
    print(f"training: {h.steps} steps x 256 blocks in {h.seconds:.0f} s (1 thread)")
    rows["receiver, trained"] = CodecLink(rx, ch)
    print(f"{'BER':34s}" + "".join(f"{eb:>9.0f} dB" for eb in EBNO))
    for name, link in rows.items():
        print(f"{name:34s}" + "".join(f"{ber(link, eb):>12.4f}" for eb in EBNO), flush=True)


if __name__ == "__main__":
    main()
