r"""Least-squares receivers of a drift run (kind ``"classical"``): they know only the pilots (and, for the PA-aware
one, the frame's exact PA map) -- no prior, no N0.

==============  ================================================================================================
``pilot-ls``    LS of ``L`` causal taps from the pilot codewords, ML over the codebook through them
``wide-ls``     LS over a wider tap window with pre-cursor taps (default lags -2 .. L+1)
``wl-ls``       widely-linear LS (y = H1 x + H2 conj(x), ``L`` taps per branch), for IQ imbalance
``pa-ls``       pilot-ls through the frame's exact transmitter PA (knows the PA model and its back-off per frame)
``pn-ls``       LS of per-position taps (``n x L`` coefficients: represents receiver phase noise)
==============  ================================================================================================

Pilot-LS + ML exists once, :func:`pilot_ls_decide`; the model-based receivers
(:mod:`metacomm.drift.schemes.model_based`) fall back on it where they have no tap model. ``L`` is each scheme's
``num_taps`` setting (``None``: the codec's own model order ``ctx.num_taps``). Ridge :data:`RIDGE` everywhere.
Nothing here draws; every scheme is a deterministic function of the shared signals.
"""

from __future__ import annotations

import time

import torch

from metacomm._validation import check_nonneg_int, check_positive_int
from metacomm.channels.multipath import convolution_matrix
from metacomm.codecs.detection import (  # pilot_ls_decide: re-exported (model_based imports it from here)
    RIDGE,
    ls_solve,
    matrix_images,
    min_distance_decide,
    pilot_ls_decide,
)
from metacomm.codecs.widely_linear import stacked_conv_pilot_matrix, wl_images, wl_ls_taps
from metacomm.drift.links import score_workspace
from metacomm.drift.protocol import Decision, DriftContext, DriftScheme, FrameSignals
from metacomm.drift.registry import register_scheme

__all__ = ["RIDGE", "pilot_ls_decide", "frame_pa", "pa_map", "frame_phase_variance", "LSScheme", "PilotLSScheme",
           "WideLSScheme", "WidelyLinearLSScheme", "PALSScheme", "PhaseLSScheme"]


def frame_pa(frame):
    """The frame's transmitter PA stage (:class:`~metacomm.channels.impairments.RappPA` or ``SalehPA`` in front
    of the fading channel), or ``None``."""
    from metacomm.channels.compose import Compose
    from metacomm.channels.impairments import RappPA, SalehPA
    ch = frame.channel
    if isinstance(ch, Compose) and len(ch.stages) and isinstance(ch.stages[0], RappPA | SalehPA):
        return ch.stages[0]
    return None


def _pa_map(sig: FrameSignals, x: torch.Tensor) -> torch.Tensor:
    """``x`` through the frame's exact transmitter PA (identity without one)."""
    pa = frame_pa(sig.frame)
    return x if pa is None else pa.apply(x, None, {}, None, None)


def pa_map(sig: FrameSignals, x: torch.Tensor) -> torch.Tensor:
    """``x`` through the frame's exact transmitter PA (identity without one)."""
    pa = frame_pa(sig.frame)
    return x if pa is None else pa.apply(x, None, {}, None, None)


def _decide(y_d: torch.Tensor, images: torch.Tensor, ctx: DriftContext | None = None) -> torch.Tensor:
    """Minimum distance over ``images`` (cast to the payload's dtype), in the run's score buffer when ``ctx`` is
    given (:func:`~metacomm.drift.links.score_workspace`)."""
    ws = None if ctx is None else score_workspace(ctx)
    return min_distance_decide(y_d, images.to(y_d.dtype), expanded=True, workspace=ws)


