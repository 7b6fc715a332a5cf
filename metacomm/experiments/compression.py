r"""The network-compression pack as a library call: :class:`CompressionConfig` -> :func:`run_compression`.

Starting from a ``fading-ae`` meta-train checkpoint (``base``: Park et al.'s AE(4,4) over 3-tap Rayleigh ISI),
the run compares, on the scenario's test channels, codecs whose weights are pruned (``sparsity``) and
fake-quantised (``bits``; :mod:`metacomm.codecs.quantization`) and then adapted few-shot on the test channel
(step 1 the method's inner rule, steps >= 2 Adam ``adam_lr``, ``pilots`` fresh pilots per step; the float
shadow weights move, the quantised codec decodes):

* ``ptq`` -- post-training quantisation of the float meta-trained initialisation (no training for
  quantisation; step 1 SGD at the base's inner rate through the STE);
* ``qat`` -- quantisation-aware training without meta-learning: the base weights trained jointly (no inner
  loop) on quantised (channel, bit-width) tasks of ``fading-ae-quant``, ``meta_steps`` Adam steps;
* ``maml-ste`` -- quantisation-aware meta-initialisation (MEBQAT's bit-width-as-task): second-order MAML on
  ``fading-ae-quant`` tasks (bit-width drawn from ``train_bits`` and sparsity from ``train_sparsity`` per task), inner SGD through the STE, outer
  loss = query loss of the quantised adapted codec, ``meta_steps`` steps from the base weights;
* ``metaquant`` -- the same with the MetaQuant inner rule (:class:`~metacomm.adaptation.metaquant.MetaQuant`:
  a shared meta-network :math:`M(g, w)` replaces the STE gradient; meta-trained jointly with the init).

Meta-training of ``qat``/``maml-ste``/``metaquant`` happens *inside the pack run* (short: ``meta_steps``,
``outer_lr``; model selection on held-out mixed-bit tasks every ``meta_steps // 5`` steps); results.json records
it under ``"meta_training"``. References in the same run: ``float32`` (the base codec unquantised: the records
with ``bits`` 32, the yardstick of every dB loss), ``pilot-ls-ml`` (fading-ae's classical scheme: uncoded BPSK,
LS taps from the pilots, ML detection; needs no weights) and ``genie`` (a float codec trained from scratch on
each test channel, ``genie_steps``, at ``plot_ebno_db``).

Eb/N0 loss in dB at a BLER target :math:`t \in \{10^{-2}, 10^{-3}\}`: on the ``ebno_db`` grid the BLER curve of
a (method, bits, sparsity, steps, condition) is interpolated linearly in :math:`\log_{10}` BLER vs dB; the loss
is its Eb/N0 at :math:`t` minus the float32 codec's (same steps, same condition). ``null`` when either curve does
not cross :math:`t` inside the grid (``ebno_at_*`` say which).

Held-out settings, evaluated separately (each record says which: ``heldout_bits``, ``heldout_adc``,
``heldout_channel``): bit-widths not in ``train_bits`` (3, 2, 1 with the defaults), a coarse receiver ADC
(``adc_bits`` on Re and Im of every received sample, pilots included, range ``adc_clip``) and an unseen channel
family (``heldout_channel``), the last two at ``heldout_at_bits`` and sparsity 0.

Common random numbers: at a given Eb/N0 and condition every method, bit-width and sparsity sees the same pilots
and test data (one generator seed per (Eb/N0 index, condition)).

Files: nothing is written before the whole run (meta-training and sweep) has finished, so a kill or an error
leaves the output directory as the previous run left it. Then the previous run's ``results.json`` and figures are
removed, ``codecs.pt`` is written marked ``finished: False``, then ``results.json``, the figures, and
``codecs.pt`` again, finished. Both files record the run's ``run_id`` and the codecs' SHA-256
(:func:`codecs_sha256`; ``results.json``: ``"codecs": {"file", "run_id", "weights_sha256"}``): a directory never
holds a codecs.pt of one run beside the results of another, and :func:`check_codecs_pair` verifies a pair.
"""

from __future__ import annotations

import copy
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from metacomm._log import info
from metacomm._validation import MAX_WORK, ConfigError, check_nonneg_int, check_positive, check_positive_int
from metacomm.artefacts import register_kind, retire_files
from metacomm.experiments._common import check_out_dir, int_list, resolve_device

__all__ = ["CompressionConfig", "run_compression", "METHODS", "load_base", "PACK", "TARGETS", "CODECS_KIND",
           "CODECS_FILE", "codecs_sha256", "check_codecs_pair"]

