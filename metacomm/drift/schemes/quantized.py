r"""Quantised adaptive codecs as drift schemes: the ``meta`` policy with a b-bit decoder.

``meta-q8`` / ``meta-q4`` (pack schemes of the compression pack; not in the default scheme list): every frame, each
link's decoder starts from the meta-learned initialisation and takes ``steps`` steps of the inner rule on the frame's
pilots (SGD at ``lr``, or the checkpoint's rule ``ctx.rule`` as in every adaptive scheme) -- exactly the ``meta``
scheme -- except that the decoder *computes with quantised tensors*: every decoder tensor with more than one entry
(the template decoder's ``taps``, ``warp``, ``templates``, ``bias``; an MLP decoder's weights and biases) is replaced
by its symmetric per-row b-bit value (:func:`metacomm.codecs.quantization.quantize_weight`; 1-D tensors are one row) in the pilot loss and in decoding; scalars (log-scales) stay float. The float shadow
weights take the steps through the straight-through estimator (``w + (Q(w) - w).detach()``), as on a device
that keeps a float accumulator for adaptation and a b-bit copy for inference. The encoder is the float one.
"""

from __future__ import annotations

import functools

import torch

from metacomm.adaptation.functional import batched_loss, call
from metacomm.adaptation.online import AdaptiveCodec
from metacomm.codecs.quantization import check_bits, quantize_weight, ste
from metacomm.drift.protocol import Decision, FrameSignals
from metacomm.drift.registry import register_scheme
from metacomm.drift.schemes.adaptive import AdaptiveScheme, check_rule_fits, inner_rule_settings

__all__ = ["QuantizedAdaptiveCodec", "QuantizedAdaptiveScheme", "QUANTIZED_SCHEMES"]


def _tensor_at(model, name):
    return functools.reduce(getattr, name.split("."), model)


def _logits(model, y):
    return model.decoder.block_logits(y)


class QuantizedAdaptiveCodec(AdaptiveCodec):
    """:class:`~metacomm.adaptation.AdaptiveCodec` whose decoder computes with ``bits``-bit tensors (module
    docstring); ``bits`` 1-16. Same constructor otherwise."""

    def __init__(self, codec, *, bits: int, **kw):
        super().__init__(codec, **kw)
        self.bits = check_bits("bits", bits)
        self.qnames = [n for n, p in self.codec.named_parameters() if n.startswith("decoder.") and p.numel() > 1]
        self._wrapped: dict = {}

    def _quantized(self, fn):
        key = id(fn)
        if key not in self._wrapped:
            names, bits = self.qnames, self.bits

            def q(model, batch):
                qp = {}
                for n in names:
                    t = _tensor_at(model, n)
                    qp[n] = ste(t, quantize_weight(t.detach(), bits))
                return call(model, qp, fn, batch)

            self._wrapped[key] = (fn, q)
        return self._wrapped[key][1]

    def _losses(self, shared, loss_fn, batch, phi):
        return super()._losses(shared, self._quantized(loss_fn), batch, phi)

    @torch.no_grad()
    def block_logits(self, y: torch.Tensor) -> torch.Tensor:
        y3, squeeze = self._batched_y(y)
        out = batched_loss(self.codec, self._shared(), self._quantized(_logits), y3, self.fast)
        return out[0] if squeeze else out


class QuantizedAdaptiveScheme(AdaptiveScheme):
    """The ``meta`` policy (adapt from the meta-init every frame) with a ``bits``-bit decoder."""

    def __init__(self, name: str, *, bits: int, policy: str = "every-frame", warm_start: bool = False):
        super().__init__(name, policy=policy, warm_start=warm_start)
        self.bits = check_bits("bits", bits)

    def settings(self) -> dict:
        return {**super().settings(), "bits": self.bits}

    def setup(self, ctx) -> None:
        self.ctx = ctx
        c = ctx.config
        self.codec = QuantizedAdaptiveCodec(ctx.model, bits=self.bits, num_links=c.links, adapt=c.adapt, steps=c.steps,
                                            **inner_rule_settings(self, ctx), policy=self.policy,
                                            warm_start=self.warm_start, loss=ctx.inner_loss).to(ctx.device)
        check_rule_fits(self, self.codec)

    def decide(self, sig: FrameSignals) -> Decision:
        return super().decide(sig)


#: scheme name -> bits of the registered quantised schemes
QUANTIZED_SCHEMES = {"meta-q8": 8, "meta-q4": 4}


for _name, _bits in QUANTIZED_SCHEMES.items():
    register_scheme(_name, group="pack", bits=_bits)(QuantizedAdaptiveScheme)
