"""``metacomm meta-train``: meta-learn a codec initialisation for a scenario (and its joint-training baseline).

    metacomm meta-train --scenario fading-ae --algo maml --out meta.pt   # 3 restarts: the scenario default
    metacomm meta-train --scenario iq-demod --algo fomaml --meta-steps 20000 --out iq.pt

Writes ``--out`` (a meta-training checkpoint: the meta-learned model, the optimiser, Meta-SGD rates, generator
states, step counters, history, the scenario and its settings, and the joint-training baseline trained on the
same channels with the same outer optimiser and number of updates). ``--resume CKPT`` continues an interrupted
run exactly (same seed, CPU: bit-identical to an uninterrupted run).

Model selection: every ``--val-every`` steps the initialisation is adapted on ``--val-tasks`` held-out channels
(fresh draws, disjoint from the training and the test channels) and scored by the mean query cross-entropy.
``--select best`` (default) ships the initialisation with the lowest held-out loss, ``last`` the final
iterate. ``--restarts N`` runs N independent meta-trainings (weights and task stream from seeds ``seed``,
``seed+1``, ...) and ships the one whose selected initialisation has the lowest held-out loss: second-order
MAML on ``fading-ae`` is strongly seed-dependent (after 10000 meta-steps, held-out BLER after one step from 0.02
to 0.17 across seeds), so a few restarts buy a reliable result. The shipped initialisation is the checkpoint's
``init`` entry (``restart``, ``step``, held-out ``val``); ``restarts`` lists every restart's selection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metacomm.cli import _names
from metacomm.cli.commands._executor import add_executor_flags, executor_kwargs
from metacomm.cli.commands._settings import parse_settings

if TYPE_CHECKING:
    from metacomm.experiments.meta_train import MetaTrainConfig


def scenario_table() -> str:
    """``--scenario list``: every registered few-shot scenario with its meta-training defaults and support field
    (imports the scenario registry)."""
    from metacomm.scenarios import scenario_class, scenario_names

    lines = ["few-shot scenarios (meta-training defaults; the field --support-pilots sets):"]
    for n in scenario_names():
        cls = scenario_class(n)
        d = dict(getattr(cls, "meta_defaults", {}) or {})
        d.setdefault("restarts", 1)
        shown = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k} {v}"
                          for k, v in d.items())
        lines.append(f"  {n}: {shown}; support field {getattr(cls, 'support_field', None)}")
    return "\n".join(lines)


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "meta-train a codec initialisation (MAML family) for a scenario"


def add_parser(subparsers, name):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0])
    p.add_argument("--scenario", required=True, action=_names.ListNames, lister=scenario_table, metavar="NAME",
                   help="registered few-shot scenario (--scenario list prints every one with its meta-training "
                        "defaults)")
    p.add_argument("--algo", default="maml",
                   help=f"algorithm: {_names.listing('metacomm.adaptation.algorithms', 'ALGORITHMS')} "
                        "(default maml)")
    p.add_argument("--meta-steps", type=int, default=None,
                   help="outer (meta) updates per restart (default: the scenario's; --scenario list shows them)")
    p.add_argument("--restarts", type=int, default=None,
                   help="independent meta-trainings (seeds seed, seed+1, ...); the one with the lowest held-out "
                        "loss is shipped (default: the scenario's, else 1; --scenario list shows them)")
    p.add_argument("--select", default="best",
                   help="initialisation shipped from a run: best (lowest held-out loss at a validation) or last "
                        "(default best)")
    p.add_argument("--meta-batch", type=int, default=None,
                   help="tasks (channels/devices) per meta-update (default: the scenario's; --scenario list "
                        "shows them)")
    p.add_argument("--inner-steps", type=int, default=None,
                   help="inner SGD steps per task (default: the scenario's, else 1)")
    p.add_argument("--inner-lr", type=float, default=0.1, help="inner SGD learning rate (default 0.1)")
    p.add_argument("--outer-lr", type=float, default=None,
                   help="outer Adam learning rate (default: the scenario's; --scenario list shows them)")
    p.add_argument("--adapt", default=None,
                   help="parameters adapted in the inner loop: all, encoder, decoder, encoder+decoder, head, "
                        "or a glob over parameter names (default: all; anil: head)")
    p.add_argument("--joint-steps", type=int, default=None,
                   help="updates of the joint-training baseline (default: --meta-steps; 0 = none)")
    p.add_argument("--rtn", action="store_true",
                   help="add the RTN receiver layer (scenarios with an `rtn` setting); = --set rtn=true")
    p.add_argument("--drift", default=None, metavar="NAME|FILE.toml",
                   help="drift scenario whose frames the tasks are drawn from (scenarios with a `drift` setting: "
                        "--scenario drift); = --set drift=NAME")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="scenario_set",
                   help="set a scenario config field (repeatable), e.g. --set num_taps=4 --set hidden=32; "
                        "VALUE is parsed as JSON where it can be (numbers, true/false, [lists]), else a string")
    p.add_argument("--ebno-db", type=float, default=None, help="training Eb/N0 in dB (default: scenario's)")
    p.add_argument("--snr-db", type=float, default=None,
                   help="training Es/N0 in dB per channel symbol, for scenarios whose SNR setting is an Es/N0 "
                        "(default: the scenario's)")
    p.add_argument("--support-pilots", type=int, default=None,
                   help="pilots per task support set during meta-training (sets the scenario's support field: "
                        "--scenario list shows each; default: the scenario's); meta-train with the pilot count used at "
                        "run time")
    p.add_argument("--val-every", type=int, default=250, help="validate on held-out channels every N steps")
    p.add_argument("--val-tasks", type=int, default=200,
                   help="held-out channels/devices for validation and selection (default 200)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="write --out every N steps (0: end only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the task stream")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--resume", default=None, help="continue from this meta-train checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file (refused otherwise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output checkpoint file (e.g. meta.pt)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="write TensorBoard scalars of every step into DIR (needs the tensorboard package)")
    add_executor_flags(p, "restart")
    p.set_defaults(run=run)
    return p


def config_from_args(args) -> MetaTrainConfig:
    """The :class:`~metacomm.experiments.meta_train.MetaTrainConfig` of parsed flags."""
    from metacomm.experiments.meta_train import MetaTrainConfig

    sc_cfg = parse_settings(args.scenario_set)
    if args.rtn:
        sc_cfg["rtn"] = True
    if args.drift is not None:
        sc_cfg["drift"] = args.drift
    return MetaTrainConfig(
        scenario=args.scenario, out=args.out, algo=args.algo, meta_steps=args.meta_steps, restarts=args.restarts,
        select=args.select, meta_batch=args.meta_batch, inner_steps=args.inner_steps, inner_lr=args.inner_lr,
        outer_lr=args.outer_lr, adapt=args.adapt, joint_steps=args.joint_steps, scenario_config=sc_cfg,
        ebno_db=args.ebno_db, snr_db=args.snr_db, support_pilots=args.support_pilots, val_every=args.val_every,
        val_tasks=args.val_tasks, checkpoint_every=args.checkpoint_every, seed=args.seed, device=args.device,
        resume=args.resume, overwrite=args.overwrite, progress=not args.quiet, tensorboard=args.tensorboard,
        **executor_kwargs(args))


def run(args) -> int:
    return execute(config_from_args(args))


def execute(cfg: MetaTrainConfig) -> int:
    """Run the meta-training of ``cfg`` and print its summary line (shared with ``metacomm run``)."""
    from metacomm.experiments.meta_train import run_meta_train

    r = run_meta_train(cfg)
    if r.get("rank", 0) != 0:  # torchrun: rank 0 speaks
        return 0
    val, jl = r["init"].get("val") or {}, r["joint_val"]
    print(f"meta-train {r['scenario']} {r['algo']}: {r['num_restarts']} x {r['steps']} meta-steps "
          f"({r['skipped']} skipped in the last), shipped restart {r['init']['restart'] + 1} step "
          f"{r['init']['step']}, held-out {r['metric'].upper()} after {r['inner_steps']} inner step(s): "
          f"{val.get('val_bler', float('nan')):.4f}"
          + (f"; joint baseline ({r['joint_steps']} steps): {jl.get('val_bler', float('nan')):.4f}" if jl else "")
          + f" -> {r['out']}")
    return 0
