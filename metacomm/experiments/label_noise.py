r"""``metacomm pack label-noise``: few-shot adaptation from noisy and decision-directed labels.

For every noise model x rate, the test channels of the ``label-noise`` scenario (:mod:`metacomm.scenarios.label_noise`,
``fading-ae``'s codec and channels) get one support set each -- ``pilots`` clean pilot blocks plus ``data``
payload blocks with noisy labels -- and every method adapts the same meta-initialisation on the *same* support
sets and is tested on the *same* test blocks (common random numbers; the test blocks depend only on the seed, the
noise model and the rate). Methods (:data:`METHODS`): ``naive`` (plain fine-tuning on pilots + noisy payload),
``pilots-only``, ``l2rw`` (Ren et al. 2018), ``mwnet`` (Meta-Weight-Net, Shu et al. 2019: its MLP meta-trained here
from the base initialisation on symmetric + pair flips, ``meta_steps`` outer Adam steps at ``weight_lr`` through
``steps`` weighted SGD steps; its input ``mwnet_input``: the loss after a virtual plain step, ``lookahead``, or
the loss at the current weights, ``loss``), ``robust-init`` (Li et
al. 2019, simplified: see :func:`train_robust_init`), ``gated`` (the receiver's own decisions where its
confidence >= ``gate``), ``gce`` (generalised cross-entropy, Zhang & Sabuncu 2018, q = ``gce_q``), ``meta-init``
(no adaptation). The clean-label oracle (``oracle``: the same pilots and payload blocks, every label correct) and
the classical ``pilot-ls-ml`` (LS channel estimate from the pilots + ML detection of uncoded BPSK) are always run.

Records (one per method x noise x rate): ``method``, ``noise``, ``rate``, ``held_out`` (a noise model or a rate the
meta-training did not see), ``realised_rate`` (fraction of wrong payload labels), ``bler``, ``bler_ci``,
``block_errors``, ``blocks``, ``gap_to_oracle`` (BLER - oracle BLER), ``gap_closed`` ((naive - method) / (naive -
oracle), ``null`` when naive and oracle tie), ``weight_auroc`` (Mann-Whitney AUROC of the first step's per-example
weights separating right from wrong payload labels; ``null`` for methods without weights).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import torch

from metacomm._log import info
from metacomm._validation import MAX_WORK, ConfigError, check_nonneg_int, check_positive, check_positive_int
from metacomm.adaptation.label_noise import (
    NOISE_MODELS,
    TRAIN_NOISE_MODELS,
    auroc,
    check_rate,
    parse_noise_models,
)
from metacomm.artefacts import retire_files
from metacomm.experiments._common import check_out_dir, resolve_device

__all__ = ["LabelNoiseConfig", "run_label_noise", "METHODS", "train_mwnet", "train_robust_init"]

PACK = "label-noise"
FIGURE = "bler_vs_rate.png"
METHODS = ("naive", "pilots-only", "l2rw", "mwnet", "robust-init", "gated", "gce", "meta-init")


def _split(field, value, allowed):
    items = value.split(",") if isinstance(value, str) else list(value)
    out = [str(v).strip() for v in items if str(v).strip()]
    if not out:
        raise ConfigError(field, f"give at least one of {', '.join(allowed)}")
    for v in out:
        if v not in allowed:
            raise ConfigError(field, f"unknown {field} {v!r}; allowed: {', '.join(allowed)}")
    return out


def parse_rates(field, value) -> list[float]:
    """Noise rates (comma string or list) in [0, 1]; ConfigError naming ``field`` otherwise."""
    items = value.split(",") if isinstance(value, str) else (list(value) if isinstance(value, (list, tuple))
                                                             else [value])
    out = [check_rate(field, v) for v in items if not (isinstance(v, str) and not v.strip())]
    if not out:
        raise ConfigError(field, "give at least one noise rate in [0, 1]")
    return out


@dataclass
class LabelNoiseConfig:
    """Settings of ``metacomm pack label-noise`` (module docstring).

    ``base``: a ``meta-train --scenario fading-ae`` checkpoint, or ``"scratch"`` (meta-train a fading-ae MAML
    initialisation here for ``base_steps`` steps: for tests). ``noise``, ``rate``, ``method``: the sweep.
    ``pilots`` clean pilots and ``data`` noisy payload blocks per support set; ``steps`` SGD steps at ``lr`` per
    adaptation; ``test_channels`` new channels, ``test_blocks`` test blocks per channel. ``meta_steps``,
    ``meta_batch``, ``outer_lr``: meta-training of ``mwnet`` and ``robust-init``; ``train_rate_max``: their
    largest training rate (rates above it are held out). ``ebno_db``: Eb/N0 [dB] per information bit (default:
    the base's).
    """

    base: str = ""
    out: str = ""
    noise: object = ",".join(NOISE_MODELS)
    rate: object = "0,0.1,0.2,0.4,0.6"
    method: object = ",".join(METHODS)
    pilots: int = 4
    data: int = 16
    steps: int = 3
    lr: float = 0.1
    test_channels: int = 100
    test_blocks: int = 2000
    meta_steps: int = 300
    meta_batch: int = 10
    outer_lr: float = 0.003
    weight_lr: float = 0.01
    mwnet_input: str = "lookahead"
    train_rate_max: float = 0.5
    base_steps: int = 200
    ebno_db: object = None
    seed: int = 0
    device: str = "cpu"
    plot: bool = True
    quiet: bool = False

    def validate(self) -> LabelNoiseConfig:
        from metacomm.artefacts import check_output_dir
        from metacomm.experiments.packs import pack_kind
        if not isinstance(self.base, str) or not self.base:
            raise ConfigError("base", "give a fading-ae meta-train checkpoint (or 'scratch')")
        self.noise = parse_noise_models("noise", self.noise)
        self.rate = parse_rates("rate", self.rate)
        self.method = _split("method", self.method, METHODS)
        for f in ("pilots", "data", "test_channels", "test_blocks", "meta_batch"):
            setattr(self, f, check_positive_int(f, getattr(self, f), maximum=MAX_WORK))
        for f in ("steps", "meta_steps", "base_steps", "seed"):
            setattr(self, f, check_nonneg_int(f, getattr(self, f)))
        if self.mwnet_input not in ("loss", "lookahead"):
            raise ConfigError("mwnet_input", f"loss or lookahead, got {self.mwnet_input!r}")
        for f in ("lr", "outer_lr", "weight_lr"):
            setattr(self, f, check_positive(f, getattr(self, f)))
        self.train_rate_max = check_rate("train_rate_max", self.train_rate_max)
        from metacomm._validation import check_memory
        # per test channel: support blocks (x per-example gradients for L2RW's JVP) and a chunk of <= 4096 test
        # blocks with codewords, noise and block logits (~1 KiB each); meta-training tasks likewise
        check_memory(("test_channels", "data", "test_blocks"),
                     1024.0 * self.test_channels * (4 * (self.pilots + self.data) + min(self.test_blocks, 4096))
                     + 4096.0 * self.meta_batch * (self.pilots + 2 * self.data),
                     "the test channels' support sets and test blocks")
        if self.ebno_db is not None:
            try:
                self.ebno_db = float(self.ebno_db)
            except (TypeError, ValueError):
                raise ConfigError("ebno_db", f"expected Eb/N0 in dB, got {self.ebno_db!r}") from None
            if not math.isfinite(self.ebno_db):
                raise ConfigError("ebno_db", "must be finite")
        for f in ("plot", "quiet"):
            if not isinstance(getattr(self, f), bool):
                raise ConfigError(f, f"must be true or false, got {getattr(self, f)!r}")
        check_out_dir(self.out)
        check_output_dir(self.out, results="results.json", kind=pack_kind(PACK), field="out",
                         others=[FIGURE])
        if os.path.isdir(os.path.join(self.out, FIGURE)):  # would be refused only when drawn, after the results
            raise ConfigError("out", f"{os.path.join(self.out, FIGURE)!r} is a directory; refusing to replace it")
        return self


def _base(cfg: LabelNoiseConfig, device, log):
    """``(label-noise scenario, model, initial params)`` from the base checkpoint (or a scratch meta-training)."""
    from metacomm.adaptation import params_of
    from metacomm.scenarios import make_scenario
    over = dict(pilots=cfg.pilots, messages_per_task=cfg.data, num_test_channels=cfg.test_channels,
                train_rate_max=cfg.train_rate_max)
    if cfg.base == "scratch":
        from metacomm.adaptation.trainer import MetaConfig, MetaTrainer
        sc0 = make_scenario("fading-ae", device=device, num_train_channels=20)
        model = sc0.build_model(cfg.seed)
        tr = MetaTrainer(model, sc0.objective, sc0.sample_tasks,
                         MetaConfig(algo="maml", meta_batch=cfg.meta_batch, outer_lr=0.01, inner_lr=0.1),
                         seed=cfg.seed, device=device)
        tr.train(cfg.base_steps, progress=False)
        sc_cfg = sc0.config_dict()
    else:
        from metacomm.experiments.meta_init import load_meta_init
        mi = load_meta_init(cfg.base, device=device, field="base")
        model, ck = mi.model, mi.checkpoint
        if ck["scenario"] not in ("fading-ae", PACK):
            raise ConfigError("base", f"a fading-ae meta-train checkpoint is needed, got scenario {ck['scenario']!r}")
        sc_cfg = {k: v for k, v in ck["scenario_config"].items() if k in
                  ("k", "n", "num_taps", "ebno_db", "num_train_channels", "hidden", "rtn", "channel_seed",
                   "test_seed")}
    if cfg.ebno_db is not None:
        sc_cfg["ebno_db"] = cfg.ebno_db
    sc_cfg = {k: v for k, v in sc_cfg.items() if k not in over and k not in ("messages_per_task",
                                                                              "num_test_channels")}
    sc = make_scenario(PACK, device=device, **sc_cfg, **over)
    sc.set_codebook(model)
    return sc, model, {n: t.detach() for n, t in params_of(model).items()}


def train_mwnet(sc, model, params, *, steps: int, meta_batch: int, outer_lr: float, lr: float, seed: int,
                inner_steps: int = 1, feature: str = "loss") -> dict:
    """Meta-train Meta-Weight-Net's MLP on ``sc``'s training tasks (symmetric + pair flips): the model's
    initialisation ``params`` (its parameters, detached) stays fixed, the MLP's weights follow outer Adam on the
    clean query loss after ``inner_steps`` weighted SGD steps (second-order MAML through the weights). The MLP's
    input is each payload example's look-ahead loss
    (:meth:`~metacomm.scenarios.label_noise.LabelNoiseScenario.lookahead_losses`, computed by the sampler from the
    fixed initialisation: our modification of Shu et al., whose input is the loss at the current weights). The
    outer loop is :class:`~metacomm.adaptation.trainer.MetaTrainer`'s with the initialisation fixed
    (``train_init=False``: Adam holds the MLP's weights only; task stream from seed ``seed + 101``; a non-finite
    meta-gradient skips the step). Returns the MLP's weights."""
    from metacomm.adaptation.example_weighting import MetaWeightNet, WeightingRule
    from metacomm.adaptation.params import params_of
    from metacomm.adaptation.trainer import MetaConfig, MetaTrainer
    theta = {n: t.detach() for n, t in params.items()}
    own = params_of(model)
    if list(own) != list(theta) or not all(torch.equal(own[n].detach(), theta[n]) for n in theta):
        raise ConfigError("params", "train_mwnet meta-learns the weighting for the model's own initialisation: "
                                    "params must be the model's parameters")
    net = MetaWeightNet(generator=torch.Generator().manual_seed(seed + 7)).to(sc.device)
    rule = WeightingRule(sc.objective.losses, lr, "mwnet", net)

    def sampler(num, g):
        tasks = sc.sample_tasks(num, g)
        if feature == "lookahead":
            stacked = {n: t.unsqueeze(0).expand(num, *t.shape) for n, t in theta.items()}
            tasks = tasks._replace(support={**tasks.support,
                                            "d_feat": sc.lookahead_losses(model, stacked, tasks.support, lr)})
        return tasks

    cfg = MetaConfig(algo="maml", inner_steps=inner_steps, inner_lr=lr, outer_lr=outer_lr, meta_batch=meta_batch,
                     adapt=list(theta))
    trainer = MetaTrainer(model, sc.objective, sampler, cfg, seed=seed + 101, device=sc.device, rule=rule,
                          train_init=False)
    trainer.train(steps, progress=False)
    return {k: t.detach().clone() for k, t in rule.meta_params.items()}


def train_robust_init(sc, model, params, *, steps: int, meta_batch: int, outer_lr: float, lr: float, seed: int,
                      ema: float = 0.99, consistency: float = 1.0, inner_steps: int = 1) -> dict:
    r"""Noise-robust initialisation (after Li, Wong, Zhao & Kankanhalli, CVPR 2019), simplified: from ``params``,
    MAML with ``inner_steps`` SGD steps on the support set with *synthetic* noisy labels (symmetric + pair flips at a rate in
    ``[0, train_rate_max]``, drawn by the sampler) and the meta-loss

    .. math:: L = \mathrm{CE}(f_{\theta'}(y_q), m_q) + \lambda\, \mathrm{KL}(f_{\bar\theta}(y_q)\,\|\,f_{\theta'}(y_q))

    on the clean query, where :math:`\bar\theta` (the teacher) is an exponential moving average (``ema``) of the
    meta-initialisation. Simplifications: one synthetic noise draw per task (Li et al. use several and average
    the consistency), the query is labelled (we have the clean pilots), the teacher sees the same query blocks.
    Returns the initialisation."""
    import torch.nn.functional as F

    from metacomm.adaptation import meta_gradients
    from metacomm.adaptation.functional import call
    from metacomm.channels import make_generator
    from metacomm.scenarios.label_noise import ConsistencyObjective

    obj = ConsistencyObjective(sc.channel, consistency)
    g = make_generator(seed + 202, sc.device)
    theta = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
    teacher = {n: t.detach().clone() for n, t in params.items()}
    opt = torch.optim.Adam(list(theta.values()), lr=outer_lr)
    for _ in range(steps):
        tasks = sc.sample_tasks(meta_batch, g)
        q = tasks.query
        def teach(b, w=teacher):
            return F.log_softmax(call(model, w, lambda mm, bb: obj.logits(mm, bb["msg"], bb["taps"], bb["noise"],
                                                                          bb["no"]), b), -1)
        with torch.no_grad():
            t_logp = torch.vmap(teach)(q)
        tasks = tasks._replace(query={**q, "t_logp": t_logp})
        mg = meta_gradients(model, obj, theta, tasks, algo="maml", adapt=list(theta), inner_steps=inner_steps,
                            inner_lr=lr)
        opt.zero_grad()
        for n, t in theta.items():
            t.grad = mg.grads[n]
        opt.step()
        with torch.no_grad():
            teacher = {n: ema * teacher[n] + (1 - ema) * theta[n].detach() for n in theta}
    return {n: t.detach().clone() for n, t in theta.items()}


def run_label_noise(cfg: LabelNoiseConfig, *, log=info) -> dict:
    """Run the sweep of ``cfg`` (module docstring); writes ``cfg.out/results.json`` (and ``bler_vs_rate.png``)
    and returns ``{"config", "results"}``."""
    from metacomm.channels import make_generator
    from metacomm.experiments.packs import bler_record, progress, summary_table, write_pack_results
    cfg = cfg.validate()
    device = resolve_device(cfg.device)
    t0 = time.time()
    sc, model, params = _base(cfg, device, log)
    timing = {"base_s": time.time() - t0}
    mw = robust = None
    if "mwnet" in cfg.method:
        t1 = time.time()
        mw = train_mwnet(sc, model, params, steps=cfg.meta_steps, meta_batch=cfg.meta_batch, outer_lr=cfg.weight_lr,
                         lr=cfg.lr, seed=cfg.seed, inner_steps=max(1, cfg.steps), feature=cfg.mwnet_input)
        timing["mwnet_meta_s"] = time.time() - t1
    if "robust-init" in cfg.method:
        t1 = time.time()
        robust = train_robust_init(sc, model, params, steps=cfg.meta_steps, meta_batch=cfg.meta_batch,
                                   outer_lr=cfg.outer_lr, lr=cfg.lr, seed=cfg.seed, inner_steps=max(1, cfg.steps))
        timing["robust_meta_s"] = time.time() - t1
    methods = list(dict.fromkeys([*cfg.method, "naive", "oracle"]))
    records = []
    t1 = time.time()
    with progress(len(cfg.noise) * len(cfg.rate) * len(methods), "label-noise", quiet=cfg.quiet) as bar:
        for ni, noise in enumerate(cfg.noise):
            for ri, rate in enumerate(cfg.rate):
                gs = make_generator(cfg.seed * 1_000_003 + 1000 * ni + ri, device)
                sup = sc.support_batch(sc.test_taps, gs, noise=noise, rate=rate,
                                       logits_fn=sc.receiver_logits(model, params))
                realised = float(sup["d_wrong"].mean())
                right = sup["d_wrong"] < 0.5
                held = noise not in TRAIN_NOISE_MODELS or rate > cfg.train_rate_max
                row = {}
                for m in methods:
                    init = robust if m == "robust-init" else params
                    phi, w = sc.adapt(model, init, sup, method=m, steps=cfg.steps, lr=cfg.lr, mwnet=mw,
                                      mwnet_input=cfg.mwnet_input)
                    gt = make_generator(cfg.seed * 1_000_003 + 1000 * ni + ri + 500_000, device)
                    e, n = sc.test_bler(model, phi, sc.test_taps, gt, cfg.test_blocks)
                    row[m] = bler_record(e, n, method=m, noise=noise, rate=rate, held_out=held,
                                         realised_rate=realised,
                                         weight_auroc=auroc(w, right) if w is not None else None)
                    bar.update(1)
                o, nv = row["oracle"]["bler"], row["naive"]["bler"]
                for m in methods:
                    r = row[m]
                    r["gap_to_oracle"] = r["bler"] - o
                    r["gap_closed"] = (nv - r["bler"]) / (nv - o) if nv != o else None
                    if isinstance(r["weight_auroc"], float) and math.isnan(r["weight_auroc"]):
                        r["weight_auroc"] = None
                    if m in cfg.method or m == "oracle":
                        records.append(r)
    timing["sweep_s"] = time.time() - t1
    gc = make_generator(cfg.seed + 77, device)
    e, n = sc.pilot_ls_ml(pilots=cfg.pilots, generator=gc, test_blocks=cfg.test_blocks) if sc.config.k == sc.config.n \
        else (0, 0)
    reference = bler_record(e, n, method="pilot-ls-ml", pilots=cfg.pilots) if n else None
    timing["total_s"] = time.time() - t0
    conf = asdict(cfg)
    conf["scenario_config"] = sc.config_dict()
    # The previous run's figure describes results this run replaces (and a run with plot=False draws none): it goes
    # before results.json is written, so the directory never shows one run's figure beside another's results.
    retire_files(cfg.out, [FIGURE])
    write_pack_results(cfg.out, PACK, conf, records, reference=reference, timing=timing,
                       figures=[FIGURE] if cfg.plot else [])
    if cfg.plot:
        _plot(records, cfg)
    if not cfg.quiet:
        log(summary_table(records, ["noise", "rate", "method", "bler", "gap_closed", "weight_auroc", "held_out"]))
        if reference:
            log(f"classical pilot-LS + ML with {cfg.pilots} pilots: BLER {reference['bler']:.4g}")
    return {"config": conf, "results": records}


def _plot(records, cfg: LabelNoiseConfig) -> None:
    """``bler_vs_rate.png``: one panel per noise model (a shared BLER axis), BLER vs label-noise rate per method
    (distinct colour and marker; the clean-label oracle black dashed) with 95 % intervals, zero-error points as
    upper bounds, the largest meta-training noise rate as a grey line, the classical pilot-LS + ML reference (the
    ``reference`` of ``out/results.json``, written before the figure) as a brown dash-dot line across every panel,
    the legend at the right outside the panels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metacomm.artefacts import save_figure
    from metacomm.sims.plots import rate_curve, zero_error_entry
    markers = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<"]
    n = len(cfg.noise)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 1.8, 3.2), squeeze=False, sharey=True, layout="constrained")
    methods = list(dict.fromkeys(r["method"] for r in records))
    zero = False
    for i, noise in enumerate(cfg.noise):
        ax = axes[0][i]
        for j, m in enumerate(methods):
            pts = [r for r in records if r["noise"] == noise and r["method"] == m]
            if not pts:
                continue
            oracle = m == "oracle"
            zero |= rate_curve(ax, [r["rate"] for r in pts], [r["bler"] for r in pts],
                               [r.get("bler_ci") for r in pts], color="k" if oracle else f"C{j % 10}",
                               marker="x" if oracle else markers[j % len(markers)], ls="--" if oracle else "-",
                               label=m, ms=3.5)
        ax.set_yscale("log")
        ax.set_title(noise, fontsize=9)
        ax.set_xlabel("label noise rate")
        ax.set_ylabel("BLER")
        ax.axvline(cfg.train_rate_max, color="gray", lw=0.5, ls="--")
        ax.grid(True, which="both", alpha=0.3)
    ref = _reference_of(cfg.out)  # the classical receiver with the same clean pilots (results.json, written first)
    if ref is not None and ref.get("bler") is not None:
        for ax in axes[0]:
            ax.axhline(ref["bler"] if ref["bler"] > 0 else ref["bler_ci"][1], color="tab:brown", ls="-.", lw=1.2,
                       label=f"pilot-LS + ML, {ref.get('pilots', cfg.pilots)} clean pilots (classical)")
    if zero:
        zero_error_entry(axes[0][0])
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False, title="method",
                   title_fontsize=7)
    fig.suptitle(f"BLER vs label-noise rate (95% intervals; grey line: meta-training noise up to "
                 f"{cfg.train_rate_max:g})", fontsize=9)
    save_figure(fig, os.path.join(cfg.out, FIGURE), dpi=110)
    plt.close(fig)


def _reference_of(out: str) -> dict | None:
    """The ``reference`` record (classical pilot-LS + ML) of ``out/results.json``, or ``None``."""
    from metacomm.artefacts import read_json
    from metacomm.experiments.packs import pack_kind
    p = os.path.join(out, "results.json")
    if not os.path.isfile(p):
        return None
    try:
        ref = read_json(p, kind=pack_kind(PACK), field="out").get("reference")
    except Exception:  # noqa: BLE001 -- a figure without the line rather than no figure
        return None
    return ref if isinstance(ref, dict) else None
