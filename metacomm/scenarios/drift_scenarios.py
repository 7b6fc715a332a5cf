r"""Drift scenarios: TOML files that put channel drift on a timeline.

``load_scenario(name_or_path)`` reads a built-in scenario (:data:`BUILTIN_SCENARIOS`, shipped as
``metacomm/scenarios/data/<name>.toml``) or any ``.toml`` file and returns a :class:`DriftScenario`;
``scenario.frames(num_frames, batch_size=B)`` yields one :class:`~metacomm.channels.drift.Frame` per frame
(channel, state, Eb/N0 and N0 per link, the drift value for plots, the segment index). Feed the *same* frame to
every scheme to get common random numbers.

Schema
------
Top level (all keys other than those listed are rejected)::

    kind = "block"                 # optional; "ofdm" = an OFDM drift scenario (slots of coded OFDM links, another
                                   #   schema: metacomm.scenarios.ofdm_drift)
    name = "doppler-fast"          # str, default: the file name without .toml
    description = "..."            # str
    ebno_db = 10.0                 # nominal Eb/N0 [dB] (required; |x| <= 300 dB, as every dB value)
    frame_duration_s = 1e-3        # frame duration T_f [s] (> 0); needed by Doppler-specified fading
    seed = 1                       # int >= 0: default seed of DriftScenario.frames
    plot = "ebno_db"               # optional: the drift quantity to plot (ebno_db, gain_db, segment, or an
                                   #   impairment parameter); default chosen from what drifts

    [codec]                        # the codec geometry the scenario is meant for (required)
    k = 8                          # information bits per block
    n = 8                          # complex channel uses per block (> 0; fractional allowed, e.g. 3.5)

    [[segment]]                    # one or more, played in order (a regime switch at each boundary)
    frames = 500                   # duration [frames] (positive integer <= 1e9, required)
    label = "3-tap"                # optional name for plots
    channel = "multipath"          # a fading channel of metacomm.channels.registry (required)
    ebno_db = 12.0                 # optional: overrides the nominal Eb/N0 in this segment
    [segment.channel_args]         # keyword arguments of that channel (see `metacomm.channels.registry`)
    num_taps = 3
    [segment.drift]                # how the channel state evolves from frame to frame (default: iid)
    process = "gauss-markov"       # gauss-markov | jakes | iid (fresh draw every frame) | static (frozen)
    rho = 0.5                      # gauss-markov: frame-to-frame correlation in [0, 1], or instead
    # doppler_hz = 240.0           #   the max. Doppler shift [Hz] (rho = J0(2 pi f_D T_f)), or
    # speed_mps = 30.0             #   speed [m/s] with
    # carrier_hz = 2.4e9           #   carrier [Hz] (f_D = v f_c / c)
    # preserve_mean = false        # gauss-markov: mean-preserving innovation (Rician states)
    # num_sinusoids = 16           # jakes only
    [segment.snr]                  # optional SNR drift, offsets in dB added to ebno_db (components add up)
    walk = { step_db = 0.5, min_db = -6.0, max_db = 4.0, start_db = 0.0 }     # reflecting random walk
    shadowing = { amplitude_db = 3.0, period_frames = 200, phase_rad = 0.0 }  # phase omitted: random/link
    deep_fades = { rate_per_frame = 0.01, depth_db = 15.0, duration_frames = 5 }
    [segment.attack]               # optional: an attacker during this segment (metacomm.channels.attacks)
    kind = "jam-gauss"             # fgm | pgd-l2 | pgd-linf | uap | uap-shifted | jam-gauss | jam-tone | none
    psr_db = -6.0                  # PSR ||p||^2/||x||^2 per block [dB]; -inf = no attacker
    [segment.impairment]           # optional impairment stage with drifting parameters
    kind = "iq-imbalance"          # an impairment of metacomm.channels.registry
    position = "tx"                # tx (before the fading channel) | rx (after it)
    state = "fresh"                # fresh (redraw its random state every frame) | hold (one device/segment)
    [segment.impairment.params]    # a number (constant), or a drift of a numeric parameter:
    epsilon = { ramp = [0.0, 0.15] }                                      # linear over the segment
    delta_deg = { walk = { start = 0.0, step = 0.5, min = 0.0, max = 15.0 } }  # reflecting walk per frame
    renormalize = true             # non-numeric values are passed through unchanged

A ramp may give its own length, ``{ ramp = [0.0, 0.15], frames = 200 }`` (held at the end value afterwards).
When the run asks for more frames than the segments last, the last segment continues.

Errors: a missing file, a TOML syntax error, an unknown key, a wrong type or an impossible value (negative
duration, ``rho`` outside [0, 1], an unknown channel, ...) raise :class:`~metacomm.ConfigError` whose field is
``"<file>:<line>: <key path>"`` (e.g. ``my.toml:14: segment[2].drift.rho``; the line is located on a
best-effort basis) and whose message says what is allowed.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from metacomm._validation import (
    MAX_WORK,
    ConfigError,
    check_db,
    check_finite,
    check_nonneg_int,
    check_positive,
    check_positive_int,
    error_message,
)
from metacomm.channels.base import make_generator
from metacomm.channels.drift import (
    ConstantParam,
    DeepFades,
    FadingProcess,
    Frame,
    GaussMarkovFading,
    ImpairmentDrift,
    JakesFading,
    LinearRamp,
    ParamProcess,
    ParamRandomWalk,
    Segment,
    SinusoidalShadowing,
    SNRDrift,
    SNRProcess,
    SNRRandomWalk,
    Timeline,
)

__all__ = ["BUILTIN_SCENARIOS", "DriftScenario", "load_scenario", "parse_scenario", "list_scenarios"]

BUILTIN_SCENARIOS = ("doppler-slow", "doppler-fast", "snr-drift", "regime-switch", "iq-drift", "pa-drift",
                     "phase-noise-drift", "ofdm-speed-ramp", "ofdm-high-doppler", "ofdm-profile-switch")
#: the built-ins that play slots of coded OFDM links (``kind = "ofdm"``, :mod:`metacomm.scenarios.ofdm_drift`)
OFDM_SCENARIOS = ("ofdm-speed-ramp", "ofdm-high-doppler", "ofdm-profile-switch")

TOP_KEYS = ("name", "description", "ebno_db", "frame_duration_s", "seed", "plot", "codec", "segment")
CODEC_KEYS = ("k", "n")
SEGMENT_KEYS = ("frames", "label", "channel", "channel_args", "ebno_db", "drift", "snr", "impairment", "attack")
ATTACK_KEYS = ("kind", "psr_db")
PROCESSES = ("gauss-markov", "jakes", "iid", "static")
DRIFT_KEYS = {
    "gauss-markov": ("process", "rho", "doppler_hz", "speed_mps", "carrier_hz", "preserve_mean"),
    "jakes": ("process", "doppler_hz", "speed_mps", "carrier_hz", "num_sinusoids"),
    "iid": ("process",),
    "static": ("process",),
}
SNR_KEYS = {
    "walk": ("step_db", "min_db", "max_db", "start_db"),
    "shadowing": ("amplitude_db", "period_frames", "phase_rad"),
    "deep_fades": ("rate_per_frame", "depth_db", "duration_frames"),
}
IMPAIRMENT_KEYS = ("kind", "position", "state", "params")
WALK_KEYS = ("start", "step", "min", "max")


# ----------------------------------------------------------------------------------------------------------------
# Locating a key in the file (best effort) and raising with file + key path
# ----------------------------------------------------------------------------------------------------------------

def _split_path(path: str) -> list[tuple[str, int | None]]:
    out = []
    for part in path.split("."):
        m = re.fullmatch(r"(\w+)\[(\d+)\]", part)
        out.append((m.group(1), int(m.group(2))) if m else (part, None))
    return out


def _locate(text: str | None, path: str) -> int | None:
    """1-based line of ``path`` (e.g. ``segment[2].drift.rho``) in the TOML ``text``, best effort."""
    if not text or not path:
        return None
    lines = text.splitlines()

    def is_header(i: int) -> bool:
        return re.match(r"^\s*\[", lines[i]) is not None

    lo, hi, tbl = 0, len(lines), ""
    for name, idx in _split_path(path):
        tbl = f"{tbl}.{name}" if tbl else name
        if idx is not None:  # an array of tables, [[tbl]]
            starts = [i for i in range(lo, hi) if re.match(rf"^\s*\[\[\s*{re.escape(tbl)}\s*\]\]", lines[i])]
            if idx >= len(starts):
                return lo + 1 if lo else None
            lo, hi = starts[idx], (starts[idx + 1] if idx + 1 < len(starts) else hi)
            continue
        hdr = [i for i in range(lo, hi) if re.match(rf"^\s*\[\s*{re.escape(tbl)}\s*\]", lines[i])]
        if hdr:  # a sub-table with its own header
            lo = hdr[0]
            hi = next((i for i in range(lo + 1, hi) if is_header(i)), hi)
            continue
        body_start = lo + 1 if lines and lo < len(lines) and is_header(lo) else lo
        body_end = next((i for i in range(body_start, hi) if is_header(i)), hi)
        key = [i for i in range(body_start, body_end)
               if re.search(rf"(^|[\s{{,]){re.escape(name)}\s*=", lines[i])]
        if not key:
            return lo + 1
        lo, hi = key[0], key[0] + 1
    return lo + 1


class _Ctx:
    """Where we are: the file (for messages) and its text (to locate lines)."""

    def __init__(self, source: str, text: str | None):
        self.source = source
        self.text = text

    def error(self, path: str, message: str) -> ConfigError:
        line = _locate(self.text, path)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {path}" if path else where, message)

    def check(self, path: str, fn, *args):
        """Run a metacomm check/constructor; re-raise its ConfigError with the file and key path."""
        try:
            return fn(*args)
        except ConfigError as e:
            raise self.error(path, error_message(e)) from None

    def table(self, path: str, value: Any, allowed, *, required=()) -> dict:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a table, got {type(value).__name__} {value!r}")
        for k in value:
            if k not in allowed:
                raise self.error(f"{path}.{k}" if path else k,
                                 f"unknown key {k!r}; allowed: {', '.join(allowed)}")
        for k in required:
            if k not in value:
                raise self.error(f"{path}.{k}" if path else k, "missing (required)")
        return dict(value)

    def string(self, path: str, value: Any, choices=None) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"expected a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(path, f"unknown value {value!r}; allowed: {', '.join(choices)}")
        return value

    def number(self, path: str, value: Any, check=check_finite) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(path, f"expected a number, got {value!r}")
        return self.check(path, check, path, value)


# ----------------------------------------------------------------------------------------------------------------
# DriftScenario
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class DriftScenario:
    """A parsed drift scenario: a channel timeline for drift runs (see the module docstring for the file format).

    Not a few-shot scenario pack (:mod:`metacomm.scenarios`); named ``Scenario`` before issue 9 (that name is
    a deprecated alias of this class).

    :ivar name, description: from the file.
    :ivar ebno_db: nominal Eb/N0 [dB].
    :ivar frame_duration_s: :math:`T_f` [s] or None.
    :ivar seed: default seed of :meth:`frames`.
    :ivar k, n: codec geometry: information bits and complex channel uses per block.
    :ivar timeline: the :class:`~metacomm.channels.drift.Timeline` (segments, plot quantity).
    :ivar source: the file it came from (``"<builtin>/name.toml"`` for the built-ins).
    :ivar config: the raw parsed TOML (for ``results.json``).
    """

    name: str
    description: str
    ebno_db: float
    frame_duration_s: float | None
    seed: int
    k: int
    n: float
    timeline: Timeline
    source: str = "<string>"
    config: dict = field(default_factory=dict)

    @property
    def bits_per_channel_use(self) -> float:
        """``k / n``: information bits per complex channel use (the rate in the Eb/N0 -> N0 conversion)."""
        return self.k / self.n

    @property
    def num_frames(self) -> int:
        """Total duration of the segments [frames]."""
        return self.timeline.num_frames

    @property
    def segments(self) -> list[Segment]:
        return self.timeline.segments

    @property
    def plot(self) -> str:
        return self.timeline.plot

    def frames(self, num_frames: int | None = None, *, batch_size: int = 1,
               generator: torch.Generator | None = None, seed: int | None = None, device=None,
               num_symbols: int | None = None, dtype: torch.dtype = torch.complex64) -> Iterator[Frame]:
        """Yield the per-frame :class:`~metacomm.channels.drift.Frame` s.

        :param num_frames: how many (default :attr:`num_frames`; beyond it the last segment continues).
        :param batch_size: independent links per frame (``B``).
        :param generator: the :class:`torch.Generator` for every draw; default: a new one seeded with ``seed``
            (default :attr:`seed`) on ``device``.
        :param num_symbols: complex channel uses per block (default ``ceil(n)``).
        """
        if generator is None:
            generator = make_generator(self.seed if seed is None else seed, device or "cpu")
        ns = math.ceil(self.n) if num_symbols is None else check_positive_int("num_symbols", num_symbols)
        return self.timeline.frames(num_frames, batch_size=batch_size, num_symbols=ns, generator=generator,
                                    device=device, dtype=dtype)

    def describe(self) -> str:
        """A human-readable summary, one line per segment."""
        lines = [f"{self.name}: {self.description}".rstrip(": "),
                 f"  codec k={self.k}, n={self.n:g} complex uses; Eb/N0 {self.ebno_db:g} dB; "
                 f"{self.num_frames} frames; plot {self.plot}"]
        for i, s in enumerate(self.segments):
            parts = [f"segment {i}: {s.frames} frames", s.label or type(s.channel).__name__]
            if s.fading is not None:
                parts.append(repr(s.fading))
            if s.snr is not None:
                parts.append(repr(s.snr))
            if s.impairment is not None:
                parts.append(repr(s.impairment))
            if s.attack is not None:
                parts.append(repr(s.attack))
            lines.append("  " + ", ".join(parts))
        return "\n".join(lines)


def __getattr__(name: str):
    """Deprecated alias ``Scenario`` -> :class:`DriftScenario` (issue 9; "scenario" alone now means a few-shot
    scenario pack). Warns with :class:`DeprecationWarning`."""
    if name == "Scenario":
        import warnings

        warnings.warn("metacomm.scenarios.drift_scenarios.Scenario is deprecated; use DriftScenario",
                      DeprecationWarning, stacklevel=2)
        return DriftScenario
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_scenarios() -> list[str]:
    """Names of the built-in scenarios shipped in ``metacomm/scenarios/data``."""
    data = resources.files("metacomm.scenarios").joinpath("data")
    return sorted(p.name[:-5] for p in data.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> DriftScenario:
    """A built-in scenario by name (:data:`BUILTIN_SCENARIOS`) or a scenario file by path.

    Raises :class:`~metacomm.ConfigError` for an unknown name, a missing file or an invalid file.
    """
    s = str(name_or_path)
    data = resources.files("metacomm.scenarios").joinpath("data")
    builtin = data.joinpath(f"{s}.toml")
    if "/" not in s and "\\" not in s and not s.endswith(".toml") and builtin.is_file():
        return parse_scenario(builtin.read_text(encoding="utf-8"), source=f"<builtin>/{s}.toml", default_name=s)
    p = Path(s)
    if not p.is_file():
        if not s.endswith(".toml") and "/" not in s:
            raise ConfigError("scenario", f"unknown scenario {s!r}; allowed: {', '.join(list_scenarios())} "
                              "or the path of a .toml file")
        raise ConfigError(s, "scenario file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(s, f"cannot read scenario file: {e}") from None
    return parse_scenario(text, source=s, default_name=p.stem)


def parse_scenario(text: str, *, source: str = "<string>", default_name: str = "scenario") -> DriftScenario:
    """Parse and validate the TOML ``text`` of a scenario (``source`` names it in error messages); a file with
    ``kind = "ofdm"`` gives an :class:`~metacomm.scenarios.ofdm_drift.OFDMDriftScenario`."""
    ctx = _Ctx(source, text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, f"invalid TOML: {e}") from None
    kind = raw.pop("kind", "block") if raw.get("kind", "block") == "block" else raw.get("kind")
    if kind == "ofdm":  # consecutive slots of coded OFDM links (metacomm.scenarios.ofdm_drift)
        from metacomm.scenarios.ofdm_drift import parse_ofdm_scenario
        return parse_ofdm_scenario(ctx, raw, default_name=default_name)
    if kind != "block":
        raise ctx.error("kind", f"unknown scenario kind {kind!r}; allowed: block (the default), ofdm")
    top = ctx.table("", raw, TOP_KEYS, required=("ebno_db", "codec", "segment"))
    name = ctx.string("name", top.get("name", default_name))
    description = ctx.string("description", top.get("description", ""))
    ebno_db = ctx.number("ebno_db", top["ebno_db"], check_db)
    tf = top.get("frame_duration_s")
    tf = None if tf is None else ctx.number("frame_duration_s", tf, check_positive)
    seed = top.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ctx.error("seed", f"expected a non-negative integer, got {seed!r}")
    seed = ctx.check("seed", check_nonneg_int, "seed", seed)
    codec = ctx.table("codec", top["codec"], CODEC_KEYS, required=CODEC_KEYS)
    k = codec["k"]
    if isinstance(k, bool) or not isinstance(k, int):
        raise ctx.error("codec.k", f"expected a positive integer, got {k!r}")
    k = ctx.check("codec.k", check_positive_int, "codec.k", k)
    n = ctx.number("codec.n", codec["n"], check_positive)
    segs = top["segment"]
    if not isinstance(segs, list) or not segs:
        raise ctx.error("segment", "expected one or more [[segment]] tables")
    segments = [_segment(ctx, f"segment[{i}]", s, tf) for i, s in enumerate(segs)]
    plot = top.get("plot")
    if plot is not None:
        plot = ctx.string("plot", plot)
    timeline = ctx.check("plot", lambda: Timeline(segments, ebno_db=ebno_db, bits_per_channel_use=k / n,
                                                  plot=plot))
    return DriftScenario(name=name, description=description, ebno_db=ebno_db, frame_duration_s=tf, seed=seed,
                    k=k, n=n, timeline=timeline, source=source, config=raw)


def _registry():
    from metacomm.channels import registry

    return registry


def _segment(ctx: _Ctx, path: str, raw: Any, tf: float | None) -> Segment:
    seg = ctx.table(path, raw, SEGMENT_KEYS, required=("frames", "channel"))
    frames = seg["frames"]
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise ctx.error(f"{path}.frames", f"expected a positive integer number of frames, got {frames!r}")
    frames = ctx.check(f"{path}.frames", _check_frames, f"{path}.frames", frames)
    label = ctx.string(f"{path}.label", seg.get("label", seg["channel"]))
    reg = _registry()
    chname = ctx.string(f"{path}.channel", seg["channel"], reg.FADING_CHANNEL_NAMES)
    args = ctx.table(f"{path}.channel_args", seg.get("channel_args", {}), _any_key)

    def build():
        try:
            return reg.make_channel(chname, **args)
        except ConfigError as e:
            raise ctx.error(f"{path}.channel_args.{e.field}", error_message(e)) from None
        except TypeError as e:
            raise ctx.error(f"{path}.channel_args", str(e)) from None

    channel = build()
    ebno = seg.get("ebno_db")
    ebno = None if ebno is None else ctx.number(f"{path}.ebno_db", ebno, check_db)
    fading = _fading(ctx, f"{path}.drift", seg.get("drift"), tf)
    snr = _snr(ctx, f"{path}.snr", seg["snr"]) if "snr" in seg else None
    imp = _impairment(ctx, f"{path}.impairment", seg["impairment"], frames) if "impairment" in seg else None
    attack = _attack(ctx, f"{path}.attack", seg["attack"]) if "attack" in seg else None
    return Segment(frames=frames, channel=channel, fading=fading, snr=snr, impairment=imp, ebno_db=ebno,
                   label=label, attack=attack)


def _check_frames(field: str, value) -> int:
    """A segment's duration: a positive integer number of frames, at most :data:`~metacomm._validation.MAX_WORK`."""
    return check_positive_int(field, value, maximum=MAX_WORK)


