"""Atomic file writes shared by every writer of results, plots and checkpoints.

A file is written to a temporary file in the destination's directory, flushed to disk, then renamed over the
destination with :func:`os.replace` (atomic on POSIX and Windows): an interrupted or failed write never leaves a
truncated file and never destroys the previous one. A process killed (SIGKILL) between the two steps leaves its
temporary file behind (``.NAME.XXXXXXXX.tmp``); the next successful write of the same destination removes such
leftovers when they are older than :data:`STALE_TMP_S` seconds (a concurrent writer of the same file is still busy
with a younger one). The temporary's name is unique (:func:`tempfile.mkstemp`, created exclusively: a link planted
there is never followed) and a link at the destination is replaced, never written through. ``field=`` (a config key
such as ``out``) turns an operating-system failure into one-line :class:`~metacomm.ConfigError`.
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, field: str | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; the parent directory must exist. Returns the path.

    The temporary file is created with :func:`tempfile.mkstemp` (``O_CREAT | O_EXCL``: a file or link planted at
    its name is never opened, let alone followed), and :func:`os.replace` replaces a link at ``path`` itself,
    never the file it points to. On any failure the temporary file is removed and an existing ``path`` is left as
    it was. With ``field`` (a config key such as ``out``), an operating-system failure (disk full, no permission,
    read-only file system, missing directory) is raised as one-line ``ConfigError(field, ...)``; without it the
    :class:`OSError` propagates."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        if field is None:
            raise
        raise _config_error(e, path, field) from None
    try:
        try:
            view = memoryview(data).cast("B")
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if field is not None and isinstance(e, OSError):
            raise _config_error(e, path, field) from None
        raise
    _remove_stale_tmp(directory, path.name)
    return path


def _config_error(e: OSError, path: Path, field: str):
    """The one-line ``ConfigError(field, ...)`` of an operating-system failure to write ``path``."""
    from metacomm._validation import ConfigError
    text = str(e).strip()
    reason = e.strerror or (text.splitlines()[0] if text else type(e).__name__)
    return ConfigError(field, f"cannot write {str(path)!r} ({reason})")


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


def atomic_write_text(path: str | os.PathLike, text: str, *, field: str | None = None) -> Path:
    """UTF-8 text (newlines written as given) via :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"), field=field)


def atomic_torch_save(obj: Any, path: str | os.PathLike, *, field: str | None = None) -> Path:
    """:func:`torch.save` ``obj`` to ``path`` atomically (serialised in memory first)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue(), field=field)
