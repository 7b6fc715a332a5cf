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

* ``dd-naive`` -- every decision weight 1 (plain decision-directed fine-tuning; the reference of the others);
* ``dd-mwnet`` -- a Meta-Weight-Net for decision-directed labels
  (:class:`~metacomm.adaptation.example_weighting.DecisionWeightNet`: decision loss, logit margin, N0 and pilot
  loss -> weight in (0, 1), not normalised), **meta-learned on the drift scenario's own frame sequences** with the
  real decision-directed labels (:mod:`metacomm.experiments.dd_mwnet`): the inner step is exactly this scheme's
  per-frame step (:func:`dd_update`, the :class:`~metacomm.adaptation.example_weighting.DecisionWeightingRule`),
  the outer loss the cross-entropy of the adapted codec on the frame's payload with the true labels. The shipped
  net for the run's scenario and pilot count is picked automatically (:func:`dd_mwnet_checkpoint`,
  ``metacomm/checkpoints/dd_mwnet_<scenario>_p<pilots>.pt``); ``DecisionDirectedScheme("dd-mwnet",
  weighting="mwnet", net_path=PATH)`` in ``DriftRun(..., schemes=[...])`` uses one trained for another scenario.

The pack's Meta-Weight-Net (trained on symmetric and pair flips of the fading-ae codec) inverts on decision-directed
labels (AUROC 0.13 in docs/packs/label-noise.md), hence the net of ``dd-mwnet`` is trained on the drift frames. Knows
what ``warm`` knows (the pilots) plus its own decisions; nothing random is drawn.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from metacomm._validation import ConfigError, check_probability
from metacomm.adaptation.example_weighting import (
    DecisionWeightingRule,
    l2rw_weights,
    normalise_weights,
    weighted_mean,
)
from metacomm.adaptation.functional import call
from metacomm.artefacts import register_kind
from metacomm.drift.protocol import Decision, FrameSignals
from metacomm.drift.registry import register_scheme
from metacomm.drift.schemes.adaptive import AdaptiveScheme

__all__ = ["DecisionDirectedScheme", "dd_update", "codec_fingerprint", "dd_mwnet_checkpoint", "shipped_dd_mwnets", "load_dd_mwnet",
           "DD_MWNET_KIND"]

DD_MWNET_KIND = "metacomm-dd-mwnet"
register_kind(DD_MWNET_KIND, 1, "metacomm dd-mwnet decision weighting (drift scheme dd-mwnet)",
              "python -m metacomm.experiments.dd_mwnet, scripts/make_dd_mwnet_checkpoints.sh",
              schema={"net": {"*": "tensor"}, "hidden?": int, "lr?": float, "scenario?": str, "pilots?": int,
                      "codec_fingerprint?": (str, None), "codec_checkpoint?": (str, None), "training?": dict},
              weights=("net",))
_CK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "checkpoints")


def dd_mwnet_checkpoint(scenario, pilots: int) -> str | None:
    """The shipped ``dd-mwnet`` weighting net for drift scenario ``scenario`` -- a built-in name, or a loaded
    DriftScenario whose content is a built-in's (:func:`metacomm.scenarios.drift_builtins.builtin_of`; never by its
    ``name`` key or file name) -- and ``pilots`` pilots per frame (``metacomm/checkpoints/dd_mwnet_<builtin>_p<pilots>
    .pt``), or None."""
    from metacomm.scenarios.drift_builtins import builtin_match, builtin_of
    name = builtin_match(scenario) if isinstance(scenario, str) else builtin_of(scenario)
    if name is None:
        return None
    path = os.path.join(_CK_DIR, f"dd_mwnet_{name}_p{int(pilots)}.pt")
    return path if os.path.exists(path) else None


def shipped_dd_mwnets() -> list[str]:
    """``"<scenario> with <P> pilot(s)"`` for every shipped ``dd-mwnet`` net."""
    out = []
    for f in sorted(os.listdir(_CK_DIR)):
        if f.startswith("dd_mwnet_") and f.endswith(".pt"):
            sc, p = f[len("dd_mwnet_"):-3].rsplit("_p", 1)
            out.append(f"{sc} with {p} pilot{'s' if p != '1' else ''}")
    return out


def codec_fingerprint(model) -> str:
    """SHA-256 (hex) of a codec's meta-initialisation: every entry of ``model.state_dict()`` in name order, as
    name, dtype, shape and the little-endian bytes of its values on the CPU. A ``dd-mwnet`` checkpoint records the
    fingerprint of the codec it was meta-learned on, and the scheme refuses to pair it with another codec."""
    import hashlib
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if not t.is_complex() else torch.view_as_real(t).numpy().tobytes())
    return h.hexdigest()


def load_dd_mwnet(path: str, field: str = "schemes") -> dict:
    """A ``dd-mwnet`` checkpoint (``weights_only``): ``{"net": {name: tensor}, "hidden", "lr", "scenario",
    "pilots", "training": {...}}``."""
    from metacomm.artefacts import load_checkpoint
    return load_checkpoint(path, kinds=DD_MWNET_KIND, field=field)


def dd_update(model, shared: dict, rule: DecisionWeightingRule, p: dict, batch: dict, meta_params=None) -> dict:
    """The per-frame decision-directed step of one link: one ``rule`` step (SGD at its lr) on its wrapped loss
    (pilots + weighted own decisions ``batch["dec"]``) from fast weights ``p``; pure (torch.func), vmappable,
    differentiable w.r.t. ``meta_params``."""
    loss = rule.wrap_loss(None, meta_params)
    g = torch.func.grad(lambda pp: call(model, {**shared, **pp}, loss, batch))(p)
    return rule.step(p, g, {}, meta_params)[0]


