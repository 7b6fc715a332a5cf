r"""Drift runs: every scheme, frame by frame, on the *same* channel realisations (common random numbers).

:func:`run_drift` plays a drift scenario (:class:`~metacomm.scenarios.drift_scenarios.DriftScenario`) for
``frames`` frames and ``links`` independent links. Per frame ``t`` it draws the
:class:`~metacomm.channels.drift.Frame` once (channel state and N0 per link; generator seeded with ``seed``),
then ``pilots`` known pilot messages and ``payload`` data messages per link with their unit-variance noise
(generator seeded with ``seed + 1``), transmits them through that frame's channel -- all of which the run's
*link* does (:class:`~metacomm.drift.protocol.DriftLink`; by default the ``(k, n)`` block codec of
:class:`~metacomm.drift.links.BlockCodecLink`) -- and hands the *same* received pilots and payload
(:class:`~metacomm.drift.protocol.FrameSignals`) to every scheme (:class:`~metacomm.drift.protocol.DriftScheme`,
one object per receiver, from the scheme registry :mod:`metacomm.drift.registry`; ``metacomm drift --help`` and
:func:`~metacomm.drift.registry.scheme_names` list them all; each scheme's docstring says what it knows). The
genie (:class:`~metacomm.drift.schemes.reference.GenieScheme`) is ML over the codec's codebook with the frame's true
channel and N0, and its ``genie{d}dB`` rows the same genie on the *same* noise draw scaled to Eb/N0 + d dB, so
"scheme X is within 1 dB of the genie" reads BLER(X) <= BLER(genie-1dB).

Structure: :class:`DriftRunConfig` (validated run-level settings; a scheme's own settings are its constructor
keywords, ``scheme_settings``) -> :class:`DriftRun` (setup: the link's context, the schemes, both generators, the
scenario's frame iterator) -> :meth:`DriftRun.step` per frame, which calls :func:`run_frame`: frame ``t`` is a
function of the config, the seeds and the state at the frame's start (the two generators, the timeline's
processes and the schemes' own state).

Outputs (:class:`~metacomm.drift.result.DriftResult`): per frame and scheme block/bit errors, counts,
BLER/BER and adaptation latency [ms]; :meth:`DriftResult.save` writes ``results.json`` (strict JSON,
``{"format", "config", "frames", "summary"}``) and ``results.csv``; :func:`plot_drift` the BER/BLER-over-time
figure with the drift value on a second axis; :meth:`DriftResult.summary_table` the table (mean BLER with
Clopper-Pearson 95 % interval over all blocks, frames above ``bler_target``, mean latency per frame).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from metacomm._validation import (
    ConfigError,
    check_nonneg,
    check_nonneg_int,
    check_positive,
    check_positive_int,
    error_message,
)
from metacomm.channels.base import make_generator
from metacomm.drift.links import BlockCodecLink
from metacomm.drift.protocol import Decision, DriftContext, DriftLink, DriftScheme, FrameSignals
from metacomm.drift.registry import build_schemes, default_schemes, parse_schemes
from metacomm.drift.result import DriftResult, plot_drift

__all__ = ["DriftRunConfig", "DriftRun", "DriftResult", "run_frame", "run_drift", "plot_drift", "LEGACY_SETTINGS"]


@dataclass
class DriftRunConfig:
    """Run-level settings of a drift run; :meth:`validate` raises ConfigError naming the key.

    :ivar frames: number of frames (>= 1); :ivar pilots: pilot messages per link and frame (>= 1);
    :ivar steps: adaptation steps per frame of the adaptive schemes (>= 0); :ivar links: independent links ``B``
        (>= 1); :ivar payload: data messages per link and frame (>= 1);
    :ivar schemes: scheme names (registered; ``None``: :func:`~metacomm.drift.registry.default_schemes` of the
        scenario and codec), a list or a ``--schemes`` string (``"meta,retrain[every=5]"``);
    :ivar scheme_settings: ``{scheme name: {setting: value}}``, the schemes' constructor keywords (merged with
        the bracket settings of ``schemes``);
    :ivar seed: seed of the channel draws (scenario timeline); data and noise use ``seed + 1``, the retrain
        init ``seed + 2``; :ivar device: torch device;
    :ivar lr: adaptation rate of the adaptive schemes (> 0); :ivar adapt: adapted parameters (adapt spec);
    :ivar inner_loss: the pilot loss of the adaptive schemes (``"ce"`` or ``"pilot-fit"``, see
        :class:`~metacomm.adaptation.AdaptiveCodec`; ``None``: the model's ``meta_inner_loss``, else ``"ce"``);
    :ivar bler_target: the BLER target of the summary (frames above it are counted).
    """

    frames: int
    pilots: int = 16
    steps: int = 1
    schemes: Sequence[str] | str | None = None
    scheme_settings: Mapping[str, Mapping] = field(default_factory=dict)
    links: int = 8
    payload: int = 64
    seed: int = 0
    device: str | torch.device = "cpu"
    lr: float = 0.1
    adapt: str = "decoder.taps"
    inner_loss: str | None = None
    bler_target: float = 0.1

    def validate(self) -> DriftRunConfig:
        """Check every field (ConfigError naming it and what is allowed); parses ``schemes`` into a list without
        duplicates (its bracket settings merged into ``scheme_settings``). Returns ``self``."""
        for f in ("frames", "pilots", "links", "payload"):
            setattr(self, f, check_positive_int(f, getattr(self, f)))
        for f in ("steps", "seed"):
            setattr(self, f, check_nonneg_int(f, getattr(self, f)))
        check_positive("lr", self.lr)
        check_nonneg("bler_target", self.bler_target)
        if not isinstance(self.scheme_settings, Mapping) or any(
                not isinstance(v, Mapping) for v in self.scheme_settings.values()):
            raise ConfigError("scheme_settings", f"expected {{scheme: {{setting: value}}}}, got "
                                                 f"{self.scheme_settings!r}")
        settings = {k: dict(v) for k, v in self.scheme_settings.items()}
        if self.schemes is not None:
            self.schemes, extra = parse_schemes(self.schemes, "schemes")
            for k, v in extra.items():
                settings.setdefault(k, {}).update(v)
        self.scheme_settings = settings
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

def run_frame(ctx: DriftContext, schemes: Sequence[DriftScheme], frame, g_data: torch.Generator
              ) -> tuple[dict, FrameSignals]:
    """One frame: the link draws the signals (:meth:`~metacomm.drift.protocol.DriftLink.draw`), then every scheme
    decides on the same signals and the link scores it; returns the frame record ``{"frame", "segment", "drift",
    "ebno_db", <the link's fields, e.g. "gain_db">, "schemes": {name: counts + "latency_ms"}}`` (see
    :class:`DriftResult`) and the signals."""
    link = ctx.link
    sig = link.draw(ctx, frame, g_data)
    rows = {}
    for s in schemes:
        dec = s.decide(sig)
        if not isinstance(dec, Decision):
            raise ConfigError("scheme", f"{s!r}.decide must return a Decision, got {type(dec).__name__}")
        try:
            counts = link.score(ctx, sig, dec)
        except ConfigError as e:
            raise ConfigError("scheme", f"{s!r}: {error_message(e)}") from None
        rows[s.name] = {**counts, "latency_ms": dec.latency_ms, **(dec.info or {})}
    record = {"frame": frame.index, "segment": frame.segment, "drift": frame.drift_value,
              "ebno_db": float(frame.ebno_db.mean()), **link.frame_record(ctx, sig), "schemes": rows}
    return record, sig


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------

def _legacy_config(schemes: Sequence[DriftScheme], ctx: DriftContext) -> dict:
    """The ``results.json`` config keys of the retrain and genie settings and the LS tap count (kept for the
    scripts that read them): from the run's schemes, else the schemes' defaults."""
    from metacomm.drift.schemes.adaptive import RetrainScheme
    from metacomm.drift.schemes.ls import PilotLSScheme
    from metacomm.drift.schemes.reference import GenieScheme
    by_type = {type(s): s for s in schemes}
    rt = by_type.get(RetrainScheme) or RetrainScheme("retrain")
    gn = next((s for s in schemes if isinstance(s, GenieScheme) and s.offset_db is None), None)
    ls = by_type.get(PilotLSScheme)
    return {"retrain_every": rt.every, "retrain_steps": rt.steps, "retrain_lr": rt.lr,
            "genie_offsets_db": list(gn.offsets_db if gn is not None else GenieScheme("genie").offsets_db),
            "pilot_ls_taps": int(ls.L if ls is not None else ctx.num_taps)}


class DriftRun:
    """A drift run in progress: the shared :class:`DriftContext`, the scheme objects, the channel generator
    (``seed``, drives the scenario's frames) and the data generator (``seed + 1``), and the result so far.

    :param scenario: a :class:`~metacomm.scenarios.drift_scenarios.DriftScenario` whose codec geometry matches
        ``model`` (ConfigError ``model`` otherwise).
    :param model: the meta-trained codec (e.g. :class:`~metacomm.scenarios.online_drift.DriftAutoencoder`); not
        modified (a private copy is made).
    :param config: a :class:`DriftRunConfig` (validated here).
    :param schemes: scheme objects to use instead of the registry's (``config.schemes`` is then ignored).
    :param link: the :class:`~metacomm.drift.protocol.DriftLink` (default: :class:`BlockCodecLink`, or
        :class:`~metacomm.drift.ofdm_link.OFDMSlotLink` for an OFDM scenario, ``scenario.link_kind == "ofdm"``).
    :param rule: the checkpoint's inner update rule for the adaptive schemes (``ctx.rule``), or ``None``.

    :meth:`step` plays the next frame; :meth:`run` plays the remaining ones; :attr:`result` accumulates;
    :meth:`skip` fast-forwards (resume); :attr:`position` counts the frames played or skipped.
    """

    def __init__(self, scenario, model: torch.nn.Module, config: DriftRunConfig,
                 schemes: Sequence[DriftScheme] | None = None, link: DriftLink | None = None, rule=None):
        if not isinstance(config, DriftRunConfig):
            raise ConfigError("config", f"expected a DriftRunConfig, got {type(config).__name__}")
        c = replace(config).validate()
        dev = torch.device(c.device)
        if link is None:  # the scenario's kind of link: block codec frames, or slots of coded OFDM links
            if getattr(scenario, "link_kind", "block") == "ofdm":
                from metacomm.drift.ofdm_link import OFDMSlotLink
                link = OFDMSlotLink()
            else:
                link = BlockCodecLink()
        self.ctx = link.context(scenario, model, c, dev)
        self.ctx.rule = rule
        if schemes is None:
            if c.schemes is None:
                c.schemes = default_schemes(scenario, self.ctx.model)
            unknown = [k for k in c.scheme_settings if k not in c.schemes]
            if unknown:
                raise ConfigError("scheme_settings", f"settings for {unknown[0]!r}, which is not among the run's "
                                                     f"schemes {c.schemes}")
            schemes = build_schemes(c.schemes, c.scheme_settings)
        self.schemes = list(schemes)
        self.config, self.scenario = c, scenario
        names = [s.name for s in self.schemes]
        if len(set(names)) != len(names):
            raise ConfigError("schemes", f"scheme names must be unique, got {names}")
        for s in self.schemes:
            if link.name not in getattr(s, "links", ("block",)):
                raise ConfigError("schemes", f"scheme {s.name!r} decides {'/'.join(s.links)} links, not a "
                                             f"{link.name!r} link")
            s.setup(self.ctx)
        self.g_ch = make_generator(c.seed, dev)
        self.g_data = make_generator(c.seed + 1, dev)
        ctx = self.ctx
        self.result = DriftResult(config={
            "scenario": scenario.name, "scenario_source": scenario.source, "frames": c.frames, "pilots": c.pilots,
            "steps": c.steps, "links": c.links, "payload_blocks_per_link": c.payload, "seed": c.seed,
            "device": str(dev), "lr": c.lr, "adapt": c.adapt, "inner_loss": ctx.inner_loss,
            "schemes": [s.name for s in schemes] if c.schemes is None else list(c.schemes),
            "k": ctx.k, "n": ctx.n, "ebno_db": scenario.ebno_db, **_legacy_config(self.schemes, ctx),
            "bler_target": c.bler_target, "drift_name": scenario.plot, "link": link.name,
            "inner_rule": None if rule is None else getattr(rule, "name", type(rule).__name__),
            "scheme_settings": {s.name: s.settings() for s in self.schemes},
            "scheme_kinds": {s.name: getattr(s, "kind", "adaptive") for s in self.schemes},
            "ci": "Clopper-Pearson 95% over blocks (BLER) / bits (BER) pooled over frames and links",
            **(link.config_record(ctx) if hasattr(link, "config_record") else {})},
            bler_target=c.bler_target)
        self.position = 0  # frames played or skipped so far
        self._frames: Iterator = scenario.frames(c.frames, batch_size=c.links, generator=self.g_ch, device=dev,
                                                 num_symbols=ctx.n)

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
            self.ctx.link.draw(self.ctx, next(self._frames), self.g_data)
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
                on_frame(sig.frame, sig.shared() if hasattr(sig, "shared") else
                         {"msg_p": sig.msg_p, "y_p": sig.y_p, "msg_d": sig.msg_d, "y_d": sig.y_d})
        return self.result


#: the keywords :func:`run_drift` still takes for scheme settings (``(scheme, setting)``; ``num_taps`` goes to every
#: run scheme that has a ``num_taps`` setting)
LEGACY_SETTINGS = {"retrain_every": ("retrain", "every"), "retrain_steps": ("retrain", "steps"),
                   "retrain_lr": ("retrain", "lr"), "genie_offsets_db": ("genie", "offsets_db"),
                   "num_taps": (None, "num_taps")}
_CONFIG_KEYS = tuple(f.name for f in fields(DriftRunConfig))


def run_drift(scenario, model: torch.nn.Module, *, quiet: bool = True,
              on_frame: Callable[[object, dict], None] | None = None, rule=None, **kw) -> DriftResult:
    """Run a drift scenario (module docstring) and return the per-frame results.

    The keywords are the fields of :class:`DriftRunConfig` (``frames`` required; ``pilots``, ``steps``,
    ``schemes``, ``scheme_settings``, ``links``, ``payload``, ``seed``, ``device``, ``lr``, ``adapt``,
    ``inner_loss``, ``bler_target``), the scheme settings of :data:`LEGACY_SETTINGS` (``retrain_every``,
    ``retrain_steps``, ``retrain_lr``, ``genie_offsets_db``, ``num_taps``), ``rule`` (the inner update rule,
    :class:`DriftRun`), ``quiet`` (no progress bar) and ``on_frame(frame, signals)`` (called after each frame with
    the shared signals ``msg_p, y_p, msg_d, y_d`` -- used by tests to check common random numbers). Errors name
    the keyword (``model`` for a codec that does not fit the scenario).
    """
    bad = [k for k in kw if k not in _CONFIG_KEYS and k not in LEGACY_SETTINGS]
    if bad:
        raise TypeError(f"run_drift() got an unexpected keyword argument {bad[0]!r}")
    if "frames" not in kw:
        raise TypeError("run_drift() missing required keyword argument: 'frames'")
    legacy = {k: kw.pop(k) for k in list(kw) if k in LEGACY_SETTINGS}
    if legacy:  # each goes to the run's schemes that have the setting (the retrain scheme, the genie, LS schemes)
        from metacomm.drift.registry import scheme_entry
        names, settings = parse_schemes(kw["schemes"]) if kw.get("schemes") is not None else (
            default_schemes(scenario, model), {})
        for k, v in (kw.get("scheme_settings") or {}).items():
            settings.setdefault(k, {}).update(v)
        for key, value in legacy.items():
            scheme, setting = LEGACY_SETTINGS[key]
            for n in names:
                if (scheme is None or n == scheme) and setting in scheme_entry(n).setting_names():
                    settings.setdefault(n, {})[setting] = value
        kw.update(schemes=names, scheme_settings=settings)
    run = DriftRun(scenario, model, DriftRunConfig(**kw), rule=rule)
    return run.run(quiet=quiet, on_frame=on_frame)
