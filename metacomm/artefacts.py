"""The one module through which metacomm writes and reads its artefacts: results, figures and checkpoints.

Every JSON file and checkpoint carries a **format tag** ``"format": "<kind>/<version>"`` (e.g.
``"metacomm-results/1"``): the kind says what the file is, the version which layout of that kind. :data:`KINDS`
registers each kind with the version this metacomm writes, the versions it reads, and what the file is (used in
error messages). Readers check kind and version and raise :class:`~metacomm.ConfigError` naming the field the
path came from (a config key such as ``checkpoint`` or ``resume``; the CLI shows its flag) and saying what the
file is and what was expected -- a version above the readable ones is reported as "written by a newer metacomm".

Writers (all atomic: a temporary file in the destination directory, then :func:`os.replace`, so an interrupted
write never leaves a truncated file nor destroys the previous one; missing parent directories are created):

* :func:`write_json` -- strict JSON (``NaN``/``inf`` become ``null``, numpy and torch scalars/arrays become
  Python numbers/lists, ``allow_nan=False``), with the format tag added at the top level;
* :func:`save_checkpoint` -- :func:`torch.save` of a dict that holds only what
  ``torch.load(weights_only=True)`` accepts (checked before anything is written, see
  :func:`check_weights_only`); a payload with ``"finished": False`` marks a periodic checkpoint of an unfinished
  run;
* :func:`save_figure` -- a matplotlib figure as PNG, PDF or SVG (closed afterwards);
* :func:`write_text` -- any other text file (CSV tables).

Readers:

* :func:`read_json` -- strict parse (``NaN``/``Infinity`` tokens and numbers beyond a double such as ``1e400``
  are refused, as is a nesting too deep to parse), tag check, then the kind's **schema** (the entries it must hold
  and their types, declared with :func:`register_kind`);
* :func:`load_checkpoint` -- always ``torch.load(..., weights_only=True)``: a crafted checkpoint cannot run
  code; clear errors for a missing, truncated or foreign file, something that is not a regular file (a named
  pipe would block the read forever), another kind, a newer version, (unless ``allow_partial``) an unfinished
  run's periodic checkpoint, a payload that does not match the kind's schema, and **non-finite weights** (NaN or
  +-inf in a floating-point tensor of the entries the kind declares as weights, :func:`check_finite_weights`).

Every error names the offending entry in one line (``checkpoint: x.pt: non-finite weights in
model/decoder.taps (first at index 3: nan; ...)``, ``resume: 'r.json': damaged metacomm drift results file:
'frames[2]/schemes' must be a dict, got a list of 3``).

Output directories: :func:`check_output_dir`, :func:`check_writable_dir` and every writer refuse an output
directory that is itself a symbolic link, and a target file that is one: a link planted inside an output tree
(``OUT/seed-1`` -> elsewhere) would make metacomm write wherever it points. Links higher up a path are followed
(``--out /data/link/run`` writes into the real ``run`` below the link); a ``--out`` that is itself a link is
refused like any other -- give the directory it points to.

Files written before this module existed are still read: they carry their tag under ``"kind"`` (meta-train
``"metacomm-meta/1"``, online drift ``"metacomm-online-meta/1"``), under ``"format"`` (trainer state
``"metacomm-meta-trainer/1"``), as ``"format": "metacomm-codec"`` with ``"format_version": 1`` (codec
checkpoints), or in ``config.format`` (BER ``results.json``). A payload may carry several tags (a meta-train
checkpoint is a meta-trainer state plus more); :func:`save_checkpoint` keeps an embedded payload's own tag under
``"embeds"``, so that a loader of the embedded kind still accepts the file.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metacomm._io import atomic_write_bytes
from metacomm._validation import ConfigError

__all__ = [
    "check_output_dir",
    "ArtefactKind",
    "KINDS",
    "register_kind",
    "format_tag",
    "parse_tag",
    "tags_of",
    "check_kind",
    "to_json_data",
    "write_json",
    "read_json",
    "write_text",
    "check_weights_only",
    "check_finite_weights",
    "check_schema",
    "check_writable_dir",
    "save_checkpoint",
    "load_checkpoint",
    "save_figure",
    "FIGURE_FORMATS",
]


@dataclass(frozen=True)
class ArtefactKind:
    """One kind of file: ``name`` (e.g. ``"metacomm-results"``), the ``version`` written now, the versions
    ``reads`` (ascending; always includes ``version``), ``what`` it is (``"metacomm codec checkpoint"``) and what
    it is ``written_by`` (for error messages)."""

    name: str
    version: int
    what: str
    written_by: str
    reads: tuple[int, ...]
    #: the entries a payload of this kind must hold, with their types (:func:`check_schema`); None: unchecked
    schema: Mapping[str, Any] | None = None
    #: checkpoints: the entries whose floating-point tensors are weights and must be finite (paths as in
    #: :func:`check_finite_weights`); ``("*",)`` (the default) scans every tensor, ``()`` none
    weights: tuple[str, ...] = ("*",)

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.version}"


#: Registered kinds by name. Extend with :func:`register_kind`.
KINDS: dict[str, ArtefactKind] = {}


def register_kind(name: str, version: int, what: str, written_by: str,
                  reads: Iterable[int] | None = None, *, schema: Mapping[str, Any] | None = None,
                  weights: Iterable[str] = ("*",)) -> ArtefactKind:
    """Register (or replace) a kind: files are written as ``name/version``; versions in ``reads`` (default:
    only ``version``) are accepted by readers. Returns the :class:`ArtefactKind`.

    ``schema``: the entries every payload of the kind must hold and their types, checked by :func:`read_json` and
    :func:`load_checkpoint` right after the tag (:func:`check_schema` describes the notation), e.g.
    ``{"scenario": str, "scenario_config": dict, "model": dict, "init?": ({"model": dict}, None)}``.
    ``weights`` (checkpoints): the entries whose floating-point tensors :func:`load_checkpoint` requires to be
    finite (:func:`check_finite_weights`): ``("*",)`` (default) every tensor of the payload; ``()`` none -- only
    for a kind whose tensors may legitimately be non-finite (a run state that must resume exactly as it was)."""
    if "/" in name or not name:
        raise ValueError(f"kind name must be non-empty and contain no '/': {name!r}")
    if int(version) < 1:
        raise ValueError(f"version must be >= 1, got {version!r}")
    if schema is not None:
        _check_spec(schema, f"schema of {name}")
    weights = (weights,) if isinstance(weights, str) else tuple(weights)
    if not all(isinstance(w, str) and w for w in weights):
        raise ValueError(f"weights of {name} must be non-empty path strings, got {weights!r}")
    versions = tuple(sorted({int(v) for v in (reads or ())} | {int(version)}))
    kind = ArtefactKind(name, int(version), what, written_by, versions, schema, weights)
    KINDS[name] = kind
    return kind


# --- schemas --------------------------------------------------------------------------------------------------
#
# A schema is a dict ``{key: spec}``. A key ending in ``?`` is optional (checked when present); the key ``*``
# applies its spec to every other entry. A spec is a type (``str``, ``int`` -- not bool --, ``float`` -- any
# number --, ``bool``, ``dict``, ``list`` -- a list or tuple --, ``object`` -- anything), ``None`` (null),
# ``"tensor"`` (a torch tensor), a nested schema (a dict with those entries), ``[spec]`` (a list whose every item
# matches spec) or a tuple of alternatives (``(dict, None)``).

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a dict",
               list: "a list", object: "anything"}


def _check_spec(spec: Any, where: str) -> None:
    """Raise ValueError for a malformed schema spec (a programming error, reported when the kind registers)."""
    if spec is None or (isinstance(spec, str) and spec == "tensor") or (isinstance(spec, type) and spec in _TYPE_NAMES):
        return
    if isinstance(spec, tuple):
        if not spec:
            raise ValueError(f"{where}: an empty tuple of alternatives")
        for s in spec:
            _check_spec(s, where)
        return
    if isinstance(spec, list):
        if len(spec) != 1:
            raise ValueError(f"{where}: a list spec holds exactly one item spec, got {spec!r}")
        _check_spec(spec[0], where)
        return
    if isinstance(spec, Mapping):
        for k, v in spec.items():
            if not isinstance(k, str) or not k.rstrip("?"):
                raise ValueError(f"{where}: keys are non-empty strings, got {k!r}")
            _check_spec(v, f"{where}[{k!r}]")
        return
    raise ValueError(f"{where}: not a schema spec: {spec!r}")


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "dtype") and hasattr(value, "shape")


def _fits(value: Any, spec: Any) -> bool:
    """Whether ``value`` has the outer type of ``spec`` (nested entries are checked by :func:`_schema_problem`)."""
    if spec is None:
        return value is None
    if isinstance(spec, tuple):
        return any(_fits(value, s) for s in spec)
    if isinstance(spec, Mapping) or spec is dict:
        return isinstance(value, Mapping)
    if isinstance(spec, list) or spec is list:
        return isinstance(value, (list, tuple))
    if spec is bool:
        return isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(spec, str):  # "tensor"
        return _is_tensor(value)
    if spec is object:
        return True
    return isinstance(value, spec)


def _spec_name(spec: Any) -> str:
    if spec is None:
        return "null"
    if isinstance(spec, tuple):
        return " or ".join(_spec_name(s) for s in spec)
    if isinstance(spec, Mapping):
        return "a dict"
    if isinstance(spec, list):
        return f"a list of {_spec_name(spec[0]).removeprefix('a ').removeprefix('an ')}s" \
            if not isinstance(spec[0], (tuple, list, Mapping)) else "a list"
    if isinstance(spec, str):  # "tensor"
        return "a tensor"
    return _TYPE_NAMES.get(spec, getattr(spec, "__name__", str(spec)))


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"[:60]
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, Mapping):
        return "a dict"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if _is_tensor(value):
        return "a tensor"
    return f"a {type(value).__name__}"


def _join(at: str, key: Any) -> str:
    return f"{at}/{key}" if at else str(key)


def _schema_problem(value: Any, spec: Any, at: str) -> str | None:
    """The first way ``value`` (at path ``at``) does not match ``spec``, as a phrase, or None."""
    if isinstance(spec, tuple):
        for s in spec:
            if _fits(value, s):
                return _schema_problem(value, s, at)
        return f"{at!r} must be {_spec_name(spec)}, got {_got(value)}"
    if not _fits(value, spec):
        return f"{at!r} must be {_spec_name(spec)}, got {_got(value)}"
    if isinstance(spec, list):
        for i, v in enumerate(value):
            problem = _schema_problem(v, spec[0], f"{at}[{i}]")
            if problem:
                return problem
    elif isinstance(spec, Mapping):
        listed = set()
        for key, sub in spec.items():
            if key == "*":
                continue
            optional = key.endswith("?")
            name = key[:-1] if optional else key
            listed.add(name)
            if name not in value:
                if optional:
                    continue
                return f"the entry {_join(at, name)!r} is missing"
            problem = _schema_problem(value[name], sub, _join(at, name))
            if problem:
                return problem
        if "*" in spec:
            for k, v in value.items():
                if k not in listed:
                    problem = _schema_problem(v, spec["*"], _join(at, k))
                    if problem:
                        return problem
    return None


def check_schema(obj: Any, schema: Mapping[str, Any], *, field: str, source: str = "file",
                 what: str = "file") -> None:
    """Raise ``ConfigError(field, ...)`` (one line: ``source``, the entry's path, what it must be) unless ``obj``
    matches ``schema`` (notation: the comment above :func:`_check_spec`; extra entries are allowed)."""
    problem = _schema_problem(obj, dict(schema), "")
    if problem:
        raise ConfigError(field, f"{source}: damaged {what}: {problem}")


def _check_schemas(obj: Mapping, names: list[str], *, field: str, source: str) -> None:
    """Check ``obj`` against the schema of every kind among ``names`` it carries a readable tag of (a meta-train
    checkpoint read as a meta-trainer state is checked as both)."""
    for name, version in tags_of(obj):
        kind = KINDS.get(name)
        if name in names and kind is not None and version in kind.reads and kind.schema is not None:
            check_schema(obj, kind.schema, field=field, source=source, what=kind.what)


#: a drift run's frame record (:mod:`metacomm.drift.result`): what the readers and plots index
_FRAME = {"frame": int, "schemes": {"*": {"block_errors": float, "blocks": float, "bit_errors": float, "bits": float,
                                          "latency_ms?": (float, None)}}}
#: a :class:`~metacomm.adaptation.MetaTrainer` state (what ``MetaTrainer.load_state_dict`` reads)
_SNAPSHOT = {"model": dict, "lrs?": (dict, None), "rule?": (dict, None)}
_TRAINER = {"config": {"algo": str}, "adapt": list, "step": int, "model": dict, "optimizer": dict,
            "generator": "tensor", "skipped": list, "history": list, "lrs?": (dict, None), "rule?": (dict, None),
            "best?": (_SNAPSHOT, None)}
#: where the weights of a trainer state are (its optimiser moments and generator state are not weights)
_TRAINER_WEIGHTS = ("model", "lrs", "rule", "best/model", "best/lrs", "best/rule")

register_kind("metacomm-results", 1, "metacomm BER results file", "`metacomm ber`, sims.save_results",
              schema={"config": dict, "points": [dict]})
register_kind("metacomm-fewshot", 1, "metacomm few-shot results file", "`metacomm fewshot`",
              schema={"config": dict, "results": [dict], "progress?": (dict, None)})
register_kind("metacomm-drift", 1, "metacomm drift results file", "`metacomm drift`, `metacomm demo`",
              schema={"config": dict, "frames": [_FRAME], "summary?": (dict, None)})
register_kind("metacomm-drift-seeds", 1, "metacomm pooled multi-seed drift results file (one run per seed in "
              "seed-<s>/)", "`metacomm drift --seeds`",
              schema={"config": {"seeds?": [int], "seed_dirs?": ({"*": str}, None)},
                      "finished?": bool, "progress?": ({"key?": (dict, None)}, None),
                      "seeds": {"*": {"*": {"block_errors": float, "blocks": float, "bler": (float, None)}}},
                      "summary": {"*": {"kind": str, "bler": float, "bler_ci": [float], "blocks": float,
                                        "seeds": [int], "seed_bler": [(float, None)]}}})
register_kind("metacomm-codec", 1, "metacomm codec checkpoint", "`metacomm train`, codecs.checkpoint.save_codec",
              schema={"codec_class": str, "config": dict, "state_dict": dict, "meta?": (dict, None)},
              weights=("state_dict",))
register_kind("metacomm-meta", 1, "metacomm meta-train checkpoint", "`metacomm meta-train`",
              schema={**_TRAINER, "scenario": str, "scenario_config": dict, "meta_config?": dict,
                      "init?": ({**_SNAPSHOT, "step?": int}, None), "restarts?": [(_SNAPSHOT, None)],
                      "joint?": (_TRAINER, None), "joint_init?": (_SNAPSHOT, None), "joint_steps?": int,
                      "inner_rule?": ({"name": str, "config?": dict, "tensors?": (dict, None)}, None)},
              weights=(*_TRAINER_WEIGHTS, "init", "restarts", "joint_init", "inner_rule/tensors",
                       *(f"joint/{w}" for w in _TRAINER_WEIGHTS)))
register_kind("metacomm-meta-trainer", 1, "metacomm meta-trainer state", "adaptation.MetaTrainer.save",
              schema=_TRAINER, weights=_TRAINER_WEIGHTS)
# A run state holds what the run reached -- a diverged link's adapted weights, a tracker's covariance -- and a
# resumed run must go on exactly from there: its tensors are not checked for finiteness.
register_kind("metacomm-drift-run", 1, "metacomm drift run state (resume)", "`metacomm drift --save-every`",
              schema={"settings": dict, "finished": bool,
                      "run": {"position": int, "records": [dict], "schemes": {"*": dict}}},
              weights=())
register_kind("metacomm-experiment", 1, "metacomm experiment record (resolved settings and versions)",
              "`metacomm run` and every experiment written from a file",
              schema={"command": str, "config": dict, "versions?": dict})
register_kind("metacomm-online-meta", 1, "metacomm online-drift meta checkpoint",
              "scenarios.online_drift.save_meta, scripts/make_demo_checkpoints.py",
              schema={"config": dict, "model": dict, "scenario?": str, "meta?": (dict, None)}, weights=("model",))


def _kind(name: str) -> ArtefactKind:
    if name not in KINDS:
        raise ValueError(f"unknown artefact kind {name!r}; registered: {', '.join(KINDS)}")
    return KINDS[name]


def format_tag(kind: str) -> str:
    """The tag written for ``kind`` now: ``"<kind>/<current version>"``."""
    return _kind(kind).tag


def parse_tag(tag: Any) -> tuple[str, int] | None:
    """``"metacomm-meta/1"`` -> ``("metacomm-meta", 1)``; None for anything that is not such a tag."""
    if not isinstance(tag, str) or tag.count("/") != 1:
        return None
    name, _, version = tag.partition("/")
    if not name or not version.isdigit():
        return None
    return name, int(version)


def tags_of(obj: Any) -> list[tuple[str, int]]:
    """Every format tag ``(kind, version)`` a loaded payload carries, the file's own kind first.

    Reads ``"format"``, the legacy ``"kind"`` (which was the outer tag where both are present), the legacy codec
    header (``"format": "metacomm-codec"`` + ``"format_version"``), ``"embeds"`` and the legacy
    ``config.format`` of BER results files.
    """
    if not isinstance(obj, Mapping):
        return []
    tags: list[tuple[str, int]] = []

    def add(t):
        if t is not None and t not in tags:
            tags.append(t)

    add(parse_tag(obj.get("kind")))
    fmt = obj.get("format")
    if isinstance(fmt, str) and "/" not in fmt and isinstance(obj.get("format_version"), int) \
            and not isinstance(obj.get("format_version"), bool):
        add((fmt, int(obj["format_version"])))  # legacy codec header
    else:
        add(parse_tag(fmt))
    embeds = obj.get("embeds")
    if isinstance(embeds, (list, tuple)):
        for t in embeds:
            add(parse_tag(t))
    cfg = obj.get("config")
    if isinstance(cfg, Mapping):
        add(parse_tag(cfg.get("format")))
    return tags


def _what(name: str, version: int | None = None) -> str:
    k = KINDS.get(name)
    tag = name if version is None else f"{name}/{version}"
    return f"a {k.what} ({tag})" if k is not None else f"a {tag} file"


def _names(kinds: str | Iterable[str]) -> list[str]:
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    if not names:
        raise ValueError("give at least one kind")
    for n in names:
        _kind(n)
    return names


def check_kind(obj: Any, kinds: str | Iterable[str], *, field: str, source: str = "file",
               allow_untagged: bool = False) -> tuple[str, int] | None:
    """Check that a loaded payload is one of ``kinds`` in a readable version; returns its ``(kind, version)``
    (None when untagged and ``allow_untagged``). ``source`` (usually the path) starts the error message.

    Raises ``ConfigError(field, ...)`` saying what the payload is and what was expected; a version above those
    this metacomm reads is reported as written by a newer metacomm.
    """
    names = _names(kinds)
    wanted = " or ".join(f"a {KINDS[n].what}" for n in names)
    made_by = " or ".join(KINDS[n].written_by for n in names)
    tags = tags_of(obj)
    for name, version in tags:
        if name in names:
            kind = KINDS[name]
            if version in kind.reads:
                return name, version
            readable = ", ".join(f"{name}/{v}" for v in kind.reads)
            if version > max(kind.reads):
                raise ConfigError(field, f"{source} is {_what(name, version)} written by a newer metacomm; this "
                                         f"metacomm reads {readable}: upgrade metacomm to read it")
            raise ConfigError(field, f"{source} is {_what(name, version)}, an old version this metacomm no longer "
                                     f"reads (it reads {readable}); recreate it")
    if not tags:
        if allow_untagged:
            return None
        raise ConfigError(field, f"{source} is not {wanted} (no metacomm format tag); expected the output of "
                                 f"{made_by}")
    name, version = tags[0]
    newer = "" if name in KINDS or not name.startswith("metacomm-") else \
        ", a kind this metacomm does not know (written by a newer metacomm?)"
    raise ConfigError(field, f"{source} is {_what(name, version)}{newer}, not {wanted}; expected the output of "
                             f"{made_by}")


# --- JSON ---------------------------------------------------------------------------------------------------

def to_json_data(obj: Any) -> Any:
    """``obj`` as strict-JSON-ready Python data, recursively: non-finite floats -> None; numpy and torch
    scalars -> Python numbers; arrays and tensors -> (nested) lists; tuples -> lists; keys -> str; paths -> str.
    Anything else is written as ``str(obj)``."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):  # includes numpy.float64
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_json_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_data(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars/arrays, torch tensors
    if callable(tolist) and type(obj).__module__.split(".")[0] in ("numpy", "torch"):
        value = tolist()
        if isinstance(value, complex):
            return str(value)
        return to_json_data(value)
    return str(obj)


def _attach_tag(obj: Mapping, kind: str, where: str) -> dict:
    tag = format_tag(kind)
    have = obj.get("format")
    if have is not None and have != tag:
        raise ConfigError(where, f"payload already carries format {have!r}; cannot write it as {tag}")
    return {"format": tag, **{k: v for k, v in obj.items() if k != "format"}}


def _refuse_symlinked_dir(d: Path, field: str) -> None:
    """An output directory must not be a symbolic link: a link planted inside an output tree (``OUT/seed-1`` ->
    elsewhere) would have metacomm write wherever it points. Links further up the path are followed."""
    if d.is_symlink():
        raise ConfigError(field, f"{str(d)!r} is a symbolic link; metacomm does not write into a linked output "
                                 "directory (give the directory it points to, or remove the link)")


def _prepare_target(path, field: str) -> Path:
    path = Path(path)
    if path.is_symlink():
        raise ConfigError(field, f"{str(path)!r} is a symbolic link; refusing to replace it (remove the link or "
                                 "give another file name)")
    if path.is_dir():
        raise ConfigError(field, f"{str(path)!r} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    _refuse_symlinked_dir(parent, field)
    if parent.exists() and not parent.is_dir():
        raise ConfigError(field, f"{str(parent)!r} is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(field, f"cannot create the directory {str(parent)!r} ({e.strerror or e})") from None
    return path


def _write(path: Path, data: bytes, field: str) -> Path:
    """:func:`atomic_write_bytes`, an operating-system failure (no permission, disk full, read-only file system)
    turned into one ``ConfigError(field, ...)`` line; the previous file, if any, is left as it was."""
    try:
        return atomic_write_bytes(path, data)
    except OSError as e:
        raise ConfigError(field, f"cannot write {str(path)!r} ({e.strerror or e})") from None


def retire_files(out: str | os.PathLike, names: Iterable[str], *, field: str = "out") -> None:
    """Remove the previous run's files ``names`` in ``out`` before a new run writes (they describe results that
    are being replaced; a directory must never show one run's side files beside another's results). Regular files
    only -- a link or a directory is left alone (the command's validation refused it already); an OS error is one
    line naming ``field``."""
    for name in names:
        p = os.path.join(os.fspath(out), name)
        if os.path.isfile(p) and not os.path.islink(p):
            try:
                os.remove(p)
            except OSError as e:
                raise ConfigError(field, f"cannot replace {p!r} ({e.strerror or e})") from None


def check_writable_dir(out: str | os.PathLike, *, field: str = "out") -> Path:
    """Raise ``ConfigError(field, ...)`` unless files can be created in the directory ``out`` -- or, when it does
    not exist yet, in its nearest existing ancestor (where it would be created). Probed by creating and removing a
    hidden temporary file (permission bits alone say nothing for root, or on read-only and virtual file systems).
    Returns ``Path(out)``."""
    d = Path(out)
    _refuse_symlinked_dir(d, field)
    if d.exists() and not d.is_dir():
        raise ConfigError(field, f"{str(d)!r} exists and is not a directory")
    probe = d
    while not probe.exists() and not probe.is_symlink():
        parent = probe.parent if str(probe.parent) else Path(".")
        if parent == probe:
            break
        probe = parent
    if not probe.is_dir():
        raise ConfigError(field, f"{str(probe)!r} is not a directory, so {str(d)!r} cannot be created")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".metacomm-probe.", suffix=".tmp", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(field, f"{str(probe)!r} is not a writable directory ({e.strerror or e})") from None
    return d


def check_output_dir(out: str | os.PathLike, *, results: str, kind: str, others: Iterable[str] = (),
                     field: str = "out") -> Path:
    """Check *before any work* that the run may write into the directory ``out``: it is (or can be created as) a
    writable directory, an existing ``results`` JSON file there is a metacomm file of ``kind`` (never a foreign
    file), and the ``others`` it would replace (CSV, figures) exist only next to such a results file. Returns the
    directory path (not created)."""
    d = check_writable_dir(out, field=field)
    rp = d / results
    ours = False
    if rp.is_symlink():
        raise ConfigError(field, f"{str(rp)!r} is a symbolic link; refusing to follow or replace it (remove the "
                                 "link or choose another output directory)")
    if rp.exists():
        if not rp.is_file():
            raise ConfigError(field, f"{str(rp)!r} exists and is {_not_regular(rp)}; refusing to replace it")
        try:
            doc = _parse_json(rp.read_text(encoding="utf-8"))
            ours = bool(check_kind(doc, kind, field=field, source=str(rp), allow_untagged=False))
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            ours = False
        if not ours:
            raise ConfigError(field, f"{str(rp)!r} exists and is not a {KINDS[kind].what}; refusing to "
                                     "replace it (choose another output directory or remove the file)")
    for name in others:
        p = d / name
        if p.is_symlink():
            raise ConfigError(field, f"{str(p)!r} is a symbolic link; refusing to follow or replace it")
        if p.exists() and not ours:
            raise ConfigError(field, f"{str(p)!r} exists and does not belong to metacomm results in that "
                                     "directory; refusing to overwrite it")
    return d


def write_json(path: str | os.PathLike, obj: Mapping, *, kind: str, field: str = "out",
               indent: int | None = 2) -> Path:
    """Write the dict ``obj`` as strict JSON to ``path`` atomically, with ``"format": "<kind>/<version>"`` first
    (an existing ``format`` entry must equal it). Non-finite floats are written as ``null`` (see
    :func:`to_json_data`). Returns the path."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"write_json writes a dict, got {type(obj).__name__}")
    data = to_json_data(_attach_tag(obj, kind, field))
    text = json.dumps(data, indent=indent, allow_nan=False) + "\n"
    return _write(_prepare_target(path, field), text.encode("utf-8"), field)


def _refuse_constant(token: str):
    raise ValueError(f"non-standard JSON constant {token} (strict JSON has no NaN/Infinity)")


class _OutOfRange(ValueError):
    pass


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):  # 1e400: Python's parser would read it as inf
        raise _OutOfRange(f"the number {text[:40]} is out of range (beyond a 64-bit float)")
    return v


def _finite_int(text: str) -> int:
    v = int(text)  # more than sys.get_int_max_str_digits() digits: ValueError already
    try:
        float(v)
    except OverflowError:
        raise _OutOfRange(f"the integer {text[:20]}... ({len(text)} digits) is out of range (beyond a 64-bit "
                          "float)") from None
    return v


def _parse_json(text: str) -> Any:
    """Strict JSON: no NaN/Infinity tokens, no number beyond a double (ValueError); a nesting too deep for the
    parser raises RecursionError."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_finite_int)


def _not_regular(p: Path) -> str:
    """What a path that is not a regular file is (``"a named pipe (FIFO)"``), for error messages."""
    import stat
    try:
        mode = p.stat().st_mode
    except OSError:
        return "not a readable file"
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a regular file"


def read_json(path: str | os.PathLike, *, kind: str | Iterable[str], field: str,
              allow_untagged: bool = False) -> dict:
    """Parse ``path`` as strict JSON (``NaN``/``Infinity`` and numbers beyond a double refused), check its format
    tag against ``kind`` (one name or several) and its entries against the kind's schema
    (:func:`register_kind`). Returns the dict. Every failure raises ``ConfigError(field, ...)``; an untagged
    file is accepted only with ``allow_untagged`` (files from other tools; no schema is checked then)."""
    names = _names(kind)
    p = Path(path)
    if not p.exists():
        raise ConfigError(field, f"{str(p)!r}: no such file")
    if p.is_dir():
        raise ConfigError(field, f"{str(p)!r} is a directory, not a file")
    if not p.is_file():  # a FIFO would block the read forever
        raise ConfigError(field, f"{str(p)!r} is {_not_regular(p)}, not a results file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(field, f"cannot read {str(p)!r}: {_first_line(e)}") from None
    try:
        obj = _parse_json(text)
    except _OutOfRange as e:
        raise ConfigError(field, f"{str(p)!r} holds {e}; strict JSON numbers are finite doubles") from None
    except ValueError as e:
        raise ConfigError(field, f"{str(p)!r} is not valid JSON ({_first_line(e)})") from None
    except RecursionError:
        raise ConfigError(field, f"{str(p)!r} is nested too deeply to be a metacomm file (JSON objects or lists "
                                 "nested hundreds of levels deep)") from None
    if not isinstance(obj, dict):
        raise ConfigError(field, f"{str(p)!r} is not a metacomm file (a JSON object was expected, got "
                                 f"{type(obj).__name__})")
    check_kind(obj, names, field=field, source=repr(str(p)), allow_untagged=allow_untagged)
    _check_schemas(obj, names, field=field, source=repr(str(p)))
    return obj


def write_text(path: str | os.PathLike, text: str, *, field: str = "out") -> Path:
    """Write a text file (e.g. a CSV table) atomically; creates missing parent directories."""
    return _write(_prepare_target(path, field), text.encode("utf-8"), field)


# --- checkpoints --------------------------------------------------------------------------------------------

def check_weights_only(value: Any, where: str = "payload") -> None:
    """Raise ``ConfigError(where..., ...)`` unless ``value`` is made only of what
    ``torch.load(weights_only=True)`` reads back: tensors (and ``nn.Parameter``), ``None``, bool, int, float,
    complex, str, bytes, ``torch.Size``/``dtype``/``device``, and lists, tuples, sets and dicts of those (dict
    keys: str, int, float, bool, None or tuples of those). The error names the offending entry
    (``payload['meta']['channel']``). numpy values are refused: convert them with ``.item()``/``.tolist()``."""
    import torch

    def walk(v, at: str):
        if v is None or type(v) in (bool, int, float, complex, str, bytes):  # exact: numpy.float64 is a float
            return
        if isinstance(v, torch.Tensor):
            if type(v) not in (torch.Tensor, torch.nn.Parameter):
                raise ConfigError(at, f"tensor subclass {type(v).__name__} cannot be loaded with "
                                      "weights_only=True; store a plain tensor")
            return
        if isinstance(v, (torch.Size, torch.dtype, torch.device)):
            return
        if isinstance(v, dict):  # dict, OrderedDict (state dicts)
            if type(v) not in (dict, OrderedDict):
                raise ConfigError(at, f"{type(v).__name__} cannot be loaded with weights_only=True; use a dict")
            for k, x in v.items():
                key_ok = k is None or type(k) in (bool, int, float, str) or (
                    type(k) is tuple and all(e is None or type(e) in (bool, int, float, str) for e in k))
                if not key_ok:
                    raise ConfigError(at, f"dict key of type {type(k).__name__} cannot be loaded with "
                                          "weights_only=True")
                walk(x, f"{at}[{k!r}]")
            return
        if type(v) in (list, tuple, set):
            for i, x in enumerate(v):
                walk(x, f"{at}[{i}]")
            return
        hint = " (convert numpy values with .item() or .tolist())" if type(v).__module__.startswith("numpy") \
            else ""
        raise ConfigError(at, f"a {type(v).__module__}.{type(v).__qualname__} cannot be loaded with "
                              f"weights_only=True; a checkpoint holds tensors and plain values only{hint}")

    walk(value, where)


def save_checkpoint(path: str | os.PathLike, payload: Mapping, *, kind: str, field: str = "out") -> Path:
    """Write ``payload`` (a dict) with :func:`torch.save` to ``path`` atomically, tagged ``"format":
    "<kind>/<version>"`` and with ``"metacomm_version"`` added.

    If ``payload`` already carries another format tag (e.g. a :class:`MetaTrainer` state extended into a
    meta-train checkpoint), that tag is kept in ``"embeds"``. ``payload["finished"] = False`` marks a periodic
    checkpoint of an unfinished run (:func:`load_checkpoint` then wants ``allow_partial``). The payload is
    checked with :func:`check_weights_only` before anything is written, so every file written loads with
    ``weights_only=True``; an error leaves an existing file untouched. Returns the path.
    """
    import torch

    from metacomm import __version__

    if not isinstance(payload, Mapping):
        raise TypeError(f"save_checkpoint writes a dict, got {type(payload).__name__}")
    tag = format_tag(kind)
    data = dict(payload)
    embeds = [t for t in data.get("embeds", []) if isinstance(t, str)]
    for name, version in tags_of({k: data[k] for k in ("format", "format_version", "kind") if k in data}):
        t = f"{name}/{version}"
        if t != tag and t not in embeds:
            embeds.append(t)  # e.g. the MetaTrainer state inside a meta-train checkpoint
    data["format"] = tag
    if embeds:
        data["embeds"] = embeds
    data.setdefault("metacomm_version", __version__)
    if "finished" in data and not isinstance(data["finished"], bool):
        raise ConfigError("finished", f"must be True or False, got {data['finished']!r}")
    check_weights_only(data, "payload")
    buf = io.BytesIO()
    torch.save(data, buf)
    return _write(_prepare_target(path, field), buf.getvalue(), field)


def _head(path: Path, n: int = 64) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:160]


def load_checkpoint(path: str | os.PathLike, *, kinds: str | Iterable[str], field: str, device="cpu",
                    allow_partial: bool = False) -> dict:
    """Load a checkpoint with ``torch.load(path, map_location=device, weights_only=True)`` -- never executing
    code from the file -- and check its kind and version. Returns the payload dict (tensors on ``device``).

    ``kinds``: one kind name or several (e.g. ``"metacomm-meta"``). Every failure raises
    ``ConfigError(field, <one line>)``: missing file, a directory, a truncated/corrupt or non-torch file, a file
    that needs code to load (a pickle of arbitrary objects -- refused, not run), a payload without a metacomm
    format tag, another kind, a version this metacomm does not read ("written by a newer metacomm"), and --
    unless ``allow_partial`` -- a periodic checkpoint of an unfinished run (``"finished": False``).
    """
    import torch

    names = _names(kinds)
    p = Path(path)
    src = str(p)
    if not p.exists():
        raise ConfigError(field, f"{src}: no such file")
    if p.is_dir():
        raise ConfigError(field, f"{src} is a directory, not a checkpoint file")
    if not p.is_file():  # opening a FIFO would block forever, a device would be read without end
        raise ConfigError(field, f"{src} is {_not_regular(p)}, not a checkpoint file")
    head = _head(p)
    if not head.startswith((b"PK", b"\x80")):  # neither torch's zip archive nor a (legacy) binary pickle
        what = "an empty file" if not head else "a JSON file" if head.lstrip()[:1] in (b"{", b"[") else \
            "a text file" if head.isascii() else "another kind of file"
        raise ConfigError(field, f"{src}: not a readable checkpoint (truncated or corrupt: it is {what}, not a "
                                 "torch.save archive)")
    try:
        payload = torch.load(p, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights only" in msg.lower() or "weights_only" in msg:
            raise ConfigError(field, f"{src}: refused: loading it would need to run code (it holds objects "
                                     "other than tensors and plain values); metacomm loads checkpoints with "
                                     "weights_only=True. Not a metacomm checkpoint, or a tampered one") from None
        raise ConfigError(field, f"{src}: not a readable checkpoint (truncated or corrupt: {_first_line(e)})") \
            from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, AttributeError,
            IndexError, TypeError, UnicodeDecodeError) as e:
        first = _first_line(e)
        damaged = "device" not in first.lower()  # else: e.g. a CUDA checkpoint on a machine without CUDA
        what = f"truncated or corrupt: {first}" if damaged else first
        raise ConfigError(field, f"{src}: not a readable checkpoint ({what})") from None
    except Exception as e:  # noqa: BLE001 - any other unreadable file is a user error too
        raise ConfigError(field, f"{src}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(payload, dict):
        wanted = " or ".join(f"a {KINDS[n].what}" for n in names)
        raise ConfigError(field, f"{src} is not {wanted} (it holds a {type(payload).__name__}, not a metacomm "
                                 "checkpoint)")
    name, _ = check_kind(payload, names, field=field, source=src)
    if payload.get("finished") is False and not allow_partial:
        step = payload.get("step")
        at = f" (step {step})" if isinstance(step, int) and not isinstance(step, bool) else ""
        raise ConfigError(field, f"{src} is a periodic checkpoint of an unfinished run{at}; pass --allow-partial "
                                 "to use it anyway (or finish the run first)")
    _check_schemas(payload, names, field=field, source=src)
    check_finite_weights(payload, KINDS[name].weights, field=field, source=src)
    return payload


def _at_paths(obj: Any, pattern: list[str], at: str):
    """``(path, value)`` of every entry of ``obj`` that the path ``pattern`` (segments; ``*`` any key or index)
    names; absent entries are skipped."""
    if not pattern:
        yield at, obj
        return
    head, rest = pattern[0], pattern[1:]
    if isinstance(obj, Mapping):
        items = obj.items() if head == "*" else [(k, v) for k, v in obj.items() if str(k) == head]
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj) if head == "*" else ([(int(head), obj[int(head)])]
                                                     if head.isdigit() and int(head) < len(obj) else [])
    else:
        items = []
    for k, v in items:
        yield from _at_paths(v, rest, _join(at, k))


def _tensors(obj: Any, at: str, seen: set[int]):
    """``(path, tensor)`` of every tensor in ``obj`` (dicts, lists, tuples, sets), depth first."""
    if _is_tensor(obj):
        yield at, obj
    elif isinstance(obj, Mapping):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for k, v in obj.items():
            yield from _tensors(v, _join(at, k), seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for i, v in enumerate(obj):
            yield from _tensors(v, _join(at, i), seen)


def check_finite_weights(payload: Mapping, weights: Iterable[str] = ("*",), *, field: str,
                         source: str = "checkpoint") -> None:
    """Raise ``ConfigError(field, ...)`` if a floating-point (or complex) tensor under one of the ``weights`` paths
    of ``payload`` holds NaN or +-inf: one line naming the entry and its first bad element, e.g.
    ``x.pt: non-finite weights in model/decoder.taps (first at index 3: nan; 1 of 6 values)``.

    A path is ``/``-separated keys (``"model"``, ``"best/model"``, ``"joint/model"``); ``*`` matches any key or
    list index; everything below the entry a path names is scanned. ``("*",)``: the whole payload."""
    import torch

    seen: set[int] = set()
    for pattern in weights:
        for at, entry in _at_paths(payload, [s for s in pattern.split("/") if s], ""):
            for where, t in _tensors(entry, at, seen):
                if not (t.is_floating_point() or t.is_complex()) or t.is_sparse or t.numel() == 0:
                    continue
                bad = ~torch.isfinite(t.detach())
                if not bool(bad.any()):
                    continue
                flat = bad.reshape(-1)
                i = int(flat.nonzero()[0, 0])
                value = t.detach().reshape(-1)[i].item()
                if t.dim() == 0:
                    first = f"value {value}"
                else:
                    idx: Any = i
                    if t.dim() > 1:
                        rest, idx = i, []
                        for n in reversed(t.shape):
                            rest, r = divmod(rest, int(n))
                            idx.insert(0, r)
                        idx = tuple(idx)
                    first = f"first at index {idx}: {value}; {int(flat.sum())} of {t.numel()} values"
                raise ConfigError(field, f"{source}: non-finite weights in {where or 'the payload'} ({first}); the "
                                         "checkpoint is damaged or comes from a diverged training run")


# --- figures ------------------------------------------------------------------------------------------------

#: Figure file formats :func:`save_figure` writes (from the file name's suffix).
FIGURE_FORMATS = ("png", "pdf", "svg")


def printable(text: str) -> str:
    """``text`` with what a font cannot draw replaced by U+FFFD: undecodable bytes from the command line or a
    file name (Python's surrogate escapes, ``'\\udcff'``) and lone surrogates."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _printable_texts(fig) -> None:
    """Make every text of ``fig`` (titles, labels, legend entries, tick labels) drawable (:func:`printable`)."""
    from matplotlib.text import Text
    for t in fig.findobj(Text):
        s = t.get_text()
        if isinstance(s, str) and s and not s.isascii():
            clean = printable(s)
            if clean != s:
                t.set_text(clean)


def save_figure(fig, path: str | os.PathLike, *, dpi: float | None = None, field: str = "out",
                close: bool = True, **savefig_kwargs) -> Path:
    """Write the matplotlib figure ``fig`` to ``path`` (``.png``, ``.pdf`` or ``.svg``, from the suffix)
    atomically; creates missing parent directories; closes the figure afterwards unless ``close=False`` (also
    on error). The file records the metacomm version as its creator. Returns the path."""
    from metacomm import __version__

    p = Path(path)
    ext = p.suffix.lower().lstrip(".")
    try:
        if ext not in FIGURE_FORMATS:
            raise ConfigError(field, f"figure file must end in {', '.join('.' + f for f in FIGURE_FORMATS)}, got "
                                     f"{str(p)!r}")
        target = _prepare_target(p, field)
        key = "Software" if ext == "png" else "Creator"
        meta = {key: f"metacomm {__version__}", **savefig_kwargs.pop("metadata", {})}
        buf = io.BytesIO()
        if dpi is not None:
            savefig_kwargs["dpi"] = dpi
        _printable_texts(fig)
        fig.savefig(buf, format=ext, metadata=meta, **savefig_kwargs)
    finally:
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return _write(target, buf.getvalue(), field)
