r"""The model-based classical receivers of a drift run (kind ``"classical"``): they know the prior, rho, N0 (the
least-squares ones, which know only the pilots, are :mod:`metacomm.drift.schemes.ls`).

All of them estimate the channel from the frame's pilots (and, for ``kalman``, from the past frames' pilots),
then decide the payload by minimum distance (ML for Gaussian noise) over the codec's own codebook through the
estimated channel -- the same detector as ``pilot-ls``; they differ in the estimator and in the channel model:

==============  ================================================================================================
``pilot-lmmse``  LMMSE taps with the true tap prior of the current segment and the true N0 (per link), one frame
``kalman``       Kalman filter over frames per link: knows rho, the tap prior, N0 and the segment boundaries
``pa-kalman``    kalman through the frame's exact transmitter PA (knows rho, prior, N0 and the PA per frame)
``pn-kalman``    kalman over per-position taps under receiver Wiener phase noise (knows rho, prior, N0, the phase
                 noise variance per frame)
==============  ================================================================================================

``pa-kalman`` (:func:`~metacomm.drift.schemes.ls.frame_pa`) regresses on and decide over the PA-distorted codewords
:math:`f(\mathbf c_m)` of the frame's exact memoryless PA (``rapp``/``saleh`` at ``position = "tx"``): the
classical receivers that know the nonlinearity exactly. Without a transmitter PA it is ``kalman``.

**What "the tap model of a segment" is** (:func:`segment_tap_model`, used by ``pilot-lmmse`` and ``kalman``):
the segment's fading channel (:attr:`metacomm.channels.drift.Segment.channel`; impairments are *not* modelled --
these two are IQ/PA-blind) gives the lag window, the convolution and the prior covariance :math:`\Sigma` of its
taps:

* :class:`~metacomm.channels.multipath.MultipathBlockFading`: lags ``0 .. L-1``, :math:`\Sigma =
  \mathrm{diag}(\text{pdp})` (exact);
* :class:`~metacomm.channels.tdl.TDL` (block fading, ``speed = 0``): Sionna's sinc-sampled lags
  ``l_min .. l_max`` (clipped to ``-(n-1) .. n-1`` in ``truncate`` mode, where other lags never reach an output),
  :math:`\Sigma_{\ell\ell'} = \sum_m p_m\,\mathrm{sinc}(\ell - W\tau_m)\,\mathrm{sinc}(\ell' - W\tau_m) / E`
  (independent paths of power :math:`p_m`; :math:`E` the ``"average"`` normalisation; for ``"block"`` the same
  :math:`\Sigma` is used as an approximation, for ``"none"`` :math:`E = 1`);
* :class:`~metacomm.channels.fading.RayleighBlockFading`: one tap, :math:`\Sigma = 1` (exact);
  :class:`~metacomm.channels.fading.RicianBlockFading`: one tap with its second moment 1 (a zero-mean
  approximation).

Any other channel (AWGN, a time-varying TDL, ...) has no tap model here: ``pilot-lmmse`` and ``kalman`` then fall
back to ``pilot-ls`` on that segment (``L = ctx.num_taps`` causal taps, ridge 1e-9) and record the segment in
:attr:`ModelBasedScheme.fallback_segments`. Without a scenario in the context (``ctx.scenario is None``) they
fall back on every frame.

**The drift process** (``kalman``, :func:`segment_rho`): :class:`~metacomm.channels.drift.GaussMarkovFading`:
its ``rho`` (exact model); :class:`~metacomm.channels.drift.JakesFading`: the AR(1) approximation
:math:`\rho = J_0(2\pi f_D T_f)` (the Jakes process is not Markov: the filter is then a good, not the optimal,
tracker); no process (``Segment.fading is None``, i.i.d. block fading): :math:`\rho = 0` (the filter is then
LMMSE per frame); ``static`` is :math:`\rho = 1`.

Randomness: nothing here draws; every scheme is a deterministic function of the shared signals (common random
numbers: adding these schemes to a run changes no other scheme's numbers). Estimation runs in complex128, the
images and the decision in the codebook's dtype.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from metacomm._validation import ConfigError
from metacomm.channels.multipath import convolution_matrix
from metacomm.codecs.detection import matrix_images
from metacomm.codecs.tracking import kalman_step, lmmse_taps, lmmse_update
from metacomm.codecs.widely_linear import stacked_conv_pilot_matrix
from metacomm.drift.links import score_workspace
from metacomm.drift.protocol import Decision, DriftContext, DriftScheme, FrameSignals
from metacomm.drift.registry import register_scheme
from metacomm.drift.schemes.ls import _decide, frame_phase_variance, pa_map, pilot_ls_decide

__all__ = ["TapModel", "segment_tap_model", "segment_rho", "ModelBasedScheme", "PilotLMMSEScheme",
           "KalmanScheme", "PAKalmanScheme", "PhaseKalmanScheme"]


@dataclass
class TapModel:
    """A linear tap model ``y = H(h) x + w`` of a segment's channel.

    :ivar num_taps: ``L``; :ivar lag0: index of the zero-delay tap (taps are lags ``-lag0 .. L-1-lag0``);
    :ivar mode: ``"truncate"`` (``n`` outputs) or ``"full"`` (``n + L - 1``);
    :ivar sigma: the tap prior covariance, complex128 ``[L, L]``;
    :ivar exact: whether ``sigma`` and the window are the channel's exact law (False: an approximation);
    :ivar source: a short description for reports.
    """

    num_taps: int
    lag0: int
    mode: str
    sigma: torch.Tensor
    exact: bool
    source: str

    def conv_matrix(self, taps: torch.Tensor, n: int) -> torch.Tensor:
        """``H(taps)`` complex ``[B, n_rx, n]`` (:func:`metacomm.channels.multipath.convolution_matrix`)."""
        return convolution_matrix(taps, n, mode=self.mode, lag0=self.lag0)


def segment_tap_model(channel, n: int) -> TapModel | None:
    """The tap model of a fading channel for blocks of ``n`` complex uses (module docstring), or ``None`` for a
    channel without one."""
    from metacomm.channels.fading import RayleighBlockFading, RicianBlockFading
    from metacomm.channels.multipath import MultipathBlockFading
    from metacomm.channels.tdl import TDL

    c128 = torch.complex128
    if isinstance(channel, MultipathBlockFading):
        return TapModel(channel.num_taps, 0, channel.mode, torch.diag(torch.tensor(channel.pdp, dtype=c128)),
                        True, f"multipath pdp {[round(p, 4) for p in channel.pdp]}")
    if isinstance(channel, RayleighBlockFading | RicianBlockFading):
        exact = isinstance(channel, RayleighBlockFading)
        return TapModel(1, 0, "truncate", torch.ones(1, 1, dtype=c128), exact,
                        "flat Rayleigh" if exact else "flat Rician (zero-mean approximation)")
    if isinstance(channel, TDL) and not channel.time_varying:
        lo, hi = channel.l_min, channel.l_max
        if channel.mode == "truncate":
            lo, hi = max(lo, -(n - 1)), min(hi, n - 1)
        lags = np.arange(lo, hi + 1, dtype=np.float64)
        s = np.sinc(lags[None, :] - channel.bandwidth * channel.path_delays[:, None])  # [paths, L]
        sigma = (s.T * channel.path_powers[None, :]) @ s
        if channel.normalize != "none":
            sigma = sigma / channel.raw_energy
        return TapModel(len(lags), -lo, channel.mode, torch.tensor(sigma, dtype=c128),
                        channel.normalize == "average",
                        f"TDL-{channel.model} lags {lo}..{hi} (sinc-sampled path powers)")
    return None


def segment_rho(fading) -> float:
    """Frame-to-frame correlation assumed for a segment's fading process (module docstring)."""
    from metacomm.channels.drift import GaussMarkovFading, JakesFading

    if fading is None:
        return 0.0
    if isinstance(fading, GaussMarkovFading):
        return float(fading.rho)
    if isinstance(fading, JakesFading):
        return float(fading.rho)  # J0(2 pi f_D T_f): the AR(1) approximation
    return 0.0