def _attack(ctx: _Ctx, path: str, raw: Any):
    """``[segment.attack]``: ``kind`` (an attack of :mod:`metacomm.channels.attacks` or ``none``) and ``psr_db``
    (PSR ||p||^2/||x||^2 per block [dB]; ``-inf`` = no attacker)."""
    from metacomm.channels.attacks import ATTACKS, SegmentAttack
    tbl = ctx.table(path, raw, ATTACK_KEYS, required=ATTACK_KEYS)
    kind = ctx.string(f"{path}.kind", tbl["kind"], ("none", *ATTACKS))
    psr = tbl["psr_db"]
    if isinstance(psr, bool) or not isinstance(psr, int | float) or math.isnan(psr) or psr == math.inf:
        raise ctx.error(f"{path}.psr_db", f"expected a PSR in dB (a finite number, or -inf for no attacker), "
                                          f"got {psr!r}")
    return ctx.check(f"{path}.psr_db", SegmentAttack.make, kind, float(psr))


class _AnyKey(tuple):
    def __contains__(self, item) -> bool:  # every key allowed (validated by the channel constructor)
        return True


_any_key = _AnyKey()


def _fading(ctx: _Ctx, path: str, raw: Any, tf: float | None) -> FadingProcess | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ctx.error(path, f"expected a table, got {type(raw).__name__} {raw!r}")
    if "process" not in raw:
        raise ctx.error(f"{path}.process", f"missing (required); allowed: {', '.join(PROCESSES)}")
    proc = ctx.string(f"{path}.process", raw["process"], PROCESSES)
    tbl = ctx.table(path, raw, DRIFT_KEYS[proc])  # keys of other processes are rejected too
    if proc == "iid":
        return GaussMarkovFading(rho=0.0)
    if proc == "static":
        return GaussMarkovFading(rho=1.0)
    kw: dict[str, Any] = {}
    for key in ("rho", "doppler_hz", "speed_mps", "carrier_hz"):
        if key in tbl:
            kw[key] = ctx.number(f"{path}.{key}", tbl[key])
    doppler = any(k in kw for k in ("doppler_hz", "speed_mps", "carrier_hz"))
    if doppler and tf is None:
        raise ctx.error("frame_duration_s", f"{path} gives a Doppler shift: the top-level frame_duration_s "
                        "[s] (> 0) is required")
    if proc == "gauss-markov":
        if "preserve_mean" in tbl:
            pm = tbl["preserve_mean"]
            if not isinstance(pm, bool):
                raise ctx.error(f"{path}.preserve_mean", f"expected true or false, got {pm!r}")
            kw["preserve_mean"] = pm
        if "rho" not in kw and not doppler:
            raise ctx.error(f"{path}.rho", "missing: give rho in [0, 1], or doppler_hz, or speed_mps with "
                            "carrier_hz")
        return _construct(ctx, path, lambda: GaussMarkovFading(frame_duration_s=tf if doppler else None, **kw))
    if "num_sinusoids" in tbl:
        ns = tbl["num_sinusoids"]
        if isinstance(ns, bool) or not isinstance(ns, int):
            raise ctx.error(f"{path}.num_sinusoids", f"expected a positive integer, got {ns!r}")
        kw["num_sinusoids"] = ns
    if tf is None:
        raise ctx.error("frame_duration_s", f"{path}: the jakes process needs the top-level frame_duration_s "
                        "[s] (> 0)")
    return _construct(ctx, path, lambda: JakesFading(frame_duration_s=tf, **kw))


