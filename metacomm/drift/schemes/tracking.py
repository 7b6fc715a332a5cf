r"""The ``track`` drift scheme: the meta-learned Kalman-style tracker of a ``meta-train --scenario drift`` codec.

Per link it carries the Gaussian belief over the channel taps from frame to frame
(:class:`~metacomm.adaptation.tracking.KalmanTracker`: learned per-tap ``a``, innovation ``q``, prior ``p0`` --
the receiver is not told the scenario's correlation): every frame it predicts, updates on the frame's pilots
(through the codec's templates of the pilot messages), and decides the payload by the Gaussian
log-likelihood under the belief (:func:`~metacomm.scenarios.drift_track.track_frames`, exactly the recursion the
codec was meta-trained through; with the codec's ``decision_directed`` option, confidently decided payload blocks
update the belief too). Knows: the pilots, N0 per link (as every scheme), and what meta-training learned.

Speed: for a tracker without phase noise deciding at the belief mean (every shipped checkpoint but the
phase-noise one), a frame goes through :func:`~metacomm.adaptation.tracking.track_frame_decide` -- the fused
score-and-decide kernel (one ``baddbmm`` per pass, confidence as max minus logsumexp, buffers reused across
frames) and, after the decision-directed update, the re-decode of every block (``redecode = "changed"``: only the
blocks whose decision can change, by a proven bound -- measured no faster). Same decisions as the recursion
:func:`~metacomm.adaptation.tracking.track_frames` (``tests/drift/test_track_fused.py``).
"""

from __future__ import annotations

import math
import time

import torch

from metacomm._validation import ConfigError, check_nonneg_int, check_positive
from metacomm.drift.protocol import Decision, DriftContext, DriftScheme, FrameSignals
from metacomm.drift.registry import register_scheme

__all__ = ["TrackScheme", "LinearTrackScheme", "PAAdaptTrackScheme"]


@register_scheme("track", default=True, needs=("tracker",))
class TrackScheme(DriftScheme):
    """Row ``track``: the codec's meta-learned tracker (module docstring). Needs a codec with a ``tracker``
    (a ``meta-train --scenario drift`` checkpoint); ConfigError ``schemes`` otherwise. Latency = wall time of
    the frame's belief update and decision [ms]. State across frames (saved in drift-run checkpoints): the
    belief ``(m, P)`` per link."""

    state_attrs = ("belief",)
    #: run the codec's ``linear_tracker`` (no PA correction) instead of its ``tracker``
    linear = False
    #: the fused path's re-decode after the decision-directed update: ``"all"`` (every block; measured the faster,
    #: :func:`~metacomm.adaptation.tracking.track_frame_decide`) or ``"changed"`` (only the blocks whose decision can
    #: change); the decisions are the same (not a result setting)
    redecode = "all"
    #: use the fused path where it applies (``False``: always :func:`~metacomm.adaptation.tracking.track_frames`)
    fused = True

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        if not hasattr(ctx.model, "tracker"):
            raise ConfigError("schemes", f"scheme '{self.name}' needs a codec with a meta-learned tracker: a checkpoint "
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
        self._fast = None
        self.stats: dict = {}
        tr = ctx.model.linear_tracker if self.linear else ctx.model.tracker
        if not tr.phase_noise and not ctx.model.track_options["soft"]:
            from metacomm.drift.links import score_workspace
            with torch.no_grad():
                tmpl = ctx.model.decoder.template_symbols()
                if not self.linear and hasattr(ctx.model, "pa"):
                    tmpl = ctx.model.pa(tmpl)
                self._fast = (tr, tmpl, tr.regressors(tmpl), score_workspace(ctx))

    def decide(self, sig: FrameSignals) -> Decision:
        from metacomm.adaptation.tracking import track_frames

        n = self.ctx.n
        if sig.y_p.shape[-1] != n:
            raise ConfigError("scenario", f"scheme 'track' models n = {n} received samples per block, the "
                                          f"scenario's channel gives {sig.y_p.shape[-1]} (use mode = \"truncate\")")
        t0 = time.perf_counter()
        with torch.no_grad():
            if self._fast is not None and self.fused:
                from metacomm.adaptation.tracking import track_frame_decide
                tr, tmpl, T, ws = self._fast
                m, P = tr.init((sig.y_p.shape[0],), dtype=sig.y_p.dtype) if self.belief is None else self.belief
                msg_hat, self.belief = track_frame_decide(tr, self.ctx.model.track_options, tmpl, T, m, P,
                                                          sig.msg_p, sig.y_p, sig.y_d, sig.no, workspace=ws,
                                                          stats=self.stats, redecode=self.redecode)
            else:
                logits, self.belief = track_frames(self.ctx.model, sig.msg_p[:, None], sig.y_p[:, None],
                                                   sig.y_d[:, None], sig.no[:, None], self.belief,
                                                   linear=self.linear)
                msg_hat = logits[:, 0].argmax(-1)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)


@register_scheme("track-linear", default=True, needs=("linear_tracker",))
class LinearTrackScheme(TrackScheme):
    """Row ``track-linear``: today's linear tracker (a belief over the taps of ``y = T(x) h + w``, no PA
    correction, one fixed tap vector per frame), meta-trained in the same run, on the same sequences, as the
    PA- or phase-noise-corrected ``track`` of the checkpoint (its ``linear_tracker``). Knows what ``track`` knows,
    without ``f_theta`` / the per-position phase model."""

    linear = True


