r"""The ``track`` drift scheme: the meta-learned Kalman-style tracker of a ``meta-train --scenario drift`` codec.

Per link it carries the Gaussian belief over the channel taps from frame to frame
(:class:`~metacomm.adaptation.tracking.KalmanTracker`: learned per-tap ``a``, innovation ``q``, prior ``p0`` --
the receiver is not told the scenario's correlation): every frame it predicts, updates on the frame's pilots
(through the codec's templates of the pilot messages), and decides the payload by the Gaussian
log-likelihood under the belief (:func:`~metacomm.scenarios.drift_track.track_frames`, exactly the recursion the
codec was meta-trained through; with the codec's ``decision_directed`` option, confidently decided payload blocks
update the belief too). Knows: the pilots, N0 per link (as every scheme), and what meta-training learned.
"""

from __future__ import annotations

import time

import torch

from metacomm._validation import ConfigError
from metacomm.sims.drift_schemes import Decision, DriftContext, DriftScheme, FrameSignals, register_scheme

__all__ = ["TrackScheme", "LinearTrackScheme"]


@register_scheme("track")
class TrackScheme(DriftScheme):
    """Row ``track``: the codec's meta-learned tracker (module docstring). Needs a codec with a ``tracker``
    (a ``meta-train --scenario drift`` checkpoint); ConfigError ``schemes`` otherwise. Latency = wall time of
    the frame's belief update and decision [ms]. State across frames (saved in drift-run checkpoints): the
    belief ``(m, P)`` per link."""

    state_attrs = ("belief",)
    #: run the codec's ``linear_tracker`` (no PA correction) instead of its ``tracker``
    linear = False

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        if not hasattr(ctx.model, "tracker"):
            raise ConfigError("schemes", "scheme 'track' needs a codec with a meta-learned tracker: a checkpoint "
                                         "of `metacomm meta-train --scenario drift` (this one has none)")
        if self.linear and not hasattr(ctx.model, "linear_tracker"):
            raise ConfigError("schemes", "scheme 'track-linear' needs a tracker checkpoint trained with a PA or "
                                         "phase-noise correction (`meta-train --scenario drift` on a scenario with a "
                                         "transmitter PA or receiver phase noise, e.g. --drift pa-drift or "
                                         "phase-noise-drift), which trains the fixed-tap linear tracker alongside")
        if ctx.scenario is not None and hasattr(ctx.scenario, "segments"):
            from metacomm.scenarios.drift_track import tracker_cannot_model
            problem = tracker_cannot_model(ctx.scenario)
            if problem is not None:
                raise ConfigError("scenario", f"scheme '{self.name}': {problem}")
        self.belief = None

    def decide(self, sig: FrameSignals) -> Decision:
        from metacomm.scenarios.drift_track import track_frames

        n = self.ctx.n
        if sig.y_p.shape[-1] != n:
            raise ConfigError("scenario", f"scheme 'track' models n = {n} received samples per block, the "
                                          f"scenario's channel gives {sig.y_p.shape[-1]} (use mode = \"truncate\")")
        t0 = time.perf_counter()
        with torch.no_grad():
            logits, self.belief = track_frames(self.ctx.model, sig.msg_p[:, None], sig.y_p[:, None],
                                               sig.y_d[:, None], sig.no[:, None], self.belief,
                                               linear=self.linear)
            msg_hat = logits[:, 0].argmax(-1)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)


@register_scheme("track-linear")
class LinearTrackScheme(TrackScheme):
    """Row ``track-linear``: today's linear tracker (a belief over the taps of ``y = T(x) h + w``, no PA
    correction, one fixed tap vector per frame), meta-trained in the same run, on the same sequences, as the
    PA- or phase-noise-corrected ``track`` of the checkpoint (its ``linear_tracker``). Knows what ``track`` knows,
    without ``f_theta`` / the per-position phase model."""

    linear = True
