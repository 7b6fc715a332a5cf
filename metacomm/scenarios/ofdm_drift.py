r"""OFDM drift scenarios: consecutive slots of coded OFDM links whose 3GPP TDL channel moves (the same paths slot
after slot), with the UE speed, the profile/delay spread and the Eb/N0 changing over the run.

A scenario file with ``kind = "ofdm"`` (read by :func:`metacomm.scenarios.drift_scenarios.load_scenario`, like
the block scenarios; built-ins ``ofdm-speed-ramp``, ``ofdm-high-doppler``, ``ofdm-profile-switch`` in
``metacomm/scenarios/data/``)::

    kind = "ofdm"                  # required for an OFDM scenario (block scenarios have no kind)
    name = "ofdm-speed-ramp"       # str, default: the file name without .toml
    description = "..."
    link = "tdl-b-400hz"           # the link: an OFDM link preset name (metacomm.codecs.ofdm_links) or a .toml path
    ebno_db = 8.0                  # nominal Eb/N0 [dB], the link's ebno_convention (required)
    seed = 0                       # default seed of the run
    plot = "speed"                 # drift quantity on the plot's second axis: speed | doppler_hz | ebno_db | segment
    [link_overrides]               # optional: keys of OFDMLinkConfig replacing the preset's (e.g. num_rx_ant = 1)

    [[segment]]                    # one or more, played in order
    slots = 100                    # duration [slots] (one frame = one slot per link; positive integer <= 1e9)
    label = "3 -> 120 km/h"        # optional name for plots
    channel = "tdl-c"              # optional: tdl-a ... tdl-e (default: the link's channel)
    delay_spread = 300e-9          # optional [s] (default: the link's)
    speed = { ramp = [0.83, 33.3] }  # [m/s]: a number, or a linear ramp over the segment (default: the link's speed)
    ebno_db = { ramp = [8.0, 4.0] }  # optional [dB]: a number or a ramp; default the nominal ebno_db

Continuity: within a segment, and across a boundary where the next segment keeps the channel profile and delay
spread, every link keeps its paths (:class:`metacomm.channels.ofdm_trajectory.TDLTrajectory`: the Doppler phase
follows the distance travelled, ``d += v(t) T_sym`` symbol by symbol), so a speed change never makes the channel
jump. A segment with another profile or delay spread draws new paths at its first slot (a regime switch). Beyond
the last segment's slots the last segment continues (its ramps held at their end values).

Channel power: the drift link's channel is not renormalised per slot (``normalize_channel = "none"``; a per-slot
grid normalisation would jump at every slot boundary): the TDL profiles' powers sum to 1, so
:math:`\mathbb{E}|H|^2 = 1` per resource element and receive antenna.

Errors name ``<file>:<line>: <key path>`` as for block scenarios (:mod:`metacomm.scenarios.drift_scenarios`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from metacomm._validation import MAX_WORK, check_db, check_positive

__all__ = ["OFDM_TOP_KEYS", "OFDM_SEGMENT_KEYS", "OFDM_PLOTS", "OFDMSegment", "OFDMFrame", "OFDMDriftScenario",
           "parse_ofdm_scenario"]

OFDM_TOP_KEYS = ("kind", "name", "description", "link", "link_overrides", "ebno_db", "seed", "plot", "segment")
OFDM_SEGMENT_KEYS = ("slots", "label", "channel", "delay_spread", "speed", "ebno_db")
OFDM_PLOTS = ("speed", "doppler_hz", "ebno_db", "segment")
#: link keys a scenario may not override (the drift link is scored per slot with the link's own grid)
_FIXED_LINK_KEYS = ("normalize_channel",)


@dataclass(frozen=True)
class _Ramp:
    """A number held constant (``start == end``) or a linear ramp over ``length`` slots."""

    start: float
    end: float
    length: int

    def at(self, i: int) -> float:
        if self.length <= 1 or self.start == self.end:
            return self.end if i >= self.length - 1 else self.start
        u = min(max(i, 0), self.length - 1) / (self.length - 1)
        return self.start + (self.end - self.start) * u

    def describe(self, unit: str) -> str:
        return f"{self.start:g} {unit}" if self.start == self.end else f"{self.start:g} -> {self.end:g} {unit}"


@dataclass(frozen=True)
class OFDMSegment:
    """One segment: ``slots`` slots of ``channel`` (TDL profile) with ``delay_spread`` [s], speed [m/s] and Eb/N0
    [dB] (numbers or ramps over the segment)."""

    slots: int
    channel: str
    delay_spread: float
    speed: _Ramp
    ebno_db: _Ramp
    label: str = ""

    def same_paths(self, other: OFDMSegment) -> bool:
        """Whether ``other`` (the next segment) keeps this one's paths (same profile and delay spread)."""
        return self.channel == other.channel and self.delay_spread == other.delay_spread


