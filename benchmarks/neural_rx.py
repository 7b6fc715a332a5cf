"""Neural receiver vs pilot-LS + LMMSE vs perfect-CSI LMMSE on 3-tap truncated Rayleigh multipath (issue 3).

QPSK, 16 data symbols, 8 fixed QPSK pilots (the receiver's sequence is given to the classical PilotLink too,
so the comparison is like-for-like; the random-pilot PilotLink is printed for reference), pilot energy not
counted in Eb. BER by Monte Carlo (10 x 4000 blocks per point, seed 77) at Eb/N0 5/10/15 dB for:
the classical links, the untrained receiver (classical iterative: LS+LMMSE, then data-aided re-estimation +
LMMSE-PIC) and the trained one (Adam, BCE, Eb/N0 uniform in [5, 15] dB), and the perfect-CSI matched-filter
bound (true taps, the other data symbols cancelled by a genie: no ISI left, the diversity of each symbol's
channel column; truncated tail included).

Measured (600 steps, 70 s on one thread; see the module docstring of ``metacomm.codecs.neural_rx``): training
does not lower the BER of the untrained iterative receiver beyond Monte-Carlo noise; the gap to the bound is
left in a few blocks with weak channels.

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


def mfb_link(rx: NeuralReceiver, ch: MultipathBlockFading):
    r"""Perfect-CSI matched-filter bound as a Link: :math:`z_t = x_t + \mathbf h_t^H(\mathbf y - \mathbf H
    \mathbf x)/\|\mathbf h_t\|^2` (genie cancellation of every other symbol), APP demapper with
    :math:`N_0/\|\mathbf h_t\|^2` (:math:`\mathbf h_t` = column :math:`t` of the true convolution matrix)."""
    from metacomm.channels.units import ebnodb_to_no
    from metacomm.codecs.base import random_bits

    dec = rx.decoder

    def link(batch, ebno_db, g):
        bits = random_bits(batch, rx.num_info_bits, generator=g)
        no = ebnodb_to_no(ebno_db, rx.rate)
        state = ch.sample_state(batch, rx.frame_length, generator=g)
        x = rx.encoder(bits)
        _, y_d, _ = dec._split(ch(x, no, state, generator=g), no)
        xd = x[:, -rx.num_channel_uses:]
        H = dec._conv(state["taps"].to(y_d.dtype), rx.num_channel_uses)
        energy = H.abs().square().sum(-2)
        r = y_d - (H @ xd.unsqueeze(-1)).squeeze(-1)
        z = xd + (H.conj() * r.unsqueeze(-1)).sum(-2) / energy
        return bits, (dec.demapper(z, no / energy) > 0).to(bits.dtype)

    return link


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
    rows["perfect-CSI matched-filter bound"] = mfb_link(rx, ch)
    h = train(rx, ch, train_ebno_db=(5.0, 15.0), steps=args.steps, batch_size=256, lr=args.lr, seed=0,
              progress=False, val_batch_size=2000)
    print(f"training: {h.steps} steps x 256 blocks in {h.seconds:.0f} s (1 thread)")
    rows["receiver, trained"] = CodecLink(rx, ch)
    print(f"{'BER':34s}" + "".join(f"{eb:>9.0f} dB" for eb in EBNO))
    for name, link in rows.items():
        print(f"{name:34s}" + "".join(f"{ber(link, eb):>12.4f}" for eb in EBNO), flush=True)


if __name__ == "__main__":
    main()
