"""metacomm plot: overlay several runs' results of any kind in one figure.

    metacomm plot RUN_A RUN_B ... --out fig.png

Each RUN is a results.json or the directory holding one, written by ``ber`` (BER and BLER vs Eb/N0 [dB] with
the closed-form curve where one exists), ``drift``/``demo`` (BLER over frames, rolling mean, one colour per scheme
and one line style per run), ``drift --seeds`` (the pooled directory: mean BLER per seed with the pooled BLER), ``fewshot`` (BLER vs adaptation steps) or a ``pack`` (compression: BLER vs bit-width;
label-noise: BLER vs noise rate; adversarial: BLER vs PSR [dB]); runs of one family share a figure.
"""

from __future__ import annotations

import argparse

from metacomm._validation import ConfigError

__all__ = ["add_parser", "run"]


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "overlay runs' results.json of any kind (BER sweeps, drift runs, fewshot, packs) in one figure"


def add_parser(subparsers, name: str = "plot") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help=COMMAND_HELP,
        description=__doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[2].replace("\n", " "),
    )
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results.json files, or directories holding one (all of one family)")
    p.add_argument("--out", required=True, metavar="FIG.png", help="figure file (.png, .pdf or .svg)")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="legend labels, one per run (default: codec over channel for BER sweeps, else the "
                        "run's directory name)")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--no-theory", action="store_true", help="BER sweeps: do not overlay closed-form curves")
    p.add_argument("--x", default=None, metavar="FIELD",
                   help="record tables (fewshot, packs): the swept field on the x axis (default: fewshot steps, "
                        "compression bits, label-noise rate, adversarial psr_db)")
    p.add_argument("--y", default="bler", metavar="FIELD",
                   help="record tables: the measured field on the y axis (default bler; its FIELD_ci gives the "
                        "error bars)")
    p.add_argument("--where", action="append", default=None, metavar="KEY=VALUE",
                   help="record tables: keep only records with KEY=VALUE (repeatable), e.g. --where steps=1")
    p.add_argument("--window", type=int, default=None, metavar="FRAMES",
                   help="drift runs: rolling-mean window in frames (default max(10, frames/15))")
    p.add_argument("--schemes", default=None,
                   help="drift runs: comma list of schemes to draw (default: all)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from metacomm.experiments.overlay import load_run, parse_where, plot_overlay

    if args.labels is not None and len(args.labels) != len(args.results):
        raise ConfigError("--labels", f"give one label per results file ({len(args.results)}), got "
                                      f"{len(args.labels)}")
    labels = args.labels or [None] * len(args.results)
    runs = [load_run(r, field="RESULTS", label=lab) for r, lab in zip(args.results, labels, strict=True)]
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()] if args.schemes else None
    fig = plot_overlay(runs, args.out, title=args.title, theory=not args.no_theory, x=args.x, y=args.y,
                       where=parse_where(args.where), window=args.window, schemes=schemes)
    print(f"wrote {fig}")
    return 0