@dataclass
class OFDMFrame:
    """One slot of every link (what the OFDM drift link transmits over).

    :ivar index: slot index (0-based); :ivar segment: segment index; :ivar label: its label.
    :ivar state: ``{"h_freq": complex [B, 1, R, 1, 1, S, F]}`` -- the links' responses in this slot.
    :ivar ebno_db: Eb/N0 [dB] per link float32 ``[B]``; :ivar no: N0 per complex resource element ``[B]``.
    :ivar speed: UE speed [m/s] this slot; :ivar doppler_hz: maximum Doppler :math:`v f_c / c` [Hz].
    :ivar channel: the segment's :class:`~metacomm.channels.ofdm_trajectory.TDLTrajectory` (profile, delays,
        powers: what a receiver that knows the channel law may read, e.g. for its covariances).
    :ivar drift_name, drift_value: the plotted quantity and its value this slot.
    """

    index: int
    segment: int
    state: dict
    ebno_db: torch.Tensor
    no: torch.Tensor
    speed: float
    doppler_hz: float
    channel: Any
    drift_name: str
    drift_value: float
    label: str = ""
    params: dict = field(default_factory=dict)
    attack: object | None = None


@dataclass
class OFDMDriftScenario:
    """A parsed OFDM drift scenario (module docstring for the file format).

    :ivar link: the :class:`~metacomm.codecs.ofdm_config.OFDMLinkConfig` of every link (its channel/speed/delay
        spread are the segments' defaults; ``normalize_channel = "none"``).
    :ivar segments: the :class:`OFDMSegment` s; :ivar ebno_db: nominal Eb/N0 [dB]; :ivar seed: default seed.
    :ivar plot: the plotted drift quantity; :ivar source: the file (``"<builtin>/name.toml"`` for built-ins).
    """

    name: str
    description: str
    link: Any
    segments: list[OFDMSegment]
    ebno_db: float
    seed: int = 0
    plot: str = "speed"
    source: str = "<string>"
    config: dict = field(default_factory=dict)

    link_kind = "ofdm"

    # -- the geometry the drift run records -------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.link.k)

    @property
    def n(self) -> int:
        return int(self.link.n)

    @property
    def num_frames(self) -> int:
        return sum(s.slots for s in self.segments)

    @property
    def slot_duration(self) -> float:
        """One slot [s]: ``num_ofdm_symbols`` OFDM symbols of :math:`(1 + N_{CP}/F)/\\Delta_f`."""
        return self.link.num_ofdm_symbols * self.symbol_duration

    @property
    def symbol_duration(self) -> float:
        c = self.link
        return (1.0 + c.cyclic_prefix_length / c.fft_size) / c.subcarrier_spacing

    def segment_at(self, t: int) -> tuple[int, int]:
        """``(segment index, slot within it)`` of slot ``t`` (beyond the end: the last segment continues)."""
        start = 0
        for i, s in enumerate(self.segments):
            if t < start + s.slots or i == len(self.segments) - 1:
                return i, t - start
            start += s.slots
        raise AssertionError("unreachable")

    def trajectory(self, seg: OFDMSegment, device, precision: str = "single"):
        from metacomm.channels.ofdm_trajectory import TDLTrajectory
        c = self.link
        return TDLTrajectory(seg.channel, delay_spread=seg.delay_spread, carrier_frequency=c.carrier_frequency,
                             num_rx_ant=c.num_rx_ant, num_tx_ant=c.num_tx_ant, fft_size=c.fft_size,
                             subcarrier_spacing=c.subcarrier_spacing, precision=precision, device=device)

    def frames(self, num_frames: int | None = None, *, batch_size: int = 1,
               generator: torch.Generator | None = None, seed: int | None = None, device=None,
               num_symbols: int | None = None, dtype: torch.dtype = torch.complex64) -> Iterator[OFDMFrame]:
        """Yield one :class:`OFDMFrame` per slot for ``batch_size`` links. Draws (from ``generator``, default a new
        one seeded ``seed`` or :attr:`seed`): each segment's paths at its first slot when it does not continue the
        previous one's (:meth:`TDLTrajectory.draw`). ``num_symbols`` is accepted for the drift run's call and
        ignored (a slot is the link's grid)."""
        from metacomm.channels.base import make_generator
        from metacomm.codecs.ofdm_config import ofdm_ebnodb_to_no
        dev = torch.device(device or "cpu")
        if generator is None:
            generator = make_generator(self.seed if seed is None else seed, dev)
        total = self.num_frames if num_frames is None else int(num_frames)
        precision = "double" if dtype == torch.complex128 else "single"
        S, Tsym = self.link.num_ofdm_symbols, self.symbol_duration
        steps = torch.arange(S, dtype=torch.float64)
        traj = params = None
        distance = 0.0  # [m] travelled along the current paths at the start of the slot
        prev = None
        for t in range(total):
            si, local = self.segment_at(t)
            seg = self.segments[si]
            if prev is None or (si != prev and not self.segments[prev].same_paths(seg)):
                traj = self.trajectory(seg, dev, precision)
                params = traj.draw(batch_size, generator)
                distance = 0.0
            prev = si
            v = seg.speed.at(local)
            d = distance + v * Tsym * steps  # [S]
            distance += v * Tsym * S
            h = traj.h_freq(params, d.to(traj.rdtype), dtype=dtype)
            eb = seg.ebno_db.at(local)
            ebno = torch.full((batch_size,), eb, dtype=torch.float32, device=dev)
            no = torch.full((batch_size,), ofdm_ebnodb_to_no(eb, self.link), dtype=torch.float32, device=dev)
            fd = traj.doppler(v)
            values = {"speed": v, "doppler_hz": fd, "ebno_db": eb, "segment": float(si)}
            yield OFDMFrame(index=t, segment=si, state={"h_freq": h}, ebno_db=ebno, no=no, speed=v, doppler_hz=fd,
                            channel=traj, drift_name=self.plot, drift_value=float(values[self.plot]),
                            label=seg.label, params=values)

    def describe(self) -> str:
        lines = [f"{self.name}: {self.description}".rstrip(": "),
                 f"  OFDM link {self.link.name!r} (k={self.k}, n={self.n}, {self.link.num_rx_ant} rx antennas); "
                 f"Eb/N0 {self.ebno_db:g} dB; {self.num_frames} slots of {self.slot_duration * 1e3:g} ms; "
                 f"plot {self.plot}"]
        for i, s in enumerate(self.segments):
            lines.append(f"  segment {i}: {s.slots} slots, {s.label or s.channel}, {s.channel} "
                         f"{s.delay_spread * 1e9:g} ns, speed {s.speed.describe('m/s')}, Eb/N0 "
                         f"{s.ebno_db.describe('dB')}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------------------------

def _ramp(ctx, path: str, raw, default: float, slots: int, check) -> _Ramp:
    if raw is None:
        return _Ramp(default, default, slots)
    if isinstance(raw, Mapping):
        ctx.table(path, raw, ("ramp",), required=("ramp",))
        r = raw["ramp"]
        if not isinstance(r, list) or len(r) != 2:
            raise ctx.error(f"{path}.ramp", f"expected [start, end], got {r!r}")
        a = ctx.number(f"{path}.ramp", r[0], check)
        b = ctx.number(f"{path}.ramp", r[1], check)
        return _Ramp(a, b, slots)
    v = ctx.number(path, raw, check)
    return _Ramp(v, v, slots)


def _speed_check(field: str, value) -> float:
    from metacomm._validation import ConfigError
    from metacomm.channels.ofdm_trajectory import SPEED_OF_LIGHT
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ConfigError(field, f"the UE speed is a finite number of m/s >= 0, got {value!r}")
    if v >= SPEED_OF_LIGHT:
        raise ConfigError(field, f"the UE speed is in m/s and must be below the speed of light, got {value!r}")
    return v


def _link(ctx, raw_link, overrides):
    from metacomm.codecs.ofdm_config import link_config_from_dict, load_link_config
    if not isinstance(raw_link, str):
        raise ctx.error("link", f"expected an OFDM link preset name or a .toml path, got {raw_link!r}")
    base = ctx.check("link", load_link_config, raw_link)
    d = base.to_dict()
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise ctx.error("link_overrides", f"expected a table of link keys, got {overrides!r}")
        for k in overrides:
            if k in _FIXED_LINK_KEYS:
                raise ctx.error(f"link_overrides.{k}", "fixed for drift runs (normalize_channel = 'none': the "
                                                      "channel is not renormalised per slot)")
        if "codeword_length" not in overrides and base.n == base.num_data_symbols * base.bits_per_symbol:
            d["codeword_length"] = None  # the preset's codeword is its whole grid: so is the overridden grid's
        d.update(dict(overrides))
    d["normalize_channel"] = "none"
    return ctx.check("link_overrides" if overrides else "link", link_config_from_dict, d)


def parse_ofdm_scenario(ctx, raw: dict, *, default_name: str) -> OFDMDriftScenario:
    """Validate an OFDM scenario's parsed TOML ``raw`` (``ctx``: the file for error locations)."""
    from metacomm.channels.ofdm_trajectory import TDL_PROFILES
    top = ctx.table("", raw, OFDM_TOP_KEYS, required=("kind", "link", "ebno_db", "segment"))
    name = ctx.string("name", top.get("name", default_name))
    description = ctx.string("description", top.get("description", ""))
    ebno_db = ctx.number("ebno_db", top["ebno_db"], check_db)
    seed = top.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ctx.error("seed", f"expected a non-negative integer, got {seed!r}")
    plot = ctx.string("plot", top.get("plot", "speed"), OFDM_PLOTS)
    link = _link(ctx, top["link"], top.get("link_overrides"))
    segs = top["segment"]
    if not isinstance(segs, list) or not segs:
        raise ctx.error("segment", "expected one or more [[segment]] tables")
    segments = []
    for i, s in enumerate(segs):
        p = f"segment[{i}]"
        s = ctx.table(p, s, OFDM_SEGMENT_KEYS, required=("slots",))
        slots = s["slots"]
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_WORK:
            raise ctx.error(f"{p}.slots", f"expected a positive integer <= {MAX_WORK:.0e}, got {slots!r}")
        channel = s.get("channel", link.channel)
        channel = ctx.string(f"{p}.channel", channel.lower() if isinstance(channel, str) else channel, TDL_PROFILES)
        ds = ctx.number(f"{p}.delay_spread", s.get("delay_spread", link.delay_spread), check_positive)
        if ds > 1e-5:
            raise ctx.error(f"{p}.delay_spread", f"the RMS delay spread is in seconds (10e-9 ... 1000e-9), got {ds!r}")
        speed = _ramp(ctx, f"{p}.speed", s.get("speed"), link.speed, slots, _speed_check)
        eb = _ramp(ctx, f"{p}.ebno_db", s.get("ebno_db"), ebno_db, slots, check_db)
        label = ctx.string(f"{p}.label", s.get("label", ""))
        segments.append(OFDMSegment(slots=slots, channel=channel, delay_spread=ds, speed=speed, ebno_db=eb,
                                    label=label))
    return OFDMDriftScenario(name=name, description=description, link=replace(link), segments=segments,
                             ebno_db=ebno_db, seed=seed, plot=plot, source=ctx.source, config=raw)
