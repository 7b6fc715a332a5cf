"""Metrics callbacks for training and meta-training: ``on_metrics(step, {name: value})``.

:func:`tensorboard_metrics` writes scalars with :class:`torch.utils.tensorboard.SummaryWriter` (needs the
``tensorboard`` package: ``pip install tensorboard``); :func:`jsonl_metrics` appends one JSON object per step to a
file (no dependency; for MLflow, W&B or a notebook, read it or pass your own callable). Both are what ``metacomm train
--tensorboard DIR`` / ``metacomm meta-train --tensorboard DIR`` use; the library functions take any callable
(``codecs.training.train(on_metrics=...)``, ``adaptation.MetaTrainer.train(on_metrics=...)``).
"""

from __future__ import annotations

import json
import math
import os

from metacomm._validation import ConfigError

__all__ = ["MetricsWriter", "tensorboard_metrics", "jsonl_metrics"]


class MetricsWriter:
    """A callable ``(step, metrics) -> None`` with :meth:`close`; ``prefix`` is put before every tag."""

    def __init__(self, write, close, prefix: str = ""):
        self._write, self._close, self.prefix = write, close, prefix

    def __call__(self, step: int, metrics: dict) -> None:
        for k, v in metrics.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v)):
                self._write(f"{self.prefix}{k}", float(v), int(step))

    def with_prefix(self, prefix: str) -> MetricsWriter:
        """The same destination with another tag prefix (e.g. ``"restart1/"``)."""
        return MetricsWriter(self._write, self._close, prefix)

    def close(self) -> None:
        self._close()


def tensorboard_metrics(logdir: str, *, field: str = "tensorboard") -> MetricsWriter:
    """Scalars into a TensorBoard event file under ``logdir`` (created). ConfigError ``field`` without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(field, "writing TensorBoard logs needs the tensorboard package (pip install tensorboard); "
                                 "without it, read the run's history from its checkpoint") from None
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise ConfigError(field, f"{logdir!r} exists and is not a directory")
    w = SummaryWriter(log_dir=logdir)
    return MetricsWriter(lambda tag, v, step: w.add_scalar(tag, v, step), w.close)


def jsonl_metrics(path: str, *, field: str = "metrics") -> MetricsWriter:
    """One line ``{"step": s, "tag": value, ...}`` per call appended to ``path`` (strict JSON; NaN/inf dropped)."""
    try:
        fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by MetricsWriter.close
    except OSError as e:
        raise ConfigError(field, f"cannot write {path!r}: {e.strerror or e}") from None
    rows: dict = {}

    def write(tag, v, step):
        if rows and rows.get("step") != step:
            flush()
        rows["step"] = step
        rows[tag] = v

    def flush():
        if rows:
            fh.write(json.dumps(rows, allow_nan=False) + "\n")
            fh.flush()
            rows.clear()

    def close():
        flush()
        fh.close()

    return MetricsWriter(write, close)