PACK = "compression"
METHODS = ("ptq", "qat", "maml-ste", "metaquant")
TARGETS = (1e-2, 1e-3)
BASE_SCENARIOS = ("fading-ae", "fading-ae-quant")
CODECS_KIND = "metacomm-compression-codecs"
CODECS_FILE = "codecs.pt"
FIGURES = ("bler_vs_bits.png", "db_loss_vs_bytes.png")
register_kind(CODECS_KIND, 1, "the initialisations of a compression pack run (float weights per method, MetaQuant's "
              "meta-network)", "`metacomm pack compression` (OUT/codecs.pt)",
              schema={"scenario": str, "scenario_config": dict, "methods": {"*": {"model": dict}}},
              weights=("methods/*/model", "methods/*/rule", "methods/*/inner_rule/tensors"))


def _float_list(field: str, value, *, lo=None, hi=None, hi_open=False) -> list[float]:
    items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
    out = []
    for v in items:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ConfigError(field, f"expected a comma-separated list of numbers, got {value!r}") from None
        if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and (x >= hi if hi_open
                                                                                       else x > hi)):
            rng = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
            raise ConfigError(field, f"values must be finite and in {rng}, got {v!r}" if lo is not None
                              else f"values must be finite, got {v!r}")
        out.append(x)
    if not items:
        raise ConfigError(field, "give at least one value")
    return sorted(set(out))


def _bits(field: str, value, *, allow_empty: bool = False) -> list[int]:
    from metacomm.codecs.quantization import MAX_BITS
    if allow_empty and (value is None or value == "" or value == []):
        return []
    try:
        vals = int_list(field, value, minimum=-(10 ** 9))
    except ConfigError:
        raise ConfigError(field, f"bit-widths are integers 1-{MAX_BITS}, got {value!r}") from None
    for b in vals:
        if not 1 <= b <= MAX_BITS:
            raise ConfigError(field, f"bit-widths are integers 1-{MAX_BITS}, got {b}")
    return sorted(vals, reverse=True)


