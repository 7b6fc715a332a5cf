r"""Scenario ``adversarial``: meta-learning a codec whose meta-loss is its performance under attack.

Setting (Sadeghi & Larsson, IEEE Comm. Letters 2019; O'Shea & Hoydis 2017): the (n, k) = (7, 4) autoencoder with
real channel uses (Sadeghi & Larsson's own AE(7,4) has 7 complex uses: ``real_uses = false``) over AWGN at ``ebno_db`` (Eb/N0 per information bit, :math:`N_0 = 1/(\rho\,E_b/N_0)` with
:math:`\rho = k/n_c` bits per complex use), and an attacker adding a perturbation :math:`p` to the received block
with budget :math:`\mathrm{PSR} = \|p\|^2/\|x\|^2` per block (:mod:`metacomm.channels.attacks`).

A **task** is one attacker: a family (``train_attacks``, default {UAP-L2, PGD-L2, Gaussian jamming}) and a PSR
(``train_psr_db``). Its **support** batch is ``messages_per_task`` clean pilot blocks (known messages, noise
only); its **query** batch is as many fresh blocks received under the task's attacker, with the perturbation
re-crafted against the *adapted* weights inside the loss -- *adversarial querying* (Goldblum, Fowl & Goldstein,
"Adversarially robust few-shot learning: a meta-learning approach", NeurIPS 2020): the inner loop adapts on
clean pilots, the outer loss (:meth:`AdversarialObjective.outer_loss`) scores the adapted codec under attack.

torch.func rules: every random part of an attack (PGD random starts, the UAP start, Gaussian-jammer draws, tone
frequencies and phases, cyclic shifts) is drawn by the sampler and carried in the batch; which family a task uses
is a one-hot weight vector ``w`` in the batch (every family the scenario knows is computed and the task's one is
selected by ``w``: no Python branching on task data). The inner iterations of PGD / the batch UAP differentiate the
loss w.r.t. the perturbation with :func:`torch.func.grad` and the crafted perturbation is *detached* from the
weights: by Danskin's theorem the gradient of :math:`\max_p L(w, p)` w.r.t. :math:`w` is
:math:`\nabla_w L(w, p^*)` at the maximiser, the standard choice of adversarial training (Madry et al. 2018);
differentiating through the attack's iterations would cost a third-order graph for MAML for no gain in the
objective's value.

Inside the loss the universal families are crafted on the query batch itself: ``uap`` = one perturbation for the
whole batch by projected gradient ascent on the PSR sphere (:func:`~metacomm.channels.attacks.uap_pgd`),
``uap-shifted`` = that perturbation cyclically shifted by a random number of real dimensions per block. (The
``metacomm pack adversarial`` experiment also runs the letter's Alg. 1 and the black-box variant crafted on a
substitute receiver of another architecture.)

Test tasks (``evaluate``): the held-out families ``test_attacks`` (PGD-Linf, shifted UAP, tone jammer) at the
held-out PSRs ``test_psr_db`` (-2 dB: stronger, -26 dB: much weaker), every pair, cycled to ``num_test_tasks``.
References: ``genie`` (a codec trained from scratch under each test task's own attacker) and the classical
``hamming-ml`` (Hamming(7,4) + BPSK + ML decoding under the same attacker, crafted against the ML metric).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metacomm._validation import (
    MAX_WORK,
    ConfigError,
    check_db,
    check_finite,
    check_model_memory,
    check_nonneg_int,
    check_positive_int,
    mlp_params,
)
from metacomm.adaptation import MetaObjective, TaskBatch
from metacomm.adaptation.finetune import finetune_batched
from metacomm.adaptation.functional import SGD, Adam, batched_loss
from metacomm.channels import attacks as A
from metacomm.channels.base import complex_normal
from metacomm.channels.units import ebnodb_to_no
from metacomm.codecs.autoencoder import MAX_K, Autoencoder
from metacomm.scenarios.base import FewShotScenario
from metacomm.scenarios.registry import register_scenario

__all__ = ["AdversarialScenarioConfig", "AdversarialObjective", "AdversarialScenario", "IN_LOSS_ATTACKS",
           "parse_attacks", "parse_psrs"]

NAME = "adversarial"

#: the families an in-loss attack can be (``none`` = clean)
IN_LOSS_ATTACKS = ("none", *A.ATTACKS)


def parse_attacks(field: str, value, allowed=IN_LOSS_ATTACKS) -> tuple[str, ...]:
    """A comma string or list of attack names -> tuple (:func:`metacomm.channels.attacks.parse_attack_list`)."""
    return A.parse_attack_list(field, value, allowed)


def parse_psrs(field: str, value) -> tuple[float, ...]:
    """PSR values in dB (a comma string, a number or a list) -> finite floats; ConfigError naming ``field`` for
    NaN, infinite or unparsable values. (The experiment's flags also take ``a:step:b`` ranges:
    :func:`metacomm.experiments.adversarial.parse_db_list`.)"""
    items = value.split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    vals = []
    for v in items:
        if isinstance(v, str) and not v.strip():
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConfigError(field, f"expected PSR values in dB, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(field, f"values must be finite numbers of dB, got {v!r}")
        vals.append(check_db(field, f))
    if not vals:
        raise ConfigError(field, "give at least one PSR value (dB)")
    return tuple(vals)


@dataclass
class AdversarialScenarioConfig:
    """Settings of ``adversarial`` (defaults: the O'Shea-Hoydis AE(7,4) with 7 real uses over AWGN, as
    ``metacomm train --codec ae --n 7 --k 4``; ``real_uses = false`` gives Sadeghi & Larsson's 7 complex uses).

    ``k``, ``n``, ``real_uses``, ``hidden``: the :class:`~metacomm.codecs.autoencoder.Autoencoder` (n real uses,
    n_c = n/2 complex uses, with ``real_uses``). ``ebno_db``: Eb/N0 [dB] per information bit of every task.
    ``train_attacks`` / ``train_psr_db`` [dB]: the meta-training attackers; ``test_attacks`` / ``test_psr_db``:
    the held-out ones (:data:`IN_LOSS_ATTACKS`). ``messages_per_task``: support (clean pilots) = query size.
    ``pgd_steps``, ``pgd_step_size`` (relative to the radius), ``uap_steps``: attack iterations inside the loss.
    ``num_test_tasks``: test attackers (the held-out family x PSR pairs, cycled); ``test_seed``: their draws.
    """

    k: int = 4
    n: int = 7
    real_uses: bool = True
    hidden: int = 16
    ebno_db: float = 10.0
    train_attacks: object = ("uap", "pgd-l2", "jam-gauss")
    train_psr_db: object = (-10.0, -6.0)
    test_attacks: object = ("pgd-linf", "uap-shifted", "jam-tone")
    test_psr_db: object = (-2.0, -26.0)
    messages_per_task: int = 64
    pgd_steps: int = 3
    pgd_step_size: float = 0.5
    uap_steps: int = 3
    num_test_tasks: int = 6
    test_seed: int = 4321

    def validate(self) -> AdversarialScenarioConfig:
        self.k = check_positive_int("k", self.k)
        if self.k > MAX_K:
            raise ConfigError("k", f"must be <= {MAX_K} (the autoencoder scores all 2^k messages), got {self.k}")
        self.n = check_positive_int("n", self.n)
        if not isinstance(self.real_uses, bool):
            raise ConfigError("real_uses", f"must be true or false, got {self.real_uses!r}")
        self.hidden = check_positive_int("hidden", self.hidden)
        self.ebno_db = check_db("ebno_db", self.ebno_db)
        self.train_attacks = list(parse_attacks("train_attacks", self.train_attacks))
        self.test_attacks = list(parse_attacks("test_attacks", self.test_attacks))
        self.train_psr_db = list(parse_psrs("train_psr_db", self.train_psr_db))
        self.test_psr_db = list(parse_psrs("test_psr_db", self.test_psr_db))
        self.messages_per_task = check_positive_int("messages_per_task", self.messages_per_task)
        self.pgd_steps = check_positive_int("pgd_steps", self.pgd_steps, maximum=MAX_WORK)
        self.pgd_step_size = float(check_finite("pgd_step_size", self.pgd_step_size))
        if self.pgd_step_size <= 0:
            raise ConfigError("pgd_step_size", f"must be > 0, got {self.pgd_step_size}")
        self.uap_steps = check_positive_int("uap_steps", self.uap_steps, maximum=MAX_WORK)
        self.num_test_tasks = check_positive_int("num_test_tasks", self.num_test_tasks)
        self.test_seed = check_nonneg_int("test_seed", self.test_seed)
        M, d, h = 2 ** self.k, (self.n if self.real_uses else 2 * self.n), self.hidden
        check_model_memory(("hidden", "n", "k"), mlp_params(M, h, d) + mlp_params(d, h, M),
                           f"an autoencoder with hidden = {h}")
        return self


class AdversarialObjective(MetaObjective):
    """Adversarial querying: ``inner_loss`` = clean CE on the support pilots; ``outer_loss`` = CE on the query
    under the task's attacker crafted against the weights being scored (module docstring).

    A task's batch (one task, inside the engine's ``vmap``): ``msg`` int64 ``[B]``, ``noise`` complex ``[B, N]``
    (unit variance), ``no`` (N0 per complex sample, 0-d), ``psr`` (linear PSR, 0-d), ``w`` float ``[K]`` (one-hot
    over :attr:`families`), ``start`` ``[B, D]`` (normal draws: PGD starts and Gaussian jamming), ``ustart``
    ``[D]`` (UAP start), ``tone`` ``[B, 2]`` (uniforms), ``shift`` int64 ``[B]`` (cyclic shifts).
    """

    adapt = "all"

    def __init__(self, support: A.Support, families, *, pgd_steps=3, pgd_step_size=0.5, uap_steps=3):
        self.support = support
        self.families = tuple(families)
        self.pgd_steps, self.pgd_step_size, self.uap_steps = pgd_steps, pgd_step_size, uap_steps

    def perturbation(self, model, x, y, batch) -> torch.Tensor:
        """The task's perturbation ``[B, N]`` (detached), crafted against ``model``'s current weights."""
        sup, msg = self.support, batch["msg"]
        logits = model.decoder.block_logits
        energy = x.detach().abs().square().sum(-1)
        rad = torch.sqrt(batch["psr"] * energy)  # [B]
        urad = torch.sqrt(batch["psr"] * energy.mean())
        total = torch.zeros_like(y)
        uni = None
        for i, kind in enumerate(self.families):
            if kind == "none":
                continue
            if kind == "fgm":
                p = A.fgm(logits, y, msg, rad, sup)
            elif kind == "pgd-l2":
                p = A.pgd_l2(logits, y, msg, rad, sup, steps=self.pgd_steps, step_size=self.pgd_step_size,
                             start=batch["start"], keep_best=False)
            elif kind == "pgd-linf":
                p = A.pgd_linf(logits, y, msg, rad, sup, steps=self.pgd_steps, step_size=self.pgd_step_size,
                               start=batch["start"])
            elif kind in A.UNIVERSAL:
                if uni is None:
                    uni = A.uap_pgd(logits, y, msg, urad, sup, steps=self.uap_steps, step_size=self.pgd_step_size,
                                    start=batch["ustart"])
                p = uni.expand_as(y) if kind == "uap" else A.cyclic_shift(uni, sup, batch["shift"])
            elif kind == "jam-gauss":
                p = sup.to_complex(A.scale_to_budget(batch["start"], rad))
            elif kind == "jam-tone":
                d = torch.arange(sup.dim, device=y.device, dtype=y.real.dtype)
                t = batch["tone"]
                tone = torch.cos(2 * math.pi * 0.5 * t[:, :1] * d + 2 * math.pi * t[:, 1:])
                p = sup.to_complex(A.scale_to_budget(tone, rad))
            else:  # pragma: no cover - validated by the scenario
                raise ConfigError("attack", f"unknown attack {kind!r}")
            total = total + batch["w"][i].to(y.real.dtype) * p
        return total.detach()

    def _forward(self, model, batch, attacked: bool):
        msg = batch["msg"]
        x = model.encoder.forward_index(msg)
        y = x + torch.sqrt(batch["no"]).to(x.real.dtype) * batch["noise"]
        if attacked:
            y = y + self.perturbation(model, x, y, batch)
        logits = model.decoder.block_logits(y)
        loss = F.cross_entropy(logits, msg)
        errs = (logits.argmax(-1) != msg).sum().to(logits.dtype)
        return loss, {"block_errors": errs, "blocks": torch.ones_like(errs) * msg.shape[0]}

    def loss(self, model, batch):
        """Attacked loss (the query's); stats ``block_errors``, ``blocks``."""
        return self._forward(model, batch, True)

    def clean_loss(self, model, batch):
        return self._forward(model, batch, False)

    def inner_loss(self, model, support):
        return self._forward(model, support, False)[0]

    def outer_loss(self, model, query):
        return self._forward(model, query, True)


@register_scenario
class AdversarialScenario(FewShotScenario):
    """Builds the codec, attacker tasks, adversarial-querying objective, references and evaluation of
    ``adversarial`` (module docstring)."""

    name = NAME
    config_class = AdversarialScenarioConfig
    metric = "bler"
    support_field = "messages_per_task"
    snr_field, snr_kind = "ebno_db", "ebno"
    classical_schemes = {"hamming-ml": "hamming_ml"}
    common_random_numbers = False
    pilots_meaning = "clean pilot messages per adaptation step; test blocks attacked against the adapted codec"
    test_what = "attackers"
    meta_defaults = {"meta_batch": 12, "outer_lr": 0.003, "meta_steps": 2000}

    def __init__(self, config: AdversarialScenarioConfig | None = None, device="cpu"):
        self.config = (config or AdversarialScenarioConfig()).validate()
        self.device = torch.device(device)
        c = self.config
        self.families = tuple(dict.fromkeys([*c.train_attacks, *c.test_attacks]))
        probe = Autoencoder(c.k, c.n, real_uses=c.real_uses, hidden=c.hidden)
        self.num_samples = probe.encoder.num_samples
        # the signal's real dims: real uses of an odd n leave the last imaginary part unused
        mask = torch.ones(self.num_samples, 2, dtype=torch.bool)
        if c.real_uses and c.n % 2:
            mask[-1, 1] = False
        self.support = A.Support(mask.to(self.device))
        self.rate = c.k / probe.num_channel_uses
        self.no = float(ebnodb_to_no(c.ebno_db, self.rate))
        self.objective = AdversarialObjective(self.support, self.families, pgd_steps=c.pgd_steps,
                                              pgd_step_size=c.pgd_step_size, uap_steps=c.uap_steps)
        self.set_test_tasks(c.num_test_tasks)

    @classmethod
    def bits_per_symbol(cls, config) -> float:
        """Information bits per complex channel use, ``k / n_c`` (n_c = n/2 with real uses)."""
        return config.k / (config.n / 2 if config.real_uses else config.n)

    # --- models ---------------------------------------------------------------------------------------
    def build_model(self, seed: int) -> nn.Module:
        c = self.config
        from metacomm.codecs.learned_base import reset_linear_
        g = torch.Generator().manual_seed(int(seed))
        model = Autoencoder(c.k, c.n, real_uses=c.real_uses, hidden=c.hidden)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                reset_linear_(m, g)
        return model.to(self.device)

    # --- tasks ----------------------------------------------------------------------------------------
    def attackers(self, attacks, psrs_db) -> list[tuple[str, float]]:
        """Every (family, PSR dB) pair."""
        return list(itertools.product(attacks, psrs_db))

    def batch(self, tasks: list[tuple[str, float]], num: int, g: torch.Generator, *, clean: bool = False) -> dict:
        """``num`` blocks for every attacker in ``tasks`` (leaves ``[T, ...]``); ``clean``: no attack (w = 0)."""
        T, dev, D = len(tasks), self.device, self.support.dim
        M = 2 ** self.config.k
        msg = torch.randint(0, M, (T, num), generator=g, device=dev)
        noise = complex_normal((T, num, self.num_samples), generator=g, device=dev)
        start = torch.randn(T, num, D, generator=g, device=dev)
        ustart = torch.randn(T, D, generator=g, device=dev)
        tone = torch.rand(T, num, 2, generator=g, device=dev)
        shift = torch.randint(0, D, (T, num), generator=g, device=dev)
        w = torch.zeros(T, len(self.families), device=dev)
        psr = torch.zeros(T, device=dev)
        if not clean:
            for t, (kind, p_db) in enumerate(tasks):
                if kind != "none":
                    w[t, self.families.index(kind)] = 1.0
                psr[t] = A.psr_linear(p_db)
        return {"msg": msg, "noise": noise, "no": torch.full((T,), self.no, device=dev), "psr": psr, "w": w,
                "start": start, "ustart": ustart, "tone": tone, "shift": shift}

    def _draw_tasks(self, num_tasks: int, g: torch.Generator, attacks, psrs) -> list[tuple[str, float]]:
        pairs = self.attackers(attacks, psrs)
        idx = torch.randint(0, len(pairs), (num_tasks,), generator=g, device=self.device)
        return [pairs[int(i)] for i in idx]

    def sample_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """Training attackers: family and PSR drawn uniformly from ``train_attacks`` x ``train_psr_db``; support
        clean, query attacked."""
        c = self.config
        tasks = self._draw_tasks(num_tasks, g, c.train_attacks, c.train_psr_db)
        B = c.messages_per_task
        return TaskBatch(self.batch(tasks, B, g, clean=True), self.batch(tasks, B, g))

    def sample_val_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """Validation attackers: the training families at the training PSRs (model selection must not see the
        held-out families), fresh draws."""
        return self.sample_tasks(num_tasks, g)

    def set_test_tasks(self, num: int) -> None:
        """``num`` test attackers: the held-out family x PSR pairs in order, cycled."""
        num = check_positive_int("num_test_tasks", num)
        pairs = self.attackers(self.config.test_attacks, self.config.test_psr_db)
        self.test_tasks = [pairs[i % len(pairs)] for i in range(num)]

    @property
    def num_test_tasks(self) -> int:
        return len(self.test_tasks)

    # --- evaluation -----------------------------------------------------------------------------------
    def evaluate(self, params: dict, model: nn.Module, *, pilots: int, steps, generator: torch.Generator,
                 test_blocks: int = 10000, first=None, rest=None, adapt=None, tasks=None, attacked_inner=False
                 ) -> dict[int, tuple]:
        """BLER under the test attackers after few-shot adaptation: ``{steps: (block_errors, blocks)}`` pooled.

        Every attacker's copy starts from ``params``; each step draws ``pilots`` clean pilot blocks
        (``attacked_inner``: attacked ones, crafted against the copy being adapted -- the genie's training) and
        takes one step (``first``: default SGD 0.1; ``rest``: Adam 1e-3). After each recorded step,
        ``test_blocks`` blocks per attacker are decoded under the attack re-crafted against the adapted copy.
        """
        pilots = check_positive_int("pilots", pilots)
        tasks = self.test_tasks if tasks is None else list(tasks)
        T = len(tasks)
        out: dict[int, tuple] = {}
        obj = self.objective

        def draw(step):
            return self.batch(tasks, pilots, generator, clean=not attacked_inner)

        def record(step, phi):
            errs, left = 0.0, test_blocks
            while left > 0:
                num = min(left, 2048)
                b = self.batch(tasks, num, generator)
                _, st = batched_loss(model, {}, obj.loss, b, phi)
                errs += float(st["block_errors"].sum())
                left -= num
            out[step] = (errs, float(test_blocks * T))

        inner = obj.loss if attacked_inner else obj.clean_loss
        finetune_batched(model, params, lambda m, b: inner(m, b)[0], num_tasks=T, draw_batch=draw, record=steps,
                         on_record=record, adapt=adapt, first=first or SGD(0.1), rest=rest or Adam(1e-3))
        return out

    def genie(self, model_seed: int, *, generator: torch.Generator, train_steps: int = 2000, batch: int = 256,
              lr: float = 3e-3, test_blocks: int = 10000) -> tuple[float, float]:
        """A codec trained from scratch under each test attacker itself (adversarial training against exactly that
        family and PSR, Adam ``lr``, ``train_steps`` steps of ``batch`` blocks); pooled ``(errors, blocks)``."""
        model = self.build_model(model_seed)
        params = {n: p.detach() for n, p in model.named_parameters()}
        res = self.evaluate(params, model, pilots=batch, steps=[train_steps], generator=generator,
                            test_blocks=test_blocks, first=Adam(lr), rest=Adam(lr), attacked_inner=True)
        return res[train_steps]

    def hamming_ml(self, *, pilots: int, generator: torch.Generator, test_blocks: int = 10000,
                   tasks=None) -> tuple[float, float]:
        """Classical reference: Hamming(7,4) + BPSK (7 complex uses, real parts) + ML decoding at the same Eb/N0
        under every test attacker, white-box attacks crafted against the ML codeword metric (the universal ones
        on each test batch, as in the loss). Needs k = 4, n = 7. ``pilots`` is unused (nothing to adapt)."""
        from metacomm.codecs.hamming import Hamming74
        c = self.config
        if (c.k, c.n) != (4, 7):
            raise ConfigError("scheme", "hamming-ml needs k = 4, n = 7")
        ham = Hamming74(device=self.device)
        errs, total = 0.0, 0.0
        for kind, p_db in (self.test_tasks if tasks is None else tasks):
            e, b = hamming_under_attack(ham, kind, p_db, c.ebno_db, test_blocks, generator, device=self.device,
                                        pgd_steps=c.pgd_steps, pgd_step_size=c.pgd_step_size)
            errs, total = errs + e, total + b
        return errs, total


def hamming_target(ham, ebno_db: float, device=None):
    """``(codebook complex [16, 7], logits_fn, support, N0)`` of Hamming(7,4) + BPSK + ML at ``ebno_db``."""
    book_r = ham.decoder.codebook.to(device)
    book = torch.complex(book_r, torch.zeros_like(book_r))
    no = float(ebnodb_to_no(ebno_db, 4 / 7))

    def logits(y):
        return ham.decoder.codeword_metrics(y, no)[..., 0, :]

    return book, logits, A.Support.from_codebook(book), no


def hamming_under_attack(ham, kind: str, psr_db: float, ebno_db: float, blocks: int, g: torch.Generator, *,
                         device=None, pgd_steps=3, pgd_step_size=0.5, universal=None) -> tuple[float, float]:
    """Block errors of Hamming(7,4)+ML under attacker ``kind`` at ``psr_db`` (``universal``: a given universal
    perturbation, else crafted on each batch by :func:`~metacomm.channels.attacks.uap_pgd`)."""
    book, logits, sup, no = hamming_target(ham, ebno_db, device)
    errs, left = 0.0, blocks
    while left > 0:
        num = min(left, 4096)
        m = torch.randint(0, 16, (num,), generator=g, device=device)
        x = book[m]
        y = x + math.sqrt(no) * complex_normal(x.shape, generator=g, device=device)
        uni = universal
        if kind in A.UNIVERSAL and uni is None:
            uni = A.uap_pgd(logits, y, m, A.budget(x, psr_db, universal=True), sup, steps=pgd_steps,
                            step_size=pgd_step_size)
        p = torch.zeros_like(y) if kind == "none" else A.perturb(
            kind, logits_fn=logits, x=x, y=y, labels=m, psr_db=psr_db, support=sup, generator=g, universal=uni,
            steps=pgd_steps, step_size=pgd_step_size)
        with torch.no_grad():
            errs += float((logits(y + p).argmax(-1) != m).sum())
        left -= num
    return errs, float(blocks)