class LSScheme(DriftScheme):
    """Common part of the LS receivers: kind ``"classical"``, stateless, the ``num_taps`` setting
    (``None``: ``ctx.num_taps``, the codec's model order) resolved in :meth:`setup` as :attr:`L`."""

    kind = "classical"
    state_attrs = ()

    def __init__(self, name: str, *, num_taps: int | None = None):
        super().__init__(name)
        self.num_taps = None if num_taps is None else check_positive_int("num_taps", num_taps)

    def settings(self) -> dict:
        return {"num_taps": self.num_taps}

    def setup(self, ctx: DriftContext) -> None:
        super().setup(ctx)
        self.L = int(self.num_taps or ctx.num_taps)

    def timed(self, fn) -> Decision:
        t0 = time.perf_counter()
        with torch.no_grad():
            msg_hat = fn()
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)


class PilotLSScheme(LSScheme):
    r"""Classical: least-squares estimate of ``L`` taps from the pilot codewords,
    :math:`\hat h = (X^H X)^{-1} X^H y_p` (ridge 1e-9), then minimum-distance (ML) detection over the codec's
    codebook through :math:`\hat h` (truncated convolution): :func:`pilot_ls_decide`. Knows only the pilots."""

    def decide(self, sig: FrameSignals) -> Decision:
        return self.timed(lambda: pilot_ls_decide(sig.x_p, sig.y_p, sig.y_d, self.ctx.codebook, self.L,
                                                  workspace=score_workspace(self.ctx)))


def _window_conv(lag0: int, mode: str = "truncate"):
    return lambda taps, n: convolution_matrix(taps, n, mode=mode, lag0=lag0)


class WideLSScheme(LSScheme):
    r"""Classical, one frame: least squares over a wide tap window, lags ``-pre .. L-1+post`` (``L`` =
    ``num_taps``; default ``pre = post = 2``: 7 taps for L = 3) with the truncated convolution
    (:math:`\hat{\mathbf h} = (\mathbf X^H\mathbf X + 10^{-9}\mathbf I)^{-1}\mathbf X^H\mathbf y_p`), then ML over
    the codebook through that model. For 3GPP TDL channels, whose sinc-sampled taps are non-causal (energy at
    negative lags) and longer than ``L``. Knows only the pilots and the window (no prior, no N0); needs
    ``P n >= pre + L + post`` pilot samples for a well-posed fit (the ridge keeps it solvable below).
    Uses the first ``n`` received samples of each block (the truncated-convolution model)."""

    def __init__(self, name: str, *, pre: int = 2, post: int = 2, num_taps: int | None = None):
        super().__init__(name, num_taps=num_taps)
        self.pre, self.post = check_nonneg_int("pre", pre), check_nonneg_int("post", post)

    def settings(self) -> dict:
        return {"pre": self.pre, "post": self.post, "num_taps": self.num_taps}

    def setup(self, ctx):
        super().setup(ctx)
        self.L = self.pre + self.L + self.post
        self.conv = _window_conv(self.pre)

    def decide(self, sig):
        ctx, n = self.ctx, self.ctx.n
        t0 = time.perf_counter()
        with torch.no_grad():
            X = stacked_conv_pilot_matrix(sig.x_p.to(torch.complex128), self.L, self.conv)
            B = X.shape[0]
            h = ls_solve(X, sig.y_p[..., :n].reshape(B, -1, 1).to(torch.complex128), ridge=RIDGE).squeeze(-1)
            images = matrix_images(self.conv(h, n), ctx.codebook.to(torch.complex128))
            msg_hat = _decide(sig.y_d[..., :n], images, ctx)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)


class WidelyLinearLSScheme(LSScheme):
    r"""Classical, one frame: widely-linear LS, :math:`\mathbf y = \mathbf H(\mathbf h_1)\mathbf x +
    \mathbf H(\mathbf h_2)\mathbf x^* + \mathbf w` fitted from the pilots (:func:`metacomm.codecs.widely_linear.
    wl_ls_taps`, ``L = num_taps`` causal taps per branch, truncated convolution, ridge 1e-9), then ML over the
    codebook through that model (:func:`~metacomm.codecs.widely_linear.wl_images`). The classical receiver for
    IQ imbalance (which makes :math:`\mathbf y` widely linear in :math:`\mathbf x`). Knows only the pilots (no
    prior, no N0); needs ``P n >= 2 L`` pilot samples for a well-posed fit. Uses the first ``n`` received
    samples of each block."""

    def setup(self, ctx):
        super().setup(ctx)
        self.conv = _window_conv(0)

    def decide(self, sig):
        ctx, n = self.ctx, self.ctx.n
        t0 = time.perf_counter()
        with torch.no_grad():
            h1, h2 = wl_ls_taps(sig.x_p.to(torch.complex128), sig.y_p[..., :n].to(torch.complex128), self.L,
                                ridge=RIDGE, conv_matrix=self.conv)
            images = wl_images(ctx.codebook.to(torch.complex128), h1, h2, self.conv)
            msg_hat = _decide(sig.y_d[..., :n], images, ctx)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)


