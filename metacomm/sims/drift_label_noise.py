r"""Decision-directed drift schemes from the label-noise pack: adapt on 1-2 pilots *plus the frame's own payload
decisions*, with per-example weights that down-weight the decisions likely to be wrong.

Per frame and link: (1) the ``warm`` step -- ``steps`` SGD steps at ``lr`` on the pilots from the previous frame's
fast weights; (2) decide the payload with those weights (``d = argmax``, the decision-directed labels); (3) one SGD
step at ``lr`` on pilots + payload with labels ``d``, the inner loss of :mod:`metacomm.adaptation.example_weighting`
(pilots weight 1, payload weights from the scheme's weighting, normalised to mean 1); (4) decide the payload again
with the new weights, which also start the next frame (decision-directed tracking).

Weightings (registered names):

* ``dd-gated`` -- confidence gating: weight 1 where the softmax confidence of the decision is >= 0.9, else 0;
* ``dd-l2rw`` -- Learning to Reweight Examples (Ren et al. 2018) with the frame's pilots as the clean set:
  ``max(0, grad L_pilots . grad l_d)`` normalised (:func:`~metacomm.adaptation.example_weighting.l2rw_weights`).

Neither weighting is meta-learned (the pack's Meta-Weight-Net, trained on symmetric and pair flips, inverts on
decision-directed labels: AUROC 0.13 in docs/packs/label-noise.md). Knows what ``warm`` knows (the pilots) plus its
own decisions; nothing random is drawn.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from metacomm.adaptation.example_weighting import l2rw_weights, normalise_weights, weighted_mean
from metacomm.adaptation.functional import call
from metacomm.sims.drift_schemes import AdaptiveScheme, Decision, FrameSignals, register_scheme

__all__ = ["DecisionDirectedScheme"]


def _logits(model, y):
    return model.decoder.block_logits(y)


@register_scheme("dd-gated", weighting="gated")
@register_scheme("dd-l2rw", weighting="l2rw")
class DecisionDirectedScheme(AdaptiveScheme):
    """``warm`` + a decision-directed, per-example-weighted step per frame (module docstring)."""

    kind = "adaptive"
    gate: float = 0.9

    def __init__(self, name: str, *, weighting: str):
        super().__init__(name, policy="every-frame", warm_start=True)
        self.weighting = weighting

    def decide(self, sig: FrameSignals) -> Decision:
        t0 = time.perf_counter()
        codec = self.codec
        codec.observe(sig.msg_p, sig.y_p, sig.no)
        model, shared = codec.codec, codec._shared()
        lr = codec.lr
        with torch.no_grad():
            dec = codec.block_logits(sig.y_d).argmax(-1)
        gate, weighting = self.gate, self.weighting

        def one(p, yp, mp, yd, dd):
            def lg(pp, y):
                return call(model, {**shared, **pp}, _logits, y)

            if weighting == "l2rw":
                w = dd.shape[-1] * l2rw_weights(lambda pp: F.cross_entropy(lg(pp, yd), dd, reduction="none"),
                                                lambda pp: F.cross_entropy(lg(pp, yp), mp), p)
            else:
                conf = F.softmax(lg(p, yd), -1).amax(-1)
                w = normalise_weights((conf >= gate).to(conf.dtype)).detach()

            def loss(pp):
                return weighted_mean(F.cross_entropy(lg(pp, yp), mp, reduction="none"),
                                     F.cross_entropy(lg(pp, yd), dd, reduction="none"), w)
            g = torch.func.grad(loss)(p)
            return {n: p[n] - (lr[n] if isinstance(lr, dict) else lr) * g[n] for n in p}

        new = torch.vmap(one)(dict(codec.fast), sig.y_p, sig.msg_p, sig.y_d, dec)
        codec.fast = {n: t.detach() for n, t in new.items()}
        with torch.no_grad():
            out = codec.decide_block(sig.y_d)
        return Decision(out, (time.perf_counter() - t0) * 1e3)
