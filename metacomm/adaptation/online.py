r"""The adaptive codec: a meta-learned codec that keeps adapting to a drifting channel, for many links at once.

:class:`AdaptiveCodec` wraps any codec of the :mod:`metacomm.codecs.base` protocol whose decoder has
``block_logits(y)`` (the autoencoders, :class:`metacomm.scenarios.online_drift.DriftAutoencoder`). Its own
parameters are the meta-learned initialisation :math:`\theta`; it holds per-link *fast weights*
:math:`\phi^{(b)}` for ``B`` independent links, stacked on a leading link axis (``{name: [B, *shape]}``).

Per frame ``t`` and link ``b``, :meth:`AdaptiveCodec.observe` takes ``P`` known pilot messages and what was
received, and runs ``S`` steps of the inner update rule (:mod:`metacomm.adaptation.update_rules`; default SGD,
or Meta-SGD rates, Adam, ...) on the pilot loss, by default the pilot cross-entropy (SGD shown)

.. math:: \phi \leftarrow \phi - \alpha\, \nabla_\phi \frac1P \sum_{p=1}^{P}
          -\log \operatorname{softmax}(z_\phi(y_p))_{m_p}

or (``loss="pilot-fit"``) the decoder's generative pilot misfit ``decoder.pilot_fit_loss(y, msg)`` (for the
drift codec :math:`\frac1{Pn}\sum_p\|y_p - \mathbf H(\hat h)t_{m_p}\|^2`, see
:mod:`metacomm.scenarios.online_drift`), on the adapted names (default: the decoder) from a start point chosen
by the policy; all links are adapted in one vmapped forward and one backward
(:func:`metacomm.adaptation.functional.batched_loss`: slice ``b`` of the gradient of the summed losses is link
``b``'s own gradient); a single link takes a plain :func:`~metacomm.adaptation.functional.call` (no vmap). :meth:`decode` / :meth:`block_logits` then use
:math:`\phi^{(b)}` on link ``b``'s payload.

Policies (``policy=``):

* ``"every-frame"`` -- adapt every frame, from the meta-init (``warm_start=False``: each frame is a fresh
  few-shot task) or from the current weights (``warm_start=True``: accumulates evidence while the channel
  drifts slowly).
* ``"on-detection"`` -- warm-start adaptation only on the links whose drift detector fires
  (:mod:`metacomm.adaptation.detectors`; statistic = pilot loss of the current weights).
* ``"reset-on-change"`` -- adapt every frame, warm-started, but restart from the meta-init on the links where
  the detector fires (a regime change).
* ``"online-meta"`` -- follow the meta-leader: every link keeps its own initialisation :math:`\theta^{(b)}`,
  adapts from it, and after the frame refines it with a Reptile step over the pilots of the last ``W`` frames,
  :math:`\theta \leftarrow \theta + \epsilon\, \frac1W \sum_{w} (U_w(\theta) - \theta)` with :math:`U_w` the
  ``S``-step inner update on frame ``w``'s pilots (Nichol et al. 2018; Finn et al. 2019's FTML with a
  first-order meta-gradient).

Encoder adaptation (``adapt`` naming encoder parameters) assumes feedback: the loss then re-transmits the pilot
messages through a differentiable model of the channel, so :meth:`observe` needs ``channel``, ``state`` and the
pilots' unit-variance ``noise``.

**State.** :meth:`AdaptiveCodec.state_dict` / :meth:`AdaptiveCodec.load_state_dict` save and restore everything a
drift run needs to continue bit for bit: the meta-init (the codec's weights), the per-link fast weights, the
online-meta per-link inits and window buffer, the detector's running state, the frame counter and the last
detector decision. The state holds only tensors, numbers, strings, ``None``, lists and dicts, so it loads with
``torch.load(weights_only=True)``.

Randomness: nothing here draws random numbers (pilots, channels and noise come from the caller).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping

import torch
from torch import nn
from torch.utils._pytree import tree_map

from metacomm._validation import (
    ConfigError,
    check_choice,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)
from metacomm.adaptation.detectors import Detector, make_detector
from metacomm.adaptation.functional import _zeros_if_unused, batched_loss, call
from metacomm.adaptation.params import AdaptSpec, select_names
from metacomm.adaptation.update_rules import UpdateRule, as_rule
from metacomm.channels.units import broadcast_no
from metacomm.codecs.learned_base import bit_llrs_from_block_logits, bits_to_index, message_bit_table

__all__ = ["AdaptiveCodec", "POLICIES"]

POLICIES = ("every-frame", "on-detection", "reset-on-change", "online-meta")


def _pilot_ce(model, batch):
    logits = model.decoder.block_logits(batch["y"])
    return nn.functional.cross_entropy(logits, batch["msg"])


def _pilot_fit(model, batch):
    return model.decoder.pilot_fit_loss(batch["y"], batch["msg"])


def _pilot_bce(model, batch):
    logits = model.decoder.bit_logits(batch["y"], batch["no"])
    return nn.functional.binary_cross_entropy_with_logits(logits, batch["bits"])


def _bit_logits(model, batch):
    return model.decoder.bit_logits(batch["y"], batch["no"])


LOSSES = ("ce", "pilot-fit", "bce")


def _pilot_ce_feedback(channel):
    def loss(model, batch):
        x = model.encoder.forward_index(batch["msg"])
        P = x.shape[0]
        state = {k: v.unsqueeze(0).expand(P, *v.shape) for k, v in batch["state"].items()}
        y = channel(x, batch["no"], state=state, noise=batch["noise"])
        return nn.functional.cross_entropy(model.decoder.block_logits(y), batch["msg"])
    return loss


def _logits(model, y):
    return model.decoder.block_logits(y)


class AdaptiveCodec(nn.Module):
    """A meta-learned codec with per-link fast weights (see the module docstring).

    :param codec: the meta-trained codec (its current parameters are the meta-init :math:`\\theta`; a deep
        copy is kept, so later changes to ``codec`` do not leak in).
    :param num_links: ``B`` independent links adapted per call (>= 1).
    :param adapt: adapt spec of the fast weights (default ``"decoder"``; see
        :mod:`metacomm.adaptation.params`; e.g. ``"decoder.taps"`` for the drift codec's channel belief).
    :param steps: update steps per adaptation ``S`` (>= 0).
    :param lr: SGD rate :math:`\\alpha` (> 0), or Meta-SGD per-parameter rates ``{name: tensor}`` (shorthand for
        ``rule=``).
    :param rule: the inner :class:`~metacomm.adaptation.update_rules.UpdateRule` (used with its
        meta-parameters detached; its state starts fresh at every adaptation). Default: from ``lr``.
    :param policy: one of :data:`POLICIES`.
    :param warm_start: ``every-frame`` only: start from the current weights instead of the meta-init.
    :param detector: a :class:`~metacomm.adaptation.detectors.Detector` or its name (``on-detection`` and
        ``reset-on-change``; default ``"noise-floor"`` with the pilot-fit loss -- it needs ``no`` in
        :meth:`observe` -- else ``"threshold"``).
    :param meta_lr: ``online-meta``: Reptile step :math:`\\epsilon \\in (0, 1]` (default 0.5).
    :param meta_window: ``online-meta``: frames :math:`W` in the buffer (default 4).
    :param loss: the pilot loss the steps descend: ``"ce"`` (pilot cross-entropy, any block decoder) or
        ``"pilot-fit"`` (the decoder's generative misfit ``decoder.pilot_fit_loss(y, msg)``, e.g.
        :meth:`metacomm.scenarios.online_drift.TemplateDecoder.pilot_fit_loss`); use what the meta-init was
        meta-trained with. Default: the codec's ``meta_inner_loss`` attribute (set by
        :func:`metacomm.scenarios.online_drift.load_meta` / ``meta_train`` from the checkpoint), else ``"ce"``.

    Shapes: pilots ``msg`` int64 ``[B, P]`` (or bits ``[B, P, k]``), ``y`` complex ``[B, P, n_rx]``; payload
    ``y`` ``[B, N, n_rx]`` -> ``decode`` float LLRs ``[B, N, k]``, ``block_logits`` ``[B, N, 2^k]``. With
    ``num_links == 1`` a 2-D ``y`` ``[N, n_rx]`` is accepted and 2-D outputs are returned (a drop-in demapper).
    """

    def __init__(self, codec: nn.Module, *, num_links: int = 1, adapt: AdaptSpec = "decoder", steps: int = 1,
                 lr: float | Mapping[str, torch.Tensor] = 0.1, policy: str = "every-frame",
                 warm_start: bool = False, detector: Detector | str | None = None, meta_lr: float = 0.5,
                 meta_window: int = 4, loss: str | None = None, rule: UpdateRule | None = None):
        super().__init__()
        import copy

        if not hasattr(codec, "decoder") or not (hasattr(codec.decoder, "block_logits")
                                                 or hasattr(codec.decoder, "bit_logits")):
            raise ConfigError("codec", "needs a codec whose decoder has block_logits(y) (an autoencoder) or "
                                       "bit_logits(y, no) (a bit-wise demapper, codecs.bitwise)")
        #: a bit-wise demapper (no block logits: k may exceed 12); pilots are scored by bit-wise BCE
        self.bitwise = not hasattr(codec.decoder, "block_logits")
        self.codec = copy.deepcopy(codec)
        for p in self.codec.parameters():
            p.requires_grad_(True)
        self.num_links = check_positive_int("num_links", num_links)
        self.names = select_names(self.codec, adapt, field="adapt")
        self.steps = check_nonneg_int("steps", steps)
        if rule is not None:
            self.rule = as_rule(rule, field="rule").detached()
            self.lr = None
        elif isinstance(lr, Mapping):
            missing = [n for n in self.names if n not in lr]
            if missing:
                raise ConfigError("lr", f"per-parameter rates missing for {', '.join(missing)}")
            self.lr = {n: torch.as_tensor(lr[n]).detach() for n in self.names}
            self.rule = as_rule(self.lr)
        else:
            self.lr = check_positive("lr", lr)
            self.rule = as_rule(None, lr=self.lr)
        self.policy = check_choice("policy", policy, POLICIES)
        if loss is None:  # what the meta-init was trained for, when the codec says so (online_drift.load_meta)
            loss = "bce" if self.bitwise else getattr(codec, "meta_inner_loss", "ce")
        self.loss = check_choice("loss", loss, LOSSES)
        if (self.loss == "bce") != self.bitwise:
            raise ConfigError("loss", "'bce' is the pilot loss of a bit-wise demapper (decoder.bit_logits), and a "
                                      "bit-wise demapper takes only 'bce'")
        if self.loss == "pilot-fit" and not hasattr(self.codec.decoder, "pilot_fit_loss"):
            raise ConfigError("loss", "'pilot-fit' needs a decoder with pilot_fit_loss(y, msg) (the template "
                                      "decoder of scenarios.online_drift)")
        if not isinstance(warm_start, bool):
            raise ConfigError("warm_start", f"must be True or False, got {warm_start!r}")
        self.warm_start = warm_start
        if policy in ("on-detection", "reset-on-change"):
            det = detector if detector is not None else ("noise-floor" if self.loss == "pilot-fit" else "threshold")
            self.detector = make_detector(det) if isinstance(det, str) else det
            if not isinstance(self.detector, Detector):
                raise ConfigError("detector", "expected a Detector or one of: threshold, cusum, noise-floor")
            if getattr(self.detector, "needs_noise", False) and self.loss != "pilot-fit":
                raise ConfigError("detector", "the noise-floor detector tests the pilot-fit residual: use "
                                              "loss='pilot-fit'")
        else:
            self.detector = None
        self.meta_lr = check_positive("meta_lr", meta_lr)
        if self.meta_lr > 1:
            raise ConfigError("meta_lr", f"must lie in (0, 1], got {meta_lr}")
        self.meta_window = check_positive_int("meta_window", meta_window)
        self.needs_feedback = any(n.startswith("encoder.") for n in self.names)
        if self.needs_feedback and self.bitwise:
            raise ConfigError("adapt", "a bit-wise codec adapts its demapper only (its QAM mapper has no weights)")
        self.k = int(self.codec.num_info_bits)
        if not self.bitwise:
            self.register_buffer("bit_table", message_bit_table(self.k), persistent=False)
        self.last_latency_s = 0.0
        self.last_fired: torch.Tensor | None = None
        self.frames = 0
        self.reset()

    # --- state --------------------------------------------------------------------------------------------
    def meta_init(self) -> dict[str, torch.Tensor]:
        """The meta-learned initialisation of the adapted names (detached)."""
        params = dict(self.codec.named_parameters())
        return {n: params[n].detach() for n in self.names}

    def _stack(self, params, B):
        return {n: t.unsqueeze(0).expand(B, *t.shape).clone() for n, t in params.items()}

    def reset(self, num_links: int | None = None) -> None:
        """Forget all adaptation: fast weights (and online-meta inits) = the meta-init; detectors reset."""
        if num_links is not None:
            self.num_links = check_positive_int("num_links", num_links)
        self.fast = self._stack(self.meta_init(), self.num_links)
        self.inits = self._stack(self.meta_init(), self.num_links) if self.policy == "online-meta" else None
        self._buffer: deque = deque(maxlen=self.meta_window)
        if self.detector is not None:
            self.detector.reset()

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if getattr(self, "fast", None) is not None:
            self.fast = {n: fn(t) for n, t in self.fast.items()}
        if getattr(self, "inits", None) is not None:
            self.inits = {n: fn(t) for n, t in self.inits.items()}
        return self

    def _shared(self):
        return {n: p.detach() for n, p in self.codec.named_parameters() if n not in self.names}

    # --- checkpointing ---------------------------------------------------------------------------------------
    STATE_FORMAT = "metacomm-adaptive-codec/1"

    def _settings(self) -> dict:
        return {"names": list(self.names), "policy": self.policy, "loss": self.loss, "steps": self.steps,
                "warm_start": self.warm_start, "meta_lr": self.meta_lr, "meta_window": self.meta_window,
                "detector": None if self.detector is None else type(self.detector).__name__,
                "rule": type(self.rule).__name__}

    def save_state(self) -> dict:
        """Everything needed to continue this codec's run bit for bit (module docstring, "State"):
        ``{"format", "settings", "num_links", "codec" (meta-init state dict), "fast" {name: [B, ...]},
        "inits" (online-meta per-link inits or None), "buffer" (online-meta window: list of pilot batches),
        "detector" (its state dict or None), "rule" (the rule's meta-parameters), "frames" (frames observed),
        "last_fired" (bool [B] or None), "last_latency_s"}``. CPU copies; loads with
        ``torch.load(weights_only=True)``."""
        def cpu(tree):
            return tree_map(lambda t: t.detach().cpu().clone() if isinstance(t, torch.Tensor) else t, tree)

        return {"format": self.STATE_FORMAT, "settings": self._settings(), "num_links": self.num_links,
                "codec": cpu(dict(self.codec.state_dict())), "fast": cpu(dict(self.fast)),
                "inits": cpu(dict(self.inits)) if self.inits is not None else None,
                "buffer": [cpu(dict(b)) for b in self._buffer],
                "detector": self.detector.state_dict() if self.detector is not None else None,
                "rule": cpu(dict(self.rule.meta_params)), "frames": int(self.frames),
                "last_fired": cpu(self.last_fired), "last_latency_s": float(self.last_latency_s)}

    def load_state(self, state: dict) -> None:
        """Restore a :meth:`save_state` dict into this codec (built with the same settings: adapted names,
        policy, loss, steps, window, detector kind, rule kind; a mismatch is a :class:`~metacomm.ConfigError`
        naming ``state``). Tensors go to the codec's device; ``num_links`` is taken from the state."""
        if not isinstance(state, dict) or state.get("format") != self.STATE_FORMAT:
            raise ConfigError("state", f"not an AdaptiveCodec state (expected format {self.STATE_FORMAT!r})")
        mine, theirs = self._settings(), dict(state["settings"])
        diff = [k for k in mine if mine[k] != theirs.get(k)]
        if diff:
            raise ConfigError("state", "saved with different settings: " +
                              ", ".join(f"{k}={theirs.get(k)!r} (here {mine[k]!r})" for k in diff))
        saved_rule = state.get("rule") or {}
        if set(saved_rule) != set(self.rule.meta_params):
            raise ConfigError("state", "saved with a rule that has different meta-parameters")
        try:
            self.codec.load_state_dict(state["codec"])
        except RuntimeError as e:
            raise ConfigError("state", f"saved for a different codec: {str(e).splitlines()[0]}") from None
        dev = next(self.codec.parameters()).device

        def to_dev(tree):
            return tree_map(lambda t: t.to(dev).clone() if isinstance(t, torch.Tensor) else t, tree)

        with torch.no_grad():
            for k, t in self.rule.meta_params.items():
                t.copy_(saved_rule[k].to(t.device))
        self.num_links = check_positive_int("num_links", state["num_links"])
        fast = to_dev(dict(state["fast"]))
        if sorted(fast) != sorted(self.names) or any(t.shape[0] != self.num_links for t in fast.values()):
            raise ConfigError("state", "fast weights do not match the adapted names / number of links")
        self.fast = {n: fast[n] for n in self.names}
        inits = state.get("inits")
        self.inits = None if inits is None else {n: to_dev(dict(inits))[n] for n in self.names}
        self._buffer = deque((to_dev(dict(b)) for b in state.get("buffer", [])), maxlen=self.meta_window)
        if self.detector is not None:
            self.detector.load_state_dict(to_dev(state["detector"]))
        self.frames = int(state.get("frames", 0))
        self.last_fired = to_dev(state.get("last_fired"))
        self.last_latency_s = float(state.get("last_latency_s", 0.0))

    # --- adaptation -----------------------------------------------------------------------------------------
    def _pilot_batch(self, pilots_tx, pilots_rx, no, channel, state, noise):
        B = self.num_links
        msg = pilots_tx
        if self.bitwise and torch.is_floating_point(msg) and msg.dim() == 3 and msg.shape[-1] == self.k:
            if not bool(((msg == 0) | (msg == 1)).all()):
                raise ConfigError("pilots_tx", "pilot bits must be 0 or 1")
            if pilots_rx.dim() != 3 or pilots_rx.shape[:2] != msg.shape[:2] or not torch.is_complex(pilots_rx):
                raise ConfigError("pilots_rx", f"expected complex [{B}, {msg.shape[1]}, n_rx], got "
                                               f"{pilots_rx.dtype} {tuple(pilots_rx.shape)}")
            if not bool(torch.isfinite(torch.view_as_real(pilots_rx)).all()):
                raise ConfigError("pilots_rx", "contains NaN or inf samples; adapting on them would make the "
                                               "links' fast weights NaN")
            no_t = broadcast_no(1e-1 if no is None else no, pilots_rx[:, 0, 0], field="no")
            no_t = (no_t.expand(B) if no_t.dim() == 0 else no_t)[:, None]
            return {"bits": msg.to(pilots_rx.real.dtype), "y": pilots_rx, "no": no_t}, _pilot_bce
        if torch.is_floating_point(msg):
            if msg.dim() != 3 or msg.shape[-1] != self.k:
                raise ConfigError("pilots_tx", f"expected message indices [B, P] or bits [B, P, {self.k}], got "
                                               f"{tuple(msg.shape)}")
            msg = bits_to_index(msg)
        if msg.dtype == torch.bool or torch.is_complex(msg) or torch.is_floating_point(msg):
            raise ConfigError("pilots_tx", f"expected integer message indices 0..{2 ** self.k - 1} or bits, got "
                                           f"{msg.dtype}")
        if msg.dim() != 2 or msg.shape[0] != B:
            raise ConfigError("pilots_tx", f"expected [{B}, P] pilot messages for {B} links, got {tuple(msg.shape)}")
        if msg.numel() and (int(msg.min()) < 0 or int(msg.max()) >= 2 ** self.k):
            raise ConfigError("pilots_tx", f"message indices must lie in 0..{2 ** self.k - 1} (k = {self.k} bits), "
                                           f"got {int(msg.min())}..{int(msg.max())}")
        if pilots_rx.dim() != 3 or pilots_rx.shape[:2] != msg.shape or not torch.is_complex(pilots_rx):
            raise ConfigError("pilots_rx", f"expected complex [{B}, {msg.shape[1]}, n_rx], got "
                                           f"{pilots_rx.dtype} {tuple(pilots_rx.shape)}")
        if not bool(torch.isfinite(torch.view_as_real(pilots_rx)).all()):
            raise ConfigError("pilots_rx", "contains NaN or inf samples; adapting on them would make the links' "
                                           "fast weights NaN")
        batch = {"msg": msg.to(torch.int64), "y": pilots_rx}
        if self.bitwise:  # message indices -> bits
            from metacomm.codecs.learned_base import index_to_bits
            return self._pilot_batch(index_to_bits(batch["msg"], self.k), pilots_rx, no, channel, state, noise)
        if self.needs_feedback:
            if channel is None or state is None or noise is None:
                raise ConfigError("adapt", "adapting the encoder assumes feedback: observe() needs channel=, "
                                           "state= and noise= of the pilots")
            no_t = broadcast_no(no, pilots_rx[:, 0, 0], field="no")  # [B] (0-d for one N0 for all links)
            batch.update(state=dict(state), noise=noise, no=no_t.expand(B) if no_t.dim() == 0 else no_t)
            return batch, _pilot_ce_feedback(channel)
        return batch, (_pilot_fit if self.loss == "pilot-fit" else _pilot_ce)

    def _losses(self, shared, loss_fn, batch, phi):
        """Per-link losses ``[B]``: one vmapped call, or -- fast path for a single link -- one plain
        :func:`~metacomm.adaptation.functional.call` (no vmap bookkeeping; same numbers)."""
        if next(iter(phi.values())).shape[0] == 1:
            b0 = tree_map(lambda t: t[0] if isinstance(t, torch.Tensor) else t, batch)
            return call(self.codec, {**shared, **{n: t[0] for n, t in phi.items()}}, loss_fn, b0).unsqueeze(0)
        return batched_loss(self.codec, shared, loss_fn, batch, phi)

    def _adapt(self, start, batch, loss_fn, steps):
        shared = self._shared()
        rule = self.rule
        loss_fn = rule.wrap_loss(loss_fn, rule.meta_params)
        phi = {n: t.detach().clone() for n, t in start.items()}
        state = rule.init(phi)
        for _ in range(steps):
            phi = {n: t.requires_grad_(True) for n, t in phi.items()}
            with torch.enable_grad():
                losses = self._losses(shared, loss_fn, batch, phi)
                grads = _zeros_if_unused(torch.autograd.grad(losses.sum(), [phi[n] for n in self.names],
                                                             allow_unused=True), [phi[n] for n in self.names])
            new, state = rule.step(phi, dict(zip(self.names, grads, strict=True)), state)
            phi = {n: new[n].detach() for n in self.names}
            state = tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, state)
        return phi

    @torch.no_grad()
    def pilot_loss(self, pilots_tx, pilots_rx, no=None, *, channel=None, state=None, noise=None) -> torch.Tensor:
        """Pilot cross-entropy [nats] of the current fast weights per link, float ``[B]``."""
        batch, loss_fn = self._pilot_batch(pilots_tx, pilots_rx, no, channel, state, noise)
        return batched_loss(self.codec, self._shared(), loss_fn, batch, self.fast).detach()

    def observe(self, pilots_tx, pilots_rx, no=None, *, channel=None, state=None, noise=None,
                steps: int | None = None) -> dict:
        """Adapt the fast weights on this frame's pilots according to the policy.

        :param pilots_tx: known pilot messages, int64 ``[B, P]`` (or bits ``[B, P, k]``).
        :param pilots_rx: what was received for them, complex ``[B, P, n_rx]``.
        :param no: N0 per complex sample (float or ``[B]``); used by feedback (encoder) adaptation only.
        :param channel, state, noise: the differentiable channel model, its per-link state ``{key: [B, ...]}``
            and the pilots' unit-variance noise ``[B, P, n_rx]`` (needed only when the encoder adapts).
        :param steps: override ``S`` for this call.
        :returns: ``{"pilot_loss": [B] before adapting, "adapted": bool [B], "fired": bool [B] or None,
            "latency_s": wall time of the adaptation}``.

        A frame without pilots (``P = 0``) carries nothing to adapt on: the fast weights, the detector and the
        online-meta buffer are left as they are and the result says so, ``adapted`` all False (``pilot_loss`` and
        ``fired`` None, ``latency_s`` 0) -- a loss over no pilots would be NaN.
        """
        steps = self.steps if steps is None else check_nonneg_int("steps", steps)
        batch, loss_fn = self._pilot_batch(pilots_tx, pilots_rx, no, channel, state, noise)
        B = self.num_links
        if pilots_rx.shape[1] == 0:  # no pilots this frame: nothing to adapt on, and say so
            self.last_latency_s = 0.0
            self.last_fired = None
            self.frames += 1
            return {"pilot_loss": None, "adapted": torch.zeros(B, dtype=torch.bool, device=pilots_rx.device),
                    "fired": None, "latency_s": 0.0}
        t0 = time.perf_counter()
        fired = None
        before = None
        if self.detector is not None:
            with torch.no_grad():
                before = batched_loss(self.codec, self._shared(), loss_fn, batch, self.fast).detach()
            if getattr(self.detector, "needs_noise", False):
                if no is None:
                    raise ConfigError("no", "the noise-floor detector needs N0 of the pilots (observe(..., no))")
                fired = self.detector.update(before, no=no, num_samples=pilots_rx.shape[1] * pilots_rx.shape[2])
                fired = fired.to(pilots_rx.device)
            else:
                fired = self.detector.update(before).to(pilots_rx.device)
        if self.policy == "every-frame":
            start = self.fast if self.warm_start else self._stack(self.meta_init(), B)
            self.fast = self._adapt(start, batch, loss_fn, steps)
            adapted = torch.ones(B, dtype=torch.bool, device=pilots_rx.device)
        elif self.policy == "on-detection":
            new = self._adapt(self.fast, batch, loss_fn, steps)
            self.fast = {n: torch.where(fired.view(-1, *[1] * (t.dim() - 1)), new[n], t)
                         for n, t in self.fast.items()}
            adapted = fired
        elif self.policy == "reset-on-change":
            init = self._stack(self.meta_init(), B)
            start = {n: torch.where(fired.view(-1, *[1] * (t.dim() - 1)), init[n], t) for n, t in self.fast.items()}
            self.fast = self._adapt(start, batch, loss_fn, steps)
            adapted = torch.ones(B, dtype=torch.bool, device=pilots_rx.device)
        else:  # online-meta
            self.fast = self._adapt(self.inits, batch, loss_fn, steps)
            self._buffer.append(batch)
            # Reptile over the buffered frames, all W x B (frame, link) tasks in one batched adaptation:
            # tasks are stacked frame-major, [w0: links 0..B-1, w1: ..., ...].
            W = len(self._buffer)
            past = tree_map(lambda *xs: torch.cat(xs, 0), *self._buffer) if W > 1 else self._buffer[0]
            start = {n: t.repeat(W, *[1] * (t.dim() - 1)) for n, t in self.inits.items()}
            phi = self._adapt(start, past, loss_fn, max(steps, 1))
            self.inits = {n: (t + self.meta_lr * (phi[n].reshape(W, *t.shape) - t).mean(0)).detach()
                          for n, t in self.inits.items()}
            adapted = torch.ones(B, dtype=torch.bool, device=pilots_rx.device)
        if pilots_rx.is_cuda:
            torch.cuda.synchronize(pilots_rx.device)
        self.last_latency_s = time.perf_counter() - t0
        self.last_fired = fired
        self.frames += 1
        return {"pilot_loss": before, "adapted": adapted, "fired": fired, "latency_s": self.last_latency_s}

    # --- inference --------------------------------------------------------------------------------------------
    def _batched_y(self, y):
        if not torch.is_complex(y):
            raise ConfigError("y", f"expected complex received samples, got {y.dtype}")
        if y.dim() == 2 and self.num_links == 1:
            return y.unsqueeze(0), True
        if y.dim() != 3 or y.shape[0] != self.num_links:
            raise ConfigError("y", f"expected [{self.num_links}, N, n_rx] (links first), got {tuple(y.shape)}")
        return y, False

    @torch.no_grad()
    def block_logits(self, y: torch.Tensor) -> torch.Tensor:
        """Block logits of the payload with each link's fast weights: ``[B, N, n_rx]`` -> ``[B, N, 2^k]``."""
        if self.bitwise:
            raise ConfigError("codec", f"a bit-wise demapper has no block logits (2^{self.k} messages): use decode()")
        y3, squeeze = self._batched_y(y)
        out = batched_loss(self.codec, self._shared(), _logits, y3, self.fast)
        return out[0] if squeeze else out

    def decode(self, y: torch.Tensor, no=None) -> torch.Tensor:
        """Bit LLRs (``ln P(b=1)/P(b=0)``) ``[B, N, k]`` (exact marginals of the block posterior; a bit-wise
        demapper's own bit logits, given N0 ``no`` per link or shared, default 0.1)."""
        if self.bitwise:
            y3, squeeze = self._batched_y(y)
            no_t = broadcast_no(1e-1 if no is None else no, y3[:, 0, 0], field="no")
            no_t = (no_t.expand(y3.shape[0]) if no_t.dim() == 0 else no_t)[:, None]
            with torch.no_grad():
                out = batched_loss(self.codec, self._shared(), _bit_logits, {"y": y3, "no": no_t}, self.fast)
            return out[0] if squeeze else out
        return bit_llrs_from_block_logits(self.block_logits(y), self.bit_table.to(y.device))

    def decide_block(self, y: torch.Tensor) -> torch.Tensor:
        """Arg-max message per payload block, int64 ``[B, N]`` (a bit-wise demapper: its hard bits' index)."""
        if self.bitwise:
            return bits_to_index((self.decode(y) > 0).to(torch.int64))
        return self.block_logits(y).argmax(-1)

    def forward(self, y: torch.Tensor, no=None) -> torch.Tensor:
        """Same as :meth:`decode` (so the codec drops into a pipeline as a demapper/decoder block)."""
        return self.decode(y, no)

    @torch.no_grad()
    def encode(self, bits_or_msg: torch.Tensor) -> torch.Tensor:
        """Transmit: bits ``[B, N, k]`` (or message indices int ``[B, N]``) -> complex ``[B, N, n]``; with the
        links' adapted encoder weights when the encoder adapts, else the meta-init encoder. With
        ``num_links == 1``, ``[N, k]`` / ``[N]`` inputs give ``[N, n]``."""
        if self.bitwise:
            x = self.codec.encoder(bits_or_msg) if torch.is_floating_point(bits_or_msg) else \
                self.codec.encoder.forward_index(bits_or_msg.to(torch.int64))
            return x
        msg = bits_to_index(bits_or_msg) if torch.is_floating_point(bits_or_msg) else bits_or_msg.to(torch.int64)
        squeeze = msg.dim() == 1
        if squeeze:
            msg = msg.unsqueeze(0)
        if not self.needs_feedback:
            x = self.codec.encoder.forward_index(msg.reshape(-1)).reshape(*msg.shape, -1)
        else:
            x = batched_loss(self.codec, self._shared(), lambda m, i: m.encoder.forward_index(i), msg, self.fast)
        return x[0] if squeeze else x
