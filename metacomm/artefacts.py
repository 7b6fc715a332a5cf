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

* :func:`read_json` -- strict parse (``NaN``/``Infinity`` tokens are refused) and tag check;
* :func:`load_checkpoint` -- always ``torch.load(..., weights_only=True)``: a crafted checkpoint cannot run
  code; clear errors for a missing, truncated or foreign file, another kind, a newer version, and (unless
  ``allow_partial``) an unfinished run's periodic checkpoint.

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

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.version}"



#: Registered kinds by name. Extend with :func:`register_kind`.
KINDS: dict[str, ArtefactKind] = {}


def register_kind(name: str, version: int, what: str, written_by: str,
                  reads: Iterable[int] | None = None) -> ArtefactKind:
    """Register (or replace) a kind: files are written as ``name/version``; versions in ``reads`` (default:
    only ``version``) are accepted by readers. Returns the :class:`ArtefactKind`."""
    if "/" in name or not name:
        raise ValueError(f"kind name must be non-empty and contain no '/': {name!r}")
    if int(version) < 1:
        raise ValueError(f"version must be >= 1, got {version!r}")
    versions = tuple(sorted({int(v) for v in (reads or ())} | {int(version)}))
    kind = ArtefactKind(name, int(version), what, written_by, versions)
    KINDS[name] = kind
    return kind


register_kind("metacomm-results", 1, "metacomm BER results file", "`metacomm ber`, sims.save_results")
register_kind("metacomm-fewshot", 1, "metacomm few-shot results file", "`metacomm fewshot`")
register_kind("metacomm-drift", 1, "metacomm drift results file", "`metacomm drift`, `metacomm demo`")
register_kind("metacomm-drift-seeds", 1, "metacomm pooled multi-seed drift results file (one run per seed in "
              "seed-<s>/)", "`metacomm drift --seeds`")
register_kind("metacomm-codec", 1, "metacomm codec checkpoint", "`metacomm train`, codecs.checkpoint.save_codec")
register_kind("metacomm-meta", 1, "metacomm meta-train checkpoint", "`metacomm meta-train`")
register_kind("metacomm-meta-trainer", 1, "metacomm meta-trainer state", "adaptation.MetaTrainer.save")
register_kind("metacomm-drift-run", 1, "metacomm drift run state (resume)", "`metacomm drift --save-every`")
register_kind("metacomm-experiment", 1, "metacomm experiment record (resolved settings and versions)",
              "`metacomm run` and every experiment written from a file")
register_kind("metacomm-online-meta", 1, "metacomm online-drift meta checkpoint",
              "scenarios.online_drift.save_meta, scripts/make_demo_checkpoints.py")


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


def _prepare_target(path, field: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(field, f"{str(path)!r} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
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


def check_writable_dir(out: str | os.PathLike, *, field: str = "out") -> Path:
    """Raise ``ConfigError(field, ...)`` unless files can be created in the directory ``out`` -- or, when it does
    not exist yet, in its nearest existing ancestor (where it would be created). Probed by creating and removing a
    hidden temporary file (permission bits alone say nothing for root, or on read-only and virtual file systems).
    Returns ``Path(out)``."""
    d = Path(out)
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
    if rp.is_symlink() or rp.exists():
        try:
            doc = json.loads(rp.read_text(encoding="utf-8"))
            ours = bool(check_kind(doc, kind, field=field, source=str(rp), allow_untagged=False))
        except (OSError, ValueError, UnicodeDecodeError):
            ours = False
        if not ours:
            raise ConfigError(field, f"{str(rp)!r} exists and is not a {KINDS[kind].what}; refusing to "
                                     "replace it (choose another output directory or remove the file)")
    for name in others:
        p = d / name
        if (p.exists() or p.is_symlink()) and not ours:
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


def read_json(path: str | os.PathLike, *, kind: str | Iterable[str], field: str,
              allow_untagged: bool = False) -> dict:
    """Parse ``path`` as strict JSON (``NaN``/``Infinity`` refused) and check its format tag against ``kind``
    (one name or several). Returns the dict. Every failure raises ``ConfigError(field, ...)``; an untagged
    file is accepted only with ``allow_untagged`` (files from other tools)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(field, f"{str(p)!r}: no such file")
    if p.is_dir():
        raise ConfigError(field, f"{str(p)!r} is a directory, not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(field, f"cannot read {str(p)!r}: {e}") from None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as e:
        raise ConfigError(field, f"{str(p)!r} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ConfigError(field, f"{str(p)!r} is not a metacomm file (a JSON object was expected, got "
                                 f"{type(obj).__name__})")
    check_kind(obj, kind, field=field, source=repr(str(p)), allow_untagged=allow_untagged)
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
    check_kind(payload, names, field=field, source=src)
    if payload.get("finished") is False and not allow_partial:
        step = payload.get("step")
        at = f" (step {step})" if isinstance(step, int) else ""
        raise ConfigError(field, f"{src} is a periodic checkpoint of an unfinished run{at}; pass --allow-partial "
                                 "to use it anyway (or finish the run first)")
    return payload


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
