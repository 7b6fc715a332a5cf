"""``metacomm pack NAME``: the scenario packs' experiments (compression, label noise, adversarial).

Each pack's command lives in its own module ``metacomm.cli.commands.pack_<name>`` (dashes as underscores) with
``add_parser(subparsers, name)`` (its parser calls ``p.set_defaults(run=run)``) and ``execute(cfg)`` (shared with
``metacomm run FILE.toml`` and ``command = "pack <name>"``). A pack whose module is not installed is skipped.
"""

from __future__ import annotations

__all__ = ["PACKS", "add_parser"]

from metacomm.cli import _names
from metacomm.cli.commands import add_command

#: pack name -> module under metacomm.cli.commands (the packs declared in metacomm.experiments.packs.PACKS, read
#: from its source without importing it)
PACKS: dict[str, str] = {name: "pack_" + name.replace("-", "_")
                         for name in _names.names("metacomm.experiments.packs", "PACKS") or ()}


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "scenario packs: compression (quantised/pruned codecs), label-noise (noisy pilots), adversarial (attacks and defences)"


def add_parser(subparsers, name: str = "pack"):
    p = subparsers.add_parser(
        name, help=COMMAND_HELP,
        description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="pack", metavar="PACK", parser_class=type(p))
    for pack, module in PACKS.items():
        add_command(sub, pack, module,
                    after=lambda sp, pack=pack: sp.set_defaults(command_parser=sp, command_name=f"{name} {pack}"))
    p.packs = sub.choices  # pack name -> parser (built on access)
    p.set_defaults(run=_no_pack, command_parser=p)
    return p


def _no_pack(args) -> int:
    from metacomm._validation import ConfigError
    raise ConfigError("PACK", f"name a pack: {', '.join(PACKS)}")
