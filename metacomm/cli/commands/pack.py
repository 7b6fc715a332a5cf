"""``metacomm pack NAME``: the scenario packs' experiments (compression, label noise, adversarial).

Each pack's command lives in its own module ``metacomm.cli.commands.pack_<name>`` (dashes as underscores) with
``add_parser(subparsers, name)`` (its parser calls ``p.set_defaults(run=run)``) and ``execute(cfg)`` (shared with
``metacomm run FILE.toml`` and ``command = "pack <name>"``). A pack whose module is not installed is skipped.
"""

from __future__ import annotations

import importlib

__all__ = ["PACKS", "add_parser"]

from metacomm.experiments.packs import PACKS as _DECLARED

#: pack name -> module under metacomm.cli.commands (the packs declared in metacomm.experiments.packs.PACKS)
PACKS: dict[str, str] = {name: "pack_" + name.replace("-", "_") for name in _DECLARED}


def add_parser(subparsers, name: str = "pack"):
    p = subparsers.add_parser(
        name, help="scenario packs: compression (quantised/pruned codecs), label-noise (noisy pilots), "
                   "adversarial (attacks and defences)",
        description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="pack", metavar="PACK", parser_class=type(p))
    p.packs = {}
    for pack, module in PACKS.items():
        try:
            mod = importlib.import_module(f"metacomm.cli.commands.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"metacomm.cli.commands.{module}":
                continue
            raise
        sp = mod.add_parser(sub, pack)
        if "--threads" not in sp._option_string_actions:
            sp.add_argument("--threads", type=int, default=1, metavar="N",
                            help="torch intra-op threads (default 1: the built-in models are small, and extra "
                                 "threads only spin on a shared machine)")
        sp.set_defaults(command_parser=sp, command_name=f"{name} {pack}")
        p.packs[pack] = sp
    p.set_defaults(run=_no_pack, command_parser=p)
    return p


def _no_pack(args) -> int:
    from metacomm._validation import ConfigError
    raise ConfigError("PACK", f"name a pack: {', '.join(PACKS)}")