@dataclass
class CompressionConfig:
    """Settings of ``metacomm pack compression`` (keys = flags without ``--``; lists as lists or comma strings).

    ``base``: a ``fading-ae`` meta-train checkpoint; ``bits``: bit-widths 1-16 evaluated; ``sparsity``:
    pruning fractions in [0, 1); ``method``: subset of :data:`METHODS`; ``steps``: adaptation steps recorded;
    ``pilots``: pilot messages per adaptation step; ``ebno_db``: Eb/N0 grid [dB per information bit] of the BLER
    curves (dB losses interpolate on it); ``plot_ebno_db``: the Eb/N0 of the BLER-vs-bits plot and the genie;
    ``test_channels`` (``None``: the scenario's 20), ``test_blocks`` per channel and point; ``train_bits``:
    meta-training bit-widths (tasks); ``train_sparsity``: pruning fractions the meta-training tasks draw from
    (default 0: tasks = (channel, bit-width)); ``meta_steps``/``meta_batch``/``outer_lr``: the in-run meta-training of
    ``qat``/``maml-ste``/``metaquant``; ``metaquant_hidden``: width of MetaQuant's meta-network;
    ``quantize``: ``all`` (encoder and decoder weights) or ``decoder``; ``adc_bits``: held-out receiver-ADC
    bit-widths (``[]`` = none), ``adc_clip``: ADC range (amplitude units of y, Es = 1); ``heldout_channel``:
    unseen family (``"none"`` to skip); ``heldout_at_bits``: bit-widths of the ADC/channel evaluations;
    ``genie_steps``: 0 skips the genie; ``adam_lr``: Adam rate of steps >= 2.
    """

    base: str
    out: str
    bits: object = (8, 6, 4, 3, 2, 1)
    sparsity: object = (0.0, 0.5, 0.75)
    method: object = METHODS
    steps: object = (0, 1, 5)
    pilots: int = 16
    ebno_db: object = (10.0, 15.0, 20.0, 25.0)
    plot_ebno_db: float = 15.0
    test_channels: int | None = None
    test_blocks: int = 2000
    train_bits: object = (8, 6, 4)
    train_sparsity: object = (0.0,)
    meta_steps: int = 2000
    meta_batch: int = 20
    outer_lr: float = 1e-3
    metaquant_hidden: int = 8
    quantize: str = "all"
    adc_bits: object = (1, 2, 3, 4)
    adc_clip: float = 2.0
    heldout_channel: str = "exp-pdp-6db"
    heldout_at_bits: object = (8, 4)
    genie_steps: int = 2000
    adam_lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False

    def validate(self) -> CompressionConfig:
        from metacomm.scenarios.fewshot_compression import HELDOUT_FAMILIES, SCOPES
        if not isinstance(self.base, str | os.PathLike) or not str(self.base):
            raise ConfigError("base", "give a fading-ae meta-train checkpoint (metacomm meta-train --scenario "
                                      "fading-ae --out CKPT)")
        self.bits = _bits("bits", self.bits)
        self.sparsity = _float_list("sparsity", self.sparsity, lo=0.0, hi=1.0, hi_open=True)
        methods = [m.strip() for m in self.method.split(",") if m.strip()] if isinstance(self.method, str) \
            else list(self.method)
        if not methods:
            raise ConfigError("method", f"give at least one method; allowed: {', '.join(METHODS)}")
        for m in methods:
            if m not in METHODS:
                raise ConfigError("method", f"unknown method {m!r}; allowed: {', '.join(METHODS)}")
        self.method = list(dict.fromkeys(methods))
        self.steps = int_list("steps", self.steps, minimum=0)
        self.pilots = check_positive_int("pilots", self.pilots)
        self.ebno_db = _float_list("ebno_db", self.ebno_db)
        if not math.isfinite(float(self.plot_ebno_db)):
            raise ConfigError("plot_ebno_db", f"must be finite, got {self.plot_ebno_db!r}")
        if self.test_channels is not None:
            self.test_channels = check_positive_int("test_channels", self.test_channels)
        self.test_blocks = check_positive_int("test_blocks", self.test_blocks, maximum=MAX_WORK)
        self.train_bits = _bits("train_bits", self.train_bits)
        self.train_sparsity = _float_list("train_sparsity", self.train_sparsity, lo=0.0, hi=1.0, hi_open=True)
        self.meta_steps = check_nonneg_int("meta_steps", self.meta_steps)
        self.meta_batch = check_positive_int("meta_batch", self.meta_batch)
        self.outer_lr = check_positive("outer_lr", self.outer_lr)
        self.metaquant_hidden = check_positive_int("metaquant_hidden", self.metaquant_hidden)
        if self.quantize not in SCOPES:
            raise ConfigError("quantize", f"unknown scope {self.quantize!r}; allowed: {', '.join(SCOPES)}")
        self.adc_bits = _bits("adc_bits", self.adc_bits, allow_empty=True)
        self.adc_clip = check_positive("adc_clip", self.adc_clip)
        if self.heldout_channel not in (*HELDOUT_FAMILIES, "none"):
            raise ConfigError("heldout_channel", f"unknown family {self.heldout_channel!r}; allowed: "
                                                 f"{', '.join((*HELDOUT_FAMILIES, 'none'))}")
        self.heldout_at_bits = _bits("heldout_at_bits", self.heldout_at_bits, allow_empty=True)
        self.genie_steps = check_nonneg_int("genie_steps", self.genie_steps)
        self.adam_lr = check_positive("adam_lr", self.adam_lr)
        self.seed = check_nonneg_int("seed", self.seed)
        check_out_dir(self.out)
        from metacomm.artefacts import check_output_dir
        from metacomm.experiments.packs import pack_kind
        # A codecs.pt of this pack without a results.json beside it is what an interrupted run leaves (the results
        # are retired before the codecs are rewritten, see run_compression): ours, so it may be replaced.
        others = [*FIGURES, *(() if _own_codecs_alone(self.out) else (CODECS_FILE,))]
        check_output_dir(self.out, results="results.json", kind=pack_kind(PACK), field="out", others=others)
        _refuse_dirs(self.out, (*FIGURES, CODECS_FILE))
        return self


def _refuse_dirs(out, names) -> None:
    """A directory where a file will be written is refused now, not after the run (when the write would fail)."""
    for name in names:
        p = os.path.join(os.fspath(out), name)
        if os.path.isdir(p):
            raise ConfigError("out", f"{p!r} is a directory; refusing to replace it")


def _own_codecs_alone(out) -> bool:
    """Whether ``out`` holds a codecs.pt of this pack (finished or not) and no results.json."""
    from metacomm.artefacts import load_checkpoint
    d = os.fspath(out)
    path = os.path.join(d, CODECS_FILE)
    if os.path.lexists(os.path.join(d, "results.json")) or os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        load_checkpoint(path, kinds=CODECS_KIND, field="out", allow_partial=True)
    except ConfigError:
        return False
    return True


