"""Helpers shared by the experiment functions: config validation, devices, output paths, value lists."""

from __future__ import annotations

import os

import torch

from metacomm._validation import ConfigError, check_int

__all__ = ["resolve_device", "int_list", "int_range", "parse_seeds", "check_out_dir", "check_out_file", "MAX_SEEDS",
           "RANGE_MEANING"]


def resolve_device(name, field: str = "device") -> torch.device:
    """``torch.device`` of ``name`` (cpu, cuda, cuda:N); ConfigError naming ``field`` if unknown/unavailable."""
    from metacomm.sims.engine import resolve_device as _resolve
    return _resolve(name, field=field)


#: the one reading of a range on the command line and in experiment files (seeds, integer lists, dB grids)
RANGE_MEANING = "START:STOP:STEP includes STOP when it is on the grid (0:8:2 = 0, 2, 4, 6, 8), STEP > 0"
MAX_RANGE = 100_000


def int_range(field: str, text: str, *, what: str = "values") -> list[int]:
    """The integers of range ``"START:STOP:STEP"`` (:data:`RANGE_MEANING`: ``STOP`` included when on the grid).

    A two-number ``A:B`` is refused: seeds read it as ``A..B-1`` before, the dB grids never took it, so any
    reading of it would change some script's meaning silently; the message gives both spellings. ConfigError
    naming ``field`` for non-integers, a step <= 0, ``STOP < START`` or more than :data:`MAX_RANGE` values."""
    t = str(text).strip()
    parts = [p.strip() for p in t.split(":")]

    def num(tok: str) -> int:
        try:
            return int(tok)
        except ValueError:
            raise ConfigError(field, f"{tok!r} in {t!r} is not an integer; a range is START:STOP:STEP of "
                                     f"integers ({RANGE_MEANING})") from None

    if len(parts) == 2:
        lo, hi = num(parts[0]), num(parts[1])
        if what != "seeds":
            raise ConfigError(field, f"{t!r}: a range needs its step: START:STOP:STEP with STOP included (write "
                                     f"{lo}:{hi}:1 for {lo}..{hi})")
        hint = (f"write {lo}:{hi - 1}:1 for {lo}..{hi - 1} (what {t} meant before) or {lo}:{hi}:1 for {lo}..{hi}"
                if hi > lo else f"write {lo}:{hi}:1 or a comma list")
        raise ConfigError(field, f"{t!r}: a range needs its step, START:STOP:STEP with STOP included; a "
                                 f"two-number A:B is refused because it meant A..B-1 before -- {hint}")
    if len(parts) != 3:
        raise ConfigError(field, f"{t!r}: a range is START:STOP:STEP ({RANGE_MEANING})")
    lo, hi, step = (num(p) for p in parts)
    if step <= 0:
        raise ConfigError(field, f"{t!r}: STEP must be > 0, got {step}")
    if hi < lo:
        raise ConfigError(field, f"{t!r}: STOP must be >= START ({RANGE_MEANING})")
    if (hi - lo) // step + 1 > MAX_RANGE:
        raise ConfigError(field, f"{t!r} gives more than {MAX_RANGE} {what}")
    return list(range(lo, hi + 1, step))


def int_list(field: str, value, *, minimum: int) -> list[int]:
    """Sorted unique integers >= ``minimum`` from a list or a comma-separated string (``"1,4,16"``) whose items
    may be ranges ``START:STOP:STEP`` (:func:`int_range`, STOP included: ``"0:10:5,100"`` = 0, 5, 10, 100)."""
    if isinstance(value, str):
        vals = []
        for item in (v.strip() for v in value.split(",")):
            if item == "":
                continue
            if ":" in item:
                vals += int_range(field, item)
                continue
            try:
                vals.append(int(item))
            except ValueError:
                raise ConfigError(field, f"expected a comma-separated list of integers (items may be ranges "
                                         f"START:STOP:STEP, STOP included), got {value!r}") from None
    else:
        if isinstance(value, bytes) or not hasattr(value, "__iter__"):
            raise ConfigError(field, f"expected a list of integers, got {value!r}")
        try:  # check_int: booleans, fractions, inf and NaN refused (int(inf) would be an OverflowError)
            vals = [check_int(field, v) for v in value]
        except ConfigError:
            raise ConfigError(field, f"expected a list of integers, got {value!r}") from None
    if not vals:
        raise ConfigError(field, "give at least one value")
    for v in vals:
        if v < minimum:
            raise ConfigError(field, f"values must be >= {minimum}, got {v}")
    return sorted(set(vals))


