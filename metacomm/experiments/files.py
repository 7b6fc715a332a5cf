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
beside an output file). An existing record is replaced only when it is one (its ``metacomm-experiment`` tag), or with
``overwrite`` (``metacomm run --overwrite``, which also sets the command's own ``overwrite`` where it has one);
this is checked before the run starts.

Values are typed strictly: a boolean is accepted only by a true/false setting (``ebno_db = true`` or
``rate = [true]`` is refused, not read as 1), ``out`` must not be empty, and a UTF-8 byte-order mark at the start of
the file is ignored.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
import typing
from datetime import UTC
from typing import Any

from metacomm._validation import ConfigError, error_message

__all__ = ["COMMANDS", "load_experiment", "experiment_record", "write_experiment_record", "config_class",
           "record_path", "check_experiment_record", "FILE_OUT_COMMANDS"]

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

#: commands whose ``out`` is a file (their record is ``<stem>.experiment.json`` beside it); the others write into
#: the directory ``out`` (record: ``out/experiment.json``)
FILE_OUT_COMMANDS = frozenset({"train", "meta-train"})

RECORD_KIND = "metacomm-experiment"

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


def _has_bool(value) -> bool:
    """Whether ``value`` is a boolean or a list holding one (at any depth)."""
    if isinstance(value, bool):
        return True
    return isinstance(value, list) and any(_has_bool(v) for v in value)


def _admits_bool(hint) -> bool:
    """Whether the annotation ``hint`` names ``bool`` (itself, in a union, or as a list's item type)."""
    if hint is bool:
        return True
    return any(_admits_bool(h) for h in typing.get_args(hint))


def _type_ok(value, hint) -> bool:
    """Whether a TOML value fits a dataclass field annotation (``object`` and unions with it take anything but a
    boolean: booleans -- also inside lists -- only fit annotations that name ``bool``)."""
    if _has_bool(value) and not _admits_bool(hint) and not (hint is dict or typing.get_origin(hint) is dict):
        return False
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


def _type_problem(value, hint) -> str:
    if _has_bool(value) and not _admits_bool(hint):
        want = "a number, string or list" if hint is object or hint is Any else _type_name(hint)
        return f"expected {want}, got {_toml(value)}: booleans are accepted only by true/false settings"
    return f"expected {_type_name(hint)}, got {type(value).__name__} {value!r}"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


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
    if text.startswith("\ufeff"):  # a byte-order mark (some Windows editors write one): not part of the TOML
        text = text[1:]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(field, f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(field, f"{path}: nesting too deep") from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(field, f"{path}: nesting deeper than {MAX_DEPTH} levels")
    return data


def load_experiment(path: str, overrides: dict | None = None, *, field: str = "experiment",
                    overwrite: bool = False):
    """``(command, validated config)`` of the experiment file ``path`` with ``overrides`` applied; ``overwrite``
    sets the command's ``overwrite`` setting to true where the command has one (``metacomm run --overwrite``).

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
    if overwrite and "overwrite" in fields:
        data["overwrite"] = True
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in fields:
            problems.append((key, f"unknown key for command {command}; allowed: {', '.join(fields)}"))
        elif not _type_ok(data[key], hints.get(key, object)):
            problems.append((key, _type_problem(data[key], hints.get(key, object))))
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    missing = [n for n in fields if n in required and n not in data]
    problems += [(n, f"required for command {command}") for n in missing]
    if "out" in fields and "out" not in {k for k, _ in problems}:
        out = data.get("out", fields["out"].default)
        if isinstance(out, str) and not out.strip():
            what = "file" if command in FILE_OUT_COMMANDS else "directory"
            problems.append(("out", f"must not be empty: give the output {what} (out = \"runs/...\", or --out)"))
    bad = {k for k, _ in problems}
    values = {k: v for k, v in data.items() if k in fields and k not in bad}
    cfg = None
    if not missing and not (bad & (required | {"out"})):  # a config without a usable required value is not built
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
            message = error_message(e)
            problems.append((key, message))
            f = fields.get(key)
            if f is None or key not in values or (f.default is dataclasses.MISSING
                                                  and f.default_factory is dataclasses.MISSING):
                return None, problems
            values.pop(key)
    return None, problems


def source_commit() -> dict | None:
    """The git commit of the metacomm source when it runs from a checkout (``{"commit", "dirty"}``; ``dirty``: files
    differ from it), else ``None`` (an installed wheel). Never raises."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def experiment_record(command: str, cfg, source: str | None = None, *, started: float | None = None,
                      wall_s: float | None = None) -> dict:
    """The resolved settings of a run with what produced it (what ``experiment.json`` holds): the versions
    (metacomm, torch, sionna, numpy, Python), the git commit when metacomm runs from a checkout, the host and
    platform, the start time (UTC, ISO 8601) and wall time [s] when given."""
    import platform
    import socket
    from datetime import datetime

    import numpy
    import torch

    from metacomm import __version__
    try:
        from importlib.metadata import version
        sionna = version("sionna-no-rt")
    except Exception:  # noqa: BLE001 - not installed from a distribution
        sionna = None
    return {"command": command, "config": dataclasses.asdict(cfg), "source": source,
            "seed": getattr(cfg, "seed", None),
            "versions": {"metacomm": __version__, "torch": torch.__version__, "sionna": sionna,
                         "numpy": numpy.__version__, "python": platform.python_version()},
            "git": source_commit(), "host": socket.gethostname(), "platform": platform.platform(),
            "started_utc": None if started is None else datetime.fromtimestamp(started, UTC).isoformat(),
            "wall_s": wall_s}


def record_path(command: str, cfg) -> str:
    """Where the record of a run of ``command`` with ``cfg`` goes: ``out/experiment.json`` for a command that writes
    a directory, ``<out without suffix>.experiment.json`` beside the output file of one that writes a file."""
    out = os.fspath(cfg.out)
    if command in FILE_OUT_COMMANDS or (command not in COMMANDS and not os.path.isdir(out)):
        return f"{os.path.splitext(out)[0]}.experiment.json"
    return os.path.join(out, "experiment.json")


def _is_record(path: str) -> bool:
    """Whether ``path`` is a regular file (not a link) holding a metacomm experiment record."""
    from metacomm.artefacts import read_json
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        read_json(path, kind=RECORD_KIND, field="out")
    except ConfigError:
        return False
    return True


def check_experiment_record(command: str, cfg, *, overwrite: bool = False, field: str = "out") -> str:
    """Raise ``ConfigError(field, ...)`` when the record of this run would replace something that is not a metacomm
    experiment record (a foreign file, a link, a directory), unless ``overwrite``. Returns the record's path."""
    path = record_path(command, cfg)
    if os.path.isdir(path) and not os.path.islink(path):
        raise ConfigError(field, f"{path} is a directory; the run's settings and versions are written there as a "
                                 "file (remove it or choose another out)")
    if overwrite or not os.path.lexists(path) or _is_record(path):
        return path
    what = "a link" if os.path.islink(path) else "not a metacomm experiment record"
    raise ConfigError(field, f"{path} exists and is {what}; refusing to replace it with the run's settings "
                             "(choose another out, or replace it with --overwrite)")


def write_experiment_record(command: str, cfg, source: str | None = None, *, overwrite: bool = False,
                            started: float | None = None, wall_s: float | None = None) -> str:
    """Write :func:`experiment_record` next to the run's output (strict JSON, atomic) at :func:`record_path`;
    a foreign file there is refused unless ``overwrite`` (:func:`check_experiment_record`). Returns the path."""
    from metacomm.artefacts import write_json
    path = check_experiment_record(command, cfg, overwrite=overwrite)
    record = experiment_record(command, cfg, source, started=started, wall_s=wall_s)
    return str(write_json(path, record, kind=RECORD_KIND, field="out"))