@register_scheme("track-pa-adapt")
class PAAdaptTrackScheme(TrackScheme):
    r"""Row ``track-pa-adapt``: ``track`` whose PA correction is adapted online, per link. The meta-learned
    ``f_theta`` (:class:`~metacomm.adaptation.tracking.PACorrection`) is one curve for the whole timeline; here
    each link carries two scalars, a log input-power scale :math:`\alpha` and a log depth :math:`\beta`, and models
    the PA as :math:`f_{\alpha\beta}(x) = x\, G_\theta(e^{\alpha}|x|^2)^{e^{\beta}}` (``G_theta`` the shipped
    unit-small-signal complex gain; :math:`(0, 0)` is ``f_theta``; a Rapp PA whose back-off moves by ``d`` dB is its
    curve at :math:`\alpha = -d\ln 10/10`).
    Per frame and link: predict the belief, take ``steps`` Adam steps (rate ``lr``) on :math:`(\alpha, \beta)` against the
    pilots' innovation NLL under the predicted belief (:func:`~metacomm.adaptation.tracking.gaussian_nll`, the
    likelihood the tracker was meta-trained on), then update the belief and decide the payload (and the
    decision-directed update) with the adapted map -- pure and ``torch.func.vmap``-ped over links. With
    ``steps = 0`` it is ``track``. State across frames: the belief and ``(alpha, beta)``, the Adam moments and step count
    per link. Knows what ``track`` knows."""

    state_attrs = ("belief", "pa_state")

    def __init__(self, name: str, *, steps: int = 3, lr: float = 0.01):
        super().__init__(name)
        #: Adam steps on (alpha, beta) per frame, and their rate
        self.steps = check_nonneg_int("steps", steps)
        self.lr = check_positive("lr", lr)

    def settings(self) -> dict:
        return {"steps": self.steps, "lr": self.lr}

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        if not hasattr(ctx.model, "pa"):
            raise ConfigError("schemes", "scheme 'track-pa-adapt' needs a tracker checkpoint with a PA correction "
                                         "(`meta-train --scenario drift` on a scenario with a transmitter PA, e.g. "
                                         "--drift pa-drift)")
        if ctx.model.tracker.phase_noise:
            raise ConfigError("schemes", "scheme 'track-pa-adapt' does not model receiver phase noise")
        self.pa_state = None

    def _frame_fn(self):
        from metacomm.adaptation.tracking import stacked_conv_matrix, tracker_predict, tracker_update

        model = self.ctx.model
        tr, pa, opts = model.tracker, model.pa, model.track_options
        tmpl0 = model.decoder.template_symbols()
        a, q, _ = tr.params()
        steps, lr, b1, b2, eps = int(self.steps), float(self.lr), 0.9, 0.999, 1e-8

        u = tmpl0.real.square() + tmpl0.imag.square()
        o0 = pa.out(torch.tanh(pa.inp.bias))

        def templates(theta):  # f_theta with (input log-scale, log depth) = theta; (0, 0) is PACorrection
            o = pa.out(torch.tanh(pa.inp((torch.exp(theta[0]) * u)[..., None])))
            c = torch.exp(theta[1])
            return tmpl0 * torch.polar(torch.exp(c * (o[..., 0] - o0[0])), c * (o[..., 1] - o0[1])).to(tmpl0.dtype)

        def frame(alpha, s1, s2, t, m, P, msg_p, y_p, y_d, no):  # one link
            m, P = tracker_predict(m, P, a, q)

            def loss(al):
                return tr.nll(y_p, templates(al)[msg_p], m, P, no).mean()

            for _ in range(steps):
                g = torch.func.grad(loss)(alpha)
                t = t + 1
                s1 = b1 * s1 + (1 - b1) * g
                s2 = b2 * s2 + (1 - b2) * g * g
                alpha = alpha - lr * (s1 / (1 - b1 ** t)) / (torch.sqrt(s2 / (1 - b2 ** t)) + eps)
            tmpl = templates(alpha)
            X = stacked_conv_matrix(tmpl[msg_p], tr.num_taps, tr.precursor, tr.widely_linear)
            m, P = tracker_update(m, P, X, y_p.reshape(-1), no)
            logits = tr.logits(y_d, tmpl, m, no, P if opts["soft"] else None)
            if opts["decision_directed"]:
                logp = torch.log_softmax(logits, dim=-1)
                conf = (logp.max(-1).values > math.log(opts["dd_threshold"])).to(no.dtype)
                m, P = tr.update(m, P, tmpl[logp.argmax(-1)], y_d, no, conf)
                if opts.get("dd_redecode", False):
                    logits = tr.logits(y_d, tmpl, m, no, P if opts["soft"] else None)
            return logits.argmax(-1), m, P, alpha, s1, s2, t

        return torch.func.vmap(frame)

    def decide(self, sig: FrameSignals) -> Decision:
        n, B = self.ctx.n, sig.y_p.shape[0]
        if sig.y_p.shape[-1] != n:
            raise ConfigError("scenario", f"scheme '{self.name}' models n = {n} received samples per block, the "
                                          f"scenario's channel gives {sig.y_p.shape[-1]} (use mode = \"truncate\")")
        t0 = time.perf_counter()
        if self.belief is None:
            self.belief = self.ctx.model.tracker.init((B,), dtype=sig.y_p.dtype)
        if self.pa_state is None:
            z = torch.zeros(B, 2, device=sig.y_p.device)
            self.pa_state = [z, z, z, torch.zeros(B, device=sig.y_p.device)]
        with torch.no_grad():
            msg_hat, m, P, *st = self._frame_fn()(*self.pa_state, *self.belief, sig.msg_p, sig.y_p, sig.y_d, sig.no)
        self.belief, self.pa_state = (m, P), list(st)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)
