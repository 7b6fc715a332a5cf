"""``metacomm train``: train a learned codec end to end and write a checkpoint.

Writes ``--out`` (the checkpoint, see :mod:`metacomm.codecs.checkpoint`) and next to it
``<stem>_curve.csv`` / ``<stem>_curve.png`` (loss and running BLER per step) and ``<stem>_codec.png`` (the learned
constellation with bit labels, or the autoencoder's encoder-output scatter). All inputs are validated before
anything is trained or written.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from metacomm.cli import _names

if TYPE_CHECKING:
    from metacomm.experiments.train import TrainConfig


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "train a learned codec (autoencoder, constellation, neural receiver) and save a checkpoint"


def add_parser(subparsers, name: str = "train") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=COMMAND_HELP,
        description="Train a learned codec end to end through a differentiable channel with Adam. Eb/N0 in dB; "
        "Es = 1 per complex channel use; N0 = 1/(Eb/N0 * rate), rate = information bits per complex channel "
        "use (k / n_c). Writes the checkpoint --out and, next to it, <stem>_curve.csv/.png and <stem>_codec.png.")
    p.add_argument("--codec", required=True, metavar="NAME",
                   help=f"learned codec: {_names.listing('metacomm.experiments.train', 'CODECS')} (ae: (n,k) autoencoder of O'Shea & Hoydis; "
                   "constellation: trainable 2^m-point geometry + demapper; neural-rx: pilot-aided receiver "
                   "for multipath channels)")
    p.add_argument("--n", default=None, metavar="N",
                   help="ae: channel uses per block (real uses with --real-uses, n_c = n/2 complex; complex "
                   "uses with --complex-uses) (default 7)")
    p.add_argument("--k", default=None, metavar="K",
                   help="ae: information bits per block, 1..16 (the decoder has 2^k softmax outputs) (default 4)")
    uses = p.add_mutually_exclusive_group()
    uses.add_argument("--real-uses", dest="real_uses", action="store_true", default=True,
                      help="ae: n counts real channel uses, packed two per complex use (default)")
    uses.add_argument("--complex-uses", dest="real_uses", action="store_false",
                      help="ae: n counts complex channel uses")
    p.add_argument("--hidden", default=None, metavar="H",
                   help="hidden width (ae default 2^k capped at 1024; constellation 64; neural-rx 64)")
    p.add_argument("--num-hidden-layers", default=None, metavar="L",
                   help="hidden layers per MLP (ae default 1, constellation 2; neural-rx: residual blocks per refiner, "
                   "default 1; --architecture net: residual blocks of the network, default 4)")
    p.add_argument("--power", default="block", metavar="MODE",
                   help="ae energy constraint: block (||x||^2 = n_c per codeword) or average (codebook mean)")
    p.add_argument("--bits-per-symbol", default=None, metavar="M",
                   help="constellation: 2, 4, 6 or 8 (default 4); neural-rx data modulation: 2 (QPSK) or 4 "
                   "(16-QAM) (default 2)")
    p.add_argument("--num-symbols", default="64", metavar="N",
                   help="constellation: symbols (complex channel uses) per block (default 64)")
    p.add_argument("--demapper", default="neural", metavar="KIND",
                   help="constellation receiver: neural (MLP, trained jointly) or app (Sionna's exact APP "
                   "demapper on the learned points) (default neural)")
    p.add_argument("--num-data", default="16", metavar="N", help="neural-rx: data symbols per block (default 16)")
    p.add_argument("--num-pilots", default="8", metavar="P", help="neural-rx: pilot symbols per block (default 8)")
    p.add_argument("--num-iterations", default="2", metavar="I",
                   help="neural-rx: data-aided iterations (soft-symbol channel re-estimation + LMMSE-PIC, each "
                   "followed by a learned LLR refiner); 0 = pilot-LS + LMMSE + one refiner (default 2)")
    p.add_argument("--architecture", default="iterative", metavar="A",
                   help="neural-rx: iterative (unfolded LS + LMMSE + data-aided LMMSE-PIC with learned refiners) or "
                   "net (end-to-end residual conv network on the received block and the LS tap estimate; "
                   "default width 64, 4 residual blocks) (default iterative)")
    p.add_argument("--num-taps", default="3", metavar="L", help="multipath channel taps L (default 3)")
    p.add_argument("--channel-mode", default="truncate", metavar="MODE",
                   help="multipath output: truncate (n samples) or full (n + L - 1) (default truncate)")
    p.add_argument("--channel", default="awgn", metavar="NAME",
                   help="training channel name (metacomm.channels.registry), e.g. awgn, multipath (default awgn)")
    p.add_argument("--train-ebno-db", required=True, metavar="DB",
                   help="training Eb/N0 in dB, one value (e.g. 7) or an interval LOW:HIGH (both ends included, not a "
                   "grid: each block's Eb/N0 is drawn uniformly from it)")
    p.add_argument("--steps", default="5000", metavar="N", help="optimiser steps per restart (default 5000)")
    p.add_argument("--batch-size", default="1000", metavar="B", help="blocks per step (default 1000)")
    p.add_argument("--lr", default="0.005", metavar="LR", help="Adam learning rate (default 0.005)")
    p.add_argument("--lr-schedule", default="cosine", metavar="S",
                   help="cosine (decay to lr/100) or none (default cosine)")
    p.add_argument("--loss", default=None, metavar="L",
                   help="ce (block cross-entropy, ae default) or bce (bit-wise, = BMD rate; others' default)")
    p.add_argument("--restarts", default="1", metavar="R",
                   help="independent initialisations; the best on a validation set is kept (default 1)")
    p.add_argument("--seed", default="0", metavar="S", help="random seed (initialisation, data, noise)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu or cuda (cuda:N) (default cpu)")
    p.add_argument("--threads", default="1", metavar="N",
                   help="CPU threads for torch (default 1: these networks are tiny and intra-op threading on a "
                   "shared CPU only costs time)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="write TensorBoard scalars of every step into DIR (needs the tensorboard package)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out checkpoint and its _curve/_codec files (refused otherwise)")
    p.add_argument("--out", required=True, metavar="CKPT.pt", help="checkpoint file to write")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from metacomm.experiments.train import TrainConfig

    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    return execute(TrainConfig(**{k: v for k, v in vars(args).items() if k in keys}, progress=not args.quiet))


def execute(cfg: TrainConfig) -> int:
    """Train the codec of ``cfg`` and print the files written (shared with ``metacomm run``)."""
    from metacomm.experiments.train import run_train

    r = run_train(cfg)
    if cfg.progress:
        print(f"wrote {', '.join(r['files'])}")
    return 0
