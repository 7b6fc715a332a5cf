r"""End-to-end training of learned codecs through a differentiable channel.

:func:`train` runs Adam on ``codec.encoder -> channel -> codec.decoder`` with uniformly random bits:

* ``loss="ce"`` -- block cross-entropy :math:`-\ln \mathrm{softmax}(z)_m` on the codec's 2^k block logits
  (``codec.block_logits(y)``, autoencoders), the loss of O'Shea & Hoydis;
* ``loss="bce"`` -- the sum over the k bits of the binary cross-entropy of the decoder's LLRs (bits/ln 2 per bit):
  minimising it maximises the bit-metric-decoding (BMD) rate :math:`k - \sum_i \mathrm{BCE}_i/\ln 2` bits per
  block.

Noise: :math:`N_0 = 1 / (\rho \cdot 10^{E_b/N_0[\mathrm{dB}]/10})` with :math:`\rho` = ``codec.rate`` information
bits per complex channel use (Es = 1). ``train_ebno_db`` is one value or a ``(low, high)`` range from which every
block draws its own Eb/N0 uniformly in dB (useful for receivers that take N0 as an input).

Randomness: every draw (initialisation, bits, channel states, noise, Eb/N0) comes from generators seeded from
``seed``, so training is bit-identical per seed on the CPU. ``restarts > 1`` re-initialises and retrains
``restarts`` times (tiny autoencoders can get stuck in a dead-ReLU minimum, e.g. AE(2,2) at BLER 0.25) and keeps
the restart with the lowest validation BLER (ties: lowest validation loss) on one fixed validation set.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from metacomm._validation import ConfigError, check_choice, check_finite, check_positive, check_positive_int
from metacomm.channels.base import Channel, make_generator
from metacomm.codecs.base import Codec, random_bits
from metacomm.codecs.learned_base import bits_to_index

__all__ = ["TrainingHistory", "train", "LOSSES", "LR_SCHEDULES", "evaluate"]

LOSSES = ("bce", "ce")
LR_SCHEDULES = ("cosine", "none")
_RESTART_STRIDE = 1_000_003
_RUNNING_ALPHA = 0.02


@dataclass
class TrainingHistory:
    """Per-step record of the kept (best) restart.

    ``loss`` -- training loss per step (nats per block for "ce", summed bit BCE in nats per block for "bce");
    ``bler`` -- block error rate of that step's batch; ``running_bler`` -- its exponential moving average
    (weight 0.02); ``lr`` -- learning rate used at the step. ``restart_scores`` -- (validation BLER, validation
    loss) of every restart; ``best_restart`` -- index of the kept one; ``seconds`` -- wall time of all restarts.
    """

    loss: list[float] = field(default_factory=list)
    bler: list[float] = field(default_factory=list)
    running_bler: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    restart_scores: list[tuple[float, float]] = field(default_factory=list)
    best_restart: int = 0
    seconds: float = 0.0
    config: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.loss)

    def to_csv(self, path) -> None:
        """Write ``step,loss,bler,running_bler,lr`` rows (one per step), atomically (a kill mid-write never
        leaves a truncated file)."""
        import io

        from metacomm.artefacts import write_text
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["step", "loss", "bler", "running_bler", "lr"])
        for i, row in enumerate(zip(self.loss, self.bler, self.running_bler, self.lr, strict=True)):
            w.writerow([i + 1, *(f"{v:.8g}" for v in row)])
        write_text(path, buf.getvalue(), field="out")

    def as_dict(self) -> dict:
        return {"loss": self.loss, "bler": self.bler, "running_bler": self.running_bler, "lr": self.lr,
                "restart_scores": self.restart_scores, "best_restart": self.best_restart,
                "seconds": self.seconds, "config": self.config}


def _ebno_range(train_ebno_db) -> tuple[float, float]:
    if isinstance(train_ebno_db, (tuple, list)):
        if len(train_ebno_db) != 2:
            raise ConfigError("train_ebno_db", f"expected one value or (low, high) in dB, got {train_ebno_db!r}")
        lo = check_finite("train_ebno_db", train_ebno_db[0])
        hi = check_finite("train_ebno_db", train_ebno_db[1])
        if hi < lo:
            raise ConfigError("train_ebno_db", f"range must have low <= high, got {train_ebno_db!r}")
        return lo, hi
    v = check_finite("train_ebno_db", train_ebno_db)
    return v, v


def _draw_no(batch: int, rate: float, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    """N0 per block ``[batch]`` for Eb/N0 uniform in [lo, hi] dB (constant when lo == hi)."""
    if hi > lo:
        ebno_db = lo + (hi - lo) * torch.rand(batch, generator=g, device=device)
    else:
        ebno_db = torch.full((batch,), lo, device=device)
    return 1.0 / (rate * torch.pow(10.0, ebno_db / 10.0))


def _forward_loss(codec: Codec, channel: Channel, bits: torch.Tensor, no: torch.Tensor, loss: str,
                  g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, block-error indicator [B]) for one batch."""
    if loss == "ce":
        x = codec.encoder(bits)
        y = channel(x, no, generator=g)
        logits = codec.block_logits(y)
        target = bits_to_index(bits)
        value = F.cross_entropy(logits, target)
        errors = logits.detach().argmax(-1) != target
    else:
        llr = codec(bits, channel, no, generator=g)
        value = F.binary_cross_entropy_with_logits(llr, bits, reduction="none").sum(-1).mean()
        errors = ((llr.detach() > 0).to(bits.dtype) != bits).any(-1)
    return value, errors


