"""``metacomm drift``: run a drift scenario frame by frame with every scheme on the same channel draws.

    metacomm drift --scenario doppler-fast --checkpoint meta.pt --frames 200 --pilots 16 --steps 1 --out DIR

The schemes (``--schemes``, a comma list; the list and what each one knows are in ``--help``, read from the scheme
registry :mod:`metacomm.drift.registry`) are adaptive (learned or adapted receivers), classical (model-based
estimators + ML detection) or reference (the genie, which knows the channel, and the genie at Eb/N0 - 1 dB as a
yardstick); every summary entry says its kind. A scheme's settings go in brackets: ``--schemes
meta,retrain[every=5,steps=50],wide-ls[pre=3]``. Writes ``DIR/results.json``, ``DIR/results.csv`` and
``DIR/drift.png`` (BLER/BER over frames with the drift parameter on a second axis) and prints a summary table.

Many seeds: ``--seeds 0:7:1`` (the seeds 0..7; a range START:STOP:STEP includes STOP, as every range of the
command line does) or ``0,1,2`` runs one independent drift run per seed, each a task of ``--executor`` (local or
ray), writes ``DIR/seed-<s>/`` exactly as ``--seed s --out DIR/seed-<s>`` would, and pools them into
``DIR/results.json`` (pooled BLER with its Clopper-Pearson interval, the per-seed BLERs and their spread) and
``DIR/seeds.png``; ``--resume`` skips the finished seeds. The output states the seeds that ran.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from metacomm.cli import _names
from metacomm.cli.commands._executor import add_executor_flags, executor_kwargs

if TYPE_CHECKING:
    from metacomm.experiments.drift import DriftConfig

__all__ = ["add_parser", "run", "execute", "scheme_table", "describe_seeds"]


def _first_sentence(doc: str | None, limit: int = 100) -> str:
    """The first sentence of a docstring as plain text, at most ``limit`` characters."""
    from metacomm.cli._text import plain

    para = plain(" ".join((doc or "").strip().split("\n\n")[0].split()))
    text = re.split(r"(?<=[^.][.;])\s+(?=[A-Z])", para, maxsplit=1)[0].rstrip(".;:")
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def scheme_table() -> str:
    """``--schemes list``: every registered scheme with its kind, the links it runs on and what it needs to be a
    default (imports the scheme registry)."""
    from metacomm.drift.registry import default_schemes, scheme_entry, scheme_names

    lines = ["drift schemes: name [kind, group, links] -- what it is (default when: what it needs)"]
    for n in scheme_names():
        e = scheme_entry(n)
        tags = [getattr(e.cls, "kind", "adaptive")] + (["pack"] if e.group == "pack" else [])
        links = tuple(getattr(e.cls, "links", ("block",)) or ())
        if links != ("block",):
            tags.append("links " + "/".join(links))
        needs = f" (default when: {', '.join(e.needs)})" if e.default and e.needs else ""
        doc = _first_sentence(e.cls.__doc__)
        lines.append(f"  {n} [{', '.join(tags)}]" + (f" -- {doc}" if doc else "") + needs)
    lines.append("default: " + ",".join(default_schemes()) + ", plus each scheme marked 'default when' whose need "
                 "the scenario and codec meet")
    return "\n".join(lines)


def _shipped() -> str:
    """The shipped trackers as ``scenario with P pilots`` phrases, read from the checkpoints folder."""
    return "; ".join(f"{sc} with {' or '.join(str(p) for p in ps)} pilots"
                     for sc, ps in _names.shipped_trackers().items())


def describe_seeds(seeds) -> str:
    """``[0, 1, 2, 3, 7]`` -> ``"5 seeds: 0..3, 7"`` (runs of consecutive seeds as A..B)."""
    seeds = list(seeds)
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if j == i else f"{seeds[i]}..{seeds[j]}" if j > i + 1
                     else f"{seeds[i]}, {seeds[j]}")
        i = j + 1
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}: {', '.join(parts)}"


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "frame-by-frame drift run: adaptive codec vs baselines"


def add_parser(subparsers, name):
    p = subparsers.add_parser(name, help=COMMAND_HELP,
                              description=__doc__.splitlines()[0],
                              epilog="many seeds: metacomm drift --scenario doppler-fast --frames 50 --seeds 0:3:1 --out "
                                     "runs/ds  (seeds 0, 1, 2, 3, one task each; runs/ds/seed-<s>/ per seed, pooled "
                                     "runs/ds/results.json; add --executor ray to run them as Ray tasks)")
    p.add_argument("--scenario", required=True,
                   help=f"built-in drift scenario name ({', '.join(_names.drift_scenarios())}) or a .toml file "
                        "(metacomm scenario show NAME prints a built-in's file, metacomm scenario new NAME starts "
                        "one)")
    p.add_argument("--checkpoint", default=None,
                   help="codec checkpoint: an online-drift codec or a `meta-train --scenario drift` tracker (default: "
                        f"the shipped tracker for --scenario and --pilots when there is one -- {_shipped()} -- which "
                        "adds the `track` scheme (with a PA or phase-noise correction also `track-linear`, the same "
                        f"run's tracker without the correction); else the shipped online-drift codec)")
    p.add_argument("--frames", type=int, default=200, help="number of frames (default 200)")
    p.add_argument("--pilots", type=int, default=16, help="pilot messages per link and frame (default 16)")
    p.add_argument("--steps", type=int, default=1, help="adaptation SGD steps per frame (default 1)")
    p.add_argument("--lr", type=float, default=None, help="adaptation SGD rate (default: the checkpoint's, 0.1)")
    p.add_argument("--schemes", default=None, action=_names.ListNames, lister=scheme_table, metavar="LIST",
                   help="comma list of drift schemes, each with optional settings in brackets "
                        "(meta,retrain[every=5,steps=50],wide-ls[pre=3]); --schemes list prints every registered "
                        "scheme with its kind (adaptive, classical, reference) and the default list. Default: the "
                        "registry's defaults, plus each scheme whose need the scenario and codec meet (tracker: the "
                        "codec has a meta-learned tracker, e.g. the shipped one; tx_pa / phase_noise: a segment "
                        "has a transmitter PA / receiver phase noise; linear_tracker: the tracker was trained with "
                        "a correction). dd-mwnet needs a meta-learned weighting for --scenario and --pilots, "
                        "shipped for doppler-slow with 1 or 2 pilots (python -m metacomm.experiments.dd_mwnet "
                        "trains one)")
    p.add_argument("--links", type=int, default=8, help="independent links adapted per call (default 8)")
    p.add_argument("--payload", type=int, default=64, help="data blocks per link and frame (default 64)")
    p.add_argument("--retrain-every", type=int, default=10, help="retrain scheme: period in frames (default 10)")
    p.add_argument("--retrain-steps", type=int, default=100, help="retrain scheme: Adam steps (default 100)")
    p.add_argument("--bler-target", type=float, default=0.1, help="BLER target for the summary (default 0.1)")
    p.add_argument("--seed", type=int, default=None, help="seed of the channel draws (default: the scenario's)")
    p.add_argument("--seeds", default=None, metavar="SPEC",
                   help="run one independent drift run per seed instead of one run: a comma list (0,1,2), a range "
                        "START:STOP:STEP with STOP included (0:7:1 = the seeds 0..7, 0:8:2 = 0, 2, 4, 6, 8; a "
                        "two-number A:B, which meant A..B-1 before, is refused), or both (0:3:1,10); non-negative, "
                        "no repeats; not with --seed. "
                        "Writes OUT/seed-<s>/ (what --seed s --out OUT/seed-<s> writes) and the pooled "
                        "OUT/results.json and OUT/seeds.png; with --resume the finished seeds are skipped")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:N)")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="write the run state to OUT/run-state.pt every N frames (0: never), for --resume "
                        "(with --seeds: OUT/seed-<s>/run-state.pt, local executor only)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run saved in --out (same settings); the result equals an "
                        "uninterrupted run's (with --seeds: finished seeds are kept, a seed with a run state "
                        "continues from it, the others run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    p.add_argument("--out", required=True, help="output directory")
    add_executor_flags(p, "seed, with --seeds")
    p.set_defaults(run=run, precheck=_precheck)
    return p


def check_scenario_exists(scenario) -> None:
    """Refuse, before torch is imported, a ``--scenario`` that is neither a built-in nor an existing file, with
    the loader's own message (:func:`metacomm.scenarios.drift_scenarios.load_scenario`; ``tests/cli`` checks the
    two agree), so that a mistyped name answers at once instead of after the imports."""
    import os

    from metacomm._validation import ConfigError

    s = str(scenario)
    builtins = _names.drift_scenarios()
    if "/" not in s and "\\" not in s and not s.endswith(".toml") and s in builtins:
        return
    if os.path.isfile(s):
        return
    if not s.endswith(".toml") and "/" not in s:
        raise ConfigError("scenario", f"unknown scenario {s!r}; allowed: {', '.join(builtins)} or the path of a "
                          ".toml file")
    raise ConfigError(s, "scenario file not found")


def _precheck(args) -> None:
    check_scenario_exists(args.scenario)


def run(args) -> int:
    from metacomm.experiments.drift import DriftConfig

    return execute(DriftConfig(scenario=args.scenario, out=args.out, checkpoint=args.checkpoint, frames=args.frames,
                      pilots=args.pilots, steps=args.steps, lr=args.lr, schemes=args.schemes, links=args.links,
                      payload=args.payload, retrain_every=args.retrain_every, retrain_steps=args.retrain_steps,
                      bler_target=args.bler_target, seed=args.seed, device=args.device,
                      save_every=args.save_every, resume=args.resume, progress=not args.quiet, seeds=args.seeds,
                      **executor_kwargs(args)))


def execute(cfg: DriftConfig) -> int:
    """Run the drift run of ``cfg`` (one seed or many) and print its table (shared with ``metacomm run``)."""
    from metacomm._log import info
    from metacomm.experiments.drift import run_drift_experiment

    out = run_drift_experiment(cfg, log=info if cfg.progress else (lambda s: None))
    if cfg.progress:
        print(out.table())
    if out.pooled is not None:
        print(f"drift: {describe_seeds(cfg.seeds)} pooled -> {cfg.out}/results.json, plot -> {cfg.out}/seeds.png; "
              f"each seed in {cfg.out}/seed-<s>/")
    else:
        print(f"drift: results -> {out.paths['results']}, {out.paths['csv']}; plot -> {out.paths['plot']}")
    return 0
