"""Helpers shared by the experiment functions: config validation, devices, output paths, value lists."""

from __future__ import annotations

import os

import torch

from metacomm._validation import ConfigError, check_int

__all__ = ["resolve_device", "int_list", "parse_seeds", "check_out_dir", "check_out_file", "MAX_SEEDS"]


def resolve_device(name, field: str = "device") -> torch.device:
    """``torch.device`` of ``name`` (cpu, cuda, cuda:N); ConfigError naming ``field`` if unknown/unavailable."""
    from metacomm.sims.engine import resolve_device as _resolve
    return _resolve(name, field=field)


def int_list(field: str, value, *, minimum: int) -> list[int]:
    """Sorted unique integers >= ``minimum`` from a list or a comma-separated string (``"1,4,16"``)."""
    if isinstance(value, str):
        try:
            vals = [int(v) for v in value.split(",") if v.strip() != ""]
        except ValueError:
            raise ConfigError(field, f"expected a comma-separated list of integers, got {value!r}") from None
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
_FORMS = "a comma list of seeds (0,1,2), a range A:B meaning A..B-1 (0:8), or both (0:4,10)"


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
    """``"0,1,2"`` / ``"0:8"`` (0..7) / ``"0:4,10"`` / a list of ints -> the seeds, in the order given.

    ConfigError naming ``field`` for anything but non-negative integers, for an empty or reversed range, an empty
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
                a, _, b = t.partition(":")
                if ":" in b:
                    raise ConfigError(field, f"{t!r}: a range is A:B (A..B-1), without a step")
                lo, hi = _int(field, a, t), _int(field, b, t)
                if hi <= lo:
                    raise ConfigError(field, f"empty range {t!r}: A:B means A..B-1 and needs B > A")
                if hi - lo > MAX_SEEDS:
                    raise ConfigError(field, f"{t!r} is more than {MAX_SEEDS} seeds")
                out += range(lo, hi)
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