MAX_SEEDS = 100_000
_FORMS = ("a comma list of seeds (0,1,2), a range START:STOP:STEP with STOP included (0:7:1 = 0..7), or both "
          "(0:3:1,10)")


def _int(field: str, text: str, where: str) -> int:
    t = text.strip()
    try:
        v = int(t)
    except ValueError:
        raise ConfigError(field, f"{where!r} is not a seed; expected {_FORMS}") from None
    if v < 0:
        raise ConfigError(field, f"seeds must be non-negative integers, got {v} in {where!r}")
    return v


def parse_seeds(value, field: str = "seeds") -> list[int]:
    """``"0,1,2"`` / ``"0:7:1"`` (0..7: :func:`int_range`, STOP included) / ``"0:3:1,10"`` / a list of ints ->
    the seeds, in the order given.

    ConfigError naming ``field`` for anything but non-negative integers, for a two-number range ``A:B`` (it meant
    ``A..B-1`` before this release; the message says how to write either reading), a reversed range, an empty
    list, a seed given twice, or more than :data:`MAX_SEEDS` seeds."""
    if isinstance(value, str):
        items = [t.strip() for t in value.split(",")]
        if not any(items):
            raise ConfigError(field, f"give at least one seed: {_FORMS}")
        out: list[int] = []
        for t in items:
            if not t:
                raise ConfigError(field, f"empty item in {value!r}; expected {_FORMS}")
            if ":" in t:
                for tok in t.split(":"):
                    _int(field, tok, t)  # non-negative integers, named as seeds
                out += int_range(field, t, what="seeds")
            else:
                out.append(_int(field, t, t))
    elif isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(field, f"expected a list of non-negative integer seeds, got {v!r} in {value!r}")
            if v < 0:
                raise ConfigError(field, f"seeds must be non-negative integers, got {v}")
            out.append(int(v))
        if not out:
            raise ConfigError(field, f"give at least one seed: {_FORMS}")
    else:
        raise ConfigError(field, f"expected {_FORMS} (a string), or a list of seeds; got {value!r}")
    if len(out) > MAX_SEEDS:
        raise ConfigError(field, f"{len(out)} seeds; at most {MAX_SEEDS}")
    seen: set[int] = set()
    for s in out:
        if s in seen:
            raise ConfigError(field, f"seed {s} is given twice; every seed runs once")
        seen.add(s)
    return out


def check_out_dir(path, field: str = "out") -> str:
    """``path`` as a string; ConfigError if it exists and is not a directory, or if it is not (or cannot be
    created as) a writable directory (it is created by the writers)."""
    from metacomm.artefacts import check_writable_dir
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(field, f"{path} exists and is not a directory")
    check_writable_dir(path, field=field)
    return path


def check_out_file(path, field: str = "out", example: str = "meta.pt") -> str:
    """``path`` of an output file: not a directory, and its directory is (or can be created as) a writable
    directory (probed up front, so that a long run does not fail only when it writes)."""
    from metacomm.artefacts import check_writable_dir
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ConfigError(field, f"{path} is a directory; give a file name such as {example}")
    parent = os.path.dirname(path)
    if parent and os.path.exists(parent) and not os.path.isdir(parent):
        raise ConfigError(field, f"{parent} is not a directory")
    check_writable_dir(parent or ".", field=field)
    return path
