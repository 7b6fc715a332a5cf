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

import json
import os

import torch

from metacomm._validation import (
    ConfigError,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)
from metacomm.adaptation.functional import SGD, Adam
from metacomm.adaptation.params import params_of

SCHEMES = ("meta", "joint", "random", "genie", "pilot-ls-ml")
LEARNED = ("meta", "joint", "random", "genie")
#: every scheme name some scenario offers (the scenario of the checkpoint decides which are available).
ALL_SCHEMES = (*SCHEMES, "pilot-mmse-ml")


def add_parser(subparsers, name):
    p = subparsers.add_parser(name, help="few-shot adaptation of a meta-trained codec on new channels",
                              description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="meta-train checkpoint (metacomm meta-train --out)")
    p.add_argument("--pilots", default="1,4,16,64", help="pilot messages per adaptation step, comma list (>= 1)")
    p.add_argument("--steps", default="0,1,5,100", help="adaptation steps at which BLER is measured (>= 0)")
    p.add_argument("--schemes", default=None,
                   help=f"comma list of {', '.join(ALL_SCHEMES)} (default: all the scenario offers; "
                        "pilot-mmse-ml for iq-demod, pilot-ls-ml for fading-ae)")
    p.add_argument("--test-channels", type=int, default=None,
                   help="number of new test channels / devices (default: the scenario's, 20 / 100)")
    p.add_argument("--test-blocks", type=int, default=10000, help="test messages per channel and point")
    p.add_argument("--adam-lr", type=float, default=1e-3, help="Adam rate of steps >= 2 (default 1e-3)")
    p.add_argument("--genie-steps", type=int, default=2000, help="training steps of the genie (per channel)")
    p.add_argument("--seed", type=int, default=0, help="seed of pilots, test data and the random init")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(run=run)
    return p


def _int_list(flag: str, text: str, *, minimum: int) -> list[int]:
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(flag, f"expected a comma-separated list of integers, got {text!r}") from None
    if not vals:
        raise ConfigError(flag, "give at least one value")
    for v in vals:
        if v < minimum:
            raise ConfigError(flag, f"values must be >= {minimum}, got {v}")
    return sorted(set(vals))


