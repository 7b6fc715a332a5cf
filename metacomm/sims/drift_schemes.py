r"""Receivers of a drift run as objects: the :class:`DriftScheme` protocol, its registry and the built-in schemes.

A drift run (:mod:`metacomm.sims.drift_run`) sets every scheme up once for ``B`` links
(:meth:`DriftScheme.setup` with a :class:`DriftContext`), then per frame draws the shared signals once
(:class:`FrameSignals`: the frame's channel and state, N0, pilots and payload with their noise) and hands the
*same* signals to every scheme (:meth:`DriftScheme.decide` -> :class:`Decision`: decoded messages and
adaptation latency). A scheme keeps its own state across frames (fast weights, a retrained decoder, ...);
nothing random is drawn inside a scheme (its randomness comes from the config's seeds in :meth:`setup`).

A new receiver is one class::

    @register_scheme("my-rx")
    class MyReceiver(DriftScheme):
        def setup(self, ctx):            # once, before frame 0
            self.book = ctx.codebook
        def decide(self, sig):           # every frame
            ...
            return Decision(msg_hat, latency_ms)   # int64 [B, payload], float ms or None

Built-ins (:func:`scheme_names`): ``static``, ``retrain``, ``meta``, ``warm``, ``online-meta``,
``on-detection``, ``reset-on-change`` (the :class:`~metacomm.adaptation.AdaptiveCodec` policies), ``pilot-ls``
(LS taps + ML over the codebook) and ``genie`` (ML with the true channel; it brings along one
``genie{d}dB`` yardstick per ``genie_offsets_db`` entry through :meth:`DriftScheme.companions`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from metacomm._validation import ConfigError
from metacomm.adaptation.functional import Adam, batched_loss
from metacomm.adaptation.online import AdaptiveCodec
from metacomm.codecs.detection import ls_taps, min_distance_decide, noiseless_images

if TYPE_CHECKING:
    from metacomm.sims.drift_run import DriftRunConfig

__all__ = ["Decision", "DriftContext", "DriftScheme", "FrameSignals", "register_scheme", "scheme_names",
           "make_scheme", "build_schemes", "genie_name", "AdaptiveScheme", "StaticScheme", "RetrainScheme",
           "PilotLSScheme", "GenieScheme", "SCHEME_KINDS"]

SCHEME_KINDS = ("adaptive", "classical", "reference")


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().clone()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set):
        return [_to_cpu(v) for v in x]
    return x


def _to_device(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, list):
        return [_to_device(v, device) for v in x]
    return x


# ----------------------------------------------------------------------------------------------------------------
# What a scheme sees
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class DriftContext:
    """The run's shared setup, given to :meth:`DriftScheme.setup`.

    :ivar model: the meta-trained codec: a private copy on ``device`` in eval mode, shared by all schemes --
        do not modify it (copy it, as :class:`~metacomm.adaptation.AdaptiveCodec` does).
    :ivar codebook: the encoder's codebook, complex ``[M, n]`` (``M = 2^k``), Es = 1 per complex use.
    :ivar config: the validated :class:`~metacomm.sims.drift_run.DriftRunConfig` (pilots, payload, links, lr,
        steps, adapt, seeds, ...).
    :ivar device: torch device of every tensor.
    :ivar k, n: information bits and complex channel uses per block.
    :ivar inner_loss: the pilot loss of the adaptive schemes (resolved: ``"ce"`` or ``"pilot-fit"``).
    :ivar num_taps: the model order ``L`` of classical tap estimation (``pilot-ls``).
    :ivar scenario: the :class:`~metacomm.scenarios.drift_scenarios.DriftScenario` being played (its timeline's
        segments: channel family, fading process, impairments), or ``None``; for schemes that state what they
        know about the channel law (:mod:`metacomm.sims.drift_classical`).
    """

    model: torch.nn.Module
    codebook: torch.Tensor
    config: DriftRunConfig
    device: torch.device
    k: int
    n: int
    inner_loss: str
    num_taps: int
    scenario: Any = None

    @property
    def links(self) -> int:
        return int(self.config.links)

    @property
    def num_messages(self) -> int:
        return 2 ** self.k


@dataclass
class FrameSignals:
    """The signals of one frame, drawn once and shared by every scheme (common random numbers).

    :ivar frame: the :class:`~metacomm.channels.drift.Frame` (``index``, ``channel``, ``state`` per link,
        ``ebno_db``, ``no``, drift value); schemes that may use the true channel (genie) read it here.
    :ivar no: N0 per complex sample, float32 ``[B]`` on the run's device.
    :ivar msg_p, x_p, w_p, y_p: pilot messages int64 ``[B, P]``, their codewords complex ``[B, P, n]``,
        unit-variance noise and received pilots complex ``[B, P, n_rx]``.
    :ivar msg_d, x_d, w_d, y_d: the same for the payload (``[B, N]``, ``[B, N, n]``, ``[B, N, n_rx]``).
    :ivar clean_d: the noiseless received payload complex ``[B, N, n_rx]`` (channel applied, N0 = 0).
    """

    frame: Any
    no: torch.Tensor
    msg_p: torch.Tensor
    x_p: torch.Tensor
    w_p: torch.Tensor
    y_p: torch.Tensor
    msg_d: torch.Tensor
    x_d: torch.Tensor
    w_d: torch.Tensor
    y_d: torch.Tensor
    clean_d: torch.Tensor
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def index(self) -> int:
        return int(self.frame.index)

    def memo(self, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed once per frame and shared between schemes (e.g. the genie's codeword images)."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]


@dataclass
class Decision:
    """A scheme's output for one frame: ``msg_hat`` int64 ``[B, N]`` (decided payload messages) and
    ``latency_ms`` -- wall time [ms] of this frame's adaptation (0.0 when it did not adapt; ``None`` for
    references without an adaptation step, e.g. the genie)."""

    msg_hat: torch.Tensor
    latency_ms: float | None = None


class DriftScheme:
    """A receiver in a drift run. Subclasses implement :meth:`decide` and usually :meth:`setup`.

    :ivar name: the scheme's row name in the results (set by the registry).
    :cvar kind: ``"adaptive"`` (a learned/adapted receiver; the default), ``"classical"`` (a model-based
        estimator + detector) or ``"reference"`` (a yardstick that knows the true channel, e.g. the genie); the
        summary of a run picks the best scheme of each kind.
    """

    kind: str = "adaptive"
    #: attributes that carry the scheme's state across frames (tensors, numbers, None, lists/dicts of them):
    #: saved by :meth:`state_dict` so a drift run can be checkpointed and resumed; ``()`` for a stateless scheme;
    #: ``None`` (the default) = not declared, and checkpointing a run with this scheme is refused.
    state_attrs: tuple[str, ...] | None = None

    def __init__(self, name: str):
        self.name = name

    def state_dict(self) -> dict:
        """The scheme's state across frames (what a resumed run needs besides the replayed draws)."""
        if self.state_attrs is None:
            raise ConfigError("resume", f"scheme {self.name!r} ({type(self).__name__}) does not declare its state "
                                        "(state_attrs / state_dict), so a run with it cannot be checkpointed")
        return {a: _to_cpu(getattr(self, a)) for a in self.state_attrs}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (after :meth:`setup`)."""
        if self.state_attrs is None:
            self.state_dict()  # raises
        for a in self.state_attrs:
            setattr(self, a, _to_device(state[a], self.ctx.device))

    def setup(self, ctx: DriftContext) -> None:
        """Prepare for ``ctx.links`` links (called once, before the first frame)."""
        self.ctx = ctx

    def decide(self, sig: FrameSignals) -> Decision:
        """Adapt on this frame's pilots if the scheme does, and decide the payload ``sig.y_d``."""
        raise NotImplementedError

    def companions(self, config: DriftRunConfig) -> list[DriftScheme]:
        """Extra result rows that come with this scheme (e.g. the genie's dB-offset yardsticks); default none.
        They run right after it, on the same signals."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# ----------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, tuple[type[DriftScheme], dict]] = {}


def register_scheme(name: str, **kwargs) -> Callable[[type[DriftScheme]], type[DriftScheme]]:
    """Class decorator: register ``cls`` as scheme ``name``; ``make_scheme(name)`` builds ``cls(name, **kwargs)``.
    One class may be registered under several names with different ``kwargs``. Raises ConfigError for a name
    already taken or a class that is not a :class:`DriftScheme`."""
    if not isinstance(name, str) or not name or "," in name or name != name.strip():
        raise ConfigError("name", f"a scheme name is a non-empty string without commas or spaces, got {name!r}")

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, DriftScheme)):
            raise ConfigError("scheme", f"{cls!r} is not a DriftScheme subclass")
        if cls.decide is DriftScheme.decide:
            raise ConfigError("scheme", f"{cls.__name__} does not implement decide(signals)")
        if name in _REGISTRY:
            raise ConfigError("name", f"scheme {name!r} is already registered ({_REGISTRY[name][0].__name__})")
        _REGISTRY[name] = (cls, dict(kwargs))
        return cls

    return deco


def scheme_names() -> tuple[str, ...]:
    """Registered scheme names, in registration order."""
    return tuple(_REGISTRY)


def make_scheme(name: str) -> DriftScheme:
    """A fresh scheme object by registered name (ConfigError ``schemes`` listing the names otherwise)."""
    if name not in _REGISTRY:
        raise ConfigError("schemes", f"unknown scheme {name!r}; allowed: {', '.join(_REGISTRY)}")
    cls, kwargs = _REGISTRY[name]
    return cls(name, **kwargs)


def build_schemes(names: Sequence[str], config: DriftRunConfig) -> list[DriftScheme]:
    """The scheme objects of a run, in result-row order: each named scheme followed by its companions."""
    out: list[DriftScheme] = []
    for nm in names:
        s = make_scheme(nm)
        out.append(s)
        out.extend(s.companions(config))
    return out


def genie_name(offset_db: float) -> str:
    """Row name of the genie at an Eb/N0 offset: ``genie-1dB`` for ``-1.0``."""
    return f"genie{offset_db:+g}dB"


# ----------------------------------------------------------------------------------------------------------------
# Built-in schemes
# ----------------------------------------------------------------------------------------------------------------

class AdaptiveScheme(DriftScheme):
    """An :class:`~metacomm.adaptation.AdaptiveCodec` policy: every frame, ``observe`` the pilots (``steps``
    SGD steps at ``lr`` on ``adapt``, loss ``inner_loss``), then decide the payload with each link's fast
    weights. ``meta``: from the meta-init every frame; ``warm``: from the previous frame's weights;
    ``online-meta``: Reptile-refined per-link init; ``on-detection``/``reset-on-change``: detector-driven."""

    kind = "adaptive"

    def __init__(self, name: str, *, policy: str, warm_start: bool = False):
        super().__init__(name)
        self.policy, self.warm_start = policy, warm_start

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        c = ctx.config
        self.codec = AdaptiveCodec(ctx.model, num_links=c.links, adapt=c.adapt, steps=c.steps, lr=c.lr,
                                   policy=self.policy, warm_start=self.warm_start, loss=ctx.inner_loss).to(ctx.device)

    def decide(self, sig: FrameSignals) -> Decision:
        info = self.codec.observe(sig.msg_p, sig.y_p, sig.no)
        return Decision(self.codec.decide_block(sig.y_d), info["latency_s"] * 1e3)

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

    def state_dict(self) -> dict:
        return {**super().state_dict(), "adapted": self.adapted}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.adapted = bool(state["adapted"])

    def decide(self, sig: FrameSignals) -> Decision:
        if self.adapted:  # frozen: latency 0
            return Decision(self.codec.decide_block(sig.y_d), 0.0)
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
    """Periodic full retraining from scratch: every ``retrain_every`` frames (and on the first frame) a freshly
    initialised decoder (seed ``seed + 2``; the encoder is the meta-trained one) is trained with Adam
    (``retrain_lr``, ``retrain_steps`` steps, pilot cross-entropy) on that frame's pilots only, per link."""

    kind = "adaptive"
    state_attrs = ("fast",)

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        c = ctx.config
        self.model = _fresh_decoder_codec(ctx.model, c.seed + 2, ctx.device)
        self.names = [nm for nm, _ in self.model.named_parameters() if nm.startswith("decoder.")]
        self.fast = None

    def decide(self, sig: FrameSignals) -> Decision:
        c = self.ctx.config
        t0 = time.perf_counter()
        if self.fast is None or sig.index % c.retrain_every == 0:
            self.fast = _retrain(self.model, self.names, sig.msg_p, sig.y_p, c.retrain_steps, c.retrain_lr)
            lat = (time.perf_counter() - t0) * 1e3
        else:
            lat = 0.0
        with torch.no_grad():
            shared = {nm: p.detach() for nm, p in self.model.named_parameters() if nm not in self.names}
            msg_hat = batched_loss(self.model, shared, lambda m, y: m.decoder.block_logits(y), sig.y_d,
                                   self.fast).argmax(-1)
        return Decision(msg_hat, lat)


