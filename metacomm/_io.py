"""Atomic file writes shared by every writer of results, plots and checkpoints.

A file is written to a temporary file in the destination's directory, flushed to disk, then renamed over the
destination with :func:`os.replace` (atomic on POSIX and Windows): an interrupted or failed write never leaves a
truncated file and never destroys the previous one. A process killed (SIGKILL) between the two steps leaves its
temporary file behind (``.NAME.XXXXXXXX.tmp``); the next successful write of the same destination removes such
leftovers when they are older than :data:`STALE_TMP_S` seconds (a concurrent writer of the same file is still busy
with a younger one).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_torch_save"]

#: temporary files of the same destination older than this (seconds) are leftovers of a killed writer
STALE_TMP_S = 600.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; the parent directory must exist. Returns the path."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _remove_stale_tmp(directory, path.name)
    return path


def _remove_stale_tmp(directory: Path, name: str) -> None:
    import glob
    import time

    cutoff = time.time() - STALE_TMP_S
    try:
        for old in directory.glob(f".{glob.escape(name)}.*.tmp"):
            try:
                if old.is_file() and not old.is_symlink() and old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text (newlines written as given) via :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """:func:`torch.save` ``obj`` to ``path`` atomically (serialised in memory first)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())