def load_meta_checkpoint(path: str, device) -> tuple:
    """``(scenario, meta model, meta inner rate, joint model or None, checkpoint dict)``."""
    from metacomm.scenarios import make_scenario
    from metacomm.sims.commands.meta_train import FORMAT
    if not os.path.exists(path):
        raise ConfigError("--checkpoint", f"{path}: no such file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise ConfigError("--checkpoint", f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("kind") != FORMAT:
        what = "a codec checkpoint (save_codec)" if isinstance(ck, dict) and "codec_class" in ck else \
            "not a meta-train checkpoint"
        raise ConfigError("--checkpoint", f"{path}: {what}; expected the output of `metacomm meta-train`")
    sc = make_scenario(ck["scenario"], device=device, **ck["scenario_config"])
    model = sc.build_model(0)
    init = ck.get("init") or {"model": ck["model"], "lrs": ck.get("lrs")}  # selected initialisation (meta-train)
    try:
        model.load_state_dict(init["model"])
    except RuntimeError as e:
        raise ConfigError("--checkpoint", f"{path}: weights are for a different codec: "
                                          f"{str(e).splitlines()[0][:160]}") from None
    model.to(device)
    rate = SGD(float(ck["meta_config"]["inner_lr"]))
    if init.get("lrs"):
        rate = {n: t.to(device) for n, t in init["lrs"].items()}
    joint = None
    if ck.get("joint_steps"):
        joint = sc.build_model(0)
        joint.load_state_dict((ck.get("joint_init") or ck["joint"])["model"])
        joint.to(device)
    return sc, model, rate, joint, ck


def run(args) -> int:
    from metacomm.sims.commands.meta_train import _device
    from metacomm.sims.stats import clopper_pearson
    dev = _device(args.device)
    pilots = _int_list("--pilots", args.pilots, minimum=1)
    steps = _int_list("--steps", args.steps, minimum=0)
    schemes = None if args.schemes is None else [s.strip() for s in args.schemes.split(",") if s.strip()]
    for s in schemes or ():
        if s not in ALL_SCHEMES:
            raise ConfigError("--schemes", f"unknown scheme {s!r}; allowed: {', '.join(ALL_SCHEMES)}")
    test_blocks = check_positive_int("--test-blocks", args.test_blocks)
    adam_lr = check_positive("--adam-lr", args.adam_lr)
    genie_steps = check_nonneg_int("--genie-steps", args.genie_steps)
    check_nonneg("--seed", args.seed)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ConfigError("--out", f"{args.out} exists and is not a directory")
    sc, meta_model, first, joint_model, ck = load_meta_checkpoint(args.checkpoint, dev)
    classical = getattr(sc, "classical_schemes", {"pilot-ls-ml": "pilot_ls_ml"})
    offered = (*LEARNED, *classical)
    if schemes is None:
        schemes = list(offered)
    for s in schemes:
        if s not in offered:
            raise ConfigError("--schemes", f"scheme {s!r} is not offered by scenario {ck['scenario']}; "
                                           f"allowed: {', '.join(offered)}")
    metric = getattr(sc, "metric", "bler")
    crn = bool(getattr(sc, "common_random_numbers", False))
    if args.test_channels is not None:
        n_test = check_positive_int("--test-channels", args.test_channels)
        if hasattr(sc, "set_test_devices"):
            sc.set_test_devices(n_test)
        else:
            g = torch.Generator(device=dev).manual_seed(sc.config.test_seed)
            sc.test_taps = sc.channel.sample_state(n_test, sc.config.n, generator=g, device=dev)["taps"]
    n_test = sc.num_test_devices if hasattr(sc, "num_test_devices") else int(sc.test_taps.shape[0])
    if "joint" in schemes and joint_model is None:
        raise ConfigError("--schemes", "the checkpoint has no joint-training baseline (meta-train --joint-steps 0)")
    os.makedirs(args.out, exist_ok=True)
    rows = []

    def add(scheme, p, s, errs, blocks):
        lo, hi = clopper_pearson(errs, blocks)
        rows.append({"scheme": scheme, "pilots": p, "steps": s, "bler": errs / blocks, "ser": errs / blocks,
                     "block_errors": errs, "blocks": blocks, "bler_ci": [lo, hi], "ser_ci": [lo, hi]})

    inits = {}
    if "meta" in schemes:
        inits["meta"] = (meta_model, first)
    if "joint" in schemes:
        inits["joint"] = (joint_model, SGD(float(ck["meta_config"]["inner_lr"])))
    if "random" in schemes:
        inits["random"] = (sc.build_model(10_000 + int(args.seed)), SGD(float(ck["meta_config"]["inner_lr"])))
    for k, (scheme, (model, first_opt)) in enumerate(inits.items()):
        for j, p in enumerate(pilots):
            g = torch.Generator(device=dev).manual_seed(int(args.seed) * 1000 + 17 * j + (0 if crn else k))
            res = sc.evaluate(params_of(model), model, pilots=p, steps=steps, generator=g,
                              test_blocks=test_blocks, first=first_opt, rest=Adam(adam_lr), adapt=ck["adapt"])
            for s, (e, b) in sorted(res.items()):
                add(scheme, p, s, e, b)
            print(f"{scheme:7s} pilots={p:4d} {metric} after steps " +
                  " ".join(f"{s}:{e / b:.4f}" for s, (e, b) in sorted(res.items())))
    if "genie" in schemes and genie_steps:
        g = torch.Generator(device=dev).manual_seed(int(args.seed) * 1000 + 999)
        e, b = sc.genie(20_000 + int(args.seed), generator=g, train_steps=genie_steps, test_blocks=test_blocks)
        add("genie", None, genie_steps, e, b)
        print(f"genie   ({genie_steps} steps/channel) {e / b:.5f}")
    for name, method in classical.items():
        if name not in schemes:
            continue
        for j, p in enumerate(pilots):
            g = torch.Generator(device=dev).manual_seed(int(args.seed) * 1000 + 500 + j)
            e, b = getattr(sc, method)(pilots=p, generator=g, test_blocks=test_blocks)
            add(name, p, None, e, b)
            print(f"{name} pilots={p:4d} {e / b:.5f}")
    config = {"checkpoint": os.path.abspath(args.checkpoint), "scenario": ck["scenario"],
              "scenario_config": ck["scenario_config"], "algo": ck["algo"], "meta_steps": ck["step"],
              "pilots": pilots, "steps": steps, "schemes": schemes, "test_channels": n_test,
              "test_blocks_per_channel": test_blocks, "adam_lr": adam_lr, "genie_steps": genie_steps,
              "seed": int(args.seed), "ci": "Clopper-Pearson 95%, blocks pooled over test channels",
              "step1": "SGD at the meta-training inner rate (Meta-SGD: learned rates); steps >= 2: Adam",
              "metric": metric, "common_random_numbers": crn,
              "pilots_meaning": getattr(sc, "pilots_meaning", "fresh pilot messages per adaptation step")}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"config": config, "results": rows}, f, indent=1)
    _plots(rows, pilots, steps, args.out, metric=metric, classical=tuple(classical))
    print(f"fewshot: results -> {os.path.join(args.out, 'results.json')}")
    return 0


