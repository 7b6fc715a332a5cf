r"""What a drift receiver sees and returns: :class:`DriftScheme`, :class:`DriftContext`, :class:`FrameSignals`,
:class:`Decision` -- and :class:`DriftLink`, the kind of link whose frames a run plays.

A drift run (:mod:`metacomm.drift.run`) sets every scheme up once for ``B`` links (:meth:`DriftScheme.setup`
with a :class:`DriftContext`), then per frame asks its *link* to draw the shared signals once
(:meth:`DriftLink.draw`: the frame's channel and state, N0, pilots and payload with their noise) and hands the
*same* signals to every scheme (:meth:`DriftScheme.decide` -> :class:`Decision`), whose decision the link scores
(:meth:`DriftLink.score`). A scheme keeps its own state across frames (fast weights, a retrained decoder, a
Kalman belief, ...); nothing random is drawn inside a scheme (its randomness comes from the config's seeds in
:meth:`~DriftScheme.setup`), so adding a scheme to a run changes no other scheme's numbers.

The link is what makes a frame: which transmitter, which channel, what is scored. The built-in one is
:class:`metacomm.drift.links.BlockCodecLink` -- a ``(k, n)`` block codec over the scenario's per-frame channel,
scored per block and bit; a second kind of link (e.g. a coded OFDM slot) implements :class:`DriftLink` and its
schemes declare it in :attr:`DriftScheme.links`.

A new receiver is one class and one registration (:func:`metacomm.drift.registry.register_scheme`)::

    @register_scheme("my-rx", group="pack")
    class MyReceiver(DriftScheme):
        kind = "classical"
        state_attrs = ()
        def setup(self, ctx):            # once, before frame 0
            super().setup(ctx)
            self.book = ctx.codebook
        def decide(self, sig):           # every frame
            ...
            return Decision(msg_hat, latency_ms)   # int64 [B, payload], float ms or None
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from metacomm._validation import ConfigError

__all__ = ["SCHEME_KINDS", "DriftContext", "SharedSignals", "FrameSignals", "Decision", "DriftScheme", "DriftLink", "genie_name"]

#: what a result row is: a learned/adapted receiver, a model-based estimator + detector, or a yardstick that
#: knows the true channel
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


def genie_name(offset_db: float) -> str:
    """Row name of the genie at an Eb/N0 offset: ``genie-1dB`` for ``-1.0``."""
    return f"genie{offset_db:+g}dB"


@dataclass
class DriftContext:
    """The run's shared setup, given to :meth:`DriftScheme.setup`.

    :ivar model: the meta-trained codec: a private copy on ``device`` in eval mode, shared by all schemes --
        do not modify it (copy it, as :class:`~metacomm.adaptation.AdaptiveCodec` does).
    :ivar codebook: the encoder's codebook, complex ``[M, n]`` (``M = 2^k``), Es = 1 per complex use.
    :ivar config: the validated :class:`~metacomm.drift.run.DriftRunConfig` (run-level settings: frames, pilots,
        payload, links, the adaptation budget ``steps``/``lr``/``adapt``, seeds, ...).
    :ivar device: torch device of every tensor.
    :ivar k, n: information bits and complex channel uses per block.
    :ivar inner_loss: the pilot loss of the adaptive schemes (resolved: ``"ce"`` or ``"pilot-fit"``).
    :ivar num_taps: the codec's own channel model order ``L`` (its decoder's ``num_taps``, else 3): the default
        tap count of the LS-family schemes (each may take its own, :mod:`metacomm.drift.schemes.ls`).
    :ivar scenario: the :class:`~metacomm.scenarios.drift_scenarios.DriftScenario` being played (its timeline's
        segments: channel family, fading process, impairments), or ``None``; for schemes that state what they
        know about the channel law (:mod:`metacomm.drift.schemes.model_based`).
    :ivar link: the :class:`DriftLink` that draws the frames (``None`` outside a run).
    :ivar rule: the checkpoint's inner update rule (:class:`~metacomm.adaptation.UpdateRule`) or ``None`` (the
        adaptive schemes then take plain SGD at ``config.lr``).
    """

    model: torch.nn.Module
    codebook: torch.Tensor
    config: Any
    device: torch.device
    k: int
    n: int
    inner_loss: str
    num_taps: int
    scenario: Any = None
    link: Any = None
    rule: Any = None

    @property
    def links(self) -> int:
        return int(self.config.links)

    @property
    def num_messages(self) -> int:
        return 2 ** self.k


class SharedSignals:
    """What every link's frame signals share: the frame's index and a per-frame memo (``_memo`` dict field)."""

    frame: Any
    _memo: dict

    @property
    def index(self) -> int:
        return int(self.frame.index)

    def memo(self, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed once per frame and shared between schemes (e.g. the genie's codeword images)."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]


@dataclass
class FrameSignals(SharedSignals):
    """The signals of one frame, drawn once by the link and shared by every scheme (common random numbers).

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