def _ls_fallback(ctx: DriftContext, sig: FrameSignals, pa_aware: bool = False) -> torch.Tensor:
    """The pilot-ls decision of a frame without a tap model (``ctx.num_taps`` causal taps, complex128;
    ``pa_aware``: through the frame's exact transmitter PA)."""
    x_p, book = (pa_map(sig, sig.x_p), pa_map(sig, ctx.codebook)) if pa_aware else (sig.x_p, ctx.codebook)
    return pilot_ls_decide(x_p, sig.y_p, sig.y_d, book, ctx.num_taps, dtype=torch.complex128,
                           workspace=score_workspace(ctx))


def _segments(ctx: DriftContext):
    sc = getattr(ctx, "scenario", None)
    if sc is None:
        return None
    tl = getattr(sc, "timeline", sc)
    return getattr(tl, "segments", None)


class ModelBasedScheme(DriftScheme):
    """Common part of ``pilot-lmmse`` and ``kalman``: per-segment :class:`TapModel` lookup, pilot regression,
    decision through the estimated taps. Subclasses implement :meth:`estimate`."""

    kind = "classical"
    state_attrs = ("fallback_segments",)
    #: regress on and decide over the frame's exact PA-distorted codewords (:func:`frame_pa`)
    pa_aware = False

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.fallback_segments = set(self.fallback_segments)

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        self.segments = _segments(ctx)
        self._models: dict[int, TapModel | None] = {}
        self.fallback_segments: set[int] = set()

    def model(self, segment: int) -> TapModel | None:
        """The tap model of segment ``segment`` (cached), or None (fallback to pilot-ls)."""
        if segment not in self._models:
            segs = self.segments
            if segs is None:
                self._models[segment] = None
            else:
                seg = segs[min(segment, len(segs) - 1)]
                self._models[segment] = segment_tap_model(seg.channel, self.ctx.n)
        return self._models[segment]

    def rho(self, segment: int) -> float:
        segs = self.segments
        return 0.0 if segs is None else segment_rho(segs[min(segment, len(segs) - 1)].fading)

    def regression(self, tm: TapModel, sig: FrameSignals) -> tuple[torch.Tensor, torch.Tensor]:
        """Pilot regression ``y = X h + w``: ``X`` complex128 ``[B, P n_rx, L]``, ``y`` ``[B, P n_rx]``."""
        x_p = pa_map(sig, sig.x_p) if self.pa_aware else sig.x_p
        X = stacked_conv_pilot_matrix(x_p.to(torch.complex128), tm.num_taps, tm.conv_matrix)
        B = X.shape[0]
        if sig.y_p.shape[1] * sig.y_p.shape[2] != X.shape[1]:
            raise ConfigError("schemes", f"{self.name}: the tap model ({tm.source}, mode {tm.mode!r}) predicts "
                              f"{X.shape[1] // sig.y_p.shape[1]} received samples per block, the channel gives "
                              f"{sig.y_p.shape[2]}")
        return X, sig.y_p.reshape(B, -1).to(torch.complex128)

    def estimate(self, tm: TapModel, segment: int, sig: FrameSignals) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def decide(self, sig: FrameSignals) -> Decision:
        t0 = time.perf_counter()
        seg = int(sig.frame.segment)
        with torch.no_grad():
            tm = self.model(seg)
            if tm is None:
                self.fallback_segments.add(seg)
                self.on_fallback(seg)
                msg_hat = _ls_fallback(self.ctx, sig, self.pa_aware)
            else:
                h = self.estimate(tm, seg, sig)
                book = pa_map(sig, self.ctx.codebook) if self.pa_aware else self.ctx.codebook
                images = matrix_images(tm.conv_matrix(h, self.ctx.n), book.to(torch.complex128))
                msg_hat = _decide(sig.y_d, images, self.ctx)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)

    def on_fallback(self, segment: int) -> None:
        """Called on a frame decided by the pilot-ls fallback (the Kalman filter forgets its state)."""


