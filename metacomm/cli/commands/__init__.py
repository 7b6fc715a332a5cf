"""One module per ``metacomm`` subcommand: ``add_parser(subparsers, name)`` sets ``run`` via set_defaults."""

from __future__ import annotations

import importlib

__all__ = ["add_command", "THREADS_HELP"]

THREADS_HELP = ("torch intra-op threads (default 1: the built-in models are small, and extra threads only spin on a "
                "shared machine)")


def add_command(subparsers, name: str, module: str):
    """Import ``metacomm.cli.commands.<module>`` and add its parser as subcommand ``name`` (with ``--threads`` when
    the command does not declare it); ``None`` when the module is not installed (an optional pack)."""
    try:
        mod = importlib.import_module(f"metacomm.cli.commands.{module}")
    except ModuleNotFoundError as e:
        if e.name == f"metacomm.cli.commands.{module}":
            return None
        raise
    p = mod.add_parser(subparsers, name)
    if p is not None and "--threads" not in p._option_string_actions:
        p.add_argument("--threads", type=int, default=1, metavar="N", help=THREADS_HELP)
    return p