def _digest(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode() + b":")
            _digest(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _digest(h, v)
            h.update(b",")
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def codecs_sha256(methods: Mapping) -> str:
    """SHA-256 (hex) of a ``codecs.pt``'s ``"methods"`` entry: every tensor's name, dtype, shape and bytes and every
    plain value (the rule specs), in key order -- a digest of the weights themselves, not of the file's layout, so
    it can be recomputed from the loaded checkpoint and compared with what ``results.json`` records."""
    import hashlib
    h = hashlib.sha256()
    _digest(h, methods)
    return h.hexdigest()


def check_codecs_pair(codecs: Mapping, path, *, field: str = "checkpoint") -> None:
    """Raise ``ConfigError(field, <one line>)`` unless the loaded ``codecs.pt`` payload ``codecs`` (read from
    ``path``) and the compression results beside it come from the same run.

    The weights must match the SHA-256 the checkpoint records (``weights_sha256``). When ``path``'s directory holds
    a compression pack ``results.json``, its ``codecs`` entry must name the checkpoint's ``run_id`` and the same
    SHA-256 (a directory written before run ids were recorded -- neither file has one -- is accepted). No results
    file beside it (a codecs.pt copied elsewhere), or another kind of results file: nothing to check against."""
    from metacomm.artefacts import read_json
    from metacomm.experiments.packs import pack_kind
    src = os.fspath(path)
    digest = codecs_sha256(codecs.get("methods") or {})
    recorded = codecs.get("weights_sha256")
    if recorded is not None and recorded != digest:
        raise ConfigError(field, f"{src}: damaged: its weights do not match the SHA-256 it records "
                                 f"({str(recorded)[:12]}..., the weights give {digest[:12]}...)")
    rp = os.path.join(os.path.dirname(os.path.abspath(src)), "results.json")
    if not os.path.isfile(rp):
        return
    try:
        doc = read_json(rp, kind=pack_kind(PACK), field=field)
    except ConfigError:
        return  # not (readable) compression results: they describe no codecs
    rec = doc.get("codecs") if isinstance(doc.get("codecs"), Mapping) else {}
    mine = codecs.get("run_id")
    if mine is None and rec.get("run_id") is None:
        return  # both written before run ids were recorded: cannot tell
    if codecs.get("finished") is False:
        raise ConfigError(field, f"{src} is from a run of metacomm pack compression that did not finish writing its "
                                 "results (rerun it)")
    if rec.get("run_id") != mine or rec.get("weights_sha256") != digest:
        theirs = rec.get("run_id") or "no recorded run"
        raise ConfigError(field, f"{src} does not belong to the results beside it: {rp} describes the codecs of "
                                 f"run {theirs}, {os.path.basename(src)} is from run {mine or '(unrecorded)'}; the "
                                 "directory mixes two runs of metacomm pack compression (rerun it)")


def load_base(path: str, device, *, field: str = "base", **quant):
    """``(fading-ae-quant scenario, float model, inner rate, checkpoint)`` of a ``fading-ae`` meta-train
    checkpoint; ConfigError naming ``field`` for a missing file, another kind of file, a checkpoint of another
    scenario/codec (only the plain AE(k, n) of ``fading-ae`` is supported, not the RTN receiver) or one meta-trained
    with another inner rule than SGD (the checkpoint's rule, :func:`~metacomm.experiments.meta_init.load_meta_init`:
    every method's step 1 is SGD at the base's inner rate)."""
    from metacomm.adaptation.update_rules import SGD
    from metacomm.experiments.meta_init import load_meta_init
    from metacomm.scenarios import make_scenario
    mi = load_meta_init(path, device=device, field=field)
    model, rule, ck = mi.model, mi.rule, mi.checkpoint
    scenario = ck.get("scenario")
    scfg = dict(ck.get("scenario_config") or {})
    if scenario not in BASE_SCENARIOS or scfg.get("rtn"):
        what = f"{scenario} checkpoint" + (" with the RTN receiver" if scfg.get("rtn") else "")
        raise ConfigError(field, f"{path} is a {what}; the compression pack needs a fading-ae meta-train checkpoint "
                                 "of the plain AE(k, n) codec (metacomm meta-train --scenario fading-ae)")
    for k in ("train_bits", "sparsity", "quantize", "act_bits", "act_clip", "adc_bits", "adc_clip"):
        scfg.pop(k, None)
    sc = make_scenario("fading-ae-quant", device=device, **scfg, **quant)
    qmodel = sc.build_model(0)
    qmodel.load_state_dict(model.state_dict())
    if not isinstance(rule, SGD):
        what = "Meta-SGD rates" if rule.spec_name == "metasgd" else f"the inner rule {rule.spec_name or rule!r}"
        raise ConfigError(field, f"{path} was meta-trained with {what}; give a MAML (SGD inner rule) base")
    inner_lr = float(rule.lr)
    return sc, qmodel, inner_lr, ck


def _meta_train(sc, model, method: str, cfg: CompressionConfig, inner_lr: float, dev, log) -> tuple:
    """Train ``method``'s initialisation from ``model``'s weights; returns ``(model, step-1 rule, info)``."""
    from metacomm.adaptation import MetaConfig, MetaTrainer
    from metacomm.adaptation.metaquant import MetaQuant
    from metacomm.adaptation.update_rules import SGD
    from metacomm.channels import make_generator
    model = copy.deepcopy(model)
    if method == "ptq" or cfg.meta_steps == 0:
        return model, SGD(inner_lr), {"meta_steps": 0}
    inner = 0 if method == "qat" else 1
    val_every = max(1, cfg.meta_steps // 5)
    mcfg = MetaConfig(algo="maml", inner_steps=inner, inner_lr=inner_lr if inner else 0.0, outer_lr=cfg.outer_lr,
                      meta_batch=cfg.meta_batch, val_every=val_every, val_tasks=100)
    rule = None
    if method == "metaquant":
        rule = MetaQuant(inner_lr, hidden=cfg.metaquant_hidden, generator=make_generator(cfg.seed + 7),
                         device=dev)
    offset = METHODS.index(method)
    tr = MetaTrainer(model, sc.objective, sc.sample_tasks, mcfg, seed=cfg.seed * 100 + offset,
                     val_sampler=sc.sample_val_tasks, device=dev, rule=rule)
    t0 = time.perf_counter()
    tr.train(cfg.meta_steps, progress=not cfg.quiet)
    wall = time.perf_counter() - t0
    best = tr.best
    if best is not None:
        model.load_state_dict(best["model"])
        if rule is not None and best.get("rule"):
            with torch.no_grad():
                for k, t in best["rule"].items():
                    rule.meta[k].copy_(t.to(dev))
    val = (best or {}).get("val") or {}
    info = {"meta_steps": cfg.meta_steps, "selected_step": (best or {}).get("step"),
            "val_loss": val.get("val_loss"), "val_bler": val.get("val_bler"), "wall_s": round(wall, 2),
            "inner_steps": inner, "inner_lr": inner_lr if inner else None, "outer_lr": cfg.outer_lr,
            "meta_batch": cfg.meta_batch, "train_bits": list(cfg.train_bits),
            "train_sparsity": list(cfg.train_sparsity),
            "skipped": len(tr.skipped)}
    log(f"meta-train {method}: {cfg.meta_steps} steps in {wall:.1f} s, selected step {info['selected_step']}, "
        f"held-out loss {info['val_loss']}")
    step1 = rule.detached() if rule is not None else SGD(inner_lr)  # qat too: run-time step 1 as every method
    return model, step1, info


def _crossing(curve: list[tuple[float, float]], target: float) -> float | None:
    """Eb/N0 [dB] where the BLER curve (ascending Eb/N0) first falls to ``target`` (log-linear interpolation)."""
    prev = None
    for x, b in curve:
        if b <= target:
            if prev is None:
                return x if b == target else None  # already below at the lowest point: not bracketed
            x0, b0 = prev
            lb0, lb1 = math.log10(max(b0, 1e-12)), math.log10(max(b, 1e-12))
            if lb1 == lb0:
                return x
            return x0 + (math.log10(target) - lb0) * (x - x0) / (lb1 - lb0)
        prev = (x, b)
    return None


def _tname(t: float) -> str:
    return f"{t:.0e}".replace("e-0", "e-")


def _add_db_losses(rows: list[dict]) -> None:
    """Fill ``ebno_at_<t>`` and ``db_loss_at_<t>`` (vs float32, same steps and condition) in every record."""
    def key(r):
        return (r["method"], r["bits"], r["sparsity"], r["steps"], r["adc_bits"], r["channel"])

    curves: dict = {}
    for r in rows:
        curves.setdefault(key(r), []).append((r["ebno_db"], r["bler"]))
    at = {k: {t: _crossing(sorted(c), t) for t in TARGETS} for k, c in curves.items()}
    for r in rows:
        ref_key = ("float32", 32, 0.0, r["steps"], 0, r["channel"])
        for t in TARGETS:
            mine = at[key(r)][t]
            ref = at.get(ref_key, {}).get(t)
            r[f"ebno_at_{_tname(t)}"] = mine
            r[f"db_loss_at_{_tname(t)}"] = (mine - ref) if (mine is not None and ref is not None) else None


def run_compression(cfg: CompressionConfig, *, log: Callable[[str], None] = info) -> dict:
    """Run the pack (module docstring); writes ``cfg.out/results.json``, ``bler_vs_bits.png``,
    ``db_loss_vs_bytes.png`` and ``codecs.pt`` (the methods' initialisations, each with its step-1 rule as an
    ``inner_rule`` entry, :func:`~metacomm.adaptation.update_rules.rule_spec`); returns the results dict.

    Everything is validated and computed before the first write. ``results.json`` and ``codecs.pt`` record the
    same ``run_id`` and the codecs' SHA-256 (:func:`codecs_sha256`; ``results.json``: ``"codecs": {"file",
    "run_id", "weights_sha256"}``); codecs.pt is marked ``finished: False`` until results.json and the figures are
    written, so a reader never takes the weights of one run for those the results beside them describe
    (:func:`check_codecs_pair` checks a pair)."""
    from metacomm.adaptation.functional import SGD, Adam
    from metacomm.adaptation.params import params_of
    from metacomm.adaptation.update_rules import rule_spec
    from metacomm.artefacts import check_weights_only, save_checkpoint
    from metacomm.codecs.quantization import FLOAT_BITS, model_bytes
    from metacomm.experiments.meta_init import RULE_KEY
    from metacomm.experiments.packs import bler_record, progress, summary_table, write_pack_results
    t_start = time.perf_counter()
    cfg.validate()
    dev = resolve_device(cfg.device)
    sc, base_model, inner_lr, ck = load_base(cfg.base, dev, train_bits=list(cfg.train_bits), quantize=cfg.quantize,
                                             adc_clip=cfg.adc_clip, sparsity=list(cfg.train_sparsity))
    if cfg.test_channels is not None:
        sc.set_test_tasks(cfg.test_channels)
    adapt = ck["adapt"]
    train_bits = set(cfg.train_bits)

    inits, meta_info = {}, {}
    for m in cfg.method:
        model, step1, info = _meta_train(sc, base_model, m, cfg, inner_lr, dev, log)
        inits[m] = (model, step1)
        meta_info[m] = info
    # Nothing is written before the sweep has finished: a kill, an error or a full disk before the end leaves the
    # directory as the previous run left it. The codecs are built (and checked to load with weights_only) now.
    run_id = uuid.uuid4().hex
    methods = {m: {"model": {k: v.detach().cpu().clone() for k, v in inits[m][0].state_dict().items()},
                   "rule": inits[m][1].state_dict() if m == "metaquant" else None,
                   RULE_KEY: rule_spec(inits[m][1])}
               for m in inits}
    codecs = {"base": os.path.abspath(cfg.base), "scenario": "fading-ae-quant", "scenario_config": sc.config_dict(),
              "methods": methods, "run_id": run_id, "weights_sha256": codecs_sha256(methods),
              "results": "results.json"}
    check_weights_only(codecs, "codecs")

    # --- the evaluation plan: (method, bits, sparsity, adc_bits, channel) ------------------------------------
    plan = [("float32", FLOAT_BITS, 0.0, 0, "fading-ae")]
    for m in cfg.method:
        for s in cfg.sparsity:
            for b in cfg.bits:
                plan.append((m, b, s, 0, "fading-ae"))
    held = [b for b in cfg.heldout_at_bits]
    for m in cfg.method:
        for b in held:
            for a in cfg.adc_bits:
                plan.append((m, b, 0.0, a, "fading-ae"))
    if cfg.heldout_channel != "none":
        plan.append(("float32", FLOAT_BITS, 0.0, 0, cfg.heldout_channel))
        for m in cfg.method:
            for b in held:
                plan.append((m, b, 0.0, 0, cfg.heldout_channel))
    conditions = sorted({(a, ch) for _, _, _, a, ch in plan}, key=lambda x: (x[1] != "fading-ae", x[0]))
    n_classical = len(cfg.ebno_db) * (1 + (cfg.heldout_channel != "none"))
    rows: list[dict] = []
    classical_rows: list[dict] = []
    total = len(plan) * len(cfg.ebno_db) + n_classical + (1 if cfg.genie_steps else 0)
    float_model = base_model
    with progress(total, "pack compression", quiet=cfg.quiet) as bar:
        for i, e in enumerate(cfg.ebno_db):
            for (m, b, s, a, ch) in plan:
                model, step1 = (float_model, SGD(inner_lr)) if m == "float32" else inits[m]
                ci = conditions.index((a, ch))
                g = torch.Generator(device=dev).manual_seed(cfg.seed * 100_000 + 1000 * i + 17 * ci)
                with sc.using(bits=b, sparsity=s, adc_bits=a, ebno_db=e,
                              channel=None if ch == "fading-ae" else ch):
                    res = sc.evaluate(params_of(model), model, pilots=cfg.pilots, steps=cfg.steps, generator=g,
                                      test_blocks=cfg.test_blocks, first=step1, rest=Adam(cfg.adam_lr),
                                      adapt=adapt)
                p = params_of(model)
                mb = model_bytes(p, b, s, scope=cfg.quantize)
                db = model_bytes(p, b, s, scope=cfg.quantize, prefix="decoder.")
                for st, (errs, blocks) in sorted(res.items()):
                    rows.append(bler_record(errs, blocks, method=m, bits=b, sparsity=s, steps=st, ebno_db=e,
                                            adc_bits=a, channel=ch, pilots=cfg.pilots, model_bytes=mb,
                                            decoder_bytes=db,
                                            heldout_bits=b != FLOAT_BITS and b not in train_bits,
                                            heldout_adc=a > 0, heldout_channel=ch != "fading-ae"))
                bar.update(1)
            for ch in ["fading-ae"] + ([cfg.heldout_channel] if cfg.heldout_channel != "none" else []):
                g = torch.Generator(device=dev).manual_seed(cfg.seed * 100_000 + 1000 * i + 500)
                with sc.using(ebno_db=e, channel=None if ch == "fading-ae" else ch):
                    errs, blocks = sc.classical("pilot-ls-ml", pilots=cfg.pilots, generator=g,
                                                test_blocks=cfg.test_blocks)
                classical_rows.append(bler_record(errs, blocks, method="pilot-ls-ml", bits=None, sparsity=None,
                                                  steps=None, ebno_db=e, adc_bits=0, channel=ch, pilots=cfg.pilots,
                                                  model_bytes=0, decoder_bytes=0, heldout_bits=False,
                                                  heldout_adc=False, heldout_channel=ch != "fading-ae"))
                bar.update(1)
        if cfg.genie_steps:
            g = torch.Generator(device=dev).manual_seed(cfg.seed * 100_000 + 999)
            with sc.using(bits=FLOAT_BITS, ebno_db=cfg.plot_ebno_db):
                errs, blocks = sc.genie(20_000 + cfg.seed, generator=g, train_steps=cfg.genie_steps,
                                        test_blocks=cfg.test_blocks)
            classical_rows.append(bler_record(errs, blocks, method="genie", bits=FLOAT_BITS, sparsity=0.0,
                                              steps=cfg.genie_steps, ebno_db=cfg.plot_ebno_db, adc_bits=0,
                                              channel="fading-ae", pilots=256, model_bytes=None,
                                              decoder_bytes=None, heldout_bits=False, heldout_adc=False,
                                              heldout_channel=False))
            bar.update(1)
    _add_db_losses(rows)
    rows += classical_rows
    wall = time.perf_counter() - t_start
    config = {"base": os.path.abspath(cfg.base), "base_scenario": ck["scenario"], "base_algo": ck["algo"],
              "base_step": ck.get("step"), "scenario": "fading-ae-quant", "scenario_config": sc.config_dict(),
              "bits": cfg.bits, "sparsity": cfg.sparsity, "method": cfg.method, "steps": cfg.steps,
              "pilots": cfg.pilots, "ebno_db": cfg.ebno_db, "plot_ebno_db": cfg.plot_ebno_db,
              "test_channels": sc.num_test_tasks, "test_blocks_per_channel": cfg.test_blocks,
              "train_bits": cfg.train_bits, "train_sparsity": cfg.train_sparsity, "quantize": cfg.quantize, "adc_bits": cfg.adc_bits,
              "adc_clip": cfg.adc_clip, "heldout_channel": cfg.heldout_channel,
              "heldout_at_bits": cfg.heldout_at_bits, "genie_steps": cfg.genie_steps, "adam_lr": cfg.adam_lr,
              "inner_lr": inner_lr, "adapt": adapt, "seed": cfg.seed,
              "meta_training_where": "inside this pack run, from the base checkpoint's weights",
              "step1": "each method's inner rule (SGD at the base inner rate through the STE; metaquant: its "
                       "trained meta-network); steps >= 2: Adam adam_lr",
              "ci": "Clopper-Pearson 95%, blocks pooled over test channels",
              "db_loss": "Eb/N0 at the BLER target (log-linear interpolation on ebno_db) minus the float32 "
                         "codec's, same steps and channel; null when a curve does not cross the target",
              "model_bytes": "quantised weights: ceil(kept*bits/8) + bitmask ceil(N/8) if sparsity > 0 + 4 bytes "
                             "per row scale; biases and float tensors 4 bytes each",
              "common_random_numbers": True, "wall_s": round(wall, 1)}
    codecs_rec = {"file": CODECS_FILE, "run_id": run_id, "weights_sha256": codecs["weights_sha256"]}
    results = {"config": config, "results": rows, "run_id": run_id, "codecs": codecs_rec}
    # The writes, in an order that never leaves a codecs.pt of one run beside the results of another: the previous
    # run's results and figures go first; codecs.pt is written marked unfinished (refused by every reader until the
    # run completes), then results.json (recording the codecs' run id and SHA-256), the figures, and codecs.pt again,
    # finished. A kill in between leaves files of one run only, the codecs marked unfinished.
    out = os.path.abspath(cfg.out)
    retire_files(out, ("results.json", *FIGURES))
    save_checkpoint(os.path.join(out, CODECS_FILE), {**codecs, "finished": False}, kind=CODECS_KIND, field="out")
    write_pack_results(cfg.out, PACK, config, rows, meta_training=meta_info, run_id=run_id, codecs=codecs_rec)
    _plots(rows, cfg, out)
    save_checkpoint(os.path.join(out, CODECS_FILE), {**codecs, "finished": True}, kind=CODECS_KIND, field="out")
    s_plot = 5 if 5 in cfg.steps else cfg.steps[-1]
    e_plot = min(cfg.ebno_db, key=lambda x: abs(x - cfg.plot_ebno_db))
    table = [r for r in rows if r["steps"] == s_plot and r["ebno_db"] == e_plot and r["adc_bits"] == 0
             and r["channel"] == "fading-ae" and r["method"] not in ("pilot-ls-ml", "genie")]
    table += [r for r in rows if r["method"] == "pilot-ls-ml" and r["ebno_db"] == e_plot
              and r["channel"] == "fading-ae"]
    log(f"pack compression: BLER at Eb/N0 {e_plot:g} dB after {s_plot} steps, {cfg.pilots} pilots/step "
        f"(dB losses vs float32 at BLER 1e-2 / 1e-3):")
    table = [{k: (math.nan if v is None else v) for k, v in r.items()} for r in table]  # None prints as "-"
    log(summary_table(table, ["method", "bits", "sparsity", "bler", "bler_ci", "model_bytes", "db_loss_at_1e-2",
                              "db_loss_at_1e-3"]))
    log(f"pack compression: {len(rows)} records in {wall:.0f} s")
    return results


def _plots(rows, cfg: CompressionConfig, out: str) -> None:
    """``bler_vs_bits.png`` (each method at sparsity 0, ``plot_ebno_db``, the largest recorded step <= 5; float32
    and pilot-LS + ML as lines) and ``db_loss_vs_bytes.png`` (dB loss at BLER 1e-2 vs model bytes, all bit-widths
    and sparsities, same steps)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metacomm.artefacts import save_figure
    s_plot = 5 if 5 in cfg.steps else cfg.steps[-1]
    e_plot = min(cfg.ebno_db, key=lambda x: abs(x - cfg.plot_ebno_db))

    def main_rows(m):
        return [r for r in rows if r["method"] == m and r["steps"] == s_plot and r["ebno_db"] == e_plot
                and r["adc_bits"] == 0 and r["channel"] == "fading-ae"]

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for m in cfg.method:
        pts = sorted((r["bits"], r["bler"]) for r in main_rows(m) if r["sparsity"] == 0.0)
        if pts:
            ax.plot([b for b, _ in pts], [max(v, 1e-5) for _, v in pts], "o-", label=m)
    for r in main_rows("float32"):
        ax.axhline(max(r["bler"], 1e-5), ls="--", c="k", label="float32")
    for r in rows:
        if r["method"] == "pilot-ls-ml" and r["ebno_db"] == e_plot and r["channel"] == "fading-ae":
            ax.axhline(max(r["bler"], 1e-5), ls=":", c="gray", label=f"pilot-LS + ML ({cfg.pilots} pilots)")
    ax.set_yscale("log")
    ax.set_xlabel("weight bit-width")
    ax.set_ylabel("BLER")
    ax.set_title(f"BLER vs bits, Eb/N0 {e_plot:g} dB, {s_plot} steps, sparsity 0")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, os.path.join(out, "bler_vs_bits.png"), dpi=120)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    marks = {0.0: "o", 0.5: "s", 0.75: "^"}
    for j, m in enumerate(cfg.method):
        for s in cfg.sparsity:
            pts = sorted({(r["model_bytes"], r["db_loss_at_1e-2"]) for r in rows
                          if r["method"] == m and r["sparsity"] == s and r["steps"] == s_plot and r["adc_bits"] == 0
                          and r["channel"] == "fading-ae" and r.get("db_loss_at_1e-2") is not None})
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], marks.get(s, "x") + "-", color=f"C{j}",
                        label=f"{m} s={s:g}", alpha=0.8)
    ax.axhline(0.0, c="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("model bytes (encoder + decoder)")
    ax.set_ylabel("Eb/N0 loss at BLER 1e-2 vs float32 [dB]")
    ax.set_title(f"dB loss vs size, {s_plot} steps")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:  # no method reached BLER 1e-2 (a null dB loss everywhere): say so instead of an empty legend
        ax.text(0.5, 0.5, "no dB loss to draw: no codec reached BLER 1e-2\nat these settings (db_loss_at_1e-2 "
                "is null)", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.3")
    fig.tight_layout()
    save_figure(fig, os.path.join(out, "db_loss_vs_bytes.png"), dpi=120)
