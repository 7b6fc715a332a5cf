"""``metacomm plot``: overlay several ``results.json`` (BER and BLER vs Eb/N0) in one figure."""

from __future__ import annotations

import argparse

from metacomm._validation import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers, name: str = "plot") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="overlay results.json files: BER and BLER vs Eb/N0 [dB] with confidence intervals",
        description="Draw BER and BLER versus Eb/N0 (dB, information-bit SNR) from one or more results.json "
        "files (or directories holding one) on log axes, with their stored confidence intervals as error bars "
        "and the closed-form curve where one exists (uncoded BPSK/QPSK/QAM over AWGN and Rayleigh, Hamming(7,4) "
        "hard decoding over AWGN).",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS.json", help="results files (or directories) to plot")
    p.add_argument("--out", required=True, metavar="FIG.png", help="figure file (.png, .pdf or .svg)")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="legend labels, one per results file (default: codec (decoder) over channel)")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--no-theory", action="store_true", help="do not overlay closed-form curves")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from metacomm.sims.plots import plot_results
    from metacomm.sims.results import load_results

    results = [load_results(r, field_name="RESULTS.json") for r in args.results]
    if args.labels is not None and len(args.labels) != len(results):
        raise ConfigError("--labels", f"give one label per results file ({len(results)}), got {len(args.labels)}")
    fig = plot_results(results, args.out, labels=args.labels, title=args.title, theory=not args.no_theory)
    print(f"wrote {fig}")
    return 0
