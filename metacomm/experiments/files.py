"""Experiment files: one TOML file names a command and its settings (``metacomm run experiment.toml``).

Format -- ``command`` names the experiment, every other top-level key is a key of that command's config dataclass
(the command's flags without ``--``, with ``_`` for ``-``)::

    # examples/ber_qpsk.toml
    command = "ber"
    codec = "qpsk"
    channel = "awgn"
    ebno_db = "0:10:2"        # or a list of dB values: [0, 2, 4]
    max_blocks = 20000
    out = "runs/qpsk"

Tables are values of keys whose type is a table (e.g. ``[scenario_config]`` for ``meta-train``). The whole file is
checked before any work starts, and the problems are reported together in one :class:`~metacomm.ConfigError` (the
first bad key as its field): every unknown key (with the allowed ones), every value of the wrong type, every
missing required key, and the values the config's ``validate()`` refuses -- all of them for optional settings
(a refused one falls back to its default and validation goes on); a refused required value (say ``codec``)
ends the value check there. ``overrides`` (``metacomm run FILE --set key=value``, or ``--out``/``--seed``/
``--device``) replace file values. After a run, the resolved settings, the metacomm/torch/sionna versions and the
source file are written next to the results (``experiment.json`` in an output directory, ``<out>.experiment.json``
beside an output file).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
import typing
from typing import Any

from metacomm._validation import ConfigError

__all__ = ["COMMANDS", "load_experiment", "experiment_record", "write_experiment_record", "config_class"]

#: command name -> (module, config class name); the command's ``execute(cfg)`` lives in metacomm.cli.commands
COMMANDS: dict[str, tuple[str, str]] = {
    "ber": ("metacomm.experiments.ber", "BerConfig"),
    "fewshot": ("metacomm.experiments.fewshot", "FewShotConfig"),
    "meta-train": ("metacomm.experiments.meta_train", "MetaTrainConfig"),
    "drift": ("metacomm.experiments.drift", "DriftConfig"),
    "demo": ("metacomm.experiments.demo", "DemoConfig"),
    "train": ("metacomm.experiments.train", "TrainConfig"),
    "pack adversarial": ("metacomm.experiments.adversarial", "AdversarialConfig"),
    "pack compression": ("metacomm.experiments.compression", "CompressionConfig"),
    "pack label-noise": ("metacomm.experiments.label_noise", "LabelNoiseConfig"),
}

#: nesting deeper than this is refused (a malformed or hostile file)
MAX_DEPTH = 8


def config_class(command: str) -> type:
    """The config dataclass of ``command``."""
    import importlib
    if command not in COMMANDS:
        raise ConfigError("command", f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    mod, name = COMMANDS[command]
    return getattr(importlib.import_module(mod), name)


def _depth(x, d=0) -> int:
    if isinstance(x, dict):
        return max([_depth(v, d + 1) for v in x.values()], default=d + 1)
    if isinstance(x, list):
        return max([_depth(v, d + 1) for v in x], default=d + 1)
    return d


def _type_ok(value, hint) -> bool:
    """Whether a TOML value fits a dataclass field annotation (``object`` and unions with it take anything)."""
    if hint is object or hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple):
        return isinstance(value, list)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _read(path: str, field: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(field, f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(field, f"{path} is a directory; give an experiment .toml file") from None
    except OSError as e:
        raise ConfigError(field, f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(field, f"{path}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(field, f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(field, f"{path}: nesting too deep") from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(field, f"{path}: nesting deeper than {MAX_DEPTH} levels")
    return data


def load_experiment(path: str, overrides: dict | None = None, *, field: str = "experiment"):
    """``(command, validated config)`` of the experiment file ``path`` with ``overrides`` applied.

    Raises one ConfigError listing every problem found (unknown keys, wrong types, refused values)."""
    data = _read(os.fspath(path), field)
    command = data.pop("command", None)
    if command is None:
        raise ConfigError("command", f"{path}: the file must name its command: command = one of "
                                     f"{', '.join(COMMANDS)}")
    if not isinstance(command, str) or command not in COMMANDS:
        raise ConfigError("command", f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    cls = config_class(command)
    data.update(overrides or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in fields:
            problems.append((key, f"unknown key for command {command}; allowed: {', '.join(fields)}"))
        elif not _type_ok(data[key], hints.get(key, object)):
            problems.append((key, f"expected {_type_name(hints[key])}, got {type(data[key]).__name__} "
                                  f"{data[key]!r}"))
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in data]
    problems += [(n, f"required for command {command}") for n in missing]
    bad = {k for k, _ in problems}
    values = {k: v for k, v in data.items() if k in fields and k not in bad}
    cfg = None
    if not missing:
        cfg, value_problems = _validate_collecting(cls, values, fields)
        problems += value_problems
    if problems:
        (key, first), rest = problems[0], problems[1:]
        more = "".join(f"; {k}: {m}" for k, m in rest)
        raise ConfigError(key, f"{first}{more} (in {path}; {len(problems)} problem(s))")
    return command, cfg


def _validate_collecting(cls, values: dict, fields: dict):
    """Validate, collecting the refused values: a refused key falls back to its default (or is reported alone
    when it has none) and validation is tried again, so every bad value is reported in one pass."""
    problems: list[tuple[str, str]] = []
    values = dict(values)
    for _ in range(len(fields) + 1):
        try:
            return cls(**copy.deepcopy(values)).validate(), problems
        except ConfigError as e:
            key = e.field.lstrip("-").replace("-", "_")
            message = str(e)[len(e.field) + 2:] if str(e).startswith(f"{e.field}: ") else str(e)
            problems.append((key, message))
            f = fields.get(key)
            if f is None or key not in values or (f.default is dataclasses.MISSING
                                                  and f.default_factory is dataclasses.MISSING):
                return None, problems
            values.pop(key)
    return None, problems


def experiment_record(command: str, cfg, source: str | None = None) -> dict:
    """The resolved settings of a run with the versions that produced it (what ``experiment.json`` holds)."""
    import torch

    from metacomm import __version__
    try:
        from importlib.metadata import version
        sionna = version("sionna-no-rt")
    except Exception:  # noqa: BLE001 - not installed from a distribution
        sionna = None
    return {"command": command, "config": dataclasses.asdict(cfg), "source": source,
            "seed": getattr(cfg, "seed", None),
            "versions": {"metacomm": __version__, "torch": torch.__version__, "sionna": sionna}}


def write_experiment_record(command: str, cfg, source: str | None = None) -> str:
    """Write :func:`experiment_record` next to the run's output (strict JSON, atomic); returns the path."""
    from metacomm.artefacts import write_json
    out = os.fspath(cfg.out)
    path = os.path.join(out, "experiment.json") if os.path.isdir(out) else f"{os.path.splitext(out)[0]}.experiment.json"
    record = experiment_record(command, cfg, source)
    return str(write_json(path, record, kind="metacomm-experiment", field="out"))
