r"""Scenario ``label-noise``: few-shot adaptation of the ``fading-ae`` autoencoder from labels that can be wrong.

Built on :mod:`metacomm.scenarios.fewshot_fading` (same codec, channels, test channels, genie and classical
reference, by subclassing). A task = one 3-tap Rayleigh channel; its **support** set is ``pilots`` clean pilot
blocks (known messages) plus ``messages_per_task`` payload blocks whose labels come from a label-noise model
(:mod:`metacomm.adaptation.label_noise`); its **query** is ``messages_per_task`` fresh clean blocks (as
``fading-ae``'s). Meta-training tasks use only ``train_noise`` (symmetric and pair flips) at a rate drawn
uniformly in ``[0, train_rate_max]`` per task; decision-directed, bursty and contaminated-pilot noise and rates
above ``train_rate_max`` are held out.

One task's support batch (no task axis): ``taps`` complex ``[L]``, ``no`` ``[]``, ``p_msg``/``p_label`` int64
``[P]`` (transmitted pilot messages / the labels the receiver believes; equal unless the pilots are
contaminated), ``p_noise`` complex ``[P, n]``, ``d_msg``/``d_label`` int64 ``[D]``, ``d_wrong`` float ``[D]``
(1 where the label is wrong: the simulator's knowledge, never used by a method), ``d_noise`` complex ``[D, n]``.
Every draw (labels included) is made by the samplers from explicit generators.

The objective's :meth:`LabelNoiseObjective.inner_loss` is plain fine-tuning on pilots + noisy payload (uniform
weights); the weighting methods of :mod:`metacomm.adaptation.example_weighting` replace it through an update
rule's ``wrap_loss`` or :meth:`LabelNoiseScenario.adapt`. ``outer_loss`` = clean query cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metacomm._validation import ConfigError, check_positive_int
from metacomm.adaptation import TaskBatch
from metacomm.adaptation.example_weighting import (
    MetaWeightNet,
    gce_loss,
    l2rw_weights,
    normalise_weights,
    weighted_mean,
)
from metacomm.adaptation.functional import batched_loss, call
from metacomm.adaptation.label_noise import (
    NOISE_MODELS,
    TRAIN_NOISE_MODELS,
    apply_label_noise,
    check_rate,
    nearest_neighbours,
    pair_flips,
    parse_noise_models,
    symmetric_flips,
)
from metacomm.channels.base import complex_normal
from metacomm.scenarios.fewshot_fading import FadingAEConfig, FadingAEObjective, FadingAEScenario
from metacomm.scenarios.registry import register_scenario

__all__ = ["LabelNoiseScenarioConfig", "LabelNoiseObjective", "ConsistencyObjective", "LabelNoiseScenario", "METHODS"]

NAME = "label-noise"

#: adaptation methods of :meth:`LabelNoiseScenario.adapt`
METHODS = ("naive", "pilots-only", "l2rw", "mwnet", "robust-init", "gated", "gce", "meta-init", "oracle")


@dataclass
class LabelNoiseScenarioConfig(FadingAEConfig):
    """``fading-ae``'s settings plus: ``pilots`` clean pilot blocks per support set, ``messages_per_task``
    noisy-labelled payload blocks (and query blocks); ``train_noise`` / ``train_rate_max``: the meta-training
    noise models and the largest training rate; ``eval_noise`` / ``eval_rate``: what :meth:`evaluate` uses;
    ``gce_q`` (GCE exponent), ``gate`` (confidence threshold of the gated baseline, a probability)."""

    pilots: int = 4
    train_noise: object = TRAIN_NOISE_MODELS
    train_rate_max: float = 0.5
    eval_noise: str = "symmetric"
    eval_rate: float = 0.2
    gce_q: float = 0.7
    gate: float = 0.9

    def validate(self) -> LabelNoiseScenarioConfig:
        super().validate()
        self.pilots = check_positive_int("pilots", self.pilots)
        self.train_noise = parse_noise_models("train_noise", self.train_noise, TRAIN_NOISE_MODELS)
        self.train_rate_max = check_rate("train_rate_max", self.train_rate_max)
        self.eval_noise = parse_noise_models("eval_noise", self.eval_noise, NOISE_MODELS)[0]
        self.eval_rate = check_rate("eval_rate", self.eval_rate)
        self.gce_q = check_rate("gce_q", self.gce_q)
        self.gate = check_rate("gate", self.gate)
        return self


class LabelNoiseObjective(FadingAEObjective):
    """Inner: uniform-weight CE on pilots + noisy payload (module docstring); outer: clean query CE."""

    def logits(self, model, msg, taps, noise, no):
        x = model.encoder.forward_index(msg)
        y = self.channel(x, no, state={"taps": taps.unsqueeze(0).expand(msg.shape[0], -1)}, noise=noise)
        return model.decoder.block_logits(y)

    def parts(self, model, s):
        """``(pilot logits [P, M], payload logits [D, M])`` of one task's support batch."""
        return (self.logits(model, s["p_msg"], s["taps"], s["p_noise"], s["no"]),
                self.logits(model, s["d_msg"], s["taps"], s["d_noise"], s["no"]))

    def losses(self, model, s):
        """Per-example CE ``(pilots [P] vs p_label, payload [D] vs d_label)``."""
        lp, ld = self.parts(model, s)
        return (F.cross_entropy(lp, s["p_label"], reduction="none"),
                F.cross_entropy(ld, s["d_label"], reduction="none"))

    def losses_at(self, model, params, s):
        """:meth:`losses` with the weights ``params`` swapped in."""
        return call(model, params, self.losses, s)

    def inner_loss(self, model, support):
        if "p_msg" not in support:  # a plain fading-ae batch (the genie's training batches)
            return self.loss(model, support)[0]
        lp, ld = self.losses(model, support)
        return weighted_mean(lp, ld, None)

    def outer_loss(self, model, query):
        return self.loss(model, query)


