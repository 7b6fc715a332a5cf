"""Helpers shared by the experiment functions: config validation, devices, output paths, value lists."""

from __future__ import annotations

import os

import torch

from metacomm._validation import ConfigError

__all__ = ["resolve_device", "int_list", "check_out_dir", "check_out_file"]


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
        try:
            vals = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(field, f"expected a list of integers, got {value!r}") from None
        if any(isinstance(v, bool) or float(v) != int(v) for v in value):
            raise ConfigError(field, f"expected a list of integers, got {value!r}")
    if not vals:
        raise ConfigError(field, "give at least one value")
    for v in vals:
        if v < minimum:
            raise ConfigError(field, f"values must be >= {minimum}, got {v}")
    return sorted(set(vals))


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