def _construct(ctx: _Ctx, path: str, fn):
    try:
        return fn()
    except ConfigError as e:
        sub = e.field if e.field != "frame_duration_s" else None
        full = f"{path}.{sub}" if sub else "frame_duration_s"
        raise ctx.error(full, error_message(e)) from None


def _snr(ctx: _Ctx, path: str, raw: Any) -> SNRProcess:
    tbl = ctx.table(path, raw, tuple(SNR_KEYS))
    if not tbl:
        raise ctx.error(path, f"empty: give one or more of {', '.join(SNR_KEYS)}")
    comps: list[SNRProcess] = []
    for name, cls in (("walk", SNRRandomWalk), ("shadowing", SinusoidalShadowing), ("deep_fades", DeepFades)):
        if name not in tbl:
            continue
        p = f"{path}.{name}"
        sub = ctx.table(p, tbl[name], SNR_KEYS[name], required=tuple(
            k for k in SNR_KEYS[name] if k not in ("start_db", "phase_rad")))
        kw = {}
        for key, v in sub.items():
            if key == "duration_frames":
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ctx.error(f"{p}.{key}", f"expected a positive integer, got {v!r}")
                kw[key] = v
            else:
                kw[key] = ctx.number(f"{p}.{key}", v)
        comps.append(_construct(ctx, p, lambda cls=cls, kw=kw: cls(**kw)))
    return comps[0] if len(comps) == 1 else SNRDrift(*comps)