def _plots(rows, pilots, steps, out, metric="bler", classical=("pilot-ls-ml",)):
    """``{metric}_vs_steps.png`` (learned schemes at 16 pilots or the largest P; genie and classical lines) and
    ``{metric}_vs_pilots.png`` (learned schemes after 1 step or the first step > 0; classical curves)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    label = metric.upper()
    p_ref = 16 if 16 in pilots else pilots[-1]
    s_ref = 1 if 1 in steps else next((s for s in steps if s > 0), steps[0])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for scheme in ("meta", "joint", "random"):
        pts = sorted((r["steps"], r["bler"]) for r in rows if r["scheme"] == scheme and r["pilots"] == p_ref)
        if pts:
            ax.plot([max(s, 0.5) for s, _ in pts], [max(b, 1e-6) for _, b in pts], "o-", label=scheme)
    for r in rows:
        if r["scheme"] == "genie":
            ax.axhline(max(r["bler"], 1e-6), ls="--", c="k", label="genie")
        if r["scheme"] in classical and r["pilots"] == p_ref:
            ax.axhline(max(r["bler"], 1e-6), ls=":", c="gray", label=f"{r['scheme']} ({p_ref} pilots)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("adaptation steps (0 plotted at 0.5)")
    ax.set_ylabel(label)
    ax.set_title(f"{label} vs steps, {p_ref} pilots")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{metric}_vs_steps.png"), dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for scheme in ("meta", "joint", "random"):
        pts = sorted((r["pilots"], r["bler"]) for r in rows if r["scheme"] == scheme and r["steps"] == s_ref)
        if pts:
            ax.plot([p for p, _ in pts], [max(b, 1e-6) for _, b in pts], "o-", label=f"{scheme} ({s_ref} step)")
    for name in classical:
        pts = sorted((r["pilots"], r["bler"]) for r in rows if r["scheme"] == name)
        if pts:
            ax.plot([p for p, _ in pts], [max(b, 1e-6) for _, b in pts], "s:", c="gray", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pilots")
    ax.set_ylabel(label)
    ax.set_title(f"{label} vs pilots")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{metric}_vs_pilots.png"), dpi=120)
    plt.close(fig)
