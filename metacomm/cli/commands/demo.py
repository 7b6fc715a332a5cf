"""``metacomm demo``: the adaptive codec on a fast-fading channel, next to its baselines (seconds on a CPU).

    metacomm demo [--out metacomm-demo] [--frames 150] [--device cpu]

Runs the ``doppler-fast`` scenario (3-tap Rayleigh multipath whose taps decorrelate with rho = 0.5 from frame
to frame, Eb/N0 10 dB, k = 8 bits on n = 8 complex channel uses, Park et al. SPAWC 2020) with the shipped codecs:
the meta-learned tracker (``track``, ``metacomm/checkpoints/drift_track_doppler-fast_p16.pt``) and the per-frame
adaptive codec (``meta``: 16 pilot messages per link adapt the decoder with one SGD step every frame; warm start,
online meta-learning, static, retraining from scratch every 20 frames with 50 Adam steps), next to the classical
receivers (pilot-LS, LMMSE, Kalman, wide-window LS, widely-linear LS) and the genie, all on the same channel draws.
Writes ``results.json``, ``results.csv`` and ``drift.png`` to ``--out`` and prints the summary table, a verdict
against the genie and the best classical receiver, and where the plot is. About 10 s on a quiet 2-core machine.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metacomm.experiments.demo import DemoConfig


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "run the adaptive-codec demo (doppler-fast, under a minute on CPU)"


def add_parser(subparsers, name):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0])
    p.add_argument("--out", default="metacomm-demo", help="output directory (default ./metacomm-demo)")
    p.add_argument("--frames", type=int, default=150, help="number of frames (default 150)")
    p.add_argument("--scenario", default="doppler-fast", help="drift scenario (default doppler-fast)")
    p.add_argument("--checkpoint", default=None,
                   help="codec checkpoint (default: the shipped meta-learned tracker for the scenario when there is "
                        "one, which adds the `track` scheme; else the shipped online-drift codec)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:N)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run, precheck=_precheck)
    return p


def _precheck(args) -> None:
    from metacomm.cli.commands.drift import check_scenario_exists
    check_scenario_exists(args.scenario)


def run(args) -> int:
    from metacomm.experiments.demo import DemoConfig

    return execute(DemoConfig(out=args.out, frames=args.frames, scenario=args.scenario, checkpoint=args.checkpoint,
                              device=args.device, progress=not args.quiet))


def execute(cfg: DemoConfig) -> int:
    """Run the demo and print where its plot and results are (shared with ``metacomm run``)."""
    from metacomm.experiments.demo import run_demo

    r = run_demo(cfg)
    print(f"demo: plot -> {os.path.abspath(r['plot'])}")
    print(f"demo: results -> {os.path.abspath(r['results_json'])}, {os.path.abspath(r['results_csv'])}")
    return 0
