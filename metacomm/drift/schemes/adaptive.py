r"""The :class:`~metacomm.adaptation.AdaptiveCodec` policies as drift schemes, the frozen codec and periodic
retraining (kind ``"adaptive"``).

``static`` (adapted once on frame 0's pilots, then frozen), ``retrain`` (a fresh decoder trained from scratch on
the current pilots every ``every`` frames), ``meta`` (adapt from the meta-init every frame), ``warm`` (warm-start
adaptation from the previous frame's weights), ``online-meta`` (Reptile-refined per-link init), ``on-detection``
and ``reset-on-change`` (detector-driven). The adaptation budget (``steps`` steps at ``lr`` on ``adapt``) is the
run's (:class:`~metacomm.drift.run.DriftRunConfig`); the update is the checkpoint's inner rule (``ctx.rule``,
:func:`inner_rule_settings`): plain SGD (or no rule) -- SGD at the run's ``lr``, exactly as before rules were
recorded; any other rule (Meta-SGD's learned rates, ...) -- that rule, used as is (``lr`` does not apply to it); a
rule a scheme cannot run -- ConfigError ``checkpoint`` at setup, never a silent fallback to SGD.
"""

from __future__ import annotations

import copy
import time

import torch

from metacomm._validation import ConfigError, check_nonneg_int, check_positive, check_positive_int
from metacomm.adaptation.functional import Adam, batched_loss
from metacomm.adaptation.online import AdaptiveCodec
from metacomm.adaptation.update_rules import SGD, MetaSGD
from metacomm.drift.links import score_workspace
from metacomm.drift.protocol import Decision, DriftContext, DriftScheme, FrameSignals
from metacomm.drift.registry import register_scheme

__all__ = ["template_decide", "AdaptiveScheme", "StaticScheme", "RetrainScheme", "inner_rule_settings", "check_rule_fits"]


def _rule_name(rule) -> str:
    return getattr(type(rule), "spec_name", None) or type(rule).__name__


def inner_rule_settings(scheme, ctx: DriftContext) -> dict:
    """The :class:`~metacomm.adaptation.AdaptiveCodec` keywords of ``scheme``'s inner update: ``{"lr": run lr}``
    when the checkpoint's rule ``ctx.rule`` is ``None`` or plain SGD (its rate is the run's ``lr``, the checkpoint's
    inner rate unless the run overrides it), ``{"rule": ctx.rule}`` for any other rule; ConfigError ``checkpoint``
    when ``scheme`` declares it runs SGD only (:attr:`AdaptiveScheme.sgd_only`)."""
    rule = ctx.rule
    if rule is None or type(rule) is SGD:
        return {"lr": ctx.config.lr}
    if getattr(scheme, "sgd_only", False):
        raise ConfigError("checkpoint", f"scheme '{scheme.name}' cannot run the checkpoint's inner rule "
                                        f"{_rule_name(rule)}: its decision-directed step is SGD at --lr (use a "
                                        "checkpoint meta-trained with an SGD inner rule, or another scheme)")
    return {"rule": rule}


def check_rule_fits(scheme, codec) -> None:
    """ConfigError ``checkpoint`` when the rule of ``codec`` (an AdaptiveCodec) cannot update every parameter the
    run adapts (Meta-SGD without a rate for one of them)."""
    rule = codec.rule
    if isinstance(rule, MetaSGD):
        missing = [n for n in codec.names if n not in rule.rates]
        if missing:
            raise ConfigError("checkpoint", f"scheme '{scheme.name}' cannot run the checkpoint's inner rule metasgd: "
                                            f"it has rates for {', '.join(sorted(rule.rates))}, not for "
                                            f"{', '.join(missing)} which the run adapts (leave '{scheme.name}' out of "
                                            "--schemes, e.g. --schemes track,pilot-ls, or use a checkpoint "
                                            "meta-trained with an SGD inner rule)")