@dataclass
class Decision:
    """A scheme's output for one frame: ``msg_hat`` -- what the link scores (for the block link: int64 ``[B, N]``
    decided payload messages) -- and ``latency_ms``, the wall time [ms] of this frame's adaptation (0.0 when it
    did not adapt; ``None`` for references without an adaptation step, e.g. the genie)."""

    msg_hat: torch.Tensor
    latency_ms: float | None = None
    #: optional numbers the scheme reports about itself this frame (JSON-able floats, e.g. its Doppler estimate
    #: ``doppler_hz_est``), recorded in the frame's row next to the counts
    info: dict | None = None


class DriftScheme:
    """A receiver in a drift run. Subclasses implement :meth:`decide` and usually :meth:`setup`.

    Settings are constructor keywords (``__init__(self, name, *, setting=default, ...)``): the registry passes the
    registration's keywords, and a run's ``--schemes NAME[key=value]`` / ``scheme_settings`` reach the same
    keywords. :meth:`settings` reports them (recorded in ``results.json``).

    :ivar name: the scheme's row name in the results (set by the registry).
    :cvar kind: ``"adaptive"`` (a learned/adapted receiver; the default), ``"classical"`` (a model-based
        estimator + detector) or ``"reference"`` (a yardstick that knows the true channel, e.g. the genie); the
        summary of a run picks the best scheme of each kind.
    :cvar links: the :attr:`DriftLink.name` of the links the scheme can decide (default: the block link).
    :cvar state_attrs: attributes that carry the scheme's state across frames (tensors, numbers, None,
        lists/dicts of them), saved by :meth:`state_dict` so a drift run can be checkpointed and resumed; ``()``
        for a stateless scheme; ``None`` (the default) = not declared, and checkpointing a run with this scheme is
        refused.
    """

    kind: str = "adaptive"
    links: tuple[str, ...] = ("block",)
    state_attrs: tuple[str, ...] | None = None

    def __init__(self, name: str):
        self.name = name

    def settings(self) -> dict:
        """The scheme's constructor settings as JSON-able values (``{}`` for a scheme without any)."""
        return {}

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

    def companions(self) -> list[DriftScheme]:
        """Extra result rows that come with this scheme (e.g. the genie's dB-offset yardsticks); default none.
        They run right after it, on the same signals."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class DriftLink:
    """A kind of link whose frames a drift run plays: it checks that a codec fits a scenario, builds the shared
    :class:`DriftContext`, draws each frame's signals once and scores each scheme's decision.

    ``name`` is what :attr:`DriftScheme.links` refers to. The run calls, in order: :meth:`context` once, then per
    frame :meth:`draw` (every random draw from ``g_data``, in a fixed order) and :meth:`score` for every scheme's
    :class:`Decision`; :meth:`frame_record` adds the link's own per-frame fields (e.g. the channel gain)."""

    name: str = ""

    def context(self, scenario, model: torch.nn.Module, config, device: torch.device) -> DriftContext:
        """The shared context of a run (ConfigError ``model`` when the codec does not fit ``scenario``)."""
        raise NotImplementedError

    def draw(self, ctx: DriftContext, frame, g_data: torch.Generator) -> FrameSignals:
        """One frame's signals (pilots, payload, noise; the channel applied)."""
        raise NotImplementedError

    def score(self, ctx: DriftContext, sig: FrameSignals, decision: Decision) -> dict:
        """The counts of one decision: ``{"block_errors", "blocks", "bit_errors", "bits", "bler", "ber"}``
        (ConfigError ``scheme`` for a decision of the wrong shape)."""
        raise NotImplementedError

    def frame_record(self, ctx: DriftContext, sig: FrameSignals) -> dict:
        """Extra per-frame fields of the record (default none)."""
        return {}
