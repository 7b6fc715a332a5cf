"""``metacomm train``: train a learned codec end to end and write a checkpoint.

Writes ``--out`` (the checkpoint, see :mod:`metacomm.codecs.checkpoint`) and next to it
``<stem>_curve.csv`` / ``<stem>_curve.png`` (loss and running BLER per step) and ``<stem>_codec.png`` (the learned
constellation with bit labels, or the autoencoder's encoder-output scatter). All inputs are validated before
anything is trained or written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from metacomm._validation import (
    ConfigError,
    check_choice,
    check_finite,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)

CODECS = ("ae", "constellation", "neural-rx")


def add_parser(subparsers, name: str = "train") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="train a learned codec (autoencoder, constellation, neural receiver) and save a checkpoint",
        description="Train a learned codec end to end through a differentiable channel with Adam. Eb/N0 in dB; "
        "Es = 1 per complex channel use; N0 = 1/(Eb/N0 * rate), rate = information bits per complex channel "
        "use (k / n_c). Writes the checkpoint --out and, next to it, <stem>_curve.csv/.png and <stem>_codec.png.")
    p.add_argument("--codec", required=True, metavar="NAME",
                   help=f"learned codec: {', '.join(CODECS)} (ae: (n,k) autoencoder of O'Shea & Hoydis; "
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
                   help="training Eb/N0 in dB, one value (e.g. 7) or a range LOW:HIGH drawn uniformly per block")
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
    p.add_argument("--out", required=True, metavar="CKPT.pt", help="checkpoint file to write")
    p.set_defaults(run=run)
    return p


def _ebno(text: str):
    s = str(text)
    if ":" in s:
        parts = s.split(":")
        if len(parts) != 2:
            raise ConfigError("--train-ebno-db", f"expected DB or LOW:HIGH in dB, got {text!r}")
        lo, hi = (check_finite("--train-ebno-db", v) for v in parts)
        if hi < lo:
            raise ConfigError("--train-ebno-db", f"range LOW:HIGH needs LOW <= HIGH, got {text!r}")
        return (lo, hi)
    return check_finite("--train-ebno-db", s)


def _opt_int(field: str, value, default: int | None):
    return default if value is None else check_positive_int(field, value)


def build_codec(args):
    """(codec, channel_name, channel_kwargs) from parsed arguments; raises ConfigError on bad input."""
    codec_name = check_choice("--codec", args.codec, CODECS)
    channel_kwargs: dict = {}
    channel_name = str(args.channel).strip().lower()
    if channel_name in ("multipath",):
        channel_kwargs = {"num_taps": check_positive_int("--num-taps", args.num_taps),
                          "mode": check_choice("--channel-mode", args.channel_mode, ("truncate", "full"))}
    if codec_name == "ae":
        from metacomm.codecs.autoencoder import MAX_K, Autoencoder

        k = _opt_int("--k", args.k, 4)
        n = _opt_int("--n", args.n, 7)
        if k > MAX_K:
            raise ConfigError("--k", f"must be <= {MAX_K} (the decoder has 2^k softmax outputs), got {k}")
        check_choice("--power", args.power, ("block", "average"))
        codec = Autoencoder(k, n, real_uses=args.real_uses, hidden=_opt_int("--hidden", args.hidden, None),
                            num_hidden_layers=_opt_int("--num-hidden-layers", args.num_hidden_layers, 1),
                            power=args.power)
    elif codec_name == "constellation":
        from metacomm.codecs.constellation import BITS_PER_SYMBOL, DEMAPPERS, TrainableConstellation

        m = _opt_int("--bits-per-symbol", args.bits_per_symbol, 4)
        check_choice("--bits-per-symbol", m, BITS_PER_SYMBOL)
        codec = TrainableConstellation(m, check_positive_int("--num-symbols", args.num_symbols),
                                       demapper=check_choice("--demapper", args.demapper, DEMAPPERS),
                                       hidden=_opt_int("--hidden", args.hidden, 64),
                                       num_hidden_layers=_opt_int("--num-hidden-layers", args.num_hidden_layers, 2))
    else:
        from metacomm.codecs.neural_rx import ARCHITECTURES, DATA_BITS_PER_SYMBOL, NeuralReceiver

        if channel_name != "multipath":
            raise ConfigError("--channel", f"--codec neural-rx is trained on a multipath channel; allowed: "
                                           f"multipath, got {args.channel!r}")
        m = _opt_int("--bits-per-symbol", args.bits_per_symbol, 2)
        check_choice("--bits-per-symbol", m, DATA_BITS_PER_SYMBOL)
        arch = check_choice("--architecture", getattr(args, "architecture", "iterative"), ARCHITECTURES)
        net = arch == "net"
        codec = NeuralReceiver(m, check_positive_int("--num-data", args.num_data),
                               check_positive_int("--num-pilots", args.num_pilots),
                               channel_kwargs["num_taps"], channel_kwargs["mode"],
                               hidden=_opt_int("--hidden", args.hidden, 64),
                               num_hidden_layers=_opt_int("--num-hidden-layers", args.num_hidden_layers,
                                                          4 if net else 1),
                               num_iterations=check_nonneg_int("--num-iterations",
                                                               getattr(args, "num_iterations", 2)),
                               architecture=arch)
    return codec, channel_name, channel_kwargs


def run(args) -> int:
    from metacomm.channels.registry import make_channel
    from metacomm.codecs.qam import sionna_device

    codec, channel_name, channel_kwargs = build_codec(args)
    channel = make_channel(channel_name, **channel_kwargs)
    ebno = _ebno(args.train_ebno_db)
    steps = check_positive_int("--steps", args.steps)
    batch_size = check_positive_int("--batch-size", args.batch_size)
    lr = check_positive("--lr", args.lr)
    restarts = check_positive_int("--restarts", args.restarts)
    seed = int(check_finite("--seed", args.seed))
    check_choice("--lr-schedule", args.lr_schedule, ("cosine", "none"))
    if args.loss is not None:
        check_choice("--loss", args.loss, ("ce", "bce"))
        if args.loss == "ce" and not hasattr(codec, "block_logits"):
            raise ConfigError("--loss", f"ce needs block logits (--codec ae); use bce for --codec {args.codec}")
    device = sionna_device(args.device)
    threads = check_positive_int("--threads", args.threads)
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError("--out", f"{out} is a directory; give a checkpoint file name such as ckpt.pt")
    if not out.parent.is_dir():
        raise ConfigError("--out", f"directory {out.parent} does not exist")

    import torch

    from metacomm.codecs.checkpoint import save_codec
    from metacomm.codecs.training import evaluate, train
    from metacomm.codecs.visualize import plot_codec, plot_training_curve

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        hist = train(codec, channel, train_ebno_db=ebno, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                     lr_schedule=args.lr_schedule, loss=args.loss, device=device, progress=not args.quiet,
                     restarts=restarts)
    finally:
        torch.set_num_threads(previous_threads)
    codec.to("cpu")
    channel.to("cpu")
    val_bler, val_loss = evaluate(codec, channel, ebno_db=ebno, batch_size=20000, seed=seed + 7,
                                  loss=hist.config["loss"], device="cpu")
    meta = {"channel": channel_name, "channel_kwargs": channel_kwargs,
            "train_ebno_db": list(ebno) if isinstance(ebno, tuple) else ebno,
            "training": hist.config, "seconds": hist.seconds, "final_loss": hist.loss[-1],
            "validation_bler": val_bler, "validation_loss": val_loss, "command": "metacomm train"}
    bmd = None
    if args.codec == "constellation":
        from metacomm.codecs.constellation import bmd_rate

        eb = ebno if not isinstance(ebno, tuple) else sum(ebno) / 2
        bmd = bmd_rate(codec, channel, eb, num_blocks=max(1, 200000 // codec.num_channel_uses), seed=seed + 11)
        meta["bmd_rate_bits_per_use"] = bmd
    save_codec(out, codec, meta)
    stem = out.with_suffix("")
    hist.to_csv(f"{stem}_curve.csv")
    plot_training_curve(hist, f"{stem}_curve.png", title=f"metacomm train --codec {args.codec}")
    plot_codec(codec, f"{stem}_codec.png")
    if not args.quiet:
        print(f"trained {type(codec).__name__}({', '.join(f'{k}={v}' for k, v in codec.config().items())}) "
              f"in {hist.seconds:.1f} s; final loss {hist.loss[-1]:.4g}; validation BLER {val_bler:.3g} at "
              f"Eb/N0 {args.train_ebno_db} dB" + (f"; BMD rate {bmd:.4f} bit/use" if bmd is not None else ""))
        print(f"wrote {out}, {stem}_curve.csv, {stem}_curve.png, {stem}_codec.png")
    return 0