def _impairment(ctx: _Ctx, path: str, raw: Any, seg_frames: int) -> ImpairmentDrift:
    reg = _registry()
    tbl = ctx.table(path, raw, IMPAIRMENT_KEYS, required=("kind",))
    kind = ctx.string(f"{path}.kind", tbl["kind"], reg.IMPAIRMENT_NAMES)
    position = ctx.string(f"{path}.position", tbl.get("position", "tx"), ("tx", "rx"))
    state = ctx.string(f"{path}.state", tbl.get("state", "fresh"), ("fresh", "hold"))
    params = ctx.table(f"{path}.params", tbl.get("params", {}), _any_key)
    drifting: dict[str, ParamProcess | float] = {}
    fixed: dict[str, Any] = {}
    for key, v in params.items():
        p = f"{path}.params.{key}"
        if isinstance(v, Mapping):
            drifting[key] = _param_process(ctx, p, v, seg_frames)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            drifting[key] = ctx.number(p, v)
        else:
            fixed[key] = v

    def factory(**vals):
        try:
            return reg.make_channel(kind, with_noise=False, **fixed, **vals)
        except ConfigError as e:
            raise ctx.error(f"{path}.params.{e.field}", error_message(e)) from None

    imp = ImpairmentDrift(factory, drifting, position=position, state=state, name=kind)
    # build the first frame's and the last frame's stage now, so bad values fail at load time
    for frame_vals in _extreme_values(imp, seg_frames):
        factory(**frame_vals)
    return imp