class PALSScheme(LSScheme):
    r"""Classical, one frame, knows the transmitter PA exactly: ``pilot-ls`` (``L = num_taps`` causal taps,
    ridge 1e-9) on the frame's PA-distorted pilot codewords, then ML over the PA-distorted codebook. Knows: the
    pilots and the frame's exact PA map (:func:`frame_pa`); no prior, no N0."""

    def decide(self, sig):
        return self.timed(lambda: pilot_ls_decide(pa_map(sig, sig.x_p), sig.y_p, sig.y_d,
                                                  pa_map(sig, self.ctx.codebook), self.L, dtype=torch.complex128,
                                                  workspace=score_workspace(self.ctx)))


def frame_phase_variance(frame) -> float:
    """The frame's receiver Wiener phase-noise variance [rad^2/symbol] (a
    :class:`~metacomm.channels.impairments.WienerPhaseNoise` stage of its channel), 0.0 without one."""
    from metacomm.channels.compose import Compose
    from metacomm.channels.impairments import WienerPhaseNoise
    ch = frame.channel
    stages = ch.stages if isinstance(ch, Compose) else [ch]
    return float(sum(st.variance for st in stages if isinstance(st, WienerPhaseNoise)))


class PhaseLSScheme(LSScheme):
    r"""Classical, one frame: LS of per-position taps. Under receiver phase noise every block of a frame sees
    :math:`y_i = e^{j\varphi_i}(\mathbf T(\mathbf x)\mathbf h)_i + w_i` with the frame's phase path
    :math:`\varphi`, i.e. position ``i`` has its own taps :math:`\mathbf H_i = e^{j\varphi_i}\mathbf h`; each
    :math:`\mathbf H_i` (``L = num_taps`` causal taps, truncated convolution) is fitted by LS from the ``P``
    pilots' samples at position ``i`` (ridge 1e-9; needs ``P >= L``), then ML over the codebook through them.
    Knows only the pilots (no prior, no N0, not the phase-noise law)."""

    def decide(self, sig):
        from metacomm.adaptation.tracking import tap_conv_matrix
        ctx, n = self.ctx, self.ctx.n
        t0 = time.perf_counter()
        with torch.no_grad():
            c128 = torch.complex128
            Tp = tap_conv_matrix(sig.x_p.to(c128), self.L)  # [B, P, n, L]
            B, P, _, L = Tp.shape
            X = Tp.transpose(1, 2).reshape(B * n, P, L)  # position-major: one LS per (link, position)
            y = sig.y_p[..., :n].to(c128).transpose(1, 2).reshape(B * n, P, 1)
            H = ls_solve(X, y, ridge=RIDGE)[..., 0].reshape(B, n, L)
            Tc = tap_conv_matrix(ctx.codebook.to(c128), self.L)  # [M, n, L]
            images = torch.einsum("mnl,bnl->bmn", Tc, H)  # [B, M, n]
            msg_hat = _decide(sig.y_d[..., :n], images, ctx)
        return Decision(msg_hat, (time.perf_counter() - t0) * 1e3)


register_scheme("pilot-ls", default=True)(PilotLSScheme)
register_scheme("wide-ls", default=True)(WideLSScheme)
register_scheme("wl-ls", default=True)(WidelyLinearLSScheme)
register_scheme("pa-ls", default=True, needs=("tx_pa",))(PALSScheme)
register_scheme("pn-ls", default=True, needs=("phase_noise",))(PhaseLSScheme)
