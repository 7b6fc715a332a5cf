"""The ``metacomm`` command line.

Each subcommand lives in its own module under :mod:`metacomm.cli.commands` and exposes
``add_parser(subparsers)`` (registering its flags, with units in every help string) and ``run(args) -> int``.
A :class:`~metacomm.ConfigError` (any bad input) prints one line ``metacomm <cmd>: error: <field>: <what is
allowed>`` on stderr and exits with code 2, without a traceback.

Start-up is cheap: no parser imports torch, Sionna or :mod:`metacomm.experiments` (each command imports what it
needs when it runs), so ``--help``, ``--version`` and usage errors answer at once. ``-q/--quiet`` and
``-v/--verbose`` (before or after the command) set the level of the ``metacomm`` logger (INFO by default; records
below WARNING go to stdout, warnings and errors to stderr) for the duration of the command.
"""

from __future__ import annotations

import argparse
import logging
import sys

from metacomm import __version__
from metacomm._validation import ConfigError, error_message
from metacomm.cli._text import PlainFormatter
from metacomm.cli.commands import QUIET_HELP, VERBOSE_HELP, add_command

# Subcommand name -> module under metacomm.cli.commands (a module that does not exist yet is skipped).
SUBCOMMANDS: dict[str, str] = {
    "demo": "demo",
    "ber": "ber",
    "train": "train",
    "plot": "plot",
    "meta-train": "meta_train",
    "fewshot": "fewshot",
    "drift": "drift",
    "run": "run",
    "pack": "pack",
    "export": "export",
    "scenario": "scenario",
}


class _Parser(argparse.ArgumentParser):
    """argparse with plain-text help pages (:class:`~metacomm.cli._text.PlainFormatter`) and one-line usage
    errors."""

    #: the top-level parser's subcommands: name -> parser (declared on first access)
    commands: dict

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", PlainFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> _Parser:
    parser = _Parser(
        prog="metacomm",
        description="metacomm: adaptive communications simulator (differentiable channels, learned codecs, "
        "meta-learned adaptation to drifting channels). Eb/N0 and Es/N0 are in dB; Es = 1 per complex "
        "channel use.",
        epilog="metacomm COMMAND --help lists a command's flags with their units. Ranges mean one thing everywhere: "
        "START:STOP:STEP includes STOP when it is on the grid (--ebno-db 0:10:2, --seeds 0:7:1). A flag whose "
        "names come from a registry filled at import time takes the value list (--schemes list, --scenario list, "
        "--receiver list). Drift scenario files: metacomm scenario list | show NAME | new NAME.",
    )
    parser.add_argument("--version", action="version", version=f"metacomm {__version__}")
    parser.add_argument("-q", "--quiet", dest="global_quiet", action="store_true", help=QUIET_HELP)
    parser.add_argument("-v", "--verbose", dest="global_verbose", action="count", default=0, help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in SUBCOMMANDS.items():
        add_command(sub, name, module)  # lazily: a command's flags are declared when it is looked up
    parser.commands = sub.choices  # name -> parser (built on access)
    return parser


#: config keys whose flag is not ``--`` + the key with dashes (the library names config keys, the CLI flags)
KEY_TO_FLAG = {"scenario_config": "--set", "num_test_channels": "--test-channels",
               "num_test_devices": "--test-channels"}


def flag_of(parser: argparse.ArgumentParser | None, key: str) -> str:
    """The command-line flag of config key ``key`` (a flag, or a key no flag sets, is returned unchanged).

    This is the one place where library errors (which name config keys such as ``meta_steps``) are turned into
    the flags a user typed (``--meta-steps``): the flag whose destination is the key, or :data:`KEY_TO_FLAG`."""
    if key.startswith("-"):
        return key
    for action in getattr(parser, "_actions", ()):
        if action.dest == key and action.option_strings:
            return max(action.option_strings, key=len)
    return KEY_TO_FLAG.get(key, key)


class _StdHandler(logging.Handler):
    """Records below WARNING to ``sys.stdout``, the others to ``sys.stderr`` (looked up at each record, so that a
    redirected stream is followed), as their message alone (warnings prefixed ``metacomm: warning:``)."""

    def emit(self, record):
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                stream = sys.stderr
                text = f"metacomm: {record.levelname.lower()}: {text}"
            else:
                stream = sys.stdout
            stream.write(text + "\n")
            stream.flush()
        except Exception:  # pragma: no cover -- logging must never end a run
            self.handleError(record)


def log_level(args: argparse.Namespace) -> int:
    """The ``metacomm`` logger's level for parsed ``args``: WARNING with the global ``-q/--quiet`` (before the
    command), DEBUG with ``-v``, else INFO (``-v`` wins over ``-q``). A command's own ``--quiet`` (no progress bar)
    leaves the level alone, as it did when the library printed."""
    if getattr(args, "global_verbose", 0) or getattr(args, "verbose", 0):
        return logging.DEBUG
    if getattr(args, "global_quiet", False):  # a command's own --quiet only hides its progress bar
        return logging.WARNING
    return logging.INFO


class _Logging:
    """Configure the ``metacomm`` logger for one command and restore it afterwards (the library only logs; the
    command line decides where the records go)."""

    def __init__(self, level: int):
        self.level = level

    def __enter__(self):
        self.logger = logging.getLogger("metacomm")
        self.saved = self.logger.level
        self.handler = _StdHandler(self.level)
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.logger.addHandler(self.handler)
        self.logger.setLevel(self.level)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved)
        return False


def main(argv: list[str] | None = None) -> int:
    try:  # start-up (importing the subcommands, building the parsers) can take seconds: Ctrl-C there too
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("metacomm: interrupted", file=sys.stderr)
        return 130
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    with _Logging(log_level(args)):
        return _run(parser, args)


def _run(parser: _Parser, args: argparse.Namespace) -> int:
    try:
        threads = getattr(args, "threads", None)
        if threads is not None:
            from metacomm._validation import check_positive_int
            threads = check_positive_int("threads", threads)
        precheck = getattr(args, "precheck", None)  # a command's own cheap checks, before torch is imported
        if precheck is not None:
            precheck(args)
        if threads is not None and not getattr(args, "torch_free", False):  # a torch-free command skips the import
            import torch

            torch.set_num_threads(threads)
        return int(args.run(args) or 0)
    except ConfigError as e:
        sub = getattr(args, "command_parser", None) or parser.commands.get(args.command)
        field = flag_of(sub, e.field)
        message = error_message(e)
        name = getattr(args, "command_name", None) or args.command
        fields = getattr(e, "fields", ())
        if fields:  # check_memory: "reduce a, b" -> the flags
            message = message.replace("reduce " + ", ".join(fields),
                                      "reduce " + ", ".join(flag_of(sub, f) for f in fields))
        print(f"metacomm {name}: error: {field}: {message}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # the allocator's answer to a size no up-front check caught
        text = str(e)
        oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", MemoryError)
        if not isinstance(e, (MemoryError, oom)) and "allocate" not in text \
                and "out of memory" not in text:
            raise
        name = getattr(args, "command_name", None) or args.command
        detail = next((ln.strip() for ln in text.splitlines() if "allocate" in ln), text.splitlines()[0] if text
                      else "")
        print(f"metacomm {name}: error: out of memory ({detail[:200]}); reduce the sizes (batch, blocks, tasks, "
              "links, or the scenario's settings)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metacomm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