class PilotLMMSEScheme(ModelBasedScheme):
    r"""Classical, one frame: the LMMSE tap estimate :math:`\hat{\mathbf h} = \Sigma\mathbf X^H(\mathbf X\Sigma
    \mathbf X^H + N_0\mathbf I)^{-1}\mathbf y_p` (:func:`metacomm.codecs.tracking.lmmse_taps`), then ML over the
    codebook through :math:`\hat{\mathbf h}`.

    Knows: the current segment's tap model -- lag window and prior covariance :math:`\Sigma` (the power-delay
    profile; :func:`segment_tap_model`) -- which segment the frame is in, and the true N0 of each link
    (``sig.no``). Does not know: the taps, impairments (IQ-blind), anything about past frames."""

    def estimate(self, tm, segment, sig):
        X, y = self.regression(tm, sig)
        return lmmse_taps(X, y, tm.sigma.to(X.device), sig.no.to(torch.float64))


class KalmanScheme(ModelBasedScheme):
    r"""Classical tracker, the Bayesian reference for Gauss-Markov drift: per link a Kalman filter over frames on
    the taps of the segment's tap model,

    predict :math:`\mathbf m^- = \rho\,\mathbf m`, :math:`\mathbf P^- = \rho^2\mathbf P + (1-\rho^2)\Sigma`;
    update with the frame's pilot regression :math:`\mathbf y_p = \mathbf X\mathbf h + \mathbf w`
    (:func:`metacomm.codecs.tracking.kalman_step`); decide the payload by ML over the codebook with the posterior
    mean :math:`\mathbf m_{t|t}`.

    Knows: :math:`\rho` of the segment's fading process (:func:`segment_rho`; for Jakes fading the AR(1)
    approximation :math:`J_0(2\pi f_D T_f)`; i.i.d. block fading: 0, i.e. LMMSE per frame), the tap model and
    prior :math:`\Sigma` (:func:`segment_tap_model`), the true N0 per link, and the segment boundaries: at the
    first frame and whenever the frame's segment index changes (a regime switch: every process restarts from a
    fresh stationary draw) the filter restarts from the stationary prior :math:`(\mathbf 0, \Sigma)` of the new
    segment, without a prediction step. Does not know: the taps, impairments (IQ-blind). On a segment without a
    tap model it decides like pilot-ls and restarts afterwards."""

    state_attrs = ("fallback_segments", "m", "P", "segment")

    def setup(self, ctx):
        super().setup(ctx)
        self.m = self.P = None
        self.segment = None

    def on_fallback(self, segment):
        self.m = self.P = None
        self.segment = None

    def estimate(self, tm, segment, sig):
        X, y = self.regression(tm, sig)
        no = sig.no.to(torch.float64)
        sigma = tm.sigma.to(X.device)
        if self.m is None or segment != self.segment:
            m0 = torch.zeros(X.shape[0], tm.num_taps, dtype=X.dtype, device=X.device)
            self.m, self.P = lmmse_update(m0, sigma.expand(X.shape[0], -1, -1), X, y, no)
            self.segment = segment
        else:
            self.m, self.P = kalman_step(self.m, self.P, X, y, no, self.rho(segment), sigma)
        return self.m


