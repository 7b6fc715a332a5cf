"""One module per ``metacomm`` subcommand: ``add_parser(subparsers, name)`` sets ``run`` via set_defaults.

A command module imports nothing heavy at the top (no torch, Sionna, matplotlib, :mod:`metacomm.experiments`,
channels or codecs): its parser is declared from :mod:`metacomm.cli._names` and the heavy imports happen in its
``run``/``execute``, so that every ``--help`` and usage error answers at once (``tests/cli/test_startup.py``)."""

from __future__ import annotations

import importlib

__all__ = ["add_command", "THREADS_HELP", "QUIET_HELP", "VERBOSE_HELP"]

THREADS_HELP = ("torch intra-op threads (default 1: the built-in models are small, and extra threads only spin on a "
                "shared machine)")
QUIET_HELP = "log only warnings and errors (the metacomm logger at WARNING)"
VERBOSE_HELP = "log debug messages too (the metacomm logger at DEBUG; default INFO)"


def add_command(subparsers, name: str, module: str, *, after=None):
    """Import ``metacomm.cli.commands.<module>`` and add its parser as subcommand ``name`` (with ``--threads``,
    ``--quiet`` and ``-v/--verbose`` when the command does not declare them); ``None`` when the module is not
    installed (an optional pack).

    A module with a one-line ``COMMAND_HELP`` is added lazily: its help line is listed at once and its parser is declared
    when it is first looked up (parsing that command, ``--help`` of it, or any access to ``subparsers.choices``),
    so ``metacomm --help`` and a usage error of one command never declare the other commands' flags. ``after``
    is called with the parser once it is built. Returns the parser, or ``True`` for a lazily added one."""
    try:
        mod = importlib.import_module(f"metacomm.cli.commands.{module}")
    except ModuleNotFoundError as e:
        if e.name == f"metacomm.cli.commands.{module}":
            return None
        raise
    help_line = getattr(mod, "COMMAND_HELP", None)
    if not isinstance(help_line, str):
        p = mod.add_parser(subparsers, name)
        return _finish(p, after)
    parsers = subparsers._name_parser_map
    if not isinstance(parsers, _LazyParsers):
        parsers = _LazyParsers(parsers)
        subparsers._name_parser_map = subparsers.choices = parsers
    subparsers._choices_actions.append(subparsers._ChoicesPseudoAction(name, (), help_line))
    parsers.register(name, lambda: _finish(mod.add_parser(_Direct(subparsers), name), after))
    return True


def _finish(p, after):
    if p is not None:
        if "--threads" not in p._option_string_actions:
            p.add_argument("--threads", type=int, default=1, metavar="N", help=THREADS_HELP)
        if "--quiet" not in p._option_string_actions:
            p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
        if "--verbose" not in p._option_string_actions and "-v" not in p._option_string_actions:
            p.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
        if after is not None:
            after(p)
    return p


class _Direct:
    """What a command's ``add_parser(subparsers, name)`` is given when it is built lazily: ``add_parser`` makes
    the parser as the subparsers action would, without listing the help line again (it is listed already)."""

    def __init__(self, action):
        self.action = action

    def add_parser(self, name, **kwargs):
        kwargs.pop("help", None)
        kwargs.pop("aliases", None)
        kwargs.setdefault("prog", f"{self.action._prog_prefix} {name}")
        return self.action._parser_class(**kwargs)


class _LazyParsers(dict):
    """The subparsers' ``name -> parser`` table with parsers declared on first access (a name is present, and
    listed, from the start)."""

    def __init__(self, existing=()):
        super().__init__(existing)
        self._factories = {}

    def register(self, name, factory):
        self._factories[name] = factory
        super().__setitem__(name, None)

    def __getitem__(self, name):
        if name in self._factories:
            factory = self._factories.pop(name)
            super().__setitem__(name, factory())
        return super().__getitem__(name)

    def get(self, name, default=None):
        return self[name] if name in self else default

    def values(self):
        return [self[k] for k in list(self)]

    def items(self):
        return [(k, self[k]) for k in list(self)]

    def __iter__(self):
        return iter(list(super().keys()))
