"""``metacomm fewshot``: few-shot adaptation of a meta-trained codec on new channels, with baselines.

    metacomm fewshot --checkpoint meta.pt --pilots 1,4,16,64 --steps 0,1,5,100 --out DIR

For every scheme -- ``meta`` (the meta-learned initialisation the checkpoint ships: its ``init`` entry, i.e. the
restart and step selected on held-out channels by ``meta-train --select/--restarts``), ``joint`` (the joint-training
baseline of the same checkpoint, selected the same way), ``random`` (a fresh random initialisation) -- and every number of pilots per step ``P``, each
test channel's copy is adapted (step 1: SGD at the meta-training inner rate, or Meta-SGD's learned rates;
later steps: Adam ``--adam-lr``; the parameters adapted are those the checkpoint was meta-trained to adapt,
e.g. only the head for ANIL) on ``P`` fresh pilot messages per step, and the block error rate (= message
error rate) is measured after each number of steps. References: ``genie`` (a codec trained from scratch on
each test channel, ``--genie-steps``) and ``pilot-ls-ml`` (uncoded BPSK, LS taps from ``P`` pilot blocks, ML
detection). Writes ``DIR/results.json`` (BLER with Clopper-Pearson 95 % intervals pooled over the test
channels) and ``DIR/bler_vs_steps.png``, ``DIR/bler_vs_pilots.png``.

The scenario of the checkpoint may change this protocol through attributes: ``metric`` (``"ser"`` for
``iq-demod``: results carry ``ser``/``ser_ci`` and plots are ``ser_vs_*.png``), ``classical_schemes``
(``iq-demod``: ``pilot-mmse-ml``, LMMSE channel estimate from the ``P`` pilots + ML detection, instead of
``pilot-ls-ml``), ``pilots_meaning`` (``iq-demod``: ``P`` pilots per test device, one set reused by every
step, as Park et al. 2021) and ``common_random_numbers`` (all schemes see the same pilots and test symbols).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metacomm.cli import _names
from metacomm.cli._text import RANGE_HELP
from metacomm.cli.commands._executor import add_executor_flags, executor_kwargs

if TYPE_CHECKING:
    from metacomm.experiments.fewshot import FewShotConfig


def _schemes() -> str:
    """``--schemes list``: every scheme some registered scenario offers (imports the scenarios)."""
    from metacomm.experiments.fewshot import all_schemes
    return "fewshot schemes (the checkpoint's scenario decides which are available):\n" + "\n".join(
        f"  {s}" for s in all_schemes())


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "few-shot adaptation of a meta-trained codec on new channels"


def add_parser(subparsers, name):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="meta-train checkpoint (metacomm meta-train --out)")
    p.add_argument("--pilots", default="1,4,16,64",
                   help=f"pilot messages per adaptation step (>= 1): a comma list, ranges START:STOP:STEP among its "
                        f"items ({RANGE_HELP})")
    p.add_argument("--steps", default="0,1,5,100",
                   help="adaptation steps at which BLER is measured (>= 0): a comma list, ranges START:STOP:STEP "
                        "among its items (0:10:5 = 0, 5, 10)")
    p.add_argument("--schemes", default=None, action=_names.ListNames, lister=_schemes, metavar="LIST",
                   help="comma list of schemes (--schemes list prints every name a registered scenario offers: "
                        "meta, joint, random, genie and the scenarios' classical references) (default: all the checkpoint's scenario offers: "
                        "the learned ones and its classical references; joint is left out, and the output and "
                        "results.json say so, when the checkpoint has no joint baseline: meta-train --joint-steps 0)")
    p.add_argument("--test-channels", type=int, default=None,
                   help="number of new test tasks: channels / devices (default: the scenario's)")
    p.add_argument("--test-blocks", type=int, default=10000, help="test messages per channel and point")
    p.add_argument("--adam-lr", type=float, default=1e-3, help="Adam rate of steps >= 2 (default 1e-3)")
    p.add_argument("--genie-steps", type=int, default=2000, help="training steps of the genie (per channel)")
    p.add_argument("--seed", type=int, default=0, help="seed of pilots, test data and the random init")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--allow-partial", action="store_true",
                   help="evaluate a periodic checkpoint of an unfinished meta-train run (refused otherwise; the "
                        "output and results.json then say so)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted evaluation in --out: finished (scheme, pilot count) points (written "
                        "to results.json one by one as they finish) are kept, the rest computed; the result equals "
                        "an uninterrupted run's. Without a results.json (killed before any point finished) the "
                        "evaluation starts; the results of another evaluation are refused")
    p.add_argument("--out", required=True, help="output directory")
    add_executor_flags(p, "(scheme, pilot count) point")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from metacomm.experiments.fewshot import FewShotConfig

    return execute(FewShotConfig(checkpoint=args.checkpoint, out=args.out, pilots=args.pilots, steps=args.steps,
                        schemes=args.schemes, test_channels=args.test_channels, test_blocks=args.test_blocks,
                        adam_lr=args.adam_lr, genie_steps=args.genie_steps, seed=args.seed, device=args.device,
                        allow_partial=args.allow_partial, resume=args.resume,
                        **executor_kwargs(args)))


def execute(cfg: FewShotConfig) -> int:
    """Run the evaluation of ``cfg`` and print where the results are (shared with ``metacomm run``)."""
    from metacomm.experiments.fewshot import run_fewshot

    run_fewshot(cfg)
    print(f"fewshot: results -> {cfg.out}/results.json")
    return 0
