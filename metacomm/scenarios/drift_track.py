r"""Scenario ``drift``: meta-train an online codec that *tracks* a drift scenario's channel across frames.

A task is one link's sequence of ``frames_per_task`` frames drawn from a drift scenario's timeline
(:class:`~metacomm.scenarios.drift_scenarios.DriftScenario`, a built-in name or a TOML file; its fading
process, SNR drift and codec geometry ``k``, ``n``), with ``pilots`` pilot messages and ``query`` payload
messages per frame through that frame's channel (messages and unit-variance noise drawn from the sampler's
generator, carried in the batch; N0 per frame from the timeline). The codec is the online-drift
:class:`~metacomm.scenarios.online_drift.DriftAutoencoder` (AE encoder + template decoder, so the ``meta`` /
``warm`` drift schemes run on it unchanged) plus a :class:`~metacomm.adaptation.tracking.KalmanTracker`
(``model.tracker``): the receiver's Gaussian belief over ``num_taps`` taps (window with ``precursor``
pre-cursor taps), carried from frame to frame by a learned Gauss-Markov model (per-tap ``a``, innovation ``q``,
prior ``p0``) -- the receiver is not told the scenario's correlation, it learns it from the sequences.

The loss (:class:`DriftTrackObjective`) runs the recursion exactly as the drift run's ``track`` scheme does:
for each frame, predict, update on the frame's pilots (through the receiver's *templates* of the pilot
codewords), then score the frame's payload (query) messages by their Gaussian log-likelihood under the belief
(at the mean, or with the belief's covariance integrated out when ``soft``) with cross-entropy, averaged over
frames and messages; with ``decision_directed`` the payload blocks decided with posterior probability above
``dd_threshold`` then update the belief too (as if they were pilots). The engine backpropagates through the
unrolled recursion: ``meta-train --scenario drift`` trains it with 0 inner steps (``meta_defaults``).

Encoder: ``encoder="shipped"`` starts from (and keeps frozen) the shipped online-drift codec when the geometry
fits (k = 8, n = 8, hidden 64; whatever the tracker's window, the per-frame decoder keeps the shipped 3-tap
window, so the ``meta``/``warm`` rows are those of today's codec);
``"train"`` trains encoder and templates with the tracker (from a random init); ``"fixed"`` keeps the random
init's encoder (templates = its codebook) frozen and learns the tracker only; ``"auto"`` picks ``shipped`` when it
fits, else ``train``.

Any scenario: when its segments differ (a regime switch) or it has a real-linear impairment (IQ imbalance, phase
offset/noise), every training and test frame's channel is the *exact* one, probed from the timeline
(``y = A x + B conj(x)``, :meth:`DriftTrackScenario._probe`), sequences start at a random frame of the timeline
(``start``) so they cover every segment and the switches, and the tracker is widely linear (``widely_linear``:
its belief also covers taps on ``conj(x)``, which represent IQ imbalance exactly). (The
training signals add the noise after the probed channel; a receiver-side impairment acts on the noise too in a
drift run, which for IQ imbalance only reshapes the noise covariance slightly.)

Limits (ConfigError naming the field): ``k > 12`` (the template decoder scores all :math:`2^k` messages), a
fractional ``n``, a channel other than ``multipath``/``tdl-*`` in ``mode = "truncate"`` without in-block motion
or ``rayleigh``, a PA behind the fading channel (``rapp``/``saleh`` at ``position = "rx"``: ``y = f(h x) + w``) or
a PA in a scenario of several segments, or a receiver window that does not contain the channel's lags.

Transmitter PA (``rapp``, ``saleh`` at ``position = "tx"``, its back-off possibly drifting): the receiver models
``y = T(f_theta(x)) h (+ widely-linear terms) + w`` with ``f_theta`` a learned memoryless AM/AM + AM/PM map of the
transmitted symbols (:class:`~metacomm.adaptation.tracking.PACorrection`, ``model.pa``), meta-learned with the
tracker's dynamics from the scenario's sequences (whose exact per-frame PA travels in the batch as ``pa``); the
belief over ``h`` stays linear-Gaussian given ``f_theta(x)`` and the payload is decided by ML over
``f_theta(codeword)``. The same training run trains today's linear tracker (``model.linear_tracker``, no
correction) on the same sequences as the baseline (drift scheme ``track-linear``).

Receiver Wiener phase noise (``phase-noise``; ``phase_correction``, auto when a segment has it): in a drift frame
every block of a link sees the same phase path (:math:`\varphi_0 = 0`, drawn afresh each frame), so position
``i`` of a block has its own taps :math:`\mathbf H_i = e^{j\varphi_i}\mathbf h`. Per frame the tracker expands
its belief over ``h`` into a moment-matched Gaussian belief over the ``n`` per-position tap vectors under a Wiener
prior whose variance :math:`s^2` [rad^2/symbol] is learned with the dynamics
(:func:`~metacomm.adaptation.tracking.phase_prior`), updates it on the pilots (and the confident payload
decisions), decides at the per-position mean and carries position 0's marginal (:math:`\mathbf H_0 = \mathbf
h`). Phase noise alone is linear in ``x``: the belief is then not widely linear (auto). The fixed-tap tracker is
trained alongside (``track-linear``). Decisions are at the mean (``soft`` is not used); a PA and phase-noise
correction together are refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from metacomm._validation import (
    MAX_WORK,
    ConfigError,
    check_db,
    check_finite,
    check_memory,
    check_model_memory,
    check_nonneg_int,
    check_positive_int,
    mlp_params,
    reraise,
)
from metacomm.adaptation import MetaObjective, TaskBatch
from metacomm.adaptation.tracking import (  # noqa: F401  (track_frames: re-exported, it moved there)
    KalmanTracker,
    PACorrection,
    pa_apply,
    pa_params,
    phase_block_logits,
    phase_frame_update,
    phase_nll,
    phase_prior,
    tap_conv_matrix,
    track_frames,
    tracker_predict,
)
from metacomm.channels.base import complex_normal
from metacomm.codecs.detection import RIDGE, pilot_ls_decide
from metacomm.scenarios.base import FewShotScenario
from metacomm.scenarios.online_drift import DriftAutoencoder
from metacomm.scenarios.registry import register_scenario

__all__ = ["DriftTrackConfig", "DriftTrackObjective", "DriftTrackScenario", "TrackingDriftCodec", "track_frames",
           "tracker_cannot_model",
           "ENCODERS", "SHIPPED_CHECKPOINT"]

NAME = "drift"
ENCODERS = ("auto", "shipped", "train", "fixed")
#: where training/test sequences start: the timeline's first frame, or a uniformly random frame of it
STARTS = ("first", "random")
#: impairment stages that are real-linear in the samples (IQ imbalance, phase offset / noise): the exact channel
#: of a frame is then y = A x + B conj(x), probed per frame; PA models (rapp, saleh) are not
LINEAR_IMPAIRMENTS = ("iq-imbalance", "random-iq-imbalance", "phase-offset", "phase-noise")
#: memoryless transmitter PAs the tracker models as y = T(f_theta(x)) h + w with a learned correction f_theta
#: (:class:`~metacomm.adaptation.tracking.PACorrection`); only at ``position = "tx"`` and in a one-segment scenario
PA_IMPAIRMENTS = ("rapp", "saleh")
#: the shipped online-drift codec (k = 8, n = 8, 3 taps, hidden 64), the warm start of ``encoder="shipped"``
SHIPPED_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "checkpoints", "online_drift_k8n8.pt")
_SHIPPED_GEOMETRY = {"k": 8, "n": 8, "num_taps": 3, "hidden": 64}


@dataclass
class DriftTrackConfig:
    """Settings of the ``drift`` scenario.

    ``drift``: a built-in drift scenario name or a ``.toml`` path (made absolute); ``pilots``: pilot messages per frame (the
    support field); ``query``: payload messages scored per frame (match the drift run's ``payload``, 64);
    ``frames_per_task``: frames per training sequence; ``num_taps``/``precursor``: the receiver's tap window
    (``None``: the channel's -- its taps and, for TDL, its lag of zero delay); ``ebno_db``: ``None`` = the
    scenario's Eb/N0 per frame (dB, per information bit), else every frame shifted so that the nominal Eb/N0 is
    this value; ``nll_weight``: weight of the payload's Gaussian NLL under the belief in the loss (next to the
    cross-entropy; it identifies the drift model's ``a``, ``q``, ``p0``); ``soft``: decode with the belief's covariance integrated out; ``decision_directed`` and
    ``dd_threshold``: update the belief with the payload blocks decided with posterior probability above the
    threshold (the receiver's own decisions); ``dd_redecode``: then decide the frame's payload again with it; ``encoder``: auto, shipped,
    train, fixed; ``hidden``: encoder width; ``rho_init``: initial per-tap ``a``; ``num_test_sequences``/
    ``test_frames``: test links and their length; ``test_seed``: seed of the test sequences; ``widely_linear``:
    the tracker's belief also covers taps on conj(x) (IQ imbalance; ``None``: when a segment has an impairment);
    ``start``: ``"first"`` (sequences start at the timeline's first frame) or ``"random"`` (at a uniformly random
    frame, so that sequences cover every segment and the switches between them; ``None``: random when the
    timeline has several segments or an impairment); ``pa_correction``: learn the memoryless PA correction
    ``f_theta`` (and train today's linear tracker next to it, ``linear_tracker``, as the baseline; ``None``: when
    the scenario has a PA), ``pa_hidden``: its MLP width. ``drift_toml``: the TOML text of a scenario *file*
    (filled from the file by :meth:`validate`; ``None`` for a built-in name), stored in the checkpoint so that it
    is self-contained: a checkpoint loads with the scenario it was trained on even when the file has been moved,
    edited or deleted, and never opens the path it names.
    """

    drift: str = "doppler-slow"
    pilots: int = 4
    query: int = 64
    frames_per_task: int = 20
    num_taps: int | None = None
    precursor: int | None = None
    ebno_db: float | None = None
    nll_weight: float = 1.0
    soft: bool = False
    decision_directed: bool = True
    dd_threshold: float = 0.9
    dd_redecode: bool = True
    encoder: str = "auto"
    hidden: int = 64
    rho_init: float = 0.9
    num_test_sequences: int = 8
    test_frames: int = 50
    test_seed: int = 4243
    widely_linear: bool | None = None
    start: str | None = None
    pa_correction: bool | None = None
    pa_hidden: int = 16
    phase_correction: bool | None = None
    phase_init: float = 0.02
    drift_toml: str | None = None

    def validate(self) -> DriftTrackConfig:
        from metacomm.scenarios.drift_builtins import builtin_scenario_text
        if not isinstance(self.drift, str) or not self.drift:
            raise ConfigError("drift", f"expected a drift scenario name or .toml path, got {self.drift!r}")
        if self.drift_toml is not None and not isinstance(self.drift_toml, str):
            raise ConfigError("drift_toml", f"expected the scenario's TOML text, got {type(self.drift_toml).__name__}")
        if self.drift_toml is None and builtin_scenario_text(self.drift) is None and os.path.isfile(self.drift):
            self.drift = os.path.abspath(self.drift)  # a file: its path for reports, its content for the checkpoint
            try:
                with open(self.drift, encoding="utf-8") as f:
                    self.drift_toml = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError("drift", f"{self.drift}: cannot read scenario file: {e}") from None
        for f in ("pilots", "query", "hidden", "num_test_sequences"):
            setattr(self, f, check_positive_int(f, getattr(self, f)))
        for f in ("frames_per_task", "test_frames"):  # work sizes: frames of a sequence
            setattr(self, f, check_positive_int(f, getattr(self, f), maximum=MAX_WORK))
        from metacomm.channels.multipath import MAX_TAPS
        if self.num_taps is not None:
            self.num_taps = check_positive_int("num_taps", self.num_taps, maximum=MAX_TAPS)
        if self.precursor is not None:
            self.precursor = check_nonneg_int("precursor", self.precursor, maximum=MAX_TAPS)
        if self.ebno_db is not None:
            self.ebno_db = check_db("ebno_db", self.ebno_db)
        for f in ("soft", "decision_directed", "dd_redecode"):
            if not isinstance(getattr(self, f), bool):
                raise ConfigError(f, f"must be true or false, got {getattr(self, f)!r}")
        self.dd_threshold = check_finite("dd_threshold", self.dd_threshold)
        self.nll_weight = check_finite("nll_weight", self.nll_weight)
        if self.nll_weight < 0:
            raise ConfigError("nll_weight", f"must be >= 0, got {self.nll_weight!r}")
        if not 0.0 < self.dd_threshold < 1.0:
            raise ConfigError("dd_threshold", f"must lie in (0, 1), got {self.dd_threshold!r}")
        self.rho_init = check_finite("rho_init", self.rho_init)
        if not 0.0 < self.rho_init < 1.0:
            raise ConfigError("rho_init", f"must lie in (0, 1), got {self.rho_init!r}")
        if self.pa_correction is not None and not isinstance(self.pa_correction, bool):
            raise ConfigError("pa_correction", f"must be true, false or unset (auto), got {self.pa_correction!r}")
        self.pa_hidden = check_positive_int("pa_hidden", self.pa_hidden)
        check_model_memory(("hidden", "pa_hidden"), mlp_params(2, self.hidden, 2) + mlp_params(2, self.pa_hidden, 2),
                           f"a tracking codec with hidden = {self.hidden}")
        if self.phase_correction is not None and not isinstance(self.phase_correction, bool):
            raise ConfigError("phase_correction", f"must be true, false or unset (auto), got "
                                                  f"{self.phase_correction!r}")
        self.phase_init = check_finite("phase_init", self.phase_init)
        if not self.phase_init > 0:
            raise ConfigError("phase_init", f"must be > 0 (rad^2/symbol), got {self.phase_init!r}")
        if self.widely_linear is not None and not isinstance(self.widely_linear, bool):
            raise ConfigError("widely_linear", f"must be true, false or unset (auto), got {self.widely_linear!r}")
        if self.start is not None and self.start not in STARTS:
            raise ConfigError("start", f"unknown value {self.start!r}; allowed: {', '.join(STARTS)}")
        if self.encoder not in ENCODERS:
            raise ConfigError("encoder", f"unknown value {self.encoder!r}; allowed: {', '.join(ENCODERS)}")
        self.test_seed = check_nonneg_int("test_seed", self.test_seed)
        return self


def _channel_window(channel) -> tuple[int, int, str]:
    """``(taps, lag of zero delay, state key)`` of a channel the tracker can model, else ``None``."""
    from metacomm.channels.fading import RayleighBlockFading
    from metacomm.channels.multipath import MultipathBlockFading
    from metacomm.channels.tdl import TDL

    if isinstance(channel, MultipathBlockFading) and channel.mode == "truncate":
        return channel.num_taps, 0, "taps"
    if isinstance(channel, TDL) and channel.mode == "truncate" and not channel.time_varying:
        return channel.num_taps, channel.lag0, "taps"
    if isinstance(channel, RayleighBlockFading):
        return 1, 0, "h"
    return None


def tracker_cannot_model(d) -> str | None:
    """Why the tracking codec cannot model drift scenario ``d`` (a
    :class:`~metacomm.scenarios.drift_scenarios.DriftScenario`), or ``None``: a channel whose block response is not
    a fixed tap window (:func:`_channel_window`), an impairment outside :data:`LINEAR_IMPAIRMENTS` and
    :data:`PA_IMPAIRMENTS`, or a PA behind the fading channel (``y = f(h x) + w``; the tracker models a transmitter
    PA, ``y = h f(x) + w``). Used by ``meta-train --scenario drift`` and by the ``track`` schemes of a drift run."""
    for i, seg in enumerate(d.segments):
        win = _channel_window(seg.channel)
        imp = seg.impairment
        if imp is not None and imp.name in PA_IMPAIRMENTS and imp.position != "tx":
            return (f"{d.source}: segment[{i}] has a {imp.name!r} PA at position = \"rx\" (behind the fading "
                    "channel, y = f(h x) + w), a nonlinearity the tracker cannot model: it models a transmitter PA, "
                    "y = h f(x) + w (position = \"tx\")")
        bad_imp = imp is not None and imp.name not in LINEAR_IMPAIRMENTS + PA_IMPAIRMENTS
        if win is None or bad_imp:
            what = f"impairment {imp.name!r}" if win is not None else f"channel {type(seg.channel).__name__}"
            return (f"{d.source}: segment[{i}] has a {what} the tracker cannot model (allowed: multipath or tdl-* "
                    "with mode = \"truncate\" and no in-block motion, rayleigh; impairments "
                    f"{', '.join(LINEAR_IMPAIRMENTS)}; transmitter PAs {', '.join(PA_IMPAIRMENTS)})")
    return None


class TrackingDriftCodec(DriftAutoencoder):
    """:class:`~metacomm.scenarios.online_drift.DriftAutoencoder` + ``tracker``
    (:class:`~metacomm.adaptation.tracking.KalmanTracker` over ``num_taps`` taps with ``precursor`` pre-cursor
    taps; ``decoder_taps``: the per-frame schemes' tap window of the template decoder, default ``num_taps`` --
    the shipped codec's 3 when its weights are taken whatever the tracker's window). ``track_options`` (not
    parameters): ``soft``, ``decision_directed``, ``dd_threshold``, ``dd_redecode``
    -- how the
    ``track`` drift scheme and the training loss use the belief. ``meta_inner_loss = "pilot-fit"`` (the
    ``meta``/``warm`` schemes' pilot loss, as the shipped codec). With ``pa_correction``: ``pa``, the learned
    memoryless correction :math:`f_\theta` (:class:`~metacomm.adaptation.tracking.PACorrection`) applied to the
    templates the tracker regresses on and decodes with (``y = T(f_theta(t_m)) h``), and ``linear_tracker``, a
    second tracker without it (today's linear tracker, trained on the same sequences: the ``track-linear``
    baseline)."""

    def __init__(self, k: int, n: int, num_taps: int, hidden: int = 64, *, precursor: int = 0,
                 rho_init: float = 0.9, soft: bool = False, decision_directed: bool = False,
                 dd_threshold: float = 0.99, dd_redecode: bool = False, widely_linear: bool = False,
                 decoder_taps: int | None = None, pa_correction: bool = False, pa_hidden: int = 16,
                 phase_correction: bool = False, phase_init: float = 0.02):
        super().__init__(k, n, num_taps if decoder_taps is None else decoder_taps, hidden)
        self.tracker = KalmanTracker(num_taps, precursor, rho=rho_init, widely_linear=widely_linear,
                                     phase_noise=float(phase_init) if phase_correction else None)
        if phase_correction and not pa_correction:  # the fixed-tap tracker trained alongside (track-linear)
            self.linear_tracker = KalmanTracker(num_taps, precursor, rho=rho_init, widely_linear=widely_linear)
        if pa_correction:  # f_theta in front of the tracker's regressors; the linear tracker trained alongside
            self.pa = PACorrection(pa_hidden)
            self.linear_tracker = KalmanTracker(num_taps, precursor, rho=rho_init, widely_linear=widely_linear)
        self.track_options = {"soft": bool(soft), "decision_directed": bool(decision_directed),
                              "dd_threshold": float(dd_threshold), "dd_redecode": bool(dd_redecode)}
        self.meta_inner_loss = "pilot-fit"
        self._config.update(precursor=precursor, rho_init=rho_init, **self.track_options)
        if widely_linear:
            self._config.update(widely_linear=True)
        if pa_correction:
            self._config.update(pa_correction=True, pa_hidden=int(pa_hidden))
        if phase_correction:
            self._config.update(phase_correction=True, phase_init=float(phase_init))
        if decoder_taps is not None and decoder_taps != num_taps:
            self._config.update(tracker_taps=num_taps)


class DriftTrackObjective(MetaObjective):
    r"""Sequence loss of the tracker (module docstring). One task's batch (no task axis): ``{"msg_p": int64
    [F, P], "w_p": complex [F, P, n], "msg_q": int64 [F, Q], "w_q": complex [F, Q, n], "taps": complex [F, L]
    (the true taps in the receiver's window), "no": float [F]}``; ``y = T(x) h + sqrt(N0) w`` with ``x`` the
    encoder's codewords (detached when the encoder is frozen). Loss: mean cross-entropy of the payload logits
    over frames and messages, plus ``nll_weight`` times the mean Gaussian negative log-likelihood per sample of the
    payload blocks (messages known at training time) under the belief (:meth:`KalmanTracker.nll`: the innovation
    likelihood that identifies the drift model); stats ``block_errors``, ``blocks``. ``adapt = "tracker.*"`` (for the contract's
    MAML check; meta-training uses 0 inner steps)."""

    adapt = "tracker.*"

    def __init__(self, num_taps: int, precursor: int, train_codec: bool, nll_weight: float = 0.0):
        self.num_taps, self.precursor, self.train_codec = num_taps, precursor, train_codec
        self.nll_weight = float(nll_weight)

    def _rx(self, model, msg, w, taps, no, pa=None):
        """Received blocks ``[F, B, n]`` of messages ``msg`` ``[F, B]`` through the frames' channels: ``taps``
        complex ``[F, L]`` (the receiver-window taps) or ``{"A", "B"}`` complex ``[F, n, n]`` (the exact
        real-linear channel of each frame, ``y = A x + B conj(x)``, see :meth:`DriftTrackScenario._probe`);
        ``pa`` real ``[F, 6]``: each frame's transmitter PA (:func:`~metacomm.adaptation.tracking.pa_apply`)."""
        x = model.encoder.forward_index(msg)  # [F, B, n]
        if not self.train_codec:
            x = x.detach()
        if pa is not None:
            x = pa_apply(x, pa[:, None, None, :])
        if isinstance(taps, dict):
            xc = torch.complex(x.real, -x.imag)
            y = (taps["A"][:, None] @ x[..., None])[..., 0] + (taps["B"][:, None] @ xc[..., None])[..., 0]
        else:
            T = tap_conv_matrix(x, self.num_taps, self.precursor)  # [F, B, n, L]
            y = (T @ taps[:, None, :, None])[..., 0]
        return y + no.sqrt().to(y.real.dtype)[:, None, None] * w

    def loss(self, model, batch):
        ch = {"A": batch["A"], "B": batch["B"]} if "A" in batch else batch["taps"]
        pa = batch.get("pa")
        y_p = self._rx(model, batch["msg_p"], batch["w_p"], ch, batch["no"], pa)
        y_q = self._rx(model, batch["msg_q"], batch["w_q"], ch, batch["no"], pa)
        msg = batch["msg_q"]
        loss = 0.0
        # with a PA correction the linear tracker (its own parameters) learns on the same sequences alongside
        for linear in ((False, True) if hasattr(model, "linear_tracker") else (False,)):
            lg, _, nll = track_frames(model, batch["msg_p"], y_p, y_q, batch["no"],
                                      detach_templates=not self.train_codec, msg_d=msg, linear=linear)
            loss = loss + nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), msg.reshape(-1))
            if self.nll_weight:
                loss = loss + self.nll_weight * nll.mean()
            if not linear:
                logits = lg
        errs = (logits.argmax(-1) != msg).sum().to(logits.real.dtype)
        return loss, {"block_errors": errs, "blocks": torch.ones_like(errs) * msg.numel()}


@register_scenario
class DriftTrackScenario(FewShotScenario):
    """Meta-training tasks, test protocol and references of ``drift`` (module docstring).

    :param config: :class:`DriftTrackConfig`; :param device: torch device of everything.
    """

    name = NAME
    config_class = DriftTrackConfig
    metric = "bler"

    @classmethod
    def check_stored_config(cls, config: dict, *, field: str = "checkpoint") -> None:
        """A checkpoint of a scenario *file* must carry the file's content (``drift_toml``): one written before that
        (or crafted) names a path, which is never opened -- meta-train it again."""
        from metacomm.scenarios.drift_builtins import builtin_scenario_text
        drift = config.get("drift")
        if isinstance(drift, str) and builtin_scenario_text(drift) is None and not config.get("drift_toml"):
            raise ConfigError(field, f"the checkpoint names the drift scenario file {drift!r} but does not hold its "
                                     "content (written before checkpoints stored it); its path is not opened: "
                                     "meta-train it again (`metacomm meta-train --scenario drift --drift FILE`)")
    support_field = "pilots"
    snr_field, snr_kind = "ebno_db", "ebno"
    classical_schemes = {"pilot-ls-ml": "pilot_ls_ml"}
    common_random_numbers = True
    pilots_meaning = "pilot messages per frame (the tracker carries its belief across frames)"
    test_what = "links (sequences of frames)"
    #: 0 inner steps (the tracker adapts by its recursion, trained through the unrolled sequence), no joint
    #: baseline (with 0 inner steps it would be the same training).
    #: 200 steps at Adam 0.05 learn a, q, p0 to within ~1 % of doppler-slow's true drift model (measured).
    meta_defaults = {"meta_batch": 16, "outer_lr": 0.05, "meta_steps": 200, "inner_steps": 0, "joint_steps": 0}

    def __init__(self, config: DriftTrackConfig | None = None, device="cpu"):
        from metacomm.scenarios.drift_scenarios import load_scenario

        self.config = (config or DriftTrackConfig()).validate()
        self.device = torch.device(device)
        c = self.config
        try:
            if c.drift_toml is not None:  # the stored content: the path is only a name here
                from metacomm.scenarios.drift_scenarios import parse_scenario
                stem = os.path.splitext(os.path.basename(c.drift))[0] or "scenario"
                self.drift = parse_scenario(c.drift_toml, source=c.drift, default_name=stem)
            else:
                self.drift = load_scenario(c.drift)
        except ConfigError as e:  # "unknown scenario" names the drift setting itself; a file's error its key
            raise reraise("drift", e, inner=e.field != "scenario") from None
        d = self.drift
        if d.k > 12:
            raise ConfigError("drift", f"{d.source}: codec.k = {d.k}: the template decoder scores all 2^k "
                                       "messages; k must be <= 12")
        if d.n != math.floor(d.n):
            raise ConfigError("drift", f"{d.source}: codec.n = {d.n:g}: the tracking codec needs a whole number "
                                       "of complex channel uses")
        self.k, self.n = int(d.k), int(d.n)
        problem = tracker_cannot_model(d)
        if problem is not None:
            raise ConfigError("drift", problem)
        windows, pa_segs = [], []
        for i, seg in enumerate(d.segments):
            imp = seg.impairment
            if imp is not None and imp.name in PA_IMPAIRMENTS:
                pa_segs.append(i)
            windows.append(_channel_window(seg.channel))
        if pa_segs and len(d.segments) > 1:
            raise ConfigError("drift", f"{d.source}: segment[{pa_segs[0]}] has a PA in a scenario of "
                                       f"{len(d.segments)} segments: the tracker models a transmitter PA (rapp, saleh) "
                                       "only in a one-segment scenario")
        #: a transmitter PA: its exact map per frame travels in the batch (``pa``), the codec learns f_theta
        self.has_pa = bool(pa_segs)
        self.pa_correction = self.has_pa if c.pa_correction is None else c.pa_correction
        has_imp = any(s.impairment is not None and s.impairment.name in LINEAR_IMPAIRMENTS for s in d.segments)
        #: receiver Wiener phase noise: the tracker's per-position belief with a learned variance (auto)
        has_pn = any(s.impairment is not None and s.impairment.name == "phase-noise" for s in d.segments)
        self.phase_correction = has_pn if c.phase_correction is None else c.phase_correction
        if self.phase_correction and self.pa_correction:
            raise ConfigError("phase_correction", "a phase-noise correction and a PA correction together are not "
                                                  "built: set one of them false")
        # phase noise alone is linear in x (y = diag(e^{j phi}) H x): no conj(x) taps needed
        pn_only = has_imp and all(s.impairment is None or s.impairment.name == "phase-noise" for s in d.segments)
        self.widely_linear = (has_imp and not pn_only) if c.widely_linear is None else c.widely_linear
        # the exact per-frame channel (probed) whenever the segments differ or an impairment is present; then the
        # sequences start anywhere in the timeline (a ramping impairment or a regime switch is not stationary)
        self._exact = has_imp or len(d.segments) > 1
        # (a drifting PA back-off is not stationary either: sequences start anywhere, as with a ramping impairment)
        self.start = c.start or ("random" if self._exact or self.has_pa else "first")
        ch_taps, ch_lag0, self._state_key = windows[0]
        # lags that reach a block of n samples: -(n-1) .. n-1 (a truncated channel's other taps never do)
        windows = [(min(lw, l0 + self.n), min(l0, self.n - 1), key) for lw, l0, key in windows]
        pre = max(w[1] for w in windows) if c.precursor is None else c.precursor
        L = max(w[0] - w[1] for w in windows) + pre if c.num_taps is None else c.num_taps
        if pre >= L:
            raise ConfigError("precursor", f"must be < num_taps = {L}, got {pre}")
        for i, (lw, l0, _) in enumerate(windows):
            if l0 > pre or lw - l0 > L - pre:
                raise ConfigError("num_taps", f"the receiver window (num_taps = {L}, precursor = {pre}) must "
                                              f"contain segment[{i}]'s lags {-l0}..{lw - 1 - l0}")
        self.num_taps, self.precursor = L, pre
        # before any allocation: the codec (encoder 2^k x hidden, templates, the tracker's L x L belief per link,
        # doubled when widely linear) and the test sequences' per-frame channels (taps, or the exact n x n pair)
        M, w = 2.0 ** self.k, (2 * L if self.widely_linear else L)
        check_model_memory(("hidden", "num_taps"), mlp_params(M, c.hidden, 2 * self.n) + M * self.n + w * w,
                           f"a tracking codec with hidden = {c.hidden} and a {L}-tap window")
        per_frame = 2 * self.n * self.n if self._exact else L
        check_memory(("num_test_sequences", "test_frames"), 16.0 * c.num_test_sequences * c.test_frames * per_frame,
                     "the test sequences' channels")
        self._ch_taps, self._ch_lag0 = ch_taps, ch_lag0
        # the shipped codebook fits any tap window (only the per-frame schemes' tap parameters depend on it)
        fits = {"k": self.k, "n": self.n, "hidden": c.hidden} == {k: _SHIPPED_GEOMETRY[k] for k in ("k", "n", "hidden")}
        if c.encoder == "shipped" and not fits:
            raise ConfigError("encoder", f"the shipped codec is for {_SHIPPED_GEOMETRY} without pre-cursor taps; "
                                         f"this scenario has k={self.k}, n={self.n}, num_taps={L}, precursor={pre}, "
                                         f"hidden={c.hidden}: use encoder=train")
        self.encoder_mode = c.encoder if c.encoder != "auto" else ("shipped" if fits else "train")
        self.objective = DriftTrackObjective(L, pre, train_codec=self.encoder_mode == "train",
                                             nll_weight=c.nll_weight)
        self.set_test_tasks(c.num_test_sequences)

    @classmethod
    def bits_per_symbol(cls, config) -> float:
        """Information bits per complex channel use ``k / n`` of the drift scenario's codec."""
        from metacomm.scenarios.drift_scenarios import load_scenario
        try:
            d = load_scenario(config.drift)
        except ConfigError as e:
            raise reraise("drift", e, inner=e.field != "scenario") from None
        return d.k / d.n

    def config_dict(self) -> dict:
        return asdict(self.config)

    # --- models ---------------------------------------------------------------------------------------
    def build_model(self, seed: int) -> TrackingDriftCodec:
        """The tracking codec: the shipped online-drift codec's weights (``encoder`` shipped) or a fresh AE
        encoder with templates = its codebook (weights from ``seed``); the tracker at ``a = rho_init``,
        ``p0 = 1/L``, ``q = (1 - rho_init^2) p0``."""
        c = self.config
        model = TrackingDriftCodec(self.k, self.n, self.num_taps, c.hidden, precursor=self.precursor,
                                   rho_init=c.rho_init, soft=c.soft, decision_directed=c.decision_directed,
                                   dd_threshold=c.dd_threshold, dd_redecode=c.dd_redecode,
                                   widely_linear=self.widely_linear,
                                   decoder_taps=_SHIPPED_GEOMETRY["num_taps"] if self.encoder_mode == "shipped"
                                   else None, pa_correction=self.pa_correction, pa_hidden=c.pa_hidden,
                                   phase_correction=self.phase_correction, phase_init=c.phase_init)
        model.reset_parameters(torch.Generator().manual_seed(int(seed)))
        if self.encoder_mode == "shipped":
            from metacomm.scenarios.online_drift import load_meta
            shipped, _, _ = load_meta(SHIPPED_CHECKPOINT, field="encoder")
            # the whole shipped codec (its per-frame decoder keeps its 3-tap window: the meta/warm rows are today's
            # codec's); the tracker has its own window
            model.load_state_dict({**model.state_dict(), **shipped.state_dict()})
        return model.to(self.device)

    # --- tasks ----------------------------------------------------------------------------------------
    def _probe(self, fr, num: int) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The exact noiseless channel of frame ``fr`` per link as ``(A, B)`` complex ``[num, n, n]`` with
        :math:`\mathbf y = \mathbf A\mathbf x + \mathbf B\mathbf x^*` (any real-linear chain: fading, TDL, IQ
        imbalance, phase offset): the frame's channel is applied without noise to the unit blocks
        :math:`\mathbf e_j` and :math:`i\mathbf e_j`, whose outputs are the columns of :math:`\mathbf A +
        \mathbf B` and :math:`i(\mathbf A - \mathbf B)`."""
        n = self.n
        eye = torch.eye(n, dtype=torch.complex64, device=self.device)
        basis = torch.cat([eye, 1j * eye])  # [2n, n]
        x = basis.repeat(num, 1)  # link-major: rows l*2n .. l*2n + 2n - 1
        state = {k: v.to(self.device).repeat_interleave(2 * n, dim=0) for k, v in fr.state.items()}
        y = fr.channel(x, 1.0, state=state, noise=torch.zeros(num * 2 * n, fr.channel.output_length(n),
                                                               dtype=torch.complex64, device=self.device))
        y = y[:, :n].reshape(num, 2, n, n)  # [link, e/ie, j (input), i (output)]
        y1, y2 = y[:, 0].transpose(-1, -2), y[:, 1].transpose(-1, -2)  # [link, i, j]
        return (y1 - 1j * y2) / 2, (y1 + 1j * y2) / 2

    def _sequences(self, num: int, frames: int, g: torch.Generator):  # noqa: C901
        """``num`` links x ``frames`` frames from the timeline (from its first frame, or -- ``start = "random"`` --
        from a frame drawn uniformly from ``g``, one start per call): the true channel and N0 ``[num, frames]``.
        The channel is the taps in the receiver's window, complex ``[num, frames, L]``, or -- when segments differ
        or an impairment is present -- ``{"A", "B"}`` complex ``[num, frames, n, n]`` (:meth:`_probe`); with a
        transmitter PA also the frames' exact PA maps ``self._seq_pa`` real ``[num, frames, 6]``
        (:func:`~metacomm.adaptation.tracking.pa_params`), else ``None``."""
        taps, nos, A, B, pas = [], [], [], [], []
        shift = 1.0 if self.config.ebno_db is None else 10 ** (-(self.config.ebno_db - self.drift.ebno_db) / 10)
        skip = 0
        if self.start == "random":
            total = max(self.drift.num_frames - frames, 0)
            skip = int(torch.randint(0, total + 1, (1,), generator=g, device=g.device).item())
        for fr in self.drift.frames(skip + frames, batch_size=num, generator=g, device=self.device,
                                    num_symbols=self.n):
            if fr.index < skip:
                continue
            nos.append(fr.no.to(self.device) * shift)
            if self._exact:
                a, b = self._probe(fr, num)
                A.append(a)
                B.append(b)
                continue
            if self.has_pa:  # Compose(PA, fading[, AWGN]): the fading state is stage 1's
                pas.append(pa_params(fr.channel.stages[0]))
            h = fr.state[f"1.{self._state_key}" if self.has_pa else self._state_key].reshape(num, -1)
            lo = self.precursor - self._ch_lag0  # (negative pads crop taps that never reach the block)
            h = nn.functional.pad(h, (lo, self.num_taps - lo - h.shape[-1]))
            taps.append(h)
        no = torch.stack(nos, 1).to(torch.float32)
        self._seq_pa = torch.tensor(pas, dtype=torch.float32, device=self.device).expand(num, -1, -1) \
            if pas else None
        if self._exact:
            return {"A": torch.stack(A, 1), "B": torch.stack(B, 1)}, no
        return torch.stack(taps, 1), no

    def _data(self, num: int, frames: int, per_frame: int, g: torch.Generator) -> tuple:
        M = 2 ** self.k
        msg = torch.randint(0, M, (num, frames, per_frame), generator=g, device=self.device)
        w = complex_normal((num, frames, per_frame, self.n), generator=g, device=self.device)
        return msg, w

    def _tasks(self, num_tasks: int, g: torch.Generator, pilots: int, query: int, frames: int) -> dict:
        ch, no = self._sequences(num_tasks, frames, g)
        msg_p, w_p = self._data(num_tasks, frames, pilots, g)
        msg_q, w_q = self._data(num_tasks, frames, query, g)
        out = {"msg_p": msg_p, "w_p": w_p, "msg_q": msg_q, "w_q": w_q, "no": no}
        out.update(ch if isinstance(ch, dict) else {"taps": ch})
        if self._seq_pa is not None:
            out["pa"] = self._seq_pa
        return out

    def sample_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """``num_tasks`` training sequences (one link each); support = query = the sequence (the loss runs the
        recursion over its pilots and scores its payload)."""
        c = self.config
        b = self._tasks(check_positive_int("num_tasks", num_tasks), g, c.pilots, c.query, c.frames_per_task)
        return TaskBatch(b, b)

    def sample_val_tasks(self, num_tasks: int, g: torch.Generator) -> TaskBatch:
        """Held-out sequences (fresh draws from ``g``, which the trainer seeds apart from the training stream)."""
        return self.sample_tasks(num_tasks, g)

    # --- evaluation -----------------------------------------------------------------------------------
    def set_test_tasks(self, num: int) -> None:
        """``num`` test links of ``test_frames`` frames from ``test_seed``: ``self.test_taps`` ``[num, F, L]``,
        ``self.test_no`` ``[num, F]``."""
        num = check_positive_int("num_test_sequences", num)
        g = torch.Generator(device=self.device).manual_seed(self.config.test_seed)
        self.test_taps, self.test_no = self._sequences(num, self.config.test_frames, g)
        self.test_pa = self._seq_pa

    @property
    def num_test_tasks(self) -> int:
        return int(self.test_no.shape[0])

    def _test_channel(self, i: int):
        """Test link ``i``'s channel sequence (taps ``[F, L]`` or ``{"A", "B"}`` ``[F, n, n]``)."""
        if isinstance(self.test_taps, dict):
            return {k: v[i] for k, v in self.test_taps.items()}
        return self.test_taps[i]

    def _test_signals(self, model, pilots: int, test_blocks: int, g: torch.Generator):
        C, F = self.test_no.shape[:2]
        per = -(-int(test_blocks) // F)
        msg_p, w_p = self._data(C, F, pilots, g)
        msg_d, w_d = self._data(C, F, per, g)
        with torch.no_grad():
            book = model.encoder.codebook()
            rx = self.objective
            pa = [None] * C if self.test_pa is None else self.test_pa
            y_p = torch.stack([rx._rx(model, msg_p[i], w_p[i], self._test_channel(i), self.test_no[i], pa[i])
                               for i in range(C)])
            y_d = torch.stack([rx._rx(model, msg_d[i], w_d[i], self._test_channel(i), self.test_no[i], pa[i])
                               for i in range(C)])
        count_mask = (torch.arange(F * per, device=self.device) < test_blocks).reshape(F, per)
        return book, msg_p, y_p, msg_d, y_d, count_mask

    def _count(self, msg_hat, msg_d, mask) -> tuple[float, float]:
        errs = ((msg_hat != msg_d) & mask).sum()
        return float(errs), float(mask.sum() * msg_d.shape[0])

    def evaluate(self, params: dict, model: nn.Module, *, pilots: int, steps, generator: torch.Generator,
                 test_blocks: int = 10000, first=None, rest=None, adapt=None) -> dict[int, tuple]:
        """Tracked BLER on the test links: ``pilots`` pilots per frame, the payload of ``ceil(test_blocks /
        test_frames)`` blocks per frame, the first ``test_blocks`` per link counted. The tracker adapts by its
        recursion, not by gradient steps: every entry of ``steps`` reports the same count (``first``,
        ``rest``, ``adapt`` are ignored)."""
        pilots = check_positive_int("pilots", pilots)
        from metacomm.adaptation.functional import call
        book, msg_p, y_p, msg_d, y_d, mask = self._test_signals(model, pilots, test_blocks, generator)
        with torch.no_grad():
            logits, _ = call(model, params, track_frames, msg_p, y_p, y_d, self.test_no)
        res = self._count(logits.argmax(-1), msg_d, mask)
        return {int(s): res for s in steps}

    def genie(self, model_seed: int, *, generator: torch.Generator, train_steps: int = 2000,
              test_blocks: int = 10000) -> tuple[float, float]:
        """Genie: ML over the codebook of ``build_model(model_seed)`` with the true taps, PA and N0 of every frame
        (nothing is trained; ``train_steps`` is ignored)."""
        model = self.build_model(model_seed)
        book, msg_p, y_p, msg_d, y_d, mask = self._test_signals(model, 1, test_blocks, generator)
        with torch.no_grad():
            if isinstance(self.test_taps, dict):  # exact channel: A t_m + B conj(t_m)
                bc = torch.complex(book.real, -book.imag)
                images = torch.einsum("cfij,mj->cfmi", self.test_taps["A"], book) \
                    + torch.einsum("cfij,mj->cfmi", self.test_taps["B"], bc)
            elif self.test_pa is not None:  # the frame's PA-distorted codebook through its taps
                pb = pa_apply(book[None, None], self.test_pa[:, :, None, None, :])  # [C, F, M, n]
                T = tap_conv_matrix(pb, self.num_taps, self.precursor)  # [C, F, M, n, L]
                images = torch.einsum("cfmnl,cfl->cfmn", T, self.test_taps)
            else:
                T = tap_conv_matrix(book, self.num_taps, self.precursor)  # [M, n, L]
                images = torch.einsum("mnl,cfl->cfmn", T, self.test_taps)
            d2 = (y_d[..., :, None, :] - images[..., None, :, :]).abs().square().sum(-1)
        return self._count(d2.argmin(-1), msg_d, mask)

    def pilot_ls_ml(self, *, pilots: int, generator: torch.Generator, test_blocks: int = 10000
                    ) -> tuple[float, float]:
        r"""Classical per-frame reference: least-squares taps from the frame's ``pilots`` pilot codewords over the
        receiver's tap window (``num_taps`` taps, ``precursor`` of them pre-cursor; :math:`\hat h = (X^H X +
        \epsilon I)^{-1} X^H y_p`, :math:`\epsilon` = :data:`~metacomm.codecs.detection.RIDGE`), then ML over the
        codebook through :math:`\hat h` (the codec of ``build_model(0)``; what ``pilot-ls`` does in a drift run;
        blind to a PA): :func:`metacomm.codecs.detection.pilot_ls_decide` per (link, frame)."""
        pilots = check_positive_int("pilots", pilots)
        model = self.build_model(0)
        book, msg_p, y_p, msg_d, y_d, mask = self._test_signals(model, pilots, test_blocks, generator)
        with torch.no_grad():
            msg_hat = pilot_ls_decide(book[msg_p], y_p, y_d, book, self.num_taps, lag0=self.precursor,
                                      ridge=RIDGE, images="regressor")  # [C, F, per]
        return self._count(msg_hat, msg_d, mask)
