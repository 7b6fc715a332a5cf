"""``metacomm run``: run an experiment file (a TOML file naming a command and its settings).

    metacomm run examples/ber_qpsk.toml
    metacomm run experiment.toml --set frames=50 --out runs/short

The file is validated before any work starts: every unknown key, wrong type and refused value is reported at
once (one line, exit 2). ``--set KEY=VALUE`` (repeatable; VALUE parsed as JSON where it can be) and ``--out``,
``--seed``, ``--device`` override the file. The resolved settings and the metacomm/torch/sionna versions are
written next to the results (``experiment.json`` in an output directory, ``<out>.experiment.json`` beside an
output file); an existing one is replaced only when it is such a record, or with ``--overwrite`` (checked before
the run starts), which also sets the command's own ``overwrite`` where it has one (``train``, ``meta-train``).
Format and examples: :mod:`metacomm.experiments.files`, ``examples/*.toml``.
"""

from __future__ import annotations

import importlib

from metacomm.cli import _names
from metacomm.cli.commands._settings import parse_settings

#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "run an experiment file (TOML: command + settings)"


def add_parser(subparsers, name):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0])
    p.add_argument("experiment", metavar="EXPERIMENT.toml",
                   help="experiment file: command = one of "
                        f"{_names.listing('metacomm.experiments.files', 'COMMANDS')}, then that command's settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a setting of the file (repeatable)")
    p.add_argument("--out", default=None, help="override the file's out")
    p.add_argument("--seed", type=int, default=None, help="override the file's seed")
    p.add_argument("--device", default=None, help="override the file's device")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs that are not this kind of metacomm file (experiment.json, and the "
                        "command's own outputs where it has an overwrite setting)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from metacomm.experiments.files import check_experiment_record, load_experiment, write_experiment_record

    overrides = parse_settings(args.overrides)
    for key in ("out", "seed", "device"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    command, cfg = load_experiment(args.experiment, overrides, field="EXPERIMENT.toml", overwrite=args.overwrite)
    overwrite = bool(args.overwrite or getattr(cfg, "overwrite", False) is True)
    check_experiment_record(command, cfg, overwrite=overwrite)  # before any work: never a foreign experiment.json
    module = importlib.import_module(f"metacomm.cli.commands.{command.replace(' ', '_').replace('-', '_')}")
    import time
    started, t0 = time.time(), time.perf_counter()
    rc = module.execute(cfg)
    record = write_experiment_record(command, cfg, args.experiment, overwrite=overwrite, started=started,
                                     wall_s=round(time.perf_counter() - t0, 3))
    print(f"run: settings and versions -> {record}")
    return rc
