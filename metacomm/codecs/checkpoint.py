"""Saving and loading trained codecs.

A checkpoint is a :func:`torch.save` file holding only tensors and plain Python values, written and read through
:mod:`metacomm.artefacts` (loaded with ``weights_only=True``, so loading never executes code)::

    {"format": "metacomm-codec/1", "format_version": 1, "metacomm_version": "0.1.0",
     "codec_class": "Autoencoder", "config": {constructor kwargs}, "state_dict": {...},
     "meta": {"channel": "awgn", "channel_kwargs": {...}, "train_ebno_db": 7.0, "training": {...}, ...}}

:func:`save_codec` writes atomically (a temporary file in the same directory, then :func:`os.replace`): an error
at any point leaves an existing file untouched. :func:`load_codec` rebuilds the codec from its class and
configuration and loads the weights; every failure (missing, truncated or corrupt file, not a metacomm
checkpoint, entries missing or of the wrong type -- the kind's schema in :mod:`metacomm.artefacts` --, weights that
are NaN or infinite, another codec class or shape than ``expect`` asks for) raises
``ConfigError("checkpoint", <one line>)``; all but the last are checked by
:func:`metacomm.artefacts.load_checkpoint`, which every codec load goes through. Files written before the tag carried its version
(``"format": "metacomm-codec"``, ``"format_version": 1``) load too.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

from metacomm import __version__
from metacomm._validation import ConfigError
from metacomm.artefacts import load_checkpoint, save_checkpoint
from metacomm.codecs.base import Codec

__all__ = ["save_codec", "load_codec", "CODEC_CLASSES", "FORMAT", "FORMAT_VERSION"]

FORMAT = "metacomm-codec"  # the artefact kind (metacomm.artefacts.KINDS); files carry "metacomm-codec/1"
FORMAT_VERSION = 1
FIELD = "checkpoint"

# Codec class name -> module that defines it (classes are imported lazily).
CODEC_CLASSES: dict[str, str] = {
    "Autoencoder": "metacomm.codecs.autoencoder",
    "TrainableConstellation": "metacomm.codecs.constellation",
    "NeuralReceiver": "metacomm.codecs.neural_rx",
}


def _codec_class(name: str):
    if name not in CODEC_CLASSES:
        raise ConfigError(FIELD, f"unknown codec class {name!r} in checkpoint; known: "
                                 f"{', '.join(CODEC_CLASSES)}")
    return getattr(importlib.import_module(CODEC_CLASSES[name]), name)


def _plain(value, where: str):
    """Check that ``value`` is made of JSON-like Python values (what ``weights_only`` loading accepts)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalars (e.g. a measured BLER) -> Python numbers
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    raise ConfigError(where, f"checkpoint metadata must be plain values (numbers, strings, lists, dicts); "
                             f"got {type(value).__name__}")


def save_codec(path, codec: Codec, meta: dict | None = None) -> Path:
    """Write ``codec`` (class, configuration, weights) and ``meta`` to ``path`` atomically.

    ``meta`` should carry what the codec was trained on: ``channel`` (registry name), ``channel_kwargs``,
    ``train_ebno_db`` (dB) and anything else (training settings, measured numbers); plain values only.
    The metacomm version is added. Returns the path written.
    """
    name = type(codec).__name__
    if name not in CODEC_CLASSES or not hasattr(codec, "config"):
        raise ConfigError("codec", f"cannot checkpoint a {name}; supported: {', '.join(CODEC_CLASSES)}")
    payload = {
        "format_version": FORMAT_VERSION,
        "metacomm_version": __version__,
        "codec_class": name,
        "config": _plain(codec.config(), "meta"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in codec.state_dict().items()},
        "meta": _plain(dict(meta or {}), "meta"),
    }
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ConfigError("out", f"{path} is a directory; give a file name such as ckpt.pt")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError("out", f"directory {directory} does not exist")
    return save_checkpoint(path, payload, kind=FORMAT, field="out")


def _matches(config: dict, want: dict) -> list[str]:
    bad = []
    for key, value in want.items():
        have = config.get(key, "<absent>")
        same = have == value
        if isinstance(have, float) and isinstance(value, (int, float)):
            same = math.isclose(have, value)
        if not same:
            bad.append(f"{key}={have!r} (expected {value!r})")
    return bad


def load_codec(path, expect: str | dict | None = None, *, device=None) -> tuple[Codec, dict]:
    """Load a checkpoint written by :func:`save_codec` -> ``(codec, meta)`` (codec in eval mode).

    ``expect``: ``None`` (any codec), a class name (``"Autoencoder"``), or a dict of required configuration
    entries, optionally with ``"class"`` (e.g. ``{"class": "Autoencoder", "k": 4, "n": 7}``). ``meta`` is the
    stored metadata plus ``codec_class``, ``config`` and ``metacomm_version``.
    """
    path = Path(path)
    payload = load_checkpoint(path, kinds=FORMAT, field=FIELD, device="cpu")
    name = payload.get("codec_class")
    config = payload.get("config")
    state = payload.get("state_dict")
    if not isinstance(name, str) or not isinstance(config, dict) or not isinstance(state, dict):
        raise ConfigError(FIELD, f"{path}: damaged metacomm checkpoint (class/config/weights missing)")
    if expect is not None:
        want = {"class": expect} if isinstance(expect, str) else dict(expect)
        want_class = want.pop("class", None)
        if want_class is not None and want_class != name:
            raise ConfigError(FIELD, f"{path} holds a {name} codec ({_describe(config)}), expected a {want_class}")
        bad = _matches(config, want)
        if bad:
            raise ConfigError(FIELD, f"{path} holds a {name} with a different shape: {', '.join(bad)}")
    cls = _codec_class(name)
    try:
        codec = cls(**config)
    except ConfigError as e:
        raise ConfigError(FIELD, f"{path}: stored configuration is invalid ({e})") from None
    except TypeError as e:
        raise ConfigError(FIELD, f"{path}: stored configuration does not fit {name} ({e})") from None
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(FIELD, f"{path}: weights do not fit {name}({_describe(config)}): "
                                 f"{' '.join(first[:2])[:200]}") from None
    if device is not None:
        codec.to(device)
    codec.eval()
    meta = dict(payload.get("meta") or {})
    meta.update(codec_class=name, config=dict(config), metacomm_version=payload.get("metacomm_version"))
    return codec, meta


def _describe(config: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())