def _logits(model, y):
    return model.decoder.block_logits(y)


@register_scheme("dd-gated", group="pack", weighting="gated")
@register_scheme("dd-l2rw", group="pack", weighting="l2rw")
@register_scheme("dd-naive", group="pack", weighting="ones")
@register_scheme("dd-mwnet", group="pack", weighting="mwnet")
class DecisionDirectedScheme(AdaptiveScheme):
    """``warm`` + a decision-directed, per-example-weighted step per frame (module docstring). Both steps are SGD at
    ``lr``: a checkpoint meta-trained with another inner rule (Meta-SGD, ...) is refused (:attr:`sgd_only`).
    ``net_path``: a ``dd-mwnet`` checkpoint to use instead of the shipped one; ``rule``: a
    :class:`DecisionWeightingRule` to use as is (training). After each frame :attr:`last_weights` holds the payload
    weights ``[B, D]`` of the step, :attr:`last_decisions` the decisions they weighted and :attr:`last_confidence`
    their softmax confidence (``mwnet``/``ones``)."""

    kind = "adaptive"
    #: the decision-directed step is SGD at ``lr`` (and ``dd-mwnet``'s net was meta-learned through exactly that
    #: step): a checkpoint whose inner rule is not plain SGD is refused at setup (ConfigError ``checkpoint``)
    sgd_only = True

    def __init__(self, name: str, *, weighting: str, net_path: str | None = None,
                 rule: DecisionWeightingRule | None = None, gate: float = 0.9):
        super().__init__(name, policy="every-frame", warm_start=True)
        self.weighting, self.net_path, self.rule = weighting, net_path, rule
        self.gate = check_probability("gate", gate)
        self.last_weights = self.last_decisions = self.last_confidence = None

    def settings(self) -> dict:
        return {"weighting": self.weighting, "net_path": self.net_path, "gate": self.gate}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        if self.weighting not in ("mwnet", "ones") or self.rule is not None:
            return
        lr = float(ctx.config.lr)
        if self.weighting == "ones":
            self.rule = DecisionWeightingRule(lr, "ones")
            return
        sc = getattr(ctx.scenario, "name", None)
        path = self.net_path or dd_mwnet_checkpoint(ctx.scenario, ctx.config.pilots)
        if path is None:
            raise ConfigError("schemes", f"dd-mwnet has no meta-learned weighting for scenario {sc!r} with "
                                         f"{ctx.config.pilots} pilot(s) per frame; shipped: "
                                         f"{', '.join(shipped_dd_mwnets()) or 'none'} (train one with "
                                         "python -m metacomm.experiments.dd_mwnet)")
        ck = load_dd_mwnet(path)
        want, have = ck.get("codec_fingerprint"), codec_fingerprint(ctx.model)
        if want is not None and want != have:
            msg = (f"dd-mwnet: the weighting {os.path.basename(path)} was meta-learned on the codec "
                   f"{ck.get('codec_checkpoint')!r} and this run decodes with another codec (--checkpoint); its "
                   "weights would be scored on decisions it never saw -- train one for this codec with "
                   "python -m metacomm.experiments.dd_mwnet --checkpoint CKPT")
            if self.net_path is None:
                raise ConfigError("schemes", msg)
            import warnings
            warnings.warn(msg, stacklevel=2)
        self.rule = DecisionWeightingRule(lr, "mwnet", meta_params={k: v.to(ctx.device) for k, v in ck["net"].items()})

    def meta_update(self, batch: dict, sig: FrameSignals) -> None:
        """Hook for meta-training (called before the step with the frame's support batch); nothing here."""

    def decide(self, sig: FrameSignals) -> Decision:
        t0 = time.perf_counter()
        codec = self.codec
        codec.observe(sig.msg_p, sig.y_p, sig.no)
        model, shared = codec.codec, codec._shared()
        lr = codec.lr
        with torch.no_grad():
            dec = codec.block_logits(sig.y_d).argmax(-1)
        gate, weighting = self.gate, self.weighting
        if weighting in ("mwnet", "ones"):
            batch = {"y_p": sig.y_p, "msg_p": sig.msg_p, "y_d": sig.y_d, "dec": dec, "no": sig.no}
            self.meta_update(batch, sig)
            rule = self.rule
            mp = {k: t.detach() for k, t in rule.meta_params.items()}
            new = torch.vmap(lambda p, b: dd_update(model, shared, rule, p, b, mp))(dict(codec.fast), batch)
            t_diag = time.perf_counter()  # diagnostics (not part of the scheme's latency)
            with torch.no_grad():
                ld = codec.block_logits(sig.y_d)
                lp = codec.block_logits(sig.y_p)
                self.last_weights = torch.vmap(lambda a, b, bb: rule.weights(a, b, bb, mp))(ld, lp, batch)
                self.last_confidence = F.softmax(ld, -1).amax(-1)
                self.last_decisions = dec
            t0 += time.perf_counter() - t_diag
            codec.fast = {n: t.detach() for n, t in new.items()}
            with torch.no_grad():
                out = codec.decide_block(sig.y_d)
            return Decision(out, (time.perf_counter() - t0) * 1e3)

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
