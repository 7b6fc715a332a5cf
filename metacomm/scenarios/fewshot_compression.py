r"""Scenario ``fading-ae-quant``: quantisation-aware meta-learning of the ``fading-ae`` autoencoder.

Built on :class:`~metacomm.scenarios.fewshot_fading.FadingAEScenario` (Park et al.'s AE(4,4) over 3-tap Rayleigh
ISI at Eb/N0 = 15 dB: same channels, same task sampling, same run-time protocol), by subclassing: a task is
(channel, bit-width), the bit-width drawn uniformly from ``train_bits`` (default {8, 6, 4}) per task -- the
"bit-width as a task" idea of MEBQAT (Youn et al., "Meta-learning bit-width-adaptive QAT") -- and the loss of a
task is the loss of the *quantised* codec: every ``Linear`` weight in ``quantize`` scope is pruned at the
task's sparsity (drawn from ``sparsity``; magnitude, per tensor) and fake-quantised to the task's bit-width with the straight-through
estimator (:mod:`metacomm.codecs.quantization`); optionally the decoder's hidden activations (``act_bits``) and
the received samples (a receiver ADC, ``adc_bits`` on Re/Im with range ``adc_clip``) are quantised too. The
inner loop therefore adapts the float shadow weights of the quantised codec from pilots, and the outer (query)
loss scores the quantised adapted codec.

Every quantisation setting is carried in the task batch as tensors (``bits``, ``sparsity``, ``act_bits``,
``adc_bits``: ``[T]``), so one vmapped meta-batch mixes bit-widths; :meth:`QuantFadingScenario.using` sets the
values used by :meth:`evaluate`, :meth:`genie` and the validation tasks (a bit-width, sparsity, ADC, Eb/N0).
``bits = 32`` is the float codec. The learned inner rule of MetaQuant lives in
:mod:`metacomm.adaptation.metaquant`; the experiment that compares PTQ, QAT, MAML-STE and MetaQuant is
:mod:`metacomm.experiments.compression`.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import torch
from torch import nn

from metacomm._validation import ConfigError, check_positive
from metacomm.adaptation import TaskBatch
from metacomm.adaptation.functional import call
from metacomm.channels.multipath import MultipathBlockFading
from metacomm.channels.units import ebnodb_to_no
from metacomm.codecs.quantization import (
    MAX_BITS,
    check_bits,
    check_sparsity,
    fake_quant_adc,
    fake_quant_uniform,
    quantize_params,
    quantized_names,
)
from metacomm.scenarios.fewshot_fading import FadingAEConfig, FadingAEObjective, FadingAEScenario
from metacomm.scenarios.registry import register_scenario

__all__ = ["QuantFadingConfig", "QuantFadingObjective", "QuantFadingScenario", "HELDOUT_FAMILIES", "NAME"]

NAME = "fading-ae-quant"
SCOPES = ("all", "decoder", "encoder")
#: unseen channel families for held-out evaluation: name -> MultipathBlockFading kwargs
HELDOUT_FAMILIES = {"exp-pdp-6db": {"num_taps": 3, "decay_db_per_tap": 6.0},
                    "2-tap": {"num_taps": 2, "decay_db_per_tap": 0.0}}


def _bits_list(field_name: str, v) -> list[int]:
    if isinstance(v, str):
        v = [x for x in v.split(",") if x.strip()]
    try:
        items = list(v)
    except TypeError:
        raise ConfigError(field_name, f"expected a list of bit-widths, got {v!r}") from None
    if not items:
        raise ConfigError(field_name, "give at least one bit-width")
    out = []
    for x in items:
        try:
            x = int(x) if isinstance(x, str) else x
        except ValueError:
            raise ConfigError(field_name, f"bit-widths are integers 1-{MAX_BITS}, got {x!r}") from None
        out.append(check_bits(field_name, x))
    return sorted(set(out), reverse=True)


@dataclass
class QuantFadingConfig(FadingAEConfig):
    """``fading-ae`` settings plus the quantisation of the task (defaults: MEBQAT-style {8, 6, 4}-bit tasks).

    ``train_bits``: bit-widths (1-16) a meta-training task draws from; ``sparsity``: magnitude-pruning fractions
    in [0, 1) a task draws from (a number or a list; uniformly, independently of the bit-width); ``quantize``: which weights (``all`` = encoder and decoder, ``decoder``, ``encoder``);
    ``act_bits``: bits of the decoder's hidden activations (0 = float), clipped to ``[-act_clip, act_clip]``;
    ``adc_bits``: receiver ADC bits on Re and on Im (0 = none), clipping range ``adc_clip`` in amplitude units
    of ``y`` (Es = 1 per complex use: each real dimension of the transmitted signal has power 1/2; the channel
    taps have unit total power, so each real dimension of ``y`` has RMS about ``sqrt((1 + N0)/2)`` = 0.71 at
    15 dB, and ``adc_clip = 2`` is 2.8 sigma).
    """

    train_bits: list = field(default_factory=lambda: [8, 6, 4])
    sparsity: list = field(default_factory=lambda: [0.0])
    quantize: str = "all"
    act_bits: int = 0
    act_clip: float = 4.0
    adc_bits: int = 0
    adc_clip: float = 2.0

    def validate(self) -> QuantFadingConfig:
        super().validate()
        self.train_bits = _bits_list("train_bits", self.train_bits)
        sp = self.sparsity
        if isinstance(sp, str):
            sp = [x for x in sp.split(",") if x.strip()]
        elif isinstance(sp, int | float):
            sp = [sp]
        try:
            sp = [float(x) if isinstance(x, str) else x for x in sp]
        except (TypeError, ValueError):
            raise ConfigError("sparsity", f"sparsity is a fraction in [0, 1) or a list of them, got {sp!r}") from None
        if not sp:
            raise ConfigError("sparsity", "give at least one sparsity")
        self.sparsity = sorted({check_sparsity("sparsity", x) for x in sp})
        if self.quantize not in SCOPES:
            raise ConfigError("quantize", f"unknown scope {self.quantize!r}; allowed: {', '.join(SCOPES)}")
        for f in ("act_bits", "adc_bits"):
            v = getattr(self, f)
            if v != 0:
                check_bits(f, v)
            setattr(self, f, int(v))
        self.act_clip = check_positive("act_clip", self.act_clip)
        self.adc_clip = check_positive("adc_clip", self.adc_clip)
        return self


def _tensor_at(model: nn.Module, name: str) -> torch.Tensor:
    """The tensor the forward sees under ``name`` (the swapped-in one inside ``functional_call``)."""
    return functools.reduce(getattr, name.split("."), model)


class QuantFadingObjective(FadingAEObjective):
    r"""Cross-entropy of the *quantised* codec through the multipath channel.

    One task's batch: the ``fading-ae`` keys plus ``bits``, ``sparsity``, ``act_bits``, ``adc_bits`` (0-d
    float tensors). :meth:`loss` maps the weights the engine swapped in to their pruned, fake-quantised values
    (:func:`~metacomm.codecs.quantization.quantize_params`, STE) and runs the ``fading-ae`` forward with them
    (:func:`~metacomm.adaptation.functional.call`, i.e. :func:`torch.func.functional_call`), the ADC on ``y``
    and the activation quantiser on the decoder's hidden layer in between. So the inner loop descends the
    quantised loss w.r.t. the float shadow weights (the STE gradient) and the outer loss is the quantised
    adapted codec's query loss. ``bits = 32``: the float codec (same code path).
    """

    def __init__(self, channel: MultipathBlockFading, *, scope: str = "all", act_clip: float = 4.0,
                 adc_clip: float = 2.0, adapt="all"):
        super().__init__(channel, adapt=adapt)
        self.scope, self.act_clip, self.adc_clip = scope, float(act_clip), float(adc_clip)
        self._names: dict[int, list[str]] = {}

    def quantized_names(self, model: nn.Module) -> list[str]:
        key = id(model)
        if key not in self._names:
            self._names[key] = [n for n in quantized_names([n for n, _ in model.named_parameters()], self.scope)
                                if _tensor_at(model, n).dim() >= 2]
        return self._names[key]

    def _block_logits(self, model, y, act_bits):
        dec = model.decoder
        h = dec._features(y)
        for layer in dec.net:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                h = fake_quant_uniform(h, act_bits, self.act_clip)
        return h

    def _float_loss(self, model, batch):
        msg = batch["msg"]
        x = model.encoder.forward_index(msg)
        taps = batch["taps"].unsqueeze(0).expand(msg.shape[0], -1)
        y = self.channel(x, batch["no"], state={"taps": taps}, noise=batch["noise"])
        y = fake_quant_adc(y, batch["adc_bits"], self.adc_clip)
        logits = self._block_logits(model, y, batch["act_bits"])
        loss = nn.functional.cross_entropy(logits, msg)
        errs = (logits.argmax(-1) != msg).sum().to(logits.dtype)
        return loss, {"block_errors": errs, "blocks": torch.ones_like(errs) * msg.shape[0]}

    def quantized(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        """The pruned, fake-quantised weights of the task (``{name: tensor}``, STE) from the current ones."""
        names = self.quantized_names(model)
        params = {n: _tensor_at(model, n) for n in names}
        return quantize_params(params, batch["bits"], batch["sparsity"], names=names)

    def loss(self, model, batch):
        return call(model, self.quantized(model, batch), self._float_loss, batch)


@register_scenario
class QuantFadingScenario(FadingAEScenario):
    """``fading-ae`` with (channel, bit-width) tasks and a quantised codec (module docstring).

    :meth:`using` (a context manager) sets the quantisation, Eb/N0 and test channels of :meth:`evaluate`,
    :meth:`genie` and the classical reference: ``bits`` (1-16 or 32 = float; default the smallest training
    bit-width), ``sparsity``, ``adc_bits``, ``act_bits``, ``ebno_db``, ``channel`` (a held-out family of
    :data:`HELDOUT_FAMILIES`: the test channels are replaced by draws of it). Training and validation tasks draw
    their bit-width from ``train_bits`` (and use the config's sparsity / ADC / activation settings).
    """

    name = NAME
    config_class = QuantFadingConfig

    def __init__(self, config: QuantFadingConfig | None = None, device="cpu"):
        super().__init__(config or QuantFadingConfig(), device=device)
        c = self.config
        self.objective = QuantFadingObjective(self.channel, scope=c.quantize, act_clip=c.act_clip,
                                              adc_clip=c.adc_clip)
        self.setting = {"bits": min(c.train_bits), "sparsity": min(c.sparsity), "adc_bits": c.adc_bits,
                        "act_bits": c.act_bits}

    @contextlib.contextmanager
    def using(self, *, bits=None, sparsity=None, adc_bits=None, act_bits=None, ebno_db=None, channel=None):
        """Temporarily evaluate at these settings (``None`` = unchanged; ``ebno_db`` in dB, Eb/N0 per
        information bit)."""
        old, old_no, old_taps = dict(self.setting), self.no, self.test_taps
        if channel is not None:
            self.test_taps = self.heldout_taps(channel)
        if bits is not None:
            self.setting["bits"] = check_bits("bits", bits, allow_float=True)
        if sparsity is not None:
            self.setting["sparsity"] = check_sparsity("sparsity", sparsity)
        if adc_bits is not None:
            self.setting["adc_bits"] = 0 if adc_bits == 0 else check_bits("adc_bits", adc_bits)
        if act_bits is not None:
            self.setting["act_bits"] = 0 if act_bits == 0 else check_bits("act_bits", act_bits)
        if ebno_db is not None:
            c = self.config
            self.no = float(ebnodb_to_no(float(ebno_db), c.k / c.n))
        try:
            yield self
        finally:
            self.setting, self.no, self.test_taps = old, old_no, old_taps

    def _batch(self, taps, num, g, balanced=True):
        b = super()._batch(taps, num, g, balanced)
        T = taps.shape[0]
        for k, v in self.setting.items():
            b[k] = torch.full((T,), float(v), device=self.device)
        return b

    def sample_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """``fading-ae`` training tasks, each with a bit-width drawn uniformly from ``train_bits`` and a sparsity
        from ``sparsity`` (shared by its support and query batches)."""
        return self._with_bits(super().sample_tasks(num_tasks, g), num_tasks, g)

    def sample_val_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """Held-out tasks (fresh channels, as ``fading-ae``), bit-widths drawn from ``train_bits``."""
        return self._with_bits(super().sample_val_tasks(num_tasks, g), num_tasks, g)

    def _with_bits(self, tasks: TaskBatch, num_tasks: int, g: torch.Generator) -> TaskBatch:
        choices = torch.tensor(self.config.train_bits, dtype=torch.float32, device=self.device)
        bits = choices[torch.randint(0, len(choices), (num_tasks,), generator=g, device=self.device)]
        sp = torch.tensor(self.config.sparsity, dtype=torch.float32, device=self.device)
        sparsity = sp[torch.randint(0, len(sp), (num_tasks,), generator=g, device=self.device)] if len(sp) > 1 \
            else sp.expand(num_tasks).clone()
        for b in (tasks.support, tasks.query):
            b["bits"] = bits
            b["sparsity"] = sparsity
            b["adc_bits"] = torch.full((num_tasks,), float(self.config.adc_bits), device=self.device)
            b["act_bits"] = torch.full((num_tasks,), float(self.config.act_bits), device=self.device)
        return tasks

    def heldout_taps(self, family: str, num: int | None = None) -> torch.Tensor:
        """``num`` (default: the number of test channels) tap vectors ``[num, L]`` of an unseen channel family
        (:data:`HELDOUT_FAMILIES`), padded with zero taps to the scenario's ``num_taps``, drawn from
        ``test_seed + 1``. Pass them to :meth:`evaluate` as ``taps=``."""
        if family not in HELDOUT_FAMILIES:
            raise ConfigError("heldout_channel", f"unknown family {family!r}; allowed: "
                                                 f"{', '.join(HELDOUT_FAMILIES)}")
        num = self.num_test_tasks if num is None else num
        ch = MultipathBlockFading(mode="truncate", **HELDOUT_FAMILIES[family])
        g = torch.Generator(device=self.device).manual_seed(self.config.test_seed + 1)
        taps = ch.sample_state(num, self.config.n, generator=g, device=self.device)["taps"]
        L = self.config.num_taps
        if taps.shape[1] < L:
            taps = torch.cat([taps, taps.new_zeros(num, L - taps.shape[1])], dim=1)
        return taps[:, :L]

