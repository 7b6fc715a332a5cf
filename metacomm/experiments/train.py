"""Training a learned codec as a library call: :class:`TrainConfig` -> :func:`run_train` -> a checkpoint.

Trains an autoencoder, a trainable constellation with its demapper, or a neural receiver end to end through a
differentiable channel with Adam (:func:`metacomm.codecs.training.train`), validates it, and writes the
checkpoint (:mod:`metacomm.codecs.checkpoint`) with the training curve and a picture of the learned code. Eb/N0
in dB (per information bit); Es = 1 per complex channel use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metacomm._log import info
from metacomm._validation import (
    ConfigError,
    check_choice,
    check_finite,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)

__all__ = ["TrainConfig", "run_train", "build_codec", "CODECS"]

CODECS = ("ae", "constellation", "neural-rx")


@dataclass
class TrainConfig:
    """Settings (keys = ``metacomm train`` flags without ``--``; numbers may be given as strings, as typed).

    ``train_ebno_db``: one Eb/N0 in dB or ``"LOW:HIGH"`` (uniform per batch); codec geometry ``n``, ``k``,
    ``hidden``, ``num_hidden_layers``, ``bits_per_symbol``: ``None`` = the codec's default."""

    codec: str
    train_ebno_db: object
    out: str
    n: object = None
    k: object = None
    real_uses: bool = True
    hidden: object = None
    num_hidden_layers: object = None
    power: str = "block"
    bits_per_symbol: object = None
    num_symbols: object = 64
    demapper: str = "neural"
    num_data: object = 16
    num_pilots: object = 8
    num_iterations: object = 2
    architecture: str = "iterative"
    num_taps: object = 3
    channel_mode: str = "truncate"
    channel: str = "awgn"
    steps: object = 5000
    batch_size: object = 1000
    lr: object = 0.005
    lr_schedule: str = "cosine"
    loss: str | None = None
    restarts: object = 1
    seed: object = 0
    device: str = "cpu"
    threads: object = 1
    overwrite: bool = False
    progress: bool = True
    #: a directory for TensorBoard scalars of every training step (loss, BLER, running BLER, lr), or None
    tensorboard: str | None = None

    def validate(self) -> TrainConfig:
        """Check the codec-independent settings (the codec's own are checked when it is built)."""
        check_choice("codec", self.codec, CODECS)
        _ebno(self.train_ebno_db)
        self.steps = check_positive_int("steps", self.steps)
        self.batch_size = check_positive_int("batch_size", self.batch_size)
        self.lr = check_positive("lr", self.lr)
        self.restarts = check_positive_int("restarts", self.restarts)
        self.seed = int(check_finite("seed", self.seed))
        check_choice("lr_schedule", self.lr_schedule, ("cosine", "none"))
        if self.loss is not None:
            check_choice("loss", self.loss, ("ce", "bce"))
        self.threads = check_positive_int("threads", self.threads)
        if self.hidden is not None:
            from metacomm._validation import check_memory
            h = check_positive_int("hidden", self.hidden)
            layers = 2 + 2 * (self.num_hidden_layers if isinstance(self.num_hidden_layers, int) else 1)
            # weights, gradients and two Adam moments of the hidden x hidden layers, and the batch's activations
            check_memory(("hidden", "batch_size"), 16.0 * h * (layers * h + 4 * self.batch_size),
                         f"a codec with {h} hidden units")
        if Path(self.out).is_dir():
            raise ConfigError("out", f"{self.out} is a directory; give a checkpoint file name such as ckpt.pt")
        from metacomm.artefacts import check_writable_dir
        check_writable_dir(Path(self.out).parent, field="out")  # before training, not when the result is written
        stem = Path(self.out).with_suffix("")
        files = (Path(self.out), Path(f"{stem}_curve.csv"), Path(f"{stem}_curve.png"), Path(f"{stem}_codec.png"))
        for p in files:  # what would refuse the write after training (and after the checkpoint): refused now
            if p.is_symlink():
                raise ConfigError("out", f"{str(p)!r} is a symbolic link; refusing to replace it (remove the link or "
                                         "give another file name)")
            if p.is_dir():
                raise ConfigError("out", f"{str(p)!r} is a directory; give another checkpoint file name")
        existing = [str(p) for p in files if p.exists()]
        if existing and not self.overwrite:
            raise ConfigError("out", f"{', '.join(existing)} exist(s); choose another output name or replace them "
                                     "with overwrite=True (--overwrite)")
        return self