class ConsistencyObjective(LabelNoiseObjective):
    r"""Noise-robust initialisation's meta-loss (Li et al. 2019, simplified): the inner loop as
    :class:`LabelNoiseObjective` (plain fine-tuning on pilots + noisy payload); the outer loss on the clean query is
    :math:`\mathrm{CE} + \lambda\,\mathrm{KL}(p_{\text{teacher}} \| p_{\text{adapted}})` with the teacher's
    log-probabilities ``t_logp`` ``[B, M]`` carried in the query batch (computed by the sampler from an EMA of the
    initialisation), :math:`\lambda` = ``consistency``."""

    def __init__(self, channel, consistency: float = 1.0):
        super().__init__(channel)
        self.consistency = float(consistency)

    def outer_loss(self, model, query):
        ce, st = self.loss(model, query)
        logits = self.logits(model, query["msg"], query["taps"], query["noise"], query["no"])
        t = query["t_logp"]
        kl = (t.exp() * (t - F.log_softmax(logits, -1))).sum(-1).mean()
        return ce + self.consistency * kl, st


@register_scenario
class LabelNoiseScenario(FadingAEScenario):
    """``fading-ae`` with noisy-labelled support sets (module docstring)."""

    name = NAME
    config_class = LabelNoiseScenarioConfig
    support_field = "messages_per_task"
    pilots_meaning = "clean pilot blocks per support set (plus messages_per_task noisy-labelled payload blocks)"
    meta_defaults = {"meta_batch": 20, "outer_lr": 0.003, "meta_steps": 500}

    def __init__(self, config: LabelNoiseScenarioConfig | None = None, device="cpu"):
        super().__init__((config or LabelNoiseScenarioConfig()).validate(), device=device)
        self.objective = LabelNoiseObjective(self.channel)
        M = 2 ** self.config.k
        # pair flips before a codebook is set: the message differing in the last bit
        self.neighbours = torch.arange(M, device=self.device) ^ 1

    def set_codebook(self, model: nn.Module) -> None:
        """Pair flips go to the nearest codeword of ``model``'s encoder (Euclidean distance)."""
        with torch.no_grad():
            book = model.encoder.forward_index(torch.arange(2 ** self.config.k, device=self.device))
        self.neighbours = nearest_neighbours(book)

    # --- tasks ----------------------------------------------------------------------------------------
    def support_batch(self, taps: torch.Tensor, g: torch.Generator, *, noise: str, rate, pilots: int | None = None,
                      data: int | None = None, logits_fn=None) -> dict:
        """A support batch for every channel of ``taps`` ``[T, L]`` (module docstring): ``pilots`` clean pilots
        (default ``config.pilots``) and ``data`` payload blocks (default ``messages_per_task``) labelled by noise
        model ``noise`` at ``rate`` (a float, or a float tensor ``[T, 1]`` for symmetric/pair). ``logits_fn(batch)
        -> [T, D, M]`` (the labelling receiver) is needed by ``decision-directed``."""
        c = self.config
        T, M = taps.shape[0], 2 ** c.k
        P = c.pilots if pilots is None else pilots
        D = c.messages_per_task if data is None else data
        dev = self.device
        s = {"taps": taps, "no": torch.full((T,), self.no, device=dev),
             "p_msg": torch.randint(0, M, (T, P), generator=g, device=dev),
             "p_noise": complex_normal((T, P, c.n), generator=g, device=dev),
             "d_msg": torch.randint(0, M, (T, D), generator=g, device=dev),
             "d_noise": complex_normal((T, D, c.n), generator=g, device=dev)}
        if isinstance(rate, torch.Tensor):
            if noise == "pair":
                lab, wrong = pair_flips(s["d_msg"], self.neighbours, rate, g)
            else:
                lab, wrong = symmetric_flips(s["d_msg"], M, rate, g)
        else:
            logits = logits_fn(s) if noise == "decision-directed" else None
            lab, wrong = apply_label_noise(noise, s["d_msg"], rate, g, M=M, neighbours=self.neighbours,
                                           logits=logits)
        s["d_label"], s["d_wrong"] = lab, wrong.to(torch.float32)
        if noise == "contaminated-pilots":
            s["p_label"] = symmetric_flips(s["p_msg"], M, float(rate), g)[0]
        else:
            s["p_label"] = s["p_msg"].clone()
        return s

    def _tasks(self, taps, g) -> TaskBatch:
        c = self.config
        T = taps.shape[0]
        kinds = c.train_noise
        k = torch.randint(0, len(kinds), (T,), generator=g, device=self.device)
        rate = c.train_rate_max * torch.rand((T, 1), generator=g, device=self.device)
        sym = self.support_batch(taps, g, noise="symmetric", rate=rate)
        if "pair" in kinds:
            pair_lab, pair_wrong = pair_flips(sym["d_msg"], self.neighbours, rate, g)
            use_pair = (torch.tensor([kinds[i] == "pair" for i in range(len(kinds))], device=self.device)[k])[:, None]
            sym["d_label"] = torch.where(use_pair, pair_lab, sym["d_label"])
            sym["d_wrong"] = torch.where(use_pair, pair_wrong.float(), sym["d_wrong"])
        return TaskBatch(sym, self._batch(taps, c.messages_per_task, g))

    def sample_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """Meta-training tasks: a training channel, symmetric or pair flips (``train_noise``) at a rate uniform in
        ``[0, train_rate_max]`` per task."""
        idx = torch.randint(0, self.train_taps.shape[0], (num_tasks,), generator=g, device=self.device)
        return self._tasks(self.train_taps[idx], g)

    def sample_val_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """Held-out tasks: fresh channels, the training noise models."""
        return self._tasks(self.channel.sample_state(num_tasks, self.config.n, generator=g,
                                                     device=self.device)["taps"], g)

    # --- adaptation -----------------------------------------------------------------------------------
    def adapt(self, model: nn.Module, params: dict, support: dict, *, method: str, steps: int, lr: float = 0.1,
              mwnet: dict | None = None, mwnet_input: str = "loss") -> tuple[dict, torch.Tensor | None]:
        """Adapt one copy of ``params`` per task of ``support`` (task-stacked) with ``method`` (:data:`METHODS`)
        for ``steps`` SGD steps at ``lr``; returns ``(stacked adapted weights {name: [T, ...]}, weights)`` where
        ``weights`` ``[T, D]`` are the normalised payload weights of the *first* step (``None`` for methods
        without per-example weights). ``oracle`` = naive fine-tuning on the true payload labels; ``meta-init``:
        no step; ``robust-init`` = naive fine-tuning (from the robust initialisation the caller passes);
        ``mwnet`` needs the net's parameters ``mwnet``; its input (``mwnet_input``) is each payload example's CE at
        the current weights (``"loss"``, Shu et al.) or after a virtual plain step (``"lookahead"``,
        :meth:`lookahead_losses`), recomputed every step."""
        obj, c = self.objective, self.config
        T = support["d_msg"].shape[0]
        names = list(params)
        phi = {n: params[n].detach().unsqueeze(0).expand(T, *params[n].shape).clone() for n in names}
        if method == "meta-init" or steps == 0:
            return phi, None
        if method == "oracle":
            support = {**support, "d_label": support["d_msg"]}
        q = c.gce_q

        def weights_of(p, s):
            if method == "l2rw":
                def ld_fn(pp):
                    return F.cross_entropy(call(model, pp, obj.parts, s)[1], s["d_label"], reduction="none")

                def lc_fn(pp):
                    return F.cross_entropy(call(model, pp, obj.parts, s)[0], s["p_label"])
                return s["d_label"].shape[-1] * l2rw_weights(ld_fn, lc_fn, p)
            lp_, ld_ = call(model, p, obj.parts, s)
            if method == "mwnet":
                x = (self._lookahead(model, p, s, lr) if mwnet_input == "lookahead"
                     else F.cross_entropy(ld_, s["d_label"], reduction="none").detach())
                return normalise_weights(MetaWeightNet.functional(mwnet, x)).detach()
            if method == "gated":
                conf = F.softmax(ld_, -1).amax(-1)
                return normalise_weights((conf >= c.gate).to(conf.dtype)).detach()
            return torch.ones_like(s["d_msg"], dtype=lp_.real.dtype)

        def loss_of(p, s, w):
            lp_, ld_ = call(model, p, obj.parts, s)
            if method == "pilots-only":
                return F.cross_entropy(lp_, s["p_label"])
            if method == "gce":
                return weighted_mean(gce_loss(lp_, s["p_label"], q), gce_loss(ld_, s["d_label"], q), None)
            labels = ld_.argmax(-1).detach() if method == "gated" else s["d_label"]
            return weighted_mean(F.cross_entropy(lp_, s["p_label"], reduction="none"),
                                 F.cross_entropy(ld_, labels, reduction="none"), w)

        def one(p, s):
            w = weights_of(p, s)
            g = torch.func.grad(loss_of)(p, s, w)
            return {n: p[n] - lr * g[n] for n in names}, w

        first_w = None
        for _ in range(int(steps)):
            phi, w = torch.vmap(one)(phi, support)
            phi = {n: t.detach() for n, t in phi.items()}
            if first_w is None:
                first_w = w.detach()
        weighted = method in ("l2rw", "mwnet", "gated")
        return phi, (first_w if weighted else None)

    def _lookahead(self, model, p, s, lr):
        """One task: per-example payload CE ``[D]`` after a virtual plain fine-tuning step at ``lr`` from ``p``
        (detached)."""
        obj = self.objective

        def naive(pp):
            lp_, ld_ = obj.losses_at(model, pp, s)
            return weighted_mean(lp_, ld_, None)
        g = torch.func.grad(naive)(p)
        virt = {n: (p[n] - lr * g[n]).detach() for n in p}
        return obj.losses_at(model, virt, s)[1].detach()

    def lookahead_losses(self, model: nn.Module, phi: dict, support: dict, lr: float) -> torch.Tensor:
        """Meta-Weight-Net's input here: each payload example's CE (vs its possibly wrong label) after a virtual
        plain fine-tuning step at ``lr`` from the stacked weights ``phi`` (``{name: [T, ...]}``) -> ``[T, D]``.
        At the meta-initialisation (a pre-adaptation point) the loss itself hardly tells wrong labels from right
        ones; after one virtual step it does (docs/packs/label-noise.md)."""
        return torch.vmap(lambda p, s: self._lookahead(model, p, s, lr))(phi, support)

    def test_bler(self, model: nn.Module, phi: dict, taps: torch.Tensor, g: torch.Generator, test_blocks: int
                  ) -> tuple[float, float]:
        """Pooled ``(block_errors, blocks)`` of the stacked weights ``phi`` on ``test_blocks`` fresh i.i.d. blocks
        per channel of ``taps``."""
        errs, left = 0.0, test_blocks
        with torch.no_grad():
            while left > 0:
                num = min(left, 4096)
                b = self._batch(taps, num, g, balanced=False)
                _, st = batched_loss(model, {}, self.objective.loss, b, phi)
                errs += float(st["block_errors"].sum())
                left -= num
        return errs, float(test_blocks * taps.shape[0])

    def receiver_logits(self, model: nn.Module, params: dict):
        """``logits_fn`` for :meth:`support_batch`: the receiver with weights ``params`` decides the payload."""
        def fn(s):
            with torch.no_grad():
                return torch.vmap(lambda b: call(model, params, self.objective.parts, b)[1])(
                    {k: v for k, v in s.items() if k in ("taps", "no", "p_msg", "p_noise", "d_msg", "d_noise")})
        return fn

    def evaluate(self, params, model, *, pilots, steps, generator, test_blocks=10000, first=None, rest=None,
                 adapt=None, method: str = "naive", noise: str | None = None, rate: float | None = None,
                 mwnet=None):
        """BLER after adapting on ``pilots`` clean pilots + ``messages_per_task`` payload blocks labelled by
        ``noise`` (default ``eval_noise``) at ``rate`` (default ``eval_rate``), with ``method`` (default plain
        fine-tuning; SGD at the ``first`` rule's rate, default 0.1): ``{steps: (block_errors, blocks)}``."""
        pilots = check_positive_int("pilots", pilots)
        if method not in METHODS:
            raise ConfigError("method", f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
        noise = noise or self.config.eval_noise
        rate = self.config.eval_rate if rate is None else rate
        lr = float(getattr(first, "lr", 0.1)) if first is not None else 0.1
        sup = self.support_batch(self.test_taps, generator, noise=noise, rate=rate, pilots=pilots,
                                 logits_fn=self.receiver_logits(model, params))
        out = {}
        for s in sorted({int(x) for x in steps}):
            phi, _ = self.adapt(model, params, sup, method=method, steps=s, lr=lr, mwnet=mwnet)
            out[s] = self.test_bler(model, phi, self.test_taps, generator, test_blocks)
        return out

    def genie(self, model_seed, *, generator, train_steps=2000, batch=256, lr=3e-3, test_blocks=10000):
        """``fading-ae``'s genie (a codec trained with true labels on each test channel)."""
        model = self.build_model(model_seed)
        params = {n: p.detach() for n, p in model.named_parameters()}
        from metacomm.adaptation.functional import Adam
        res = FadingAEScenario.evaluate(self, params, model, pilots=batch, steps=[train_steps], generator=generator,
                                        test_blocks=test_blocks, first=Adam(lr), rest=Adam(lr))
        return res[train_steps]
