r"""Drift runs: every scheme, frame by frame, on the *same* channel realisations (common random numbers).

:func:`run_drift` plays a drift scenario (:class:`~metacomm.scenarios.drift_scenarios.DriftScenario`) for
``frames`` frames and ``links`` independent links. Per frame ``t`` it draws the
:class:`~metacomm.channels.drift.Frame` once (channel state and N0 per link; generator seeded with ``seed``),
then ``pilots`` known pilot messages and ``payload`` data messages per link with their unit-variance noise
(generator seeded with ``seed + 1``), transmits them with the meta-learned encoder through that frame's
channel, and hands the *same* received pilots and payload (:class:`~metacomm.sims.drift_schemes.FrameSignals`)
to every scheme (:class:`~metacomm.sims.drift_schemes.DriftScheme`, one object per receiver, looked up in the
scheme registry):

* ``static`` -- the codec adapted once on frame 0's pilots (``steps`` steps from the meta-init), then frozen:
  what a deployed codec does without online adaptation;
* ``retrain`` -- periodic full retraining from scratch: every ``retrain_every`` frames a freshly initialised
  decoder is trained with Adam (``retrain_lr``, ``retrain_steps`` steps) on that frame's pilots only;
* ``meta`` -- adapt from the meta-init every frame (``steps`` SGD steps at ``lr`` on the pilots);
* ``warm`` -- warm-start adaptation every frame (from the previous frame's weights);
* ``online-meta`` -- follow-the-meta-leader (Reptile on the last frames' pilots refines a per-link init);
* ``on-detection``, ``reset-on-change`` -- the detector-driven policies of :class:`AdaptiveCodec`;
* ``pilot-ls`` -- classical: least-squares estimate of the ``L`` taps from the pilot codewords,
  :math:`\hat h = (X^H X)^{-1} X^H y_p`, then ML detection over the codec's codebook with :math:`\hat h`;
* ``pilot-lmmse``, ``kalman``, ``wide-ls``, ``wl-ls`` -- the classical baselines of
  :mod:`metacomm.sims.drift_classical` (LMMSE with the true tap prior; a Kalman tracker over frames that knows
  rho, the prior and N0; LS over a wide tap window with pre-cursor taps; widely-linear LS for IQ imbalance);
* ``genie`` -- ML detection over the codec's own codebook with perfect knowledge of the frame's channel and N0:
  :math:`\hat m = \arg\min_m \|y - \mathcal C_t(c_m)\|^2` with :math:`\mathcal C_t` the noiseless channel of
  frame ``t`` (any channel whose randomness besides AWGN is in its state) -- the best any decoder for this
  encoder can do; ``genie{d}dB`` for each ``genie_offsets_db`` entry ``d``: the same genie with the *same*
  noise draw scaled to Eb/N0 + d dB (d < 0: a worse channel), so "scheme X is within 1 dB of the genie" reads
  BLER(X) <= BLER(genie-1dB).

Structure: :class:`DriftRunConfig` (validated settings) -> :class:`DriftRun` (setup: the model copy, the
schemes, both generators, the scenario's frame iterator) -> :meth:`DriftRun.step` per frame, which calls
:func:`draw_signals` and :func:`run_frame`: frame ``t`` is a function of the config, the seeds and the state at
the frame's start (the two generators, the timeline's processes and the schemes' own state).

Outputs (:class:`~metacomm.sims.drift_result.DriftResult`): per frame and scheme block/bit errors, counts,
BLER/BER and adaptation latency [ms]; :meth:`DriftResult.save` writes ``results.json`` (strict JSON,
``{"format", "config", "frames", "summary"}``) and ``results.csv``; :func:`plot_drift` the BER/BLER-over-time
figure with the drift value on a second axis; :meth:`DriftResult.summary_table` the table (mean BLER with
Clopper-Pearson 95 % interval over all blocks, frames above ``bler_target``, mean latency per frame).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace

import torch

from metacomm._validation import (
    ConfigError,
    check_finite,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
)
from metacomm.channels.base import complex_normal, make_generator
from metacomm.codecs.detection import noiseless_images
from metacomm.codecs.learned_base import index_to_bits
from metacomm.sims.drift_result import DriftResult, plot_drift
from metacomm.sims.drift_schemes import (
    Decision,
    DriftContext,
    DriftScheme,
    FrameSignals,
    build_schemes,
    genie_name,
    scheme_names,
)

__all__ = ["SCHEMES", "DEFAULT_SCHEMES", "CLI_FLAGS", "DriftRunConfig", "DriftRun", "DriftResult", "draw_signals",
           "run_frame", "run_drift", "plot_drift", "parse_schemes", "genie_name"]

SCHEMES = scheme_names()  # the built-ins; schemes registered later are accepted too (parse_schemes)
from metacomm.sims import drift_adversarial as _drift_adversarial  # noqa: E402,F401 (pack scheme meta-adv)
from metacomm.sims import drift_label_noise as _drift_label_noise  # noqa: E402,F401 (dd-gated, dd-l2rw)

DEFAULT_SCHEMES = ("static", "retrain", "meta", "warm", "online-meta", "pilot-ls", "pilot-lmmse", "kalman",
                   "wide-ls", "wl-ls", "genie")
# Config key -> CLI flag, for errors raised through the run_drift(...) keyword interface.
CLI_FLAGS = {"frames": "--frames", "pilots": "--pilots", "steps": "--steps", "links": "--links",
             "schemes": "--schemes", "model": "--checkpoint"}


def parse_schemes(text: str | Sequence[str], field_name: str = "--schemes") -> list[str]:
    """A comma list (or sequence) of registered scheme names -> list without duplicates (first order kept)."""
    names = scheme_names()
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not items:
        raise ConfigError(field_name, f"give at least one scheme; allowed: {', '.join(names)}")
    for s in items:
        if s not in names:
            raise ConfigError(field_name, f"unknown scheme {s!r}; allowed: {', '.join(names)}")
    return list(dict.fromkeys(items))


@dataclass
class DriftRunConfig:
    """Settings of a drift run (the keywords of :func:`run_drift`); :meth:`validate` raises ConfigError naming
    the key.

    :ivar frames: number of frames (>= 1); :ivar pilots: pilot messages per link and frame (>= 1);
    :ivar steps: adaptation SGD steps per frame (>= 0); :ivar links: independent links ``B`` (>= 1);
    :ivar payload: data messages per link and frame (>= 1); :ivar schemes: scheme names (registered);
    :ivar seed: seed of the channel draws (scenario timeline); data and noise use ``seed + 1``, the retrain
        init ``seed + 2``; :ivar device: torch device;
    :ivar lr: adaptation SGD rate (> 0); :ivar adapt: adapted parameters (adapt spec);
    :ivar inner_loss: the pilot loss of the adaptive schemes (``"ce"`` or ``"pilot-fit"``, see
        :class:`~metacomm.adaptation.AdaptiveCodec`; ``None``: the model's ``meta_inner_loss``, else ``"ce"``);
    :ivar num_taps: model order ``L`` of ``pilot-ls`` (``None``: the decoder's ``num_taps``, else 3);
    :ivar retrain_every: period [frames] of the retrain scheme; :ivar retrain_steps: its Adam steps (>= 0);
    :ivar retrain_lr: its Adam rate (> 0);
    :ivar genie_offsets_db: Eb/N0 offsets [dB] of the genie yardsticks (``genie{d}dB`` rows);
    :ivar bler_target: the BLER target of the summary (frames above it are counted).
    """

    frames: int
    pilots: int = 16
    steps: int = 1
    schemes: Sequence[str] = DEFAULT_SCHEMES
    links: int = 8
    payload: int = 64
    seed: int = 0
    device: str | torch.device = "cpu"
    lr: float = 0.1
    adapt: str = "decoder.taps"
    inner_loss: str | None = None
    num_taps: int | None = None
    retrain_every: int = 10
    retrain_steps: int = 100
    retrain_lr: float = 1e-2
    genie_offsets_db: Sequence[float] = (-1.0,)
    bler_target: float = 0.1

    def validate(self) -> DriftRunConfig:
        """Check every field (ConfigError naming it and what is allowed); normalises ``schemes`` to a list
        without duplicates and ``genie_offsets_db`` to a list of floats. Returns ``self``."""
        for f in ("frames", "pilots", "links", "payload", "retrain_every"):
            setattr(self, f, check_positive_int(f, getattr(self, f)))
        for f in ("steps", "retrain_steps", "seed"):
            setattr(self, f, check_nonneg_int(f, getattr(self, f)))
        check_positive("lr", self.lr)
        check_positive("retrain_lr", self.retrain_lr)
        check_nonneg("bler_target", self.bler_target)
        self.schemes = parse_schemes(list(self.schemes) if not isinstance(self.schemes, str) else self.schemes,
                                     "schemes")
        if isinstance(self.genie_offsets_db, str | bytes) or not isinstance(self.genie_offsets_db, Sequence):
            raise ConfigError("genie_offsets_db", f"expected a list of dB offsets, got {self.genie_offsets_db!r}")
        self.genie_offsets_db = [check_finite("genie_offsets_db", d) for d in self.genie_offsets_db]
        if self.num_taps is not None:
            self.num_taps = check_positive_int("num_taps", self.num_taps)
        if not isinstance(self.adapt, str):
            raise ConfigError("adapt", f"expected an adapt spec string, got {self.adapt!r}")
        if self.inner_loss is not None and not isinstance(self.inner_loss, str):
            raise ConfigError("inner_loss", f"expected 'ce', 'pilot-fit' or None, got {self.inner_loss!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ConfigError("device", f"not a torch device: {self.device!r} ({e})") from None
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["device"] = str(self.device)
        return d


# ----------------------------------------------------------------------------------------------------------------
# One frame
# ----------------------------------------------------------------------------------------------------------------

def _rep(t: torch.Tensor, times: int) -> torch.Tensor:
    return t.repeat_interleave(times, dim=0)


def _transmit(channel, x, no, state, noise):
    """``x`` ``[B, N, n]`` through ``channel`` with per-link state/N0 and noise ``[B, N, n_rx]``."""
    B, N, n = x.shape
    st = {k: _rep(v, N) for k, v in state.items()}
    y = channel(x.reshape(B * N, n), _rep(no, N), state=st, noise=noise.reshape(B * N, -1))
    return y.reshape(B, N, -1)


def draw_signals(ctx: DriftContext, frame, g_data: torch.Generator) -> FrameSignals:
    """Draw one frame's pilots and payload from ``g_data`` (in this order: pilot messages ``[B, P]``, payload
    messages ``[B, N]``, pilot noise ``[B, P, n_rx]``, payload noise ``[B, N, n_rx]``) and transmit them through
    ``frame`` (its channel, per-link state and N0): the signals every scheme receives."""
    c = ctx.config
    B, P, N, n, M, dev = c.links, c.pilots, c.payload, ctx.n, ctx.num_messages, ctx.device
    n_rx = frame.channel.output_length(n)
    msg_p = torch.randint(0, M, (B, P), generator=g_data, device=dev)
    msg_d = torch.randint(0, M, (B, N), generator=g_data, device=dev)
    w_p = complex_normal((B, P, n_rx), generator=g_data, device=dev)
    w_d = complex_normal((B, N, n_rx), generator=g_data, device=dev)
    no = frame.no.to(dev)
    with torch.no_grad():
        x_p, x_d = ctx.codebook[msg_p], ctx.codebook[msg_d]
        y_p = _transmit(frame.channel, x_p, no, frame.state, w_p)
        y_d = _transmit(frame.channel, x_d, no, frame.state, w_d)
        clean_d = noiseless_images(frame.channel, x_d, frame.state)
    attack = getattr(frame, "attack", None)
    if attack is not None:  # an attacker in this segment: its own generator, the run's draws are unchanged
        from metacomm.channels.attacks import attack_frame
        g_att = torch.Generator(device=g_data.device).manual_seed(
            (g_data.initial_seed() * 1_000_003 + 7919 * int(frame.index) + 424_242) % (2 ** 63))
        y_p, y_d_att = attack_frame(attack, getattr(ctx.model, "block_logits", None),
                                    [(x_p, y_p, msg_p), (x_d, y_d, msg_d)], g_att)
        # the perturbation is part of the noise-free received payload: the genie's dB-offset yardsticks, which
        # rebuild the payload from clean_d and the noise, see the attacker too (gain_db then includes its energy)
        clean_d = clean_d + (y_d_att - y_d)
        y_d = y_d_att
    return FrameSignals(frame=frame, no=no, msg_p=msg_p, x_p=x_p, w_p=w_p, y_p=y_p, msg_d=msg_d, x_d=x_d, w_d=w_d,
                        y_d=y_d, clean_d=clean_d)


def _count(msg_hat, msg, k) -> dict:
    be = int((msg_hat != msg).sum())
    bits_hat = index_to_bits(msg_hat, k, dtype=torch.bool)
    bits = index_to_bits(msg, k, dtype=torch.bool)
    bi = int((bits_hat != bits).sum())
    bl, nb = msg.numel(), msg.numel() * k
    return {"block_errors": be, "blocks": bl, "bit_errors": bi, "bits": nb, "bler": be / bl, "ber": bi / nb}


def _gain_record(sig: FrameSignals) -> dict:
    """Channel power gain [dB] per link: noise-free received over transmitted payload energy; mean over links
    (of the linear gains) and the 10th/90th percentiles across links."""
    with torch.no_grad():
        gain = sig.clean_d.abs().square().sum((1, 2)) / sig.x_d.abs().square().sum((1, 2))
        gain_db = 10 * torch.log10(gain.clamp_min(1e-12)).cpu()
    return {"mean": float(10 * torch.log10(gain.mean().clamp_min(1e-12))),
            "p10": float(torch.quantile(gain_db, 0.1)), "p90": float(torch.quantile(gain_db, 0.9))}


def run_frame(ctx: DriftContext, schemes: Sequence[DriftScheme], frame, g_data: torch.Generator
              ) -> tuple[dict, FrameSignals]:
    """One frame: :func:`draw_signals`, then every scheme decides on the same signals; returns the frame record
    ``{"frame", "segment", "drift", "ebno_db", "gain_db", "schemes": {name: counts + "latency_ms"}}`` (see
    :class:`DriftResult`) and the signals."""
    sig = draw_signals(ctx, frame, g_data)
    rows = {}
    for s in schemes:
        dec = s.decide(sig)
        if not isinstance(dec, Decision):
            raise ConfigError("scheme", f"{s!r}.decide must return a Decision, got {type(dec).__name__}")
        if tuple(dec.msg_hat.shape) != tuple(sig.msg_d.shape):
            raise ConfigError("scheme", f"{s!r} decided {tuple(dec.msg_hat.shape)} messages, expected "
                                        f"{tuple(sig.msg_d.shape)}")
        rows[s.name] = {**_count(dec.msg_hat, sig.msg_d, ctx.k), "latency_ms": dec.latency_ms}
    record = {"frame": frame.index, "segment": frame.segment, "drift": frame.drift_value,
              "ebno_db": float(frame.ebno_db.mean()), "gain_db": _gain_record(sig), "schemes": rows}
    return record, sig


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------

class DriftRun:
    """A drift run in progress: the shared :class:`DriftContext`, the scheme objects, the channel generator
    (``seed``, drives the scenario's frames) and the data generator (``seed + 1``), and the result so far.

    :param scenario: a :class:`~metacomm.scenarios.drift_scenarios.DriftScenario` whose codec geometry matches
        ``model`` (``k`` bits, ``n`` complex uses; ConfigError ``model`` otherwise).
    :param model: the meta-trained codec (e.g. :class:`~metacomm.scenarios.online_drift.DriftAutoencoder`); not
        modified (a private copy is made).
    :param config: a :class:`DriftRunConfig` (validated here).
    :param schemes: scheme objects to use instead of the registry's (``config.schemes`` is then ignored).

    :meth:`step` plays the next frame; :meth:`run` plays the remaining ones; :attr:`result` accumulates;
    :meth:`skip` fast-forwards (resume); :attr:`position` counts the frames played or skipped.
    """

    def __init__(self, scenario, model: torch.nn.Module, config: DriftRunConfig,
                 schemes: Sequence[DriftScheme] | None = None):
        if not isinstance(config, DriftRunConfig):
            raise ConfigError("config", f"expected a DriftRunConfig, got {type(config).__name__}")
        c = replace(config).validate()
        dev = torch.device(c.device)
        k, n = int(model.num_info_bits), int(model.num_channel_uses)
        if scenario.k != k or math.ceil(scenario.n) != n:
            raise ConfigError("model", f"the codec has k={k}, n={n} complex uses but scenario {scenario.name!r} "
                                       f"is for k={scenario.k}, n={scenario.n:g}")
        inner_loss = c.inner_loss if c.inner_loss is not None else getattr(model, "meta_inner_loss", "ce")
        model = copy.deepcopy(model).to(dev).eval()
        L = int(c.num_taps or getattr(model.decoder, "num_taps", 3))
        with torch.no_grad():
            book = model.encoder.codebook()  # [M, n]
        self.config, self.scenario = c, scenario
        self.ctx = DriftContext(model=model, codebook=book, config=c, device=dev, k=k, n=n, inner_loss=inner_loss,
                                num_taps=L, scenario=scenario)
        self.schemes = list(schemes) if schemes is not None else build_schemes(c.schemes, c)
        names = [s.name for s in self.schemes]
        if len(set(names)) != len(names):
            raise ConfigError("schemes", f"scheme names must be unique, got {names}")
        for s in self.schemes:
            s.setup(self.ctx)
        self.g_ch = make_generator(c.seed, dev)
        self.g_data = make_generator(c.seed + 1, dev)
        self.result = DriftResult(config={
            "scenario": scenario.name, "scenario_source": scenario.source, "frames": c.frames, "pilots": c.pilots,
            "steps": c.steps, "links": c.links, "payload_blocks_per_link": c.payload, "seed": c.seed,
            "device": str(dev), "lr": c.lr, "adapt": c.adapt, "inner_loss": inner_loss, "schemes": list(c.schemes),
            "k": k, "n": n, "ebno_db": scenario.ebno_db, "retrain_every": c.retrain_every,
            "retrain_steps": c.retrain_steps, "retrain_lr": c.retrain_lr,
            "genie_offsets_db": list(c.genie_offsets_db), "bler_target": c.bler_target,
            "drift_name": scenario.plot, "pilot_ls_taps": L,
            "scheme_kinds": {s.name: getattr(s, "kind", "adaptive") for s in self.schemes},
            "ci": "Clopper-Pearson 95% over blocks (BLER) / bits (BER) pooled over frames and links"},
            bler_target=c.bler_target)
        self.position = 0  # frames played or skipped so far
        self._frames: Iterator = scenario.frames(c.frames, batch_size=c.links, generator=self.g_ch, device=dev,
                                                 num_symbols=n)

    @property
    def done(self) -> bool:
        return self.position >= self.config.frames

    def step(self) -> tuple[dict, FrameSignals]:
        """Play the next frame: draw it, run every scheme, append its record to :attr:`result`; returns
        ``(record, signals)``."""
        if self.done:
            raise ConfigError("frames", f"the run is complete ({self.config.frames} frames)")
        frame = next(self._frames)
        self.position += 1
        record, sig = run_frame(self.ctx, self.schemes, frame, self.g_data)
        self.result.add_frame(record)
        return record, sig

    def skip(self, num_frames: int) -> None:
        """Advance both generators and the timeline past ``num_frames`` frames exactly as playing them would
        (same draws, same order), without running the schemes or recording anything: for resuming at a frame
        once the schemes' own state (fast weights, a retrained decoder, ...) and :attr:`result` are restored
        from a checkpoint. Stateless schemes (``pilot-ls``, ``genie``) then reproduce the uninterrupted run."""
        num_frames = check_nonneg_int("num_frames", num_frames)
        if self.position + num_frames > self.config.frames:
            raise ConfigError("num_frames", f"only {self.config.frames - self.position} frames are left")
        for _ in range(num_frames):
            draw_signals(self.ctx, next(self._frames), self.g_data)
            self.position += 1

    def state_dict(self) -> dict:
        """Everything a resumed run needs: frames played, their records, every scheme's state (loadable with
        ``torch.load(weights_only=True)``). The draws themselves are replayed by :meth:`skip`."""
        return {"position": self.position, "records": list(self.result.frames),
                "schemes": {s.name: s.state_dict() for s in self.schemes}}

    def load_state_dict(self, state: dict) -> None:
        """Resume a fresh run (same scenario, model and config) from :meth:`state_dict`: replay the draws of the
        played frames, restore the records and every scheme's state. The rest of the run then equals an
        uninterrupted one."""
        if self.position:
            raise ConfigError("resume", "load the state into a fresh DriftRun (no frame played yet)")
        names = [s.name for s in self.schemes]
        if sorted(state.get("schemes", {})) != sorted(names):
            raise ConfigError("resume", f"the saved run has schemes {sorted(state.get('schemes', {}))}, this run "
                                        f"{sorted(names)}")
        position = int(state["position"])
        if len(state["records"]) != position:
            raise ConfigError("resume", "the saved run's records do not match its frame count")
        self.skip(position)
        for record in state["records"]:
            self.result.add_frame(record)
        for s in self.schemes:
            s.load_state_dict(state["schemes"][s.name])

    def run(self, *, quiet: bool = True, on_frame: Callable[[object, dict], None] | None = None) -> DriftResult:
        """Play the remaining frames (a progress bar unless ``quiet``); ``on_frame(frame, signals)`` after each
        with the shared signals ``{"msg_p", "y_p", "msg_d", "y_d"}``. Returns :attr:`result`."""
        from tqdm.auto import tqdm

        left = self.config.frames - self.position
        for _ in tqdm(range(left), total=left, disable=quiet, desc=f"drift {self.scenario.name}", leave=False):
            _, sig = self.step()
            if on_frame is not None:
                on_frame(sig.frame, {"msg_p": sig.msg_p, "y_p": sig.y_p, "msg_d": sig.msg_d, "y_d": sig.y_d})
        return self.result


_CONFIG_KEYS = tuple(f.name for f in fields(DriftRunConfig))


def run_drift(scenario, model: torch.nn.Module, *, quiet: bool = True,
              on_frame: Callable[[object, dict], None] | None = None, **kw) -> DriftResult:
    """Run a drift scenario (module docstring) and return the per-frame results.

    The keywords are the fields of :class:`DriftRunConfig` (``frames`` required; ``pilots``, ``steps``,
    ``schemes``, ``links``, ``payload``, ``seed``, ``device``, ``lr``, ``adapt``, ``inner_loss``, ``num_taps``,
    ``retrain_every``, ``retrain_steps``, ``retrain_lr``, ``genie_offsets_db``, ``bler_target``), plus
    ``quiet`` (no progress bar) and ``on_frame(frame, signals)`` (called after each frame with the shared
    signals ``msg_p, y_p, msg_d, y_d`` -- used by tests to check common random numbers). Errors name the CLI
    flag where there is one (:data:`CLI_FLAGS`: ``--frames``, ``--schemes``, ``--checkpoint`` for a codec that
    does not fit the scenario, ...), else the key.
    """
    bad = [k for k in kw if k not in _CONFIG_KEYS]
    if bad:
        raise TypeError(f"run_drift() got an unexpected keyword argument {bad[0]!r}")
    if "frames" not in kw:
        raise TypeError("run_drift() missing required keyword argument: 'frames'")
    try:
        run = DriftRun(scenario, model, DriftRunConfig(**kw))
    except ConfigError as e:
        if e.field in CLI_FLAGS:
            raise ConfigError(CLI_FLAGS[e.field], str(e)[len(e.field) + 2:]) from None
        raise
    return run.run(quiet=quiet, on_frame=on_frame)

# Quantised adaptive schemes (meta-q8, meta-q4): registered after SCHEMES (the built-in table) is taken.
from metacomm.sims.drift_quantized import register as _register_quantized  # noqa: E402

_register_quantized()