def _ebno(text: str):
    s = str(text)
    if ":" in s:
        parts = s.split(":")
        if len(parts) != 2:
            raise ConfigError("train_ebno_db", f"expected DB or LOW:HIGH in dB, got {text!r}")
        lo, hi = (check_finite("train_ebno_db", v) for v in parts)
        if hi < lo:
            raise ConfigError("train_ebno_db", f"range LOW:HIGH needs LOW <= HIGH, got {text!r}")
        return (lo, hi)
    return check_finite("train_ebno_db", s)


def _opt_int(field: str, value, default: int | None):
    return default if value is None else check_positive_int(field, value)


def build_codec(cfg):
    """``(codec, channel_name, channel_kwargs)`` of a :class:`TrainConfig`; ConfigError naming the key on bad input."""
    codec_name = check_choice("codec", cfg.codec, CODECS)
    channel_kwargs: dict = {}
    channel_name = str(cfg.channel).strip().lower()
    if channel_name in ("multipath",):
        channel_kwargs = {"num_taps": check_positive_int("num_taps", cfg.num_taps),
                          "mode": check_choice("channel_mode", cfg.channel_mode, ("truncate", "full"))}
    if codec_name == "ae":
        from metacomm.codecs.autoencoder import MAX_K, Autoencoder

        k = _opt_int("k", cfg.k, 4)
        n = _opt_int("n", cfg.n, 7)
        if k > MAX_K:
            raise ConfigError("k", f"must be <= {MAX_K} (the decoder has 2^k softmax outputs), got {k}")
        check_choice("power", cfg.power, ("block", "average"))
        codec = Autoencoder(k, n, real_uses=cfg.real_uses, hidden=_opt_int("hidden", cfg.hidden, None),
                            num_hidden_layers=_opt_int("num_hidden_layers", cfg.num_hidden_layers, 1),
                            power=cfg.power)
    elif codec_name == "constellation":
        from metacomm.codecs.constellation import BITS_PER_SYMBOL, DEMAPPERS, TrainableConstellation

        m = _opt_int("bits_per_symbol", cfg.bits_per_symbol, 4)
        check_choice("bits_per_symbol", m, BITS_PER_SYMBOL)
        codec = TrainableConstellation(m, check_positive_int("num_symbols", cfg.num_symbols),
                                       demapper=check_choice("demapper", cfg.demapper, DEMAPPERS),
                                       hidden=_opt_int("hidden", cfg.hidden, 64),
                                       num_hidden_layers=_opt_int("num_hidden_layers", cfg.num_hidden_layers, 2))
    else:
        from metacomm.codecs.neural_rx import ARCHITECTURES, DATA_BITS_PER_SYMBOL, NeuralReceiver

        if channel_name != "multipath":
            raise ConfigError("channel", f"codec neural-rx is trained on a multipath channel; allowed: "
                                           f"multipath, got {cfg.channel!r}")
        m = _opt_int("bits_per_symbol", cfg.bits_per_symbol, 2)
        check_choice("bits_per_symbol", m, DATA_BITS_PER_SYMBOL)
        arch = check_choice("architecture", cfg.architecture, ARCHITECTURES)
        net = arch == "net"
        codec = NeuralReceiver(m, check_positive_int("num_data", cfg.num_data),
                               check_positive_int("num_pilots", cfg.num_pilots),
                               channel_kwargs["num_taps"], channel_kwargs["mode"],
                               hidden=_opt_int("hidden", cfg.hidden, 64),
                               num_hidden_layers=_opt_int("num_hidden_layers", cfg.num_hidden_layers,
                                                          4 if net else 1),
                               num_iterations=check_nonneg_int("num_iterations",
                                                               cfg.num_iterations),
                               architecture=arch)
    return codec, channel_name, channel_kwargs