@torch.no_grad()
def evaluate(codec: Codec, channel: Channel, *, ebno_db, batch_size: int, seed: int, loss: str = "bce",
             device=None) -> tuple[float, float]:
    """(BLER, loss) of ``codec`` over ``channel`` on one batch drawn from ``seed`` (Eb/N0 as in :func:`train`)."""
    loss = check_choice("loss", loss, LOSSES)
    lo, hi = _ebno_range(ebno_db)
    device = torch.device(device) if device is not None else next(codec.parameters()).device
    g = make_generator(seed, device)
    bits = random_bits(batch_size, codec.num_info_bits, generator=g, device=device)
    no = _draw_no(batch_size, codec.rate, lo, hi, g, device)
    value, errors = _forward_loss(codec, channel, bits, no, loss, g)
    return float(errors.float().mean()), float(value)


def train(codec: Codec, channel: Channel, *, train_ebno_db, steps: int, batch_size: int, lr: float = 1e-3,
          seed: int = 0, lr_schedule: str = "cosine", loss: str | None = None, device=None,
          progress: bool = True, restarts: int = 1, reinit: bool = True, val_batch_size: int = 20000,
          on_metrics: Callable[[int, dict], None] | None = None) -> TrainingHistory:
    """Train ``codec`` end to end over ``channel`` with Adam; the codec is left holding the best restart.

    Args:
        codec: a codec with trainable parameters (``Autoencoder``, ``TrainableConstellation``,
            ``NeuralReceiver``...); ``loss="ce"`` needs ``codec.block_logits``.
        channel: a differentiable :class:`~metacomm.channels.base.Channel` (a fresh realisation per block).
        train_ebno_db: training Eb/N0 in dB, one value or a ``(low, high)`` range (uniform per block).
        steps: optimiser steps per restart. batch_size: blocks (messages) per step.
        lr: Adam learning rate. lr_schedule: ``"cosine"`` (cosine decay to lr/100 over ``steps``) or ``"none"``.
        seed: seeds initialisation (when ``reinit``), data and validation; same seed -> same result on CPU.
        loss: ``"ce"`` (block cross-entropy) or ``"bce"`` (bit-wise BCE = BMD rate); default ``"ce"`` when the
            codec has ``block_logits``, else ``"bce"``.
        device: device to train on (the codec and channel are moved there); default: the codec's device.
        progress: show a tqdm bar with the loss and the running BLER.
        restarts: independent re-initialisations; the one with the lowest validation BLER is kept.
        reinit: re-initialise the parameters from the seed before training (required when restarts > 1);
            ``False`` fine-tunes the current parameters.
        on_metrics: called after every step as ``on_metrics(step, {"loss", "bler", "running_bler", "lr",
            "restart"})`` (``step`` counts over all restarts) -- e.g. a TensorBoard writer
            (:func:`metacomm.experiments.metrics.tensorboard_metrics`).
        val_batch_size: blocks in the fixed validation set that ranks the restarts.

    Returns: :class:`TrainingHistory` of the kept restart.
    """
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    restarts = check_positive_int("restarts", restarts)
    val_batch_size = check_positive_int("val_batch_size", val_batch_size)
    seed = int(check_finite("seed", seed))
    check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if loss is None:
        loss = "ce" if hasattr(codec, "block_logits") else "bce"
    check_choice("loss", loss, LOSSES)
    if loss == "ce" and not hasattr(codec, "block_logits"):
        raise ConfigError("loss", f"'ce' needs a codec with block logits; {type(codec).__name__} has none, "
                                  "use 'bce'")
    if restarts > 1 and not reinit:
        raise ConfigError("restarts", "restarts > 1 re-initialise the codec; they need reinit=True")
    if not any(p.requires_grad for p in codec.parameters()):
        raise ConfigError("codec", f"{type(codec).__name__} has no trainable parameters")
    lo, hi = _ebno_range(train_ebno_db)
    if device is None:
        device = next(codec.parameters()).device
    device = torch.device(device)
    codec.to(device)
    channel.to(device)

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    best: tuple[tuple[float, float], dict, TrainingHistory] | None = None
    scores: list[tuple[float, float]] = []
    init_state = None if reinit else copy.deepcopy(codec.state_dict())
    for r in range(restarts):
        rseed = seed + _RESTART_STRIDE * r
        g = make_generator(rseed, device)
        if reinit:
            codec.reset_parameters(make_generator(rseed, "cpu"))
        else:
            codec.load_state_dict(init_state)
        params = [p for p in codec.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 100)
                 if lr_schedule == "cosine" else None)
        hist = TrainingHistory()
        running = None
        codec.train()
        bar = tqdm(range(steps), disable=not progress, leave=False, dynamic_ncols=True,
                   desc=f"train {type(codec).__name__}" + (f" [{r + 1}/{restarts}]" if restarts > 1 else ""))
        for _ in bar:
            bits = random_bits(batch_size, codec.num_info_bits, generator=g, device=device)
            no = _draw_no(batch_size, codec.rate, lo, hi, g, device)
            value, errors = _forward_loss(codec, channel, bits, no, loss, g)
            opt.zero_grad(set_to_none=True)
            value.backward()
            hist.lr.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None:
                sched.step()
            v = float(value.detach())
            if not math.isfinite(v):
                raise ConfigError("lr", f"training diverged (loss {v}) at lr={lr}; use a smaller learning rate")
            b = float(errors.float().mean())
            running = b if running is None else (1 - _RUNNING_ALPHA) * running + _RUNNING_ALPHA * b
            hist.loss.append(v)
            hist.bler.append(b)
            hist.running_bler.append(running)
            if on_metrics is not None:
                on_metrics(r * steps + len(hist.loss), {"loss": v, "bler": b, "running_bler": running,
                                                        "lr": hist.lr[-1], "restart": r})
            if progress:
                bar.set_postfix(loss=f"{v:.4f}", bler=f"{running:.2e}", refresh=False)
        bar.close()
        codec.eval()
        score = evaluate(codec, channel, ebno_db=(lo, hi), batch_size=val_batch_size, seed=seed + 7,
                         loss=loss, device=device)
        scores.append(score)
        if best is None or score < best[0]:
            best = (score, copy.deepcopy(codec.state_dict()), hist)
            hist.best_restart = r
    if best is None:  # pragma: no cover - restarts >= 1 is checked above
        raise RuntimeError("no restart ran")
    codec.load_state_dict(best[1])
    codec.eval()
    hist = best[2]
    hist.restart_scores = scores
    hist.seconds = time.perf_counter() - t0
    hist.config = dict(train_ebno_db=list(train_ebno_db) if isinstance(train_ebno_db, (tuple, list))
                       else float(train_ebno_db), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                       lr_schedule=lr_schedule, loss=loss, restarts=restarts, reinit=reinit,
                       device=str(device))
    return hist
