"""``metacomm meta-train``: meta-learn a codec initialisation for a scenario (and its joint-training baseline).

    metacomm meta-train --scenario fading-ae --algo maml --restarts 3 --out meta.pt
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

import math
import os

import torch

from metacomm._validation import ConfigError, check_choice, check_finite, check_nonneg_int, check_positive_int
from metacomm.adaptation import ALGORITHMS, MetaConfig, MetaTrainer

FORMAT = "metacomm-meta/1"
SELECT = ("best", "last")


def add_parser(subparsers, name):
    from metacomm.scenarios import SCENARIOS
    p = subparsers.add_parser(name, help="meta-train a codec initialisation (MAML family) for a scenario",
                              description=__doc__.splitlines()[0])
    p.add_argument("--scenario", required=True, help=f"scenario: {', '.join(SCENARIOS)}")
    p.add_argument("--algo", default="maml", help=f"algorithm: {', '.join(ALGORITHMS)} (default maml)")
    p.add_argument("--meta-steps", type=int, default=None,
                   help="outer (meta) updates per restart (default: the scenario's; fading-ae 20000, iq-demod 3000)")
    p.add_argument("--restarts", type=int, default=1,
                   help="independent meta-trainings (seeds seed, seed+1, ...); the one with the lowest held-out "
                        "loss is shipped (default 1)")
    p.add_argument("--select", default="best",
                   help="initialisation shipped from a run: best (lowest held-out loss at a validation) or last "
                        "(default best)")
    p.add_argument("--meta-batch", type=int, default=None,
                   help="tasks (channels/devices) per meta-update (default: the scenario's; fading-ae 20, "
                        "iq-demod 5)")
    p.add_argument("--inner-steps", type=int, default=1, help="inner SGD steps per task (default 1)")
    p.add_argument("--inner-lr", type=float, default=0.1, help="inner SGD learning rate (default 0.1)")
    p.add_argument("--outer-lr", type=float, default=None,
                   help="outer Adam learning rate (default: the scenario's; fading-ae 0.01, iq-demod 1e-3)")
    p.add_argument("--adapt", default=None,
                   help="parameters adapted in the inner loop: all, encoder, decoder, encoder+decoder, head, "
                        "or a glob over parameter names (default: all; anil: head)")
    p.add_argument("--joint-steps", type=int, default=None,
                   help="updates of the joint-training baseline (default: --meta-steps; 0 = none)")
    p.add_argument("--rtn", action="store_true", help="fading-ae: add the RTN receiver layer")
    p.add_argument("--ebno-db", type=float, default=None, help="training Eb/N0 in dB (default: scenario's)")
    p.add_argument("--snr-db", type=float, default=None,
                   help="iq-demod: Es/N0 in dB per 16-QAM symbol (default 20; = Eb/N0 + 6.02 dB)")
    p.add_argument("--support-pilots", type=int, default=None,
                   help="pilots per task support set during meta-training (fading-ae: messages per support/query "
                        "batch, default 16; iq-demod: support pilot symbols per device, default 16, the rest of the "
                        "device's 160 stored pilots (at most 144) being the query set); meta-train with the pilot "
                        "count used at run time")
    p.add_argument("--val-every", type=int, default=250, help="validate on held-out channels every N steps")
    p.add_argument("--val-tasks", type=int, default=200,
                   help="held-out channels/devices for validation and selection (default 200)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="write --out every N steps (0: end only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the task stream")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--resume", default=None, help="continue from this meta-train checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output checkpoint file (e.g. meta.pt)")
    p.set_defaults(run=run)
    return p


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError("--device", f"unknown device {name!r}; allowed: cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "CUDA is not available on this machine; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError("--device", f"unsupported device {name!r}; allowed: cpu, cuda, cuda:N")
    return dev


def build(args):
    """(scenario, meta trainer, joint trainer, settings) from parsed arguments (shared with tests)."""
    from metacomm.scenarios import SCENARIOS, make_scenario
    check_choice("--scenario", args.scenario, SCENARIOS)
    check_choice("--algo", args.algo, ALGORITHMS)
    check_choice("--select", getattr(args, "select", "best"), SELECT)
    restarts = check_positive_int("--restarts", getattr(args, "restarts", 1))
    dev = _device(args.device)
    overrides = {}
    if args.rtn:
        if args.scenario != "fading-ae":
            raise ConfigError("--rtn", f"only for --scenario fading-ae, not {args.scenario}")
        overrides["rtn"] = True
    snr_db = getattr(args, "snr_db", None)
    if args.scenario == "iq-demod":
        if args.ebno_db is not None and snr_db is not None:
            raise ConfigError("--snr-db", "give --snr-db (Es/N0) or --ebno-db (Eb/N0), not both")
        if args.ebno_db is not None:  # 16-QAM: 4 bits per symbol, Es/N0 = Eb/N0 + 10 log10(4) dB
            overrides["snr_db"] = check_finite("--ebno-db", args.ebno_db) + 10.0 * math.log10(4.0)
        elif snr_db is not None:
            overrides["snr_db"] = check_finite("--snr-db", snr_db)
    else:
        if snr_db is not None:
            raise ConfigError("--snr-db", f"only for --scenario iq-demod; {args.scenario} takes --ebno-db")
        if args.ebno_db is not None:
            overrides["ebno_db"] = args.ebno_db
    support = getattr(args, "support_pilots", None)
    if support is not None:
        key = "support_pilots" if args.scenario == "iq-demod" else "messages_per_task"
        overrides[key] = check_positive_int("--support-pilots", support)
    try:
        sc = make_scenario(args.scenario, device=dev, **overrides)
    except ConfigError as e:  # a scenario field set by a flag: name the flag
        flag = {"support_pilots": "--support-pilots", "messages_per_task": "--support-pilots"}.get(e.field)
        if flag is None:
            raise
        raise ConfigError(flag, str(e).split(": ", 1)[1]) from None
    defaults = {"meta_batch": 20, "outer_lr": 0.01, "meta_steps": 3000, **getattr(sc, "meta_defaults", {})}
    for key in ("meta_batch", "outer_lr", "meta_steps"):
        if getattr(args, key, None) is None:
            setattr(args, key, defaults[key])
    meta_steps = check_nonneg_int("--meta-steps", args.meta_steps)
    joint_steps = meta_steps if args.joint_steps is None else check_nonneg_int("--joint-steps", args.joint_steps)
    args.val_tasks = getattr(args, "val_tasks", 200)
    fields = {"--meta-batch": "meta_batch", "--inner-steps": "inner_steps", "--inner-lr": "inner_lr",
              "--outer-lr": "outer_lr", "--val-every": "val_every", "--val-tasks": "val_tasks"}
    kw = {key: getattr(args, key) for key in fields.values()}
    cfg = MetaConfig(algo=args.algo, adapt=args.adapt, **kw)
    try:
        cfg.validate()
    except ConfigError as e:
        flag = next((f for f, k in fields.items() if k == e.field), e.field)
        raise ConfigError(flag, str(e).split(": ", 1)[1]) from None
    meta = make_meta_trainer(sc, cfg, int(args.seed), dev)
    jcfg = MetaConfig(algo="maml", inner_steps=0, inner_lr=0.0, outer_lr=cfg.outer_lr, meta_batch=cfg.meta_batch,
                      val_every=cfg.val_every, val_tasks=cfg.val_tasks)
    joint = MetaTrainer(sc.build_model(args.seed), sc.objective, sc.sample_tasks, jcfg, seed=args.seed + 1,
                        val_sampler=sc.sample_val_tasks, device=dev)
    settings = {"scenario": args.scenario, "scenario_config": sc.config_dict(), "algo": args.algo,
                "meta_steps": meta_steps, "joint_steps": joint_steps, "seed": int(args.seed),
                "num_restarts": restarts, "select": getattr(args, "select", "best"),
                "meta_config": {k: v for k, v in vars(cfg).items() if k != "adapt"}, "adapt": meta.adapt}
    return sc, meta, joint, settings


def make_meta_trainer(sc, cfg: MetaConfig, seed: int, dev) -> MetaTrainer:
    """The meta trainer of one restart: weights and task stream from ``seed``."""
    return MetaTrainer(sc.build_model(seed), sc.objective, sc.sample_tasks, cfg, seed=seed,
                       val_sampler=sc.sample_val_tasks, device=dev)


def _selection(trainer: MetaTrainer, select: str, restart: int, *, score: bool = True) -> dict:
    """The initialisation a restart offers: its validated best or its last iterate, with the held-out score it
    was selected by (``score=False``: no new validation; ``val`` is None for an unvalidated last iterate)."""
    if select == "best" and trainer.best is not None:
        snap = dict(trainer.best)
    else:
        val = trainer.validate() if score and trainer.val_sampler is not None else None
        snap = {**trainer.snapshot(), "val": val}
    snap["restart"] = restart
    snap["seed"] = trainer.seed
    return snap


def _val_loss(sel: dict | None) -> float:
    v = (sel or {}).get("val") or {}
    x = v.get("val_loss")
    return float("inf") if x is None or not math.isfinite(float(x)) else float(x)


def run(args) -> int:
    sc, meta, joint, settings = build(args)
    out = args.out
    if os.path.isdir(out):
        raise ConfigError("--out", f"{out} is a directory; give a file name such as meta.pt")
    if os.path.dirname(out) and not os.path.isdir(os.path.dirname(out)):
        raise ConfigError("--out", f"directory {os.path.dirname(out)} does not exist")
    restart, results = 0, []
    if args.resume:
        if not os.path.exists(args.resume):
            raise ConfigError("--resume", f"no checkpoint at {args.resume!r}")
        ck = torch.load(args.resume, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict) or ck.get("kind") != FORMAT:
            raise ConfigError("--resume", f"{args.resume} is not a metacomm meta-train checkpoint")
        for key in ("scenario", "scenario_config", "algo", "seed", "adapt"):
            if ck.get(key) != settings[key]:
                raise ConfigError("--resume", f"checkpoint has {key}={ck.get(key)!r}, this run {settings[key]!r}")
        restart = int(ck.get("restart", 0))
        results = list(ck.get("restarts", []))
        if restart:
            meta = make_meta_trainer(sc, meta.config, int(args.seed) + restart, meta.device)
        meta.load_state_dict(ck)
        joint.load_state_dict(ck["joint"])

    def chosen():
        done = [r for r in results if r is not None]
        return min(done, key=_val_loss) if done else None

    joint_init = None  # the joint baseline's selection, once it has finished training

    def extra():
        # Periodic checkpoints record the current restart's state without validating again.
        return {"kind": FORMAT, **settings, "joint": joint.state_dict(), "restart": restart,
                "restarts": results, "init": chosen() or _selection(meta, settings["select"], restart, score=False),
                "joint_init": joint_init}

    every = check_nonneg_int("--checkpoint-every", args.checkpoint_every)
    while True:
        meta.train(settings["meta_steps"], progress=not args.quiet, checkpoint_path=out, checkpoint_every=every,
                   extra_state=extra)
        if len(results) <= restart:
            results.append(_selection(meta, settings["select"], restart))
            sel = results[restart]
            val = sel.get("val") or {}
            if settings["num_restarts"] > 1:
                print(f"restart {restart + 1}/{settings['num_restarts']} (seed {sel['seed']}): selected step "
                      f"{sel['step']}, held-out loss {_val_loss(sel):.4f}"
                      + (f", {getattr(sc, 'metric', 'bler').upper()} {val['val_bler']:.4f}"
                         if "val_bler" in val else ""))
        if restart + 1 >= settings["num_restarts"]:
            break
        restart += 1
        meta = make_meta_trainer(sc, meta.config, int(args.seed) + restart, meta.device)
        meta.save(out, extra())
    if settings["joint_steps"]:
        # Joint-baseline checkpoints are written through the meta trainer (one file holds both).
        while joint.step_count < settings["joint_steps"]:
            joint.train(min(settings["joint_steps"], joint.step_count + (every or settings["joint_steps"])),
                        progress=not args.quiet)
            meta.save(out, extra())
        joint_init = _selection(joint, settings["select"], 0)
    meta.save(out, extra())
    init = chosen()
    last = init.get("val") or {}
    jl = joint.validate() if settings["joint_steps"] else {}
    metric = getattr(sc, "metric", "bler").upper()
    print(f"meta-train {args.scenario} {args.algo}: {settings['num_restarts']} x {meta.step_count} meta-steps "
          f"({len(meta.skipped)} skipped in the last), shipped restart {init['restart'] + 1} step {init['step']}, "
          f"held-out {metric} after {meta.config.inner_steps} inner step(s): "
          f"{last.get('val_bler', float('nan')):.4f}"
          + (f"; joint baseline ({joint.step_count} steps): {jl.get('val_bler', float('nan')):.4f}" if jl else "")
          + f" -> {out}")
    return 0