class PilotLSScheme(DriftScheme):
    r"""Classical: least-squares estimate of ``L`` taps from the pilot codewords,
    :math:`\hat h = (X^H X)^{-1} X^H y_p` (:func:`metacomm.codecs.detection.ls_taps`, ridge 1e-9), then
    minimum-distance (ML) detection over the codec's codebook through :math:`\hat h` (truncated convolution)."""

    RIDGE = 1e-9
    kind = "classical"
    state_attrs = ()

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        from metacomm.channels.multipath import MultipathBlockFading

        self.L = ctx.num_taps
        self.conv = MultipathBlockFading(num_taps=self.L, mode="truncate")

    def decide(self, sig: FrameSignals) -> Decision:
        ctx = self.ctx
        t0 = time.perf_counter()
        with torch.no_grad():
            h_hat = ls_taps(sig.x_p, sig.y_p, self.L, ridge=self.RIDGE)
            book = ctx.codebook.expand(ctx.links, ctx.num_messages, ctx.n).contiguous()
            images = noiseless_images(self.conv, book, {"taps": h_hat})
            msg_hat = min_distance_decide(sig.y_d, images, expanded=True)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)


class GenieScheme(DriftScheme):
    r"""ML detection over the codec's own codebook with perfect knowledge of the frame's channel and N0,
    :math:`\hat m = \arg\min_m \|y - \mathcal C_t(c_m)\|^2` (:math:`\mathcal C_t` the noiseless channel of frame
    ``t``): the best any decoder for this encoder can do. With ``offset_db = d``: the same genie on the *same*
    noise draw scaled to Eb/N0 + d dB (d < 0: a worse channel), row ``genie{d}dB``. Latency ``None``."""

    kind = "reference"
    state_attrs = ()

    def __init__(self, name: str, *, offset_db: float | None = None):
        super().__init__(name)
        self.offset_db = None if offset_db is None else float(offset_db)

    def companions(self, config: DriftRunConfig) -> list[DriftScheme]:
        if self.offset_db is not None:
            return []
        return [GenieScheme(genie_name(d), offset_db=d) for d in config.genie_offsets_db]

    def _images(self, sig: FrameSignals) -> torch.Tensor:
        ctx = self.ctx

        def fn():
            with torch.no_grad():
                book = ctx.codebook.expand(ctx.links, ctx.num_messages, ctx.n).contiguous()
                return noiseless_images(sig.frame.channel, book, sig.frame.state)

        return sig.memo("genie.images", fn)

    def decide(self, sig: FrameSignals) -> Decision:
        images = self._images(sig)
        with torch.no_grad():
            if self.offset_db is None:
                y = sig.y_d
            else:
                clean = sig.clean_d
                y = clean + (sig.no * 10 ** (-self.offset_db / 10)).sqrt()[:, None, None].to(clean.dtype) * sig.w_d
            return Decision(min_distance_decide(y, images, expanded=True), None)


# The built-in table, in the order of the CLI's help (registration order = scheme_names() order).
register_scheme("static")(StaticScheme)
register_scheme("retrain")(RetrainScheme)
register_scheme("meta", policy="every-frame")(AdaptiveScheme)
register_scheme("warm", policy="every-frame", warm_start=True)(AdaptiveScheme)
register_scheme("online-meta", policy="online-meta")(AdaptiveScheme)
register_scheme("on-detection", policy="on-detection")(AdaptiveScheme)
register_scheme("reset-on-change", policy="reset-on-change")(AdaptiveScheme)
register_scheme("pilot-ls")(PilotLSScheme)
register_scheme("genie")(GenieScheme)

# The classical baselines (pilot-lmmse, kalman, wide-ls, wl-ls) register after the table above.
from metacomm.sims import drift_classical as _drift_classical  # noqa: E402,F401
