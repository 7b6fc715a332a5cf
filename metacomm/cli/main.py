"""The ``metacomm`` command line.

Each subcommand lives in its own module under :mod:`metacomm.cli.commands` and exposes
``add_parser(subparsers)`` (registering its flags, with units in every help string) and ``run(args) -> int``.
A :class:`~metacomm.ConfigError` (any bad input) prints one line ``metacomm <cmd>: error: <field>: <what is
allowed>`` on stderr and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from metacomm import __version__
from metacomm._validation import ConfigError, error_message
from metacomm.cli.commands import add_command

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
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="metacomm",
        description="metacomm: adaptive communications simulator (differentiable channels, learned codecs, "
        "meta-learned adaptation to drifting channels). Eb/N0 and Es/N0 are in dB; Es = 1 per complex "
        "channel use.",
    )
    parser.add_argument("--version", action="version", version=f"metacomm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.commands = {}
    for name, module in SUBCOMMANDS.items():
        p = add_command(sub, name, module)
        if p is None:
            continue
        parser.commands[name] = p
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
    try:
        threads = getattr(args, "threads", None)
        if threads is not None:
            import torch

            from metacomm._validation import check_positive_int
            torch.set_num_threads(check_positive_int("threads", threads))
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