def template_decide(codec: AdaptiveCodec, y: torch.Tensor, workspace=None) -> torch.Tensor | None:
    r"""The payload decision of an :class:`~metacomm.adaptation.AdaptiveCodec` whose decoder is a
    :class:`~metacomm.scenarios.online_drift.TemplateDecoder`, without ``functional_call``/``vmap``: the
    decoder's ``block_logits`` arithmetic (:math:`-\beta(\|\mathbf r_m\|^2 - 2\Re\langle\mathbf y,
    \mathbf r_m\rangle) + b_m` with :math:`\mathbf r_m = \mathbf H(\hat h)\mathbf t_m`) written batched over
    links -- the images of every link from its fast weights, one ``baddbmm`` into the run's score buffer
    (``workspace``), the scale and bias in place, one arg-max. ``y`` complex ``[B, N, n]`` -> int64 ``[B, N]``, or
    ``None`` for any other decoder (the caller falls back to ``decide_block``). The same decisions as
    ``decide_block`` (``tests/drift/test_track_fused.py`` and the golden drift runs)."""
    from metacomm.scenarios.online_drift import TemplateDecoder

    dec = getattr(codec.codec, "decoder", None)
    if type(dec) is not TemplateDecoder or codec.bitwise or y.dim() != 3 or y.shape[-1] != dec.n:
        return None
    fast = codec.fast or {}
    B, N, n = y.shape
    L = dec.num_taps

    def prm(name):
        t = fast.get("decoder." + name)
        return getattr(dec, name).detach() if t is None else t

    with torch.no_grad():
        taps, warp, templates = prm("taps"), prm("warp"), prm("templates")
        bias, log_beta, log_scale = prm("bias"), prm("log_beta"), prm("log_scale")
        if warp.dim() == 2 and taps.dim() == 2:  # per-link taps, shared warp (the default adapt = decoder.taps)
            h = torch.mm(warp, taps.t()).t()  # the kernel vmap's batching rule of W @ taps runs: the same bits
        elif warp.dim() == 2:
            h = (warp @ taps)[None]
        else:
            h = torch.vmap(torch.mv, in_dims=(0, 0 if taps.dim() == 2 else None))(warp, taps)
        h = h * log_scale.exp().reshape(-1, 1)
        hc = torch.complex(h[:, :L], h[:, L:])  # [B or 1, L]
        t = torch.complex(templates[..., :n], templates[..., n:])  # [(B,) M, n]
        from metacomm.codecs.detection import convolve_codewords
        r = convolve_codewords(t, hc)  # [B, M, n]
        if r.shape[0] != B:
            r = r.expand(B, *r.shape[1:])
        M = r.shape[1]
        rr = r.abs().square().sum(-1)  # [B, M], as block_logits forms it
        yr = torch.view_as_real(y.resolve_conj()).flatten(-2)
        ir = torch.view_as_real(r.resolve_conj()).flatten(-2)
        out = None if workspace is None else workspace.get("s", (B, N, M), yr.dtype, y.device)
        d = torch.baddbmm(rr[:, None, :], yr, ir.transpose(-1, -2), alpha=-2.0, out=out)  # -2 Re<y, r> + ||r||^2
        d.mul_(-log_beta.exp().reshape(-1, 1, 1)).add_(bias.reshape(-1, 1, M) if bias.dim() else bias)
        return d.argmax(-1)


class AdaptiveScheme(DriftScheme):
    """An :class:`~metacomm.adaptation.AdaptiveCodec` policy: every frame, ``observe`` the pilots (``steps``
    steps of the inner rule on ``adapt``, loss ``inner_loss``: SGD at ``lr``, or the checkpoint's rule
    ``ctx.rule`` -- :func:`inner_rule_settings`), then decide the payload with each link's fast
    weights. ``meta``: from the meta-init every frame; ``warm``: from the previous frame's weights;
    ``online-meta``: Reptile-refined per-link init; ``on-detection``/``reset-on-change``: detector-driven."""

    kind = "adaptive"
    #: the scheme's own update is SGD at ``lr`` (no other inner rule can run it): a non-SGD ``ctx.rule`` is refused
    sgd_only = False

    def __init__(self, name: str, *, policy: str, warm_start: bool = False):
        super().__init__(name)
        self.policy, self.warm_start = policy, warm_start

    def settings(self) -> dict:
        return {"policy": self.policy, "warm_start": self.warm_start}

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        c = ctx.config
        self.codec = AdaptiveCodec(ctx.model, num_links=c.links, adapt=c.adapt, steps=c.steps,
                                   **inner_rule_settings(self, ctx), policy=self.policy, warm_start=self.warm_start,
                                   loss=ctx.inner_loss).to(ctx.device)
        check_rule_fits(self, self.codec)

    def decide(self, sig: FrameSignals) -> Decision:
        info = self.codec.observe(sig.msg_p, sig.y_p, sig.no)
        return Decision(self.decide_payload(sig.y_d), info["latency_s"] * 1e3)

    def decide_payload(self, y_d: torch.Tensor) -> torch.Tensor:
        """Each link's arg-max message with its fast weights, int64 ``[B, N]``: for a template decoder (the shipped
        codecs) :func:`template_decide` -- the decoder's own arithmetic, batched over links, in the run's score
        buffer, bit-identical decisions; any other decoder through ``AdaptiveCodec.decide_block``."""
        out = template_decide(self.codec, y_d, score_workspace(self.ctx))
        return self.codec.decide_block(y_d) if out is None else out

    def state_dict(self) -> dict:
        return {"codec": self.codec.save_state()}

    def load_state_dict(self, state: dict) -> None:
        self.codec.load_state(state["codec"])