def _extreme_values(imp: ImpairmentDrift, frames: int) -> list[dict[str, float]]:
    first = {k: (p.value if isinstance(p, ConstantParam) else
                 p.start) for k, p in imp.params.items()}
    last = {k: (p.value if isinstance(p, ConstantParam) else
                p.stop if isinstance(p, LinearRamp) else p.high) for k, p in imp.params.items()}
    lows = {k: (p.low if isinstance(p, ParamRandomWalk) else v) for (k, v), p in
            zip(first.items(), imp.params.values(), strict=True)}
    return [first, last, lows]


def _param_process(ctx: _Ctx, path: str, raw: Mapping, seg_frames: int) -> ParamProcess:
    if "ramp" in raw:
        tbl = ctx.table(path, raw, ("ramp", "frames"))
        r = tbl["ramp"]
        if (not isinstance(r, list) or len(r) != 2
                or any(isinstance(v, bool) or not isinstance(v, int | float) for v in r)):
            raise ctx.error(f"{path}.ramp", f"expected [start, stop] (two numbers), got {r!r}")
        frames = tbl.get("frames", seg_frames)
        if isinstance(frames, bool) or not isinstance(frames, int):
            raise ctx.error(f"{path}.frames", f"expected a positive integer, got {frames!r}")
        return _construct(ctx, path, lambda: LinearRamp(r[0], r[1], frames))
    if "walk" in raw:
        ctx.table(path, raw, ("walk",))
        w = ctx.table(f"{path}.walk", raw["walk"], WALK_KEYS, required=WALK_KEYS)
        vals = {k: ctx.number(f"{path}.walk.{k}", w[k]) for k in WALK_KEYS}
        names = {"start": "start", "step": "step", "min": "low", "max": "high"}
        try:
            return ParamRandomWalk(vals["start"], vals["step"], vals["min"], vals["max"])
        except ConfigError as e:
            inv = {v: k for k, v in names.items()}
            raise ctx.error(f"{path}.walk.{inv.get(e.field, e.field)}", error_message(e)) from None
    raise ctx.error(path, f"expected a number or a table with 'ramp' or 'walk', got keys {sorted(raw)}")