class PAKalmanScheme(KalmanScheme):
    r"""Classical, knows the transmitter PA exactly: :class:`KalmanScheme` (rho, tap prior, N0, segment
    boundaries) regressing on the frame's PA-distorted pilot codewords :math:`f_t(\mathbf c)` and deciding by ML
    over the PA-distorted codebook :math:`\{f_t(\mathbf c_m)\}` -- :math:`f_t` the frame's exact Rapp/Saleh map,
    back-off included (:func:`frame_pa`). Does not know: the taps."""

    pa_aware = True


class PhaseKalmanScheme(KalmanScheme):
    r"""Classical tracker under receiver Wiener phase noise: the Kalman filter of :class:`KalmanScheme` over the
    taps :math:`\mathbf h` (knows rho, the tap prior, N0, the segment boundaries) whose frame update runs on the
    per-position taps :math:`\mathbf H_i = e^{j\varphi_i}\mathbf h` with the moment-matched Gaussian prior of the
    frame's Wiener phase (:func:`metacomm.adaptation.tracking.phase_prior`, the frame's exact variance,
    :func:`frame_phase_variance`); it decides by ML through the per-position posterior mean and carries position
    0's marginal (:math:`\mathbf H_0 = \mathbf h`, :math:`\varphi_0 = 0`). Without phase noise it is ``kalman``.
    A truncated causal tap model is needed (else pilot-ls, as ``kalman``)."""

    def estimate(self, tm, segment, sig):  # pragma: no cover - decide() below does the work
        raise NotImplementedError

    def decide(self, sig):
        from metacomm.adaptation.tracking import (
            phase_block_logits,
            phase_frame_update,
            phase_prior,
            regressor_matrix,
        )
        t0 = time.perf_counter()
        seg = int(sig.frame.segment)
        ctx, n = self.ctx, self.ctx.n
        with torch.no_grad():
            tm = self.model(seg)
            if tm is None or tm.mode != "truncate" or sig.y_p.shape[-1] != n:
                self.fallback_segments.add(seg)
                self.on_fallback(seg)
                return Decision(_ls_fallback(ctx, sig), (time.perf_counter() - t0) * 1e3)
            c128 = torch.complex128
            B, L = sig.y_p.shape[0], tm.num_taps
            sigma = tm.sigma.to(sig.y_p.device)
            if self.m is None or seg != self.segment:
                m = torch.zeros(B, L, dtype=c128, device=sigma.device)
                P = sigma.expand(B, L, L)
                self.segment = seg
            else:
                rho = self.rho(seg)
                m, P = rho * self.m, rho ** 2 * self.P + (1.0 - rho ** 2) * sigma
            s2 = torch.tensor(frame_phase_variance(sig.frame), dtype=torch.float64)
            Mv, C = phase_prior(m, P, s2, n)
            Tp = regressor_matrix(sig.x_p.to(c128), L, tm.lag0)
            no = sig.no.to(torch.float64)
            Mv, C = phase_frame_update(Mv, C, Tp, sig.y_p.to(c128), no)
            self.m, self.P = Mv[..., :L], C[..., :L, :L]
            logits = phase_block_logits(sig.y_d.to(c128), regressor_matrix(ctx.codebook.to(c128), L, tm.lag0),
                                        Mv, no)
            msg_hat = logits.argmax(-1)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)


register_scheme("pilot-lmmse", default=True)(PilotLMMSEScheme)
register_scheme("kalman", default=True)(KalmanScheme)
register_scheme("pa-kalman", default=True, needs=("tx_pa",))(PAKalmanScheme)
register_scheme("pn-kalman", default=True, needs=("phase_noise",))(PhaseKalmanScheme)
