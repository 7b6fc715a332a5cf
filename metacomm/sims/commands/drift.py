"""``metacomm drift``: run a drift scenario frame by frame with every scheme on the same channel draws.

    metacomm drift --scenario doppler-fast --checkpoint meta.pt --frames 200 --pilots 16 --steps 1 --out DIR

Schemes (``--schemes``, comma list): static (adapted on frame 0, then frozen), retrain (fresh decoder trained
from scratch on the current pilots every ``--retrain-every`` frames), meta (adapt from the meta-init every
frame), warm (warm-start adaptation), online-meta (Reptile-refined per-link init), on-detection,
reset-on-change (adaptive); pilot-ls (LS taps + ML over the codebook), pilot-lmmse (+ the true tap prior and
N0), kalman (a Kalman tracker over frames that knows rho, the prior and N0), wide-ls (LS with pre-cursor taps),
wl-ls (widely-linear LS for IQ imbalance), pa-ls and pa-kalman (pilot-ls / kalman through the frame's exact
transmitter PA: they know the PA model and its back-off), pn-ls (LS of per-position taps, for receiver phase
noise) and pn-kalman (kalman over per-position taps: knows rho, prior, N0 and the phase-noise variance)
(classical); track, track-linear (a `meta-train --scenario drift` tracker; with a PA or phase-noise correction,
and the linear fixed-tap tracker trained alongside it); genie (ML with the true channel and N0; plus the genie at
Eb/N0 - 1 dB as a yardstick). Every summary entry says its kind (adaptive, classical, reference). Writes ``DIR/results.json``, ``DIR/results.csv`` and
``DIR/drift.png`` (BLER/BER over frames with the drift parameter on a second axis) and prints a summary table.

Many seeds: ``--seeds 0:8`` (or ``0,1,2``) runs one independent drift run per seed, each a task of
``--executor`` (local or ray), writes ``DIR/seed-<s>/`` exactly as ``--seed s --out DIR/seed-<s>`` would, and
pools them into ``DIR/results.json`` (pooled BLER with its Clopper-Pearson interval, the per-seed BLERs and their
spread) and ``DIR/seeds.png``; ``--resume`` skips the finished seeds.
"""

from __future__ import annotations

import os

from metacomm.experiments.drift import DEFAULT_CHECKPOINT, DriftConfig, run_drift_experiment
from metacomm.sims.commands._executor import add_executor_flags, executor_kwargs


def _pack_schemes() -> list[str]:
    """Schemes registered by the scenario packs (after the built-in table)."""
    from metacomm.sims.drift_run import SCHEMES
    from metacomm.sims.drift_schemes import scheme_names
    return [s for s in scheme_names() if s not in SCHEMES]


def add_parser(subparsers, name):
    from metacomm.sims.drift_run import DEFAULT_SCHEMES, SCHEMES
    p = subparsers.add_parser(name, help="frame-by-frame drift run: adaptive codec vs baselines",
                              description=__doc__.splitlines()[0],
                              epilog="many seeds: metacomm drift --scenario doppler-fast --frames 50 --seeds 0:4 --out "
                                     "runs/ds  (seeds 0..3, one task each; runs/ds/seed-<s>/ per seed, pooled "
                                     "runs/ds/results.json; add --executor ray to run them as Ray tasks)")
    p.add_argument("--scenario", required=True, help="built-in drift scenario name (doppler-slow, doppler-fast, "
                   "snr-drift, regime-switch, iq-drift, pa-drift) or a .toml file")
    p.add_argument("--checkpoint", default=None,
                   help="codec checkpoint: an online-drift codec or a `meta-train --scenario drift` tracker (default: "
                        "the shipped tracker for --scenario and --pilots when there is one -- doppler-slow with 1, 2 "
                        f"or 4 pilots; doppler-fast, regime-switch, snr-drift, iq-drift, pa-drift, "
                        "phase-noise-drift with 16 -- which adds the `track` scheme (pa-drift, phase-noise-drift: "
                        "also `track-linear`, the same run's tracker without the correction); else "
                        f"{os.path.basename(DEFAULT_CHECKPOINT)})")
    p.add_argument("--frames", type=int, default=200, help="number of frames (default 200)")
    p.add_argument("--pilots", type=int, default=16, help="pilot messages per link and frame (default 16)")
    p.add_argument("--steps", type=int, default=1, help="adaptation SGD steps per frame (default 1)")
    p.add_argument("--lr", type=float, default=None, help="adaptation SGD rate (default: the checkpoint's, 0.1)")
    p.add_argument("--schemes", default=None,
                   help=f"comma list of {', '.join(SCHEMES)}; the packs' {', '.join(_pack_schemes())} (default: "
                        f"{','.join(DEFAULT_SCHEMES)}, plus track when the shipped tracker runs; with a transmitter PA "
                        "also pa-ls, pa-kalman, with receiver phase noise pn-ls, pn-kalman, and then with the shipped tracker "
                        "track-linear; dd-mwnet needs a "
                        "meta-learned weighting for --scenario and --pilots, shipped for doppler-slow with 1 or 2 "
                        "pilots, python -m metacomm.experiments.dd_mwnet trains one)")
    p.add_argument("--links", type=int, default=8, help="independent links adapted per call (default 8)")
    p.add_argument("--payload", type=int, default=64, help="data blocks per link and frame (default 64)")
    p.add_argument("--retrain-every", type=int, default=10, help="retrain scheme: period in frames (default 10)")
    p.add_argument("--retrain-steps", type=int, default=100, help="retrain scheme: Adam steps (default 100)")
    p.add_argument("--bler-target", type=float, default=0.1, help="BLER target for the summary (default 0.1)")
    p.add_argument("--seed", type=int, default=None, help="seed of the channel draws (default: the scenario's)")
    p.add_argument("--seeds", default=None, metavar="SPEC",
                   help="run one independent drift run per seed instead of one run: a comma list (0,1,2), a range "
                        "A:B meaning A..B-1 (0:8), or both (0:4,10); non-negative, no repeats; not with --seed. "
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
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    return execute(DriftConfig(scenario=args.scenario, out=args.out, checkpoint=args.checkpoint, frames=args.frames,
                      pilots=args.pilots, steps=args.steps, lr=args.lr, schemes=args.schemes, links=args.links,
                      payload=args.payload, retrain_every=args.retrain_every, retrain_steps=args.retrain_steps,
                      bler_target=args.bler_target, seed=args.seed, device=args.device,
                      save_every=args.save_every, resume=args.resume, progress=not args.quiet, seeds=args.seeds,
                      **executor_kwargs(args)))


def execute(cfg: DriftConfig) -> int:
    """Run the drift run of ``cfg`` and print its table (shared with ``metacomm run``)."""
    if cfg.seeds is not None:
        from metacomm.experiments.drift_seeds import run_drift_seeds
        from metacomm.sims.drift_pooled import pooled_table
        doc = run_drift_seeds(cfg, log=print if cfg.progress else (lambda s: None))
        if cfg.progress:
            print(pooled_table(doc))
        print(f"drift: {len(cfg.seeds)} seeds pooled -> {cfg.out}/results.json, plot -> {cfg.out}/seeds.png; "
              f"each seed in {cfg.out}/seed-<s>/")
        return 0
    res, pj, pc, png = run_drift_experiment(cfg)
    if cfg.progress:
        print(res.summary_table())
    print(f"drift: results -> {pj}, {pc}; plot -> {png}")
    return 0
