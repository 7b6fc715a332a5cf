"""``metacomm meta-train``: meta-learn a codec initialisation for a scenario (and its joint-training baseline).

    metacomm meta-train --scenario fading-ae --algo maml --meta-steps 3000 --out meta.pt
    metacomm meta-train --scenario iq-demod --algo fomaml --meta-steps 20000 --out iq.pt

Writes ``--out`` (a meta-training checkpoint: the meta-learned model, the optimiser, Meta-SGD rates, generator
states, step counters, history, the scenario and its settings, and the joint-training baseline trained on the
same channels with the same outer optimiser and number of updates). ``--resume CKPT`` continues an interrupted
run exactly (same seed, CPU: bit-identical to an uninterrupted run).
"""

from __future__ import annotations

import math
import os

import torch

from metacomm._validation import ConfigError, check_choice, check_finite, check_nonneg_int, check_positive_int
from metacomm.adaptation import ALGORITHMS, MetaConfig, MetaTrainer

FORMAT = "metacomm-meta/1"


def add_parser(subparsers, name):
    from metacomm.scenarios import SCENARIOS
    p = subparsers.add_parser(name, help="meta-train a codec initialisation (MAML family) for a scenario",
                              description=__doc__.splitlines()[0])
    p.add_argument("--scenario", required=True, help=f"scenario: {', '.join(SCENARIOS)}")
    p.add_argument("--algo", default="maml", help=f"algorithm: {', '.join(ALGORITHMS)} (default maml)")
    p.add_argument("--meta-steps", type=int, default=3000, help="outer (meta) updates (default 3000)")
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
                        "batch, default 16; iq-demod: support pilot symbols per device, default 16); meta-train "
                        "with the pilot count used at run time")
    p.add_argument("--val-every", type=int, default=250, help="validate on held-out channels every N steps")
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
    meta_steps = check_nonneg_int("--meta-steps", args.meta_steps)
    joint_steps = meta_steps if args.joint_steps is None else check_nonneg_int("--joint-steps", args.joint_steps)
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
    sc = make_scenario(args.scenario, device=dev, **overrides)
    defaults = {"meta_batch": 20, "outer_lr": 0.01, **getattr(sc, "meta_defaults", {})}
    for key in ("meta_batch", "outer_lr"):
        if getattr(args, key, None) is None:
            setattr(args, key, defaults[key])
    fields = {"--meta-batch": "meta_batch", "--inner-steps": "inner_steps", "--inner-lr": "inner_lr",
              "--outer-lr": "outer_lr", "--val-every": "val_every"}
    kw = {key: getattr(args, key) for key in fields.values()}
    cfg = MetaConfig(algo=args.algo, adapt=args.adapt, **kw)
    try:
        cfg.validate()
    except ConfigError as e:
        flag = next((f for f, k in fields.items() if k == e.field), e.field)
        raise ConfigError(flag, str(e).split(": ", 1)[1]) from None
    meta = MetaTrainer(sc.build_model(args.seed), sc.objective, sc.sample_tasks, cfg, seed=args.seed,
                       val_sampler=sc.sample_val_tasks, device=dev)
    jcfg = MetaConfig(algo="maml", inner_steps=0, inner_lr=0.0, outer_lr=cfg.outer_lr, meta_batch=cfg.meta_batch,
                      val_every=cfg.val_every)
    joint = MetaTrainer(sc.build_model(args.seed), sc.objective, sc.sample_tasks, jcfg, seed=args.seed + 1,
                        val_sampler=sc.sample_val_tasks, device=dev)
    settings = {"scenario": args.scenario, "scenario_config": sc.config_dict(), "algo": args.algo,
                "meta_steps": meta_steps, "joint_steps": joint_steps, "seed": int(args.seed),
                "meta_config": {k: v for k, v in vars(cfg).items() if k != "adapt"}, "adapt": meta.adapt}
    return sc, meta, joint, settings


def run(args) -> int:
    sc, meta, joint, settings = build(args)
    out = args.out
    if os.path.isdir(out):
        raise ConfigError("--out", f"{out} is a directory; give a file name such as meta.pt")
    if os.path.dirname(out) and not os.path.isdir(os.path.dirname(out)):
        raise ConfigError("--out", f"directory {os.path.dirname(out)} does not exist")
    if args.resume:
        if not os.path.exists(args.resume):
            raise ConfigError("--resume", f"no checkpoint at {args.resume!r}")
        ck = torch.load(args.resume, map_location="cpu", weights_only=False)
        if not isinstance(ck, dict) or ck.get("kind") != FORMAT:
            raise ConfigError("--resume", f"{args.resume} is not a metacomm meta-train checkpoint")
        for key in ("scenario", "scenario_config", "algo", "seed", "adapt"):
            if ck.get(key) != settings[key]:
                raise ConfigError("--resume", f"checkpoint has {key}={ck.get(key)!r}, this run {settings[key]!r}")
        meta.load_state_dict(ck)
        joint.load_state_dict(ck["joint"])

    def extra():
        return {"kind": FORMAT, **settings, "joint": joint.state_dict()}

    every = check_nonneg_int("--checkpoint-every", args.checkpoint_every)
    meta.train(settings["meta_steps"], progress=not args.quiet, checkpoint_path=out, checkpoint_every=every,
               extra_state=extra)
    if settings["joint_steps"]:
        def extra_j():
            return {"kind": FORMAT, **settings, "joint": joint.state_dict()}
        # Joint-baseline checkpoints are written through the meta trainer (one file holds both).
        while joint.step_count < settings["joint_steps"]:
            joint.train(min(settings["joint_steps"], joint.step_count + (every or settings["joint_steps"])),
                        progress=not args.quiet)
            meta.save(out, extra_j())
    meta.save(out, extra())
    last = meta.validate() if meta.val_sampler is not None else {}
    jl = joint.validate() if settings["joint_steps"] else {}
    metric = getattr(sc, "metric", "bler").upper()
    print(f"meta-train {args.scenario} {args.algo}: {meta.step_count} meta-steps "
          f"({len(meta.skipped)} skipped), held-out {metric} after {meta.config.inner_steps} inner step(s): "
          f"{last.get('val_bler', float('nan')):.4f}"
          + (f"; joint baseline ({joint.step_count} steps): {jl.get('val_bler', float('nan')):.4f}" if jl else "")
          + f" -> {out}")
    return 0
