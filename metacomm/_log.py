"""The library's progress messages go to the ``metacomm`` logger (Python :mod:`logging`), never to ``print``.

``info(msg)`` is the default ``log`` callback of every ``metacomm.experiments.run_*`` function. The command line
configures the logger (INFO to stdout; ``-q``: warnings only; ``-v``: debug); in a script or notebook nothing is
shown until you configure it, e.g. ``logging.basicConfig(level=logging.INFO)`` or :func:`log_to_stdout`. Pass
``log=print`` (or any callable) to a ``run_*`` function to route its lines elsewhere, e.g. into a metrics writer.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "logger", "info", "log_to_stdout"]

LOGGER_NAME = "metacomm"
logger = logging.getLogger(LOGGER_NAME)


def info(msg: str) -> None:
    """Log ``msg`` at INFO on the ``metacomm`` logger (the default ``log`` of the library's commands)."""
    logger.info(msg)


def log_to_stdout(level: int = logging.INFO) -> logging.Handler:
    """Show the library's messages on stdout (for scripts and notebooks); returns the handler it added."""
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(h)
    logger.setLevel(level)
    return h