class StaticScheme(AdaptiveScheme):
    """The codec adapted once, on the first frame's pilots (``steps`` steps from the meta-init), then frozen:
    what a deployed codec does without online adaptation."""

    def __init__(self, name: str):
        super().__init__(name, policy="every-frame")
        self.adapted = False

    def settings(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "adapted": self.adapted}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.adapted = bool(state["adapted"])

    def decide(self, sig: FrameSignals) -> Decision:
        if self.adapted:  # frozen: latency 0
            return Decision(self.decide_payload(sig.y_d), 0.0)
        self.adapted = True
        return super().decide(sig)


def _fresh_decoder_codec(model, seed: int, device):
    fresh = copy.deepcopy(model)
    g = torch.Generator().manual_seed(int(seed))
    if hasattr(fresh, "reset_parameters"):
        fresh.reset_parameters(g)
    fresh.encoder.load_state_dict(model.encoder.state_dict())
    return fresh.to(device)


def _retrain(model, names, msg_p, y_p, steps, lr):
    """Fresh decoder trained with Adam on this frame's pilots only (all links at once)."""
    B = msg_p.shape[0]
    shared = {nm: p.detach() for nm, p in model.named_parameters() if nm not in names}
    params = dict(model.named_parameters())
    phi = {nm: params[nm].detach().unsqueeze(0).expand(B, *params[nm].shape).clone() for nm in names}
    opt = Adam(lr)
    state = opt.init(phi)
    batch = {"msg": msg_p, "y": y_p}

    def loss_fn(m, b):
        return torch.nn.functional.cross_entropy(m.decoder.block_logits(b["y"]), b["msg"])

    for _ in range(steps):
        phi = {nm: t.detach().requires_grad_(True) for nm, t in phi.items()}
        with torch.enable_grad():
            losses = batched_loss(model, shared, loss_fn, batch, phi)
            grads = torch.autograd.grad(losses.sum(), [phi[nm] for nm in names])
        phi, state = opt.update({nm: t.detach() for nm, t in phi.items()}, dict(zip(names, grads, strict=True)),
                                state)
    return {nm: t.detach() for nm, t in phi.items()}


class RetrainScheme(DriftScheme):
    """Not a default scheme (``--schemes ...,retrain``). Periodic full retraining from scratch: every ``every`` frames (and on the first frame) a freshly
    initialised decoder (seed ``seed + 2`` of the run; the encoder is the meta-trained one) is trained with Adam
    (rate ``lr``, ``steps`` steps, pilot cross-entropy) on that frame's pilots only, per link.

    Settings (``--retrain-every``, ``--retrain-steps`` on the command line): ``every`` [frames] >= 1, ``steps``
    >= 0, ``lr`` > 0."""

    kind = "adaptive"
    state_attrs = ("fast",)

    def __init__(self, name: str, *, every: int = 10, steps: int = 100, lr: float = 1e-2):
        super().__init__(name)
        self.every = check_positive_int("retrain_every", every)
        self.steps = check_nonneg_int("retrain_steps", steps)
        self.lr = float(check_positive("retrain_lr", lr))

    def settings(self) -> dict:
        return {"every": self.every, "steps": self.steps, "lr": self.lr}

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        c = ctx.config
        self.model = _fresh_decoder_codec(ctx.model, c.seed + 2, ctx.device)
        self.names = [nm for nm, _ in self.model.named_parameters() if nm.startswith("decoder.")]
        self.fast = None

    def decide(self, sig: FrameSignals) -> Decision:
        t0 = time.perf_counter()
        if self.fast is None or sig.index % self.every == 0:
            self.fast = _retrain(self.model, self.names, sig.msg_p, sig.y_p, self.steps, self.lr)
            lat = (time.perf_counter() - t0) * 1e3
        else:
            lat = 0.0
        with torch.no_grad():
            shared = {nm: p.detach() for nm, p in self.model.named_parameters() if nm not in self.names}
            msg_hat = batched_loss(self.model, shared, lambda m, y: m.decoder.block_logits(y), sig.y_d,
                                   self.fast).argmax(-1)
        return Decision(msg_hat, lat)


register_scheme("static", default=True)(StaticScheme)
# not in the default list (issue 24): at the drift defaults (100 Adam steps every 10 frames) it was 56-63 % of a
# frame's CPU time with every default scheme, and a decoder trained from scratch on one frame's pilots decodes at
# chance (BLER ~0.99); ask for it by name (--schemes ...,retrain)
register_scheme("retrain")(RetrainScheme)
register_scheme("meta", default=True, policy="every-frame")(AdaptiveScheme)
register_scheme("warm", default=True, policy="every-frame", warm_start=True)(AdaptiveScheme)
register_scheme("online-meta", default=True, policy="online-meta")(AdaptiveScheme)
register_scheme("on-detection", policy="on-detection")(AdaptiveScheme)
register_scheme("reset-on-change", policy="reset-on-change")(AdaptiveScheme)
