r"""Adversarial attacks and defences on a learned codec: :class:`AdversarialConfig` -> :func:`run_adversarial`.

For every Eb/N0 (``ebno_db``, per information bit), defence (``defence``) and PSR (``psr_db``,
:math:`\|p\|^2/\|x\|^2` per block in dB) the block error rate under every attack (``attack``,
:data:`metacomm.channels.attacks.ATTACKS`) is measured on ``test_blocks`` blocks, plus the clean BLER
(``attack = "none"``). Threat model and attacks: :mod:`metacomm.channels.attacks` (white-box per-block FGM,
PGD-L2, PGD-Linf against the defended receiver; ``uap``: Sadeghi & Larsson's Alg. 1 universal perturbation
crafted on ``uap_samples`` received blocks against the defended receiver; ``uap-shifted``: the black-box variant,
Alg. 1 on a *substitute* receiver of another architecture (``substitute_hidden`` x 2 hidden layers) that the
attacker trains on the transmitter's signals, applied with a random cyclic shift per block; ``jam-gauss``,
``jam-tone``: jammers at the same power).

Defences (each a codec derived from ``--base``; Adam ``lr``, ``train_steps`` x ``train_batch`` blocks at
``train_ebno_db``, perturbations crafted against the current weights at every step):

* ``none`` -- the base codec as given;
* ``adv-train`` -- adversarial training (Madry et al. 2018) against PGD-L2 at the single PSR ``adv_psr_db``;
* ``augment`` -- noise/jamming augmentation: Gaussian jamming at each ``train_psr_db`` and clean blocks;
* ``meta-adv`` -- adversarial querying on the meta-engine (scenario ``adversarial``): MAML over attacker tasks
  {UAP, PGD-L2, Gaussian jamming} x ``train_psr_db``, ``meta_steps`` outer steps from the base weights; deployed
  after one SGD step (``inner_lr``) on ``pilots`` clean pilot blocks (a ``meta-train --scenario adversarial``
  checkpoint as ``--base`` is used as the meta-adv initialisation directly);
* ``ae-ml`` -- the base's transmitter with the classical ML (minimum-distance) receiver for its codebook over
  AWGN: the strongest classical receiver that knows what the learned one knows (nothing trained);
* ``hamming-ml`` -- the classical Hamming(7,4) + BPSK + ML link (7 complex uses, real parts, rate 4/7) under
  the same attacks crafted against its ML metric (k = 4 only; it has nothing to defend).

Bookkeeping: every record has ``jam_ratio`` = BLER(attack) / BLER(jam-gauss) at the same defence, PSR and Eb/N0
(equal power); ``clean`` gives each defence's clean BLER and its cost relative to ``none``; ``uar`` is the comms
version of Kang et al.'s UAR ("Testing robustness against unforeseen adversaries", 2019): per attack family
and defence, :math:`100\sum_\ell \mathrm{acc}(d, f, \ell) / \sum_\ell \mathrm{acc}(\mathrm{ATA}_{f,\ell}, f, \ell)`
over six PSR levels (accuracy = 1 - BLER; ``uar_psr_db = "auto"`` calibrates them per family on the sweep: the six
swept PSRs upwards from the weakest one where the undefended codec's BLER reaches 1e-3), where :math:`\mathrm{ATA}_{f,\ell}` is the base
adversarially trained against family ``f`` at level ``\ell`` (``uar_steps`` steps), at the highest Eb/N0.
Writes ``results.json`` (kind ``metacomm-adversarial``), ``bler_vs_psr_<ebno>dB.png`` (one panel per attack, one
curve per defence) and prints a summary table.

Seeds: the defences' training uses ``seed``; evaluation point ``(ebno i, defence j, psr l, attack a)`` a generator
seeded ``1_000_003 * seed + 7919 * i + 104_729 * l + 1009 * a + 17 * j`` (independent of which other points run);
the crafted universal perturbations use that of attack ``uap`` at the point.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metacomm._log import info
from metacomm._validation import (
    MAX_WORK,
    ConfigError,
    check_db,
    check_memory,
    check_nonneg_int,
    check_positive,
    check_positive_int,
    reraise,
)
from metacomm.channels import attacks as A
from metacomm.channels.base import complex_normal
from metacomm.channels.units import ebnodb_to_no
from metacomm.experiments._common import check_out_dir, resolve_device

__all__ = ["AdversarialConfig", "run_adversarial", "DEFENCES", "Target", "codec_target", "train_under_attack"]

PACK = "adversarial"
DEFENCES = ("none", "adv-train", "augment", "meta-adv", "ae-ml", "hamming-ml")


def parse_db_list(field: str, value) -> list[float]:
    """dB values from ``START:STOP:STEP`` (the project's range parser,
    :func:`metacomm.experiments.ber.parse_ebno_range`), a comma string, a number or a list; every value finite
    and in the physical range ``[-300, 300]`` dB (:func:`~metacomm._validation.check_db`; ConfigError naming
    ``field`` otherwise)."""
    from metacomm.experiments.ber import parse_ebno_range
    if isinstance(value, str) and ":" in value:
        for tok in value.split(":"):
            try:
                v = float(tok)
            except ValueError:
                continue  # reported by the range parser with the expected syntax
            if not math.isfinite(v):
                raise ConfigError(field, f"values must be finite numbers of dB, got {tok.strip()!r}")
            check_db(field, v)  # a bound start/stop before the range parser computes a grid from them
        return [check_db(field, v) for v in parse_ebno_range(value, field=field)]
    if isinstance(value, str):
        for tok in value.split(","):
            try:
                float(tok)
            except ValueError:
                return [check_db(field, v) for v in parse_ebno_range(value, field=field)]  # names the bad token
    vals = []
    for v in (value if isinstance(value, (list, tuple)) else str(value).split(",")):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConfigError(field, f"expected dB values, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(field, f"values must be finite numbers of dB, got {v!r}")
        vals.append(check_db(field, f))
    if not vals:
        raise ConfigError(field, "give at least one value (dB)")
    return vals


@dataclass
class AdversarialConfig:
    """Settings of ``metacomm pack adversarial`` (keys = the flags without ``--``; module docstring).

    ``base``: a codec checkpoint of ``metacomm train`` (an Autoencoder) or a ``meta-train`` checkpoint whose model
    is an Autoencoder. ``attack``, ``defence``: comma lists; ``psr_db``: PSR [dB] per block, ``a:step:b`` or a comma
    list (finite, within [-300, 300] dB); ``ebno_db``: Eb/N0 [dB] per information bit, same syntax. ``test_blocks``:
    blocks per point. Work sizes (``test_blocks``, the step and sample counts) are at most 1e9
    (:data:`~metacomm._validation.MAX_WORK`); the sizes held at once go through ``check_memory``.
    """

    base: str
    out: str
    attack: object = "fgm,pgd-l2,pgd-linf,uap,uap-shifted,jam-gauss,jam-tone"
    psr_db: object = "-20:-2:2"
    ebno_db: object = "8,10"
    defence: object = "none,adv-train,augment,meta-adv,ae-ml,hamming-ml"
    test_blocks: int = 20000
    pgd_steps: int = 10
    pgd_step_size: float = 0.25
    uap_samples: int = 300
    substitute_hidden: int = 64
    substitute_steps: int = 1500
    train_ebno_db: float = 10.0
    train_psr_db: object = "-10,-6"
    adv_psr_db: float = -6.0
    train_steps: int = 1000
    train_batch: int = 256
    train_pgd_steps: int = 3
    lr: float = 1e-3
    meta_steps: int = 300
    meta_batch: int = 8
    inner_lr: float = 0.1
    pilots: int = 64
    uar: bool = True
    uar_psr_db: object = "auto"
    uar_steps: int = 300
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False

    def validate(self) -> AdversarialConfig:
        from metacomm.artefacts import check_output_dir
        from metacomm.experiments.packs import pack_kind
        if not isinstance(self.base, str) or not self.base:
            raise ConfigError("base", "give a codec checkpoint (metacomm train) or a meta-train checkpoint")
        self.attack = list(A.parse_attack_list("attack", self.attack, A.ATTACKS))
        self.defence = list(A.parse_attack_list("defence", self.defence, DEFENCES))
        self.psr_db = list(parse_db_list("psr_db", self.psr_db))
        self.ebno_db = list(parse_db_list("ebno_db", self.ebno_db))
        self.train_psr_db = list(parse_db_list("train_psr_db", self.train_psr_db))
        if self.uar_psr_db != "auto":
            self.uar_psr_db = list(parse_db_list("uar_psr_db", self.uar_psr_db))
            if len(self.uar_psr_db) < 1:
                raise ConfigError("uar_psr_db", "give PSR levels in dB or auto")
        self.adv_psr_db = parse_db_list("adv_psr_db", [self.adv_psr_db])[0]
        self.train_ebno_db = parse_db_list("train_ebno_db", [self.train_ebno_db])[0]
        # work sizes (blocks per point, iterations): at most MAX_WORK (1e9), beyond which a run takes days
        for f in ("test_blocks", "pgd_steps", "uap_samples", "train_pgd_steps"):
            setattr(self, f, check_positive_int(f, getattr(self, f), maximum=MAX_WORK))
        for f in ("substitute_hidden", "train_batch", "meta_batch", "pilots"):
            setattr(self, f, check_positive_int(f, getattr(self, f)))
        for f in ("substitute_steps", "train_steps", "meta_steps", "uar_steps"):
            setattr(self, f, check_nonneg_int(f, getattr(self, f), maximum=MAX_WORK))
        self.seed = check_nonneg_int("seed", self.seed)
        # what is held at once, before the base is read (sizes in bytes; complex64 blocks of at most 64 uses):
        # the substitute receiver (2 hidden layers, Adam), a training step's blocks with their attack graphs, the
        # blocks Alg. 1 iterates over, a meta-batch of pilot tasks
        check_memory("substitute_hidden", 16.0 * self.substitute_hidden * (self.substitute_hidden + 256),
                     f"a substitute receiver of width {self.substitute_hidden}")
        check_memory("train_batch", 4096.0 * self.train_batch, f"a training step of {self.train_batch} blocks")
        check_memory("uap_samples", 1024.0 * self.uap_samples, f"{self.uap_samples} blocks for the UAP")
        check_memory(("pilots", "meta_batch"), 4096.0 * self.meta_batch * self.pilots,
                     f"a meta-batch of {self.meta_batch} tasks of {self.pilots} pilots")
        for f in ("pgd_step_size", "lr", "inner_lr"):
            setattr(self, f, check_positive(f, getattr(self, f)))
        if not isinstance(self.uar, bool):
            raise ConfigError("uar", f"must be true or false, got {self.uar!r}")
        check_out_dir(self.out)
        check_output_dir(self.out, results="results.json", kind=pack_kind(PACK), field="out",
                         others=[_figure_name(e) for e in self.ebno_db])
        for e in self.ebno_db:  # would be refused only when drawn, after the results
            if os.path.isdir(os.path.join(self.out, _figure_name(e))):
                raise ConfigError("out", f"{os.path.join(self.out, _figure_name(e))!r} is a directory; refusing to "
                                         "replace it")
        return self


# ------------------------------------------------------------------------------------------------------------
# targets: what an attack needs from a link
# ------------------------------------------------------------------------------------------------------------

@dataclass
class Target:
    """A link under attack: ``codebook`` complex ``[M, N]`` (row m = transmitted block of message m, Es = 1 per
    complex use), ``logits_fn(y, no) -> [B, M]`` (the receiver's message scores, differentiable in ``y``),
    ``rate`` (information bits per complex channel use, for Eb/N0 -> N0) and the signal ``support``."""

    name: str
    codebook: torch.Tensor
    logits_fn: Callable
    rate: float
    support: A.Support

    def logits_at(self, no: float):
        return lambda y: self.logits_fn(y, no)


def codec_target(name: str, codec) -> Target:
    """The :class:`Target` of an Autoencoder (weights frozen, eval mode)."""
    codec.eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    book = codec.encoder.codebook().detach()
    return Target(name, book, lambda y, no: codec.decoder.block_logits(y), codec.rate,
                  A.Support.from_codebook(book))


def ml_target(name: str, codec) -> Target:
    r"""The base codec's *transmitter* with the classical ML receiver for its codebook over AWGN: message scores
    :math:`-\|y - c_m\|^2 / N_0` (the strongest receiver that knows what the learned one knows)."""
    codec.eval()
    book = codec.encoder.codebook().detach()

    def logits(y, no):
        return -(y.unsqueeze(-2) - book).abs().square().sum(-1) / no

    return Target(name, book, logits, codec.rate, A.Support.from_codebook(book))


def hamming_target(device) -> Target:
    from metacomm.codecs.hamming import Hamming74
    ham = Hamming74(device=device)
    book_r = ham.decoder.codebook.to(device)
    book = torch.complex(book_r, torch.zeros_like(book_r))
    return Target("hamming-ml", book, lambda y, no: ham.decoder.codeword_metrics(y, no)[..., 0, :], 4 / 7,
                  A.Support.from_codebook(book))


def _received(t: Target, no: float, num: int, g: torch.Generator):
    m = torch.randint(0, t.codebook.shape[0], (num,), generator=g, device=t.codebook.device)
    x = t.codebook[m]
    y = x + math.sqrt(no) * complex_normal(x.shape, generator=g, device=x.device)
    return m, x, y


# ------------------------------------------------------------------------------------------------------------
# training under attack (adv-train, augment, the UAR's ATA models) and the substitute receiver
# ------------------------------------------------------------------------------------------------------------

def _scenario_for(codec, *, ebno_db: float, families, psrs, cfg: AdversarialConfig, device):
    from metacomm.scenarios.adversarial import AdversarialScenario, AdversarialScenarioConfig
    c = codec.config()
    sc_cfg = AdversarialScenarioConfig(
        k=c["k"], n=c["n"], real_uses=c["real_uses"], hidden=c["hidden"], ebno_db=ebno_db,
        train_attacks=list(families), train_psr_db=list(psrs), test_attacks=list(families),
        test_psr_db=[-2.0], messages_per_task=cfg.pilots, pgd_steps=cfg.train_pgd_steps,
        pgd_step_size=0.5, uap_steps=cfg.train_pgd_steps)
    return AdversarialScenario(sc_cfg, device=device)


def train_under_attack(codec, attackers: list[tuple[str, float]], *, steps: int, batch: int, lr: float,
                       ebno_db: float, generator: torch.Generator, cfg: AdversarialConfig, device) -> nn.Module:
    """Fine-tune a copy of ``codec`` (every parameter, Adam ``lr``) for ``steps`` steps of ``batch`` blocks at
    ``ebno_db``, each step under an attacker drawn uniformly from ``attackers`` (``(family, PSR dB)``; ``none``:
    clean) crafted against the current weights (:class:`~metacomm.scenarios.adversarial.AdversarialObjective`).
    Returns the trained copy (eval mode)."""
    import copy
    model = copy.deepcopy(codec).to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    if steps == 0:
        return model.eval()
    fams = [f for f, _ in attackers]
    sc = _scenario_for(model, ebno_db=ebno_db, families=[f for f in fams if f != "none"] or ["jam-gauss"],
                       psrs=[p for _, p in attackers], cfg=cfg, device=device)
    obj = sc.objective
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        i = int(torch.randint(0, len(attackers), (1,), generator=generator, device=generator.device))
        b = sc.batch([attackers[i]], batch, generator)
        b = {k: v[0] for k, v in b.items()}
        loss, _ = obj.loss(model, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class _Substitute(nn.Module):
    """The black-box attacker's receiver: 2 hidden layers (ReLU) on the support reals -> message logits."""

    def __init__(self, support: A.Support, M: int, hidden: int):
        super().__init__()
        self.support = support
        self.net = nn.Sequential(nn.Linear(support.dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, M))

    def forward(self, y):
        return self.net(self.support.to_reals(y))


def train_substitute(t: Target, no: float, *, hidden: int, steps: int, generator: torch.Generator, device,
                     batch: int = 512, lr: float = 3e-3) -> _Substitute:
    """A substitute receiver of another architecture trained (Adam) on the target's transmitted blocks through
    AWGN at ``no`` -- what an attacker observing the transmitter can build without the receiver's weights."""
    from metacomm.codecs.learned_base import reset_linear_
    sub = _Substitute(t.support, t.codebook.shape[0], hidden).to(device)
    for m in sub.modules():
        if isinstance(m, nn.Linear):
            reset_linear_(m, generator if generator.device.type == "cpu" else torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(sub.parameters(), lr=lr)
    for _ in range(steps):
        m, _, y = _received(t, no, batch, generator)
        loss = F.cross_entropy(sub(y), m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in sub.parameters():
        p.requires_grad_(False)
    return sub.eval()


# ------------------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------------------

def craft_uap(logits_fn, t: Target, no: float, psr_db: float, samples: int, g: torch.Generator) -> torch.Tensor:
    """Sadeghi & Larsson's Alg. 1 against ``logits_fn`` on ``samples`` received blocks of ``t`` -> complex ``[N]``."""
    m, x, y = _received(t, no, samples, g)
    return A.uap_sadeghi(logits_fn, y, m, A.budget(x, psr_db, universal=True), t.support,
                         num_classes=t.codebook.shape[0])


def block_errors(t: Target, kind: str, psr_db: float | None, no: float, blocks: int, g: torch.Generator, *,
                 universal=None, steps=10, step_size=0.25, chunk: int = 4096) -> float:
    """Block errors of ``t`` in ``blocks`` blocks under attack ``kind`` (``"none"``: clean)."""
    lf = t.logits_at(no)
    errs, left = 0.0, blocks
    while left > 0:
        num = min(left, chunk)
        m, x, y = _received(t, no, num, g)
        if kind != "none":
            y = y + A.perturb(kind, logits_fn=lf, x=x, y=y, labels=m, psr_db=psr_db, support=t.support,
                              generator=g, universal=universal, steps=steps, step_size=step_size)
        with torch.no_grad():
            errs += float((lf(y).argmax(-1) != m).sum())
        left -= num
    return errs


def _point_generator(cfg, i, j, psr_idx, attack_idx, device) -> torch.Generator:
    seed = 1_000_003 * cfg.seed + 7919 * i + 104_729 * psr_idx + 1009 * attack_idx + 17 * j
    return torch.Generator(device=device).manual_seed(seed)


def load_base(path: str, device):
    """``(codec, info)`` from a ``metacomm train`` codec checkpoint or a ``meta-train`` checkpoint (its selected
    initialisation); ``info["meta_adv"]``: True for a meta-train checkpoint of scenario ``adversarial``."""
    from metacomm.artefacts import load_checkpoint
    from metacomm.codecs.autoencoder import Autoencoder
    payload = load_checkpoint(path, kinds=("metacomm-codec", "metacomm-meta"), field="base")
    fmt = str(payload.get("format", ""))
    if fmt.startswith("metacomm-codec") or "codec_class" in payload:
        from metacomm.codecs.checkpoint import load_codec
        try:
            codec, meta = load_codec(path, device=device)
        except ConfigError as e:
            raise reraise("base", e) from None
        info = {"kind": "codec", "train_ebno_db": meta.get("train_ebno_db"), "meta_adv": False}
    else:
        from metacomm.experiments.fewshot import load_meta_checkpoint
        sc, codec, _, _, ck = load_meta_checkpoint(path, device, field="base")
        info = {"kind": "meta-train", "scenario": ck["scenario"], "meta_adv": ck["scenario"] == "adversarial"}
    if not isinstance(codec, Autoencoder):
        raise ConfigError("base", f"{path} holds a {type(codec).__name__}; the adversarial pack attacks an "
                                  "Autoencoder (metacomm train --codec ae, or a meta-train of an AE scenario)")
    return codec.to(device).eval(), info


def _meta_adv(codec, info, cfg: AdversarialConfig, device, log):
    """The meta-adv initialisation: the base itself for an ``adversarial`` meta-train checkpoint, else a MAML run
    with adversarial querying from the base weights."""
    import copy

    from metacomm.adaptation.trainer import MetaConfig, MetaTrainer
    model = copy.deepcopy(codec).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    if info["meta_adv"] or cfg.meta_steps == 0:
        return model
    sc = _scenario_for(model, ebno_db=cfg.train_ebno_db, families=("uap", "pgd-l2", "jam-gauss"),
                       psrs=cfg.train_psr_db, cfg=cfg, device=device)
    mc = MetaConfig(algo="maml", inner_steps=1, inner_lr=cfg.inner_lr, outer_lr=cfg.lr, meta_batch=cfg.meta_batch)
    tr = MetaTrainer(model, sc.objective, sc.sample_tasks, mc, seed=cfg.seed, device=device)
    t0 = time.time()
    tr.train(cfg.meta_steps, progress=not cfg.quiet)
    log(f"meta-adv: {cfg.meta_steps} MAML steps (adversarial querying) in {time.time() - t0:.0f} s")
    return tr.model


def _deploy(model, cfg: AdversarialConfig, no: float, g: torch.Generator):
    """One SGD step (``inner_lr``) on ``pilots`` clean pilot blocks (the meta-adv deployment); returns a copy."""
    import copy
    m2 = copy.deepcopy(model)
    for p in m2.parameters():
        p.requires_grad_(True)
    dev = next(m2.parameters()).device
    msg = torch.randint(0, 2 ** m2.num_info_bits, (cfg.pilots,), generator=g, device=dev)
    x = m2.encoder.forward_index(msg)
    y = x + math.sqrt(no) * complex_normal(x.shape, generator=g, device=x.device)
    loss = F.cross_entropy(m2.decoder.block_logits(y), msg)
    grads = torch.autograd.grad(loss, list(m2.parameters()))
    with torch.no_grad():
        for p, gr in zip(m2.parameters(), grads, strict=True):
            p.sub_(cfg.inner_lr * gr)
    return m2.eval()


def run_adversarial(cfg: AdversarialConfig, *, log: Callable[[str], None] = info) -> dict:
    """Run the sweep of ``cfg`` (module docstring); writes ``results.json`` and the plots; returns the results."""
    from metacomm.experiments.packs import bler_record, progress, summary_table, write_pack_results
    cfg.validate()
    dev = resolve_device(cfg.device)
    t_start = time.time()
    base, info = load_base(cfg.base, dev)
    k = base.num_info_bits
    if "hamming-ml" in cfg.defence and k != 4:
        raise ConfigError("defence", f"hamming-ml needs a k = 4 codec (the base has k = {k})")
    g_train = torch.Generator(device=dev).manual_seed(cfg.seed)
    models: dict[str, object] = {}
    for d in cfg.defence:
        t0 = time.time()
        if d == "none":
            models[d] = base
        elif d == "adv-train":
            models[d] = train_under_attack(base, [("pgd-l2", cfg.adv_psr_db)], steps=cfg.train_steps,
                                           batch=cfg.train_batch, lr=cfg.lr, ebno_db=cfg.train_ebno_db,
                                           generator=g_train, cfg=cfg, device=dev)
        elif d == "augment":
            models[d] = train_under_attack(base, [("jam-gauss", p) for p in cfg.train_psr_db] + [("none", 0.0)],
                                           steps=cfg.train_steps, batch=cfg.train_batch, lr=cfg.lr,
                                           ebno_db=cfg.train_ebno_db, generator=g_train, cfg=cfg, device=dev)
        elif d == "meta-adv":
            models[d] = _meta_adv(base, info, cfg, dev, log)
        if d in ("adv-train", "augment", "meta-adv"):
            log(f"defence {d}: ready in {time.time() - t0:.0f} s")
    records: list[dict] = []
    n_points = len(cfg.ebno_db) * len(cfg.defence) * (1 + len(cfg.psr_db) * len(cfg.attack))
    subs: dict = {}
    with progress(n_points, "pack adversarial", quiet=cfg.quiet) as bar:
        for i, eb in enumerate(cfg.ebno_db):
            for j, d in enumerate(cfg.defence):
                if d == "hamming-ml":
                    t = hamming_target(dev)
                elif d == "ae-ml":
                    t = ml_target(d, base)
                elif d == "meta-adv":
                    no0 = float(ebnodb_to_no(eb, base.rate))
                    t = codec_target(d, _deploy(models[d], cfg, no0, _point_generator(cfg, i, j, 999, 999, dev)))
                else:
                    t = codec_target(d, models[d])
                no = float(ebnodb_to_no(eb, t.rate))
                g = _point_generator(cfg, i, j, 0, 0, dev)
                e = block_errors(t, "none", None, no, cfg.test_blocks, g)
                records.append(bler_record(e, cfg.test_blocks, attack="none", defence=d, psr_db=None, ebno_db=eb))
                bar.update(1)
                for li, psr in enumerate(cfg.psr_db):
                    uni = {}
                    if "uap" in cfg.attack:
                        uni["uap"] = craft_uap(t.logits_at(no), t, no, psr, cfg.uap_samples,
                                               _point_generator(cfg, i, j, li + 1, 100, dev))
                    if "uap-shifted" in cfg.attack:
                        key = (d, eb)  # the substitute learns the defence's own transmitter
                        if key not in subs:
                            subs[key] = train_substitute(t, no, hidden=cfg.substitute_hidden,
                                                         steps=cfg.substitute_steps,
                                                         generator=_point_generator(cfg, i, j, 0, 200, dev),
                                                         device=dev)
                        uni["uap-shifted"] = craft_uap(subs[key], t, no, psr, cfg.uap_samples,
                                                       _point_generator(cfg, i, j, li + 1, 300, dev))
                    for a, kind in enumerate(cfg.attack):
                        g = _point_generator(cfg, i, j, li + 1, a + 1, dev)
                        e = block_errors(t, kind, psr, no, cfg.test_blocks, g, universal=uni.get(kind),
                                         steps=cfg.pgd_steps, step_size=cfg.pgd_step_size)
                        records.append(bler_record(e, cfg.test_blocks, attack=kind, defence=d, psr_db=psr,
                                                   ebno_db=eb))
                        bar.update(1)
    _add_ratios(records)
    clean = _clean_costs(records)
    uar = _uar(base, models, cfg, dev, log, _uar_levels(records, cfg)) if cfg.uar else None
    config = {"base": os.path.abspath(cfg.base), "base_kind": info["kind"], **{
        k_: v for k_, v in asdict(cfg).items() if k_ not in ("base", "out", "quiet", "device")},
        "device": str(dev), "psr_definition": "||p||^2 / ||x||^2 per block, dB (x: transmitted block, Es = 1 per "
        "complex use; perturbations and jammers on the signal's real dimensions)",
        "ebno_definition": "Eb/N0 per information bit, N0 = 1 / (rate * Eb/N0), rate = k / n_c bits per complex use",
        "ci": "Clopper-Pearson 95%"}
    runtime = time.time() - t_start
    # The previous run's figures (its Eb/N0 grid may differ from this one's) describe results this run replaces:
    # they go before results.json is written, so the directory never shows one run's figures beside another's
    # results.
    _retire_figures(cfg)
    write_pack_results(cfg.out, PACK, config, records, clean=clean, uar=uar, runtime_s=runtime,
                       figures=[_figure_name(e) for e in cfg.ebno_db])
    _plots(records, cfg)
    if not cfg.quiet:
        show = min(cfg.psr_db, key=lambda p: abs(p + 6.0))  # the letter's PSR -6 dB, or the nearest swept
        log(summary_table([r for r in records if r["psr_db"] is None or r["psr_db"] == show],
                          ["ebno_db", "defence", "attack", "psr_db", "bler", "jam_ratio", "block_errors", "blocks"]))
        if uar:
            log(summary_table(uar["table"], ["defence", *uar["families"]]))
    log(f"pack adversarial: {len(records)} points in {runtime:.0f} s")
    return {"config": config, "results": records, "clean": clean, "uar": uar}


def _add_ratios(records: list[dict]) -> None:
    jam = {(r["defence"], r["psr_db"], r["ebno_db"]): r["bler"] for r in records if r["attack"] == "jam-gauss"}
    for r in records:
        ref = jam.get((r["defence"], r["psr_db"], r["ebno_db"]))
        r["jam_ratio"] = (r["bler"] / ref) if (ref and r["attack"] != "none") else None


def _clean_costs(records: list[dict]) -> list[dict]:
    base = {r["ebno_db"]: r["bler"] for r in records if r["attack"] == "none" and r["defence"] == "none"}
    out = []
    for r in records:
        if r["attack"] != "none":
            continue
        b0 = base.get(r["ebno_db"])
        out.append({"defence": r["defence"], "ebno_db": r["ebno_db"], "clean_bler": r["bler"],
                    "clean_bler_ci": r["bler_ci"], "cost_vs_none": (r["bler"] / b0) if b0 else None,
                    "cost_minus_none": (r["bler"] - b0) if b0 is not None else None})
    return out


UAR_FLOOR = 1e-3
"""``uar_psr_db = "auto"``: the levels of a family start at the weakest swept PSR where the undefended codec's BLER
under it reaches this value."""


def _uar_levels(records, cfg: AdversarialConfig) -> dict[str, list[float]]:
    """Six PSR levels [dB] per attack family: the given ones, or (``auto``, calibrated on the sweep at the highest
    Eb/N0) the six swept PSRs from the weakest one where the undefended codec's (``none``; else the first
    defence's) BLER reaches :data:`UAR_FLOOR` upwards -- the six strongest swept PSRs when fewer remain."""
    if cfg.uar_psr_db != "auto":
        return {f: list(cfg.uar_psr_db) for f in cfg.attack}
    eb = max(cfg.ebno_db)
    ref = "none" if "none" in cfg.defence else cfg.defence[0]
    grid = sorted(cfg.psr_db)
    out = {}
    for f in cfg.attack:
        bler = {r["psr_db"]: r["bler"] for r in records
                if r["attack"] == f and r["defence"] == ref and r["ebno_db"] == eb}
        first = next((i for i, p in enumerate(grid) if bler.get(p, 0.0) >= UAR_FLOOR), len(grid))
        lv = grid[first:first + 6]
        out[f] = lv if len(lv) == 6 else grid[-6:]
    return out


def _uar(base, models, cfg: AdversarialConfig, dev, log, levels: dict[str, list[float]]) -> dict:
    """Kang et al.'s UAR per attack family (module docstring) at the highest Eb/N0, over ``levels[family]``."""
    eb = max(cfg.ebno_db)
    fams = list(cfg.attack)
    defs = [d for d in cfg.defence]
    acc: dict = {}
    ata_acc: dict = {}
    g_train = torch.Generator(device=dev).manual_seed(cfg.seed + 7)
    t0 = time.time()
    fixed = {}
    for d in defs:
        if d == "hamming-ml":
            fixed[d] = hamming_target(dev)
        elif d == "ae-ml":
            fixed[d] = ml_target(d, base)
        elif d == "meta-adv":
            no0 = float(ebnodb_to_no(eb, base.rate))
            fixed[d] = codec_target(d, _deploy(models[d], cfg, no0,
                                               torch.Generator(device=dev).manual_seed(cfg.seed + 11)))
        else:
            fixed[d] = codec_target(d, models[d])
    subs: dict = {}
    for fi, f in enumerate(fams):
        for li, psr in enumerate(levels[f]):
            ata = train_under_attack(base, [(f, psr)], steps=cfg.uar_steps, batch=cfg.train_batch,
                                     lr=cfg.lr, ebno_db=eb, generator=g_train, cfg=cfg, device=dev)
            targets = {"ATA": codec_target("ATA", ata), **fixed}
            for name, t in targets.items():
                no = float(ebnodb_to_no(eb, t.rate))
                g = torch.Generator(device=dev).manual_seed(cfg.seed * 7 + 31 * fi + li)
                uni = None
                if f == "uap":
                    uni = craft_uap(t.logits_at(no), t, no, psr, cfg.uap_samples, g)
                elif f == "uap-shifted":
                    if name == "ATA" or name not in subs:
                        subs[name] = train_substitute(t, no, hidden=cfg.substitute_hidden,
                                                      steps=cfg.substitute_steps, generator=g, device=dev)
                    uni = craft_uap(subs[name], t, no, psr, cfg.uap_samples, g)
                n = max(cfg.test_blocks // 4, 1000)
                e = block_errors(t, f, psr, no, n, g, universal=uni, steps=cfg.pgd_steps,
                                 step_size=cfg.pgd_step_size)
                (ata_acc if name == "ATA" else acc)[(name, f, psr)] = 1.0 - e / n
    table = []
    for d in defs:
        row = {"defence": d}
        for f in fams:
            num = sum(acc[(d, f, p)] for p in levels[f])
            den = sum(ata_acc[("ATA", f, p)] for p in levels[f])
            row[f] = 100.0 * num / den if den > 0 else None
        table.append(row)
    log(f"UAR: {sum(len(levels[f]) for f in fams)} ATA models in {time.time() - t0:.0f} s")
    return {"ebno_db": eb, "psr_db": {f: levels[f] for f in fams}, "families": fams, "table": table,
            "calibration": "given levels" if cfg.uar_psr_db != "auto" else
            f"auto: per family, six swept PSRs upwards from where the undefended BLER reaches {UAR_FLOOR:g}",
            "ata_accuracy": [{"attack": f, "psr_db": p, "accuracy": ata_acc[("ATA", f, p)]} for f in fams
                             for p in levels[f]],
            "accuracy": [{"defence": d, "attack": f, "psr_db": p, "accuracy": acc[(d, f, p)]} for d in defs
                         for f in fams for p in levels[f]],
            "definition": "UAR = 100 * sum_l acc(defence, attack, l) / sum_l acc(ATA(attack, l), attack, l), "
                          "acc = 1 - BLER, ATA = the base adversarially trained against that attack at that PSR"}


def _figure_name(ebno_db: float) -> str:
    return f"bler_vs_psr_{ebno_db:g}dB.png"


def _retire_figures(cfg: AdversarialConfig) -> None:
    """Remove the figures of the results ``cfg.out/results.json`` holds now (checked as this pack's by
    :meth:`AdversarialConfig.validate`): those its Eb/N0 grid named, and those this run will draw. Regular files
    only."""
    from metacomm.artefacts import read_json, retire_files
    from metacomm.experiments.packs import pack_kind, results_path
    names = {_figure_name(e) for e in cfg.ebno_db}
    rp = results_path(cfg.out)
    if os.path.isfile(rp):
        try:
            old = read_json(rp, kind=pack_kind(PACK), field="out")
            figs = old.get("figures")
            if isinstance(figs, list):
                names |= {f for f in figs if isinstance(f, str) and f == os.path.basename(f)}
            grid = (old.get("config") or {}).get("ebno_db")
            if isinstance(grid, list):
                names |= {_figure_name(float(e)) for e in grid if isinstance(e, (int, float))
                          and not isinstance(e, bool) and math.isfinite(e)}
        except ConfigError:
            pass  # refused by validate already, unless it changed since; then only this run's names go
    for name in sorted(names):
        if not (name.startswith("bler_vs_psr_") and name.endswith("dB.png")):
            continue
        retire_files(cfg.out, [name])


def _plots(records, cfg: AdversarialConfig) -> None:
    """``bler_vs_psr_<E>dB.png`` per Eb/N0: one panel per attack (a shared BLER axis, so that an attack reads
    against Gaussian jamming of the same power), one curve per defence (distinct colour and marker) with 95 %
    intervals, zero-error points as upper bounds, the legend at the right outside the panels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metacomm.artefacts import save_figure
    from metacomm.sims.plots import rate_curve, zero_error_entry
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    for eb in cfg.ebno_db:
        n = len(cfg.attack)
        cols = min(4, n)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 1.8, 3.0 * rows), squeeze=False, sharey=True,
                                 layout="constrained")
        zero = False
        for ai, kind in enumerate(cfg.attack):
            ax = axes[ai // cols][ai % cols]
            for di, d in enumerate(cfg.defence):
                pts = [r for r in records if r["attack"] == kind and r["defence"] == d and r["ebno_db"] == eb]
                if pts:
                    zero |= rate_curve(ax, [r["psr_db"] for r in pts], [r["bler"] for r in pts],
                                       [r.get("bler_ci") for r in pts], color=f"C{di % 10}",
                                       marker=markers[di % len(markers)], label=d)
            ax.set_yscale("log")
            ax.set_title(kind, fontsize=9)
            ax.set_xlabel("PSR [dB]")
            ax.set_ylabel("BLER")
            ax.grid(True, which="both", alpha=0.3)
        for ai in range(n, rows * cols):
            axes[ai // cols][ai % cols].axis("off")
        if zero:
            zero_error_entry(axes[0][0])
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False, title="defence",
                       title_fontsize=8)
        fig.suptitle(f"BLER vs PSR at Eb/N0 {eb:g} dB (95% intervals; same BLER axis for every attack)",
                     fontsize=10)
        save_figure(fig, os.path.join(cfg.out, _figure_name(eb)), dpi=110)
        plt.close(fig)