def run_train(cfg: TrainConfig, *, log: Callable[[str], None] = info) -> dict:
    """Train the codec of ``cfg``; writes the checkpoint ``cfg.out`` and, next to it, ``<stem>_curve.csv``,
    ``<stem>_curve.png`` and ``<stem>_codec.png``. Returns ``{"codec", "history", "validation_bler", "meta",
    "files"}``."""
    from metacomm.channels.registry import make_channel
    from metacomm.codecs.qam import sionna_device

    cfg.validate()
    codec, channel_name, channel_kwargs = build_codec(cfg)
    channel = make_channel(channel_name, **channel_kwargs)
    ebno = _ebno(cfg.train_ebno_db)
    steps, batch_size, lr, restarts = cfg.steps, cfg.batch_size, cfg.lr, cfg.restarts
    seed, threads = cfg.seed, cfg.threads
    if cfg.loss == "ce" and not hasattr(codec, "block_logits"):
        raise ConfigError("loss", f"ce needs block logits (codec ae); use bce for codec {cfg.codec}")
    device = sionna_device(cfg.device)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    import torch

    from metacomm.codecs.checkpoint import save_codec
    from metacomm.codecs.training import evaluate, train
    from metacomm.codecs.visualize import plot_codec, plot_training_curve

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    metrics = None
    if cfg.tensorboard is not None:
        from metacomm.experiments.metrics import tensorboard_metrics
        metrics = tensorboard_metrics(cfg.tensorboard)
    try:
        hist = train(codec, channel, train_ebno_db=ebno, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                     lr_schedule=cfg.lr_schedule, loss=cfg.loss, device=device, progress=cfg.progress,
                     restarts=restarts, on_metrics=metrics)
    finally:
        torch.set_num_threads(previous_threads)
        if metrics is not None:
            metrics.close()
    codec.to("cpu")
    channel.to("cpu")
    val_bler, val_loss = evaluate(codec, channel, ebno_db=ebno, batch_size=20000, seed=seed + 7,
                                  loss=hist.config["loss"], device="cpu")
    meta = {"channel": channel_name, "channel_kwargs": channel_kwargs,
            "train_ebno_db": list(ebno) if isinstance(ebno, tuple) else ebno,
            "training": hist.config, "seconds": hist.seconds, "final_loss": hist.loss[-1],
            "validation_bler": val_bler, "validation_loss": val_loss, "command": "metacomm train"}
    bmd = None
    if cfg.codec == "constellation":
        from metacomm.codecs.constellation import bmd_rate

        eb = ebno if not isinstance(ebno, tuple) else sum(ebno) / 2
        bmd = bmd_rate(codec, channel, eb, num_blocks=max(1, 200000 // codec.num_channel_uses), seed=seed + 11)
        meta["bmd_rate_bits_per_use"] = bmd
    stem = out.with_suffix("")
    # The side files of a checkpoint being replaced (--overwrite) describe the old codec: they go before the new
    # checkpoint is written, so a kill or an error between the writes never leaves them beside it. The side files
    # are written after the checkpoint, from this run's history and codec.
    for side in (Path(f"{stem}_curve.csv"), Path(f"{stem}_curve.png"), Path(f"{stem}_codec.png")):
        if cfg.overwrite and side.is_file() and not side.is_symlink():
            try:
                side.unlink()
            except OSError as e:
                raise ConfigError("out", f"cannot replace {str(side)!r} ({e.strerror or e})") from None
    save_codec(out, codec, meta)
    hist.to_csv(f"{stem}_curve.csv")
    plot_training_curve(hist, f"{stem}_curve.png", title=f"metacomm train --codec {cfg.codec}")
    plot_codec(codec, f"{stem}_codec.png")
    if cfg.progress:
        log(f"trained {type(codec).__name__}({', '.join(f'{k}={v}' for k, v in codec.config().items())}) "
              f"in {hist.seconds:.1f} s; final loss {hist.loss[-1]:.4g}; validation BLER {val_bler:.3g} at "
              f"Eb/N0 {cfg.train_ebno_db} dB" + (f"; BMD rate {bmd:.4f} bit/use" if bmd is not None else ""))
    return {"codec": codec, "history": hist, "validation_bler": val_bler, "meta": meta,
            "files": [str(out), f"{stem}_curve.csv", f"{stem}_curve.png", f"{stem}_codec.png"]}
