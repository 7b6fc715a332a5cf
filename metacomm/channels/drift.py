r"""Drift processes: channels that change from frame to frame.

A *drift run* transmits a sequence of frames ``t = 0, 1, 2, ...`` (frame duration :math:`T_f` seconds). Within a
frame the channel is block-constant; between frames it drifts. The processes here turn any channel of the
:mod:`metacomm.channels.base` protocol into a seeded sequence of per-frame **states** (the dicts that
``channel.sample_state`` returns) and per-frame Eb/N0 / N0, so that every scheme in a run can be fed exactly the
same realisation per frame (common random numbers): draw the frame once, then pass its ``state`` and ``no`` to
every scheme.

Fading processes (per element of the fading keys of a state, e.g. ``"h"`` ``[B, 1]`` of
:class:`~metacomm.channels.fading.RayleighBlockFading` or ``"taps"`` ``[B, L]`` of
:class:`~metacomm.channels.multipath.MultipathBlockFading`; every link ``b`` and tap ``l`` independent):

* :class:`GaussMarkovFading` -- first-order Gauss-Markov (AR(1)),
  :math:`h_t = \rho\, h_{t-1} + \sqrt{1-\rho^2}\, w_t` with :math:`w_t` a fresh draw of the channel's own state
  (so the tap power profile :math:`\mathbb E|h_{t,\ell}|^2 = p_\ell` is kept at every frame). :math:`\rho` is
  given directly or from the Doppler frequency via Clarke's model, :math:`\rho = J_0(2\pi f_D T_f)`,
  :math:`f_D = v f_c / c` (speed :math:`v` [m/s], carrier :math:`f_c` [Hz]). Autocorrelation
  :math:`\mathbb E[h_{t+k} h_t^*] / p_\ell = \rho^{|k|}`.
* :class:`JakesFading` -- Clarke/Jakes sum of sinusoids sampled at the frame times :math:`t T_f`,
  autocorrelation exactly :math:`J_0(2\pi f_D k T_f)` at lag ``k`` frames (ensemble over links).

SNR drift (offsets in dB added to the nominal Eb/N0, one value per link and frame): :class:`SNRRandomWalk`
(reflecting random walk bounded to ``[min_db, max_db]``), :class:`SinusoidalShadowing`, :class:`DeepFades`
(Poisson-timed dips), summed by :class:`SNRDrift`.

Impairment drift: :class:`LinearRamp`, :class:`ParamRandomWalk` and :class:`ConstantParam` give per-frame
parameter values; :class:`ImpairmentDrift` rebuilds an impairment stage (IQ imbalance, phase noise, PA) from them
every frame.

Regime switches: a :class:`Timeline` of :class:`Segment` s, each with its own channel family and processes; at a
segment boundary every process restarts from a fresh stationary draw (a new device / propagation regime).
:meth:`Timeline.frames` yields one :class:`Frame` per frame.

Randomness: every draw comes from the explicit :class:`torch.Generator` passed in; the same seed on the same
device gives the same sequence bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from metacomm._validation import (
    MAX_WORK,
    ConfigError,
    check_db,
    check_finite,
    check_nonneg,
    check_positive,
    check_positive_int,
    check_probability,
)
from metacomm.channels.awgn import AWGN
from metacomm.channels.base import Channel, State
from metacomm.channels.compose import Compose
from metacomm.channels.units import ebnodb_to_no

__all__ = [
    "SPEED_OF_LIGHT",
    "DEFAULT_FADING_KEYS",
    "MAX_SINUSOIDS",
    "doppler_frequency",
    "doppler_rho",
    "FadingProcess",
    "GaussMarkovFading",
    "JakesFading",
    "SNRProcess",
    "SNRRandomWalk",
    "SinusoidalShadowing",
    "DeepFades",
    "SNRDrift",
    "ParamProcess",
    "ConstantParam",
    "LinearRamp",
    "ParamRandomWalk",
    "ImpairmentDrift",
    "Segment",
    "Frame",
    "Timeline",
    "fading_keys",
    "reflect",
]

SPEED_OF_LIGHT = 299_792_458.0
"""Speed of light in vacuum [m/s]."""

DEFAULT_FADING_KEYS = ("h", "taps")
"""State keys treated as zero-mean Gaussian fading coefficients (matched on the part after the last ``.``, so
``"1.taps"`` of a :class:`~metacomm.channels.Compose` state matches too)."""

MAX_SINUSOIDS = 4096
"""Most sinusoids of :class:`JakesFading` (each one is a full channel-state draw per link, held for the run)."""


# ----------------------------------------------------------------------------------------------------------------
# Doppler
# ----------------------------------------------------------------------------------------------------------------

def doppler_frequency(speed_mps: float, carrier_hz: float) -> float:
    r"""Maximum Doppler shift :math:`f_D = v f_c / c` in Hz for speed ``v`` [m/s] and carrier ``f_c`` [Hz]."""
    v = check_nonneg("speed_mps", speed_mps)
    fc = check_positive("carrier_hz", carrier_hz)
    return v * fc / SPEED_OF_LIGHT


def doppler_rho(doppler_hz: float, frame_duration_s: float) -> float:
    r"""Frame-to-frame correlation of Clarke's model, :math:`\rho = J_0(2\pi f_D T_f)`.

    :param doppler_hz: maximum Doppler shift :math:`f_D` [Hz].
    :param frame_duration_s: frame duration :math:`T_f` [s] (the lag between consecutive frames).

    The value is negative beyond the first zero of :math:`J_0` (:math:`f_D T_f > 0.3827`).
    """
    from scipy.special import j0

    fd = check_nonneg("doppler_hz", doppler_hz)
    tf = check_positive("frame_duration_s", frame_duration_s)
    return float(j0(2.0 * math.pi * fd * tf))


def _resolve_doppler(doppler_hz, speed_mps, carrier_hz) -> float | None:
    """The Doppler frequency from either ``doppler_hz`` or (``speed_mps``, ``carrier_hz``), or None."""
    if doppler_hz is not None:
        if speed_mps is not None or carrier_hz is not None:
            raise ConfigError("doppler_hz", "give either doppler_hz or (speed_mps and carrier_hz), not both")
        return check_nonneg("doppler_hz", doppler_hz)
    if speed_mps is None and carrier_hz is None:
        return None
    if speed_mps is None or carrier_hz is None:
        missing = "speed_mps" if speed_mps is None else "carrier_hz"
        raise ConfigError(missing, "the Doppler shift needs both speed_mps [m/s] and carrier_hz [Hz]")
    return doppler_frequency(speed_mps, carrier_hz)


def fading_keys(state: Mapping[str, torch.Tensor], keys: Sequence[str] = DEFAULT_FADING_KEYS) -> list[str]:
    """The keys of ``state`` whose last ``.``-separated component is one of ``keys``."""
    return [k for k in state if k.rsplit(".", 1)[-1] in keys]


def _split_rows(state: State, parts: int) -> list[State]:
    """Split a state of ``parts * B`` rows into ``parts`` states of ``B`` rows (contiguous chunks)."""
    out: list[State] = [{} for _ in range(parts)]
    for k, v in state.items():
        for i, c in enumerate(torch.chunk(v, parts, dim=0)):
            out[i][k] = c
    return out


def _check_batch(batch_size) -> int:
    return check_positive_int("batch_size", batch_size)


# ----------------------------------------------------------------------------------------------------------------
# Fading processes
# ----------------------------------------------------------------------------------------------------------------

class FadingProcess:
    """A seeded per-frame sequence of channel states.

    :meth:`states` returns an infinite iterator; frame ``t`` of it is the channel state of frame ``t``. Keys not
    listed in ``keys`` (e.g. a device's impairment draws) keep their value of frame 0.
    """

    keys: tuple[str, ...] = DEFAULT_FADING_KEYS

    def autocorrelation(self, lag_frames: int) -> float:  # pragma: no cover - abstract
        """Normalised autocorrelation :math:`\\mathbb E[h_{t+k}h_t^*]/\\mathbb E|h_t|^2` at lag ``k`` frames."""
        raise NotImplementedError

    def states(self, channel: Channel, batch_size: int, num_symbols: int, *,
               generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype = torch.complex64) -> Iterator[State]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _keys_of(self, state: State, channel: Channel) -> list[str]:
        ks = fading_keys(state, self.keys)
        if not ks and tuple(self.keys) != DEFAULT_FADING_KEYS:
            raise ConfigError("keys", f"none of {list(self.keys)} is a state key of {type(channel).__name__} "
                              f"(state keys: {sorted(state)})")
        return ks


class GaussMarkovFading(FadingProcess):
    r"""First-order Gauss-Markov (AR(1)) fading across frames.

    .. math::  h_t = \rho\, h_{t-1} + \sqrt{1-\rho^2}\, w_t, \qquad h_0 = w_0,

    applied elementwise to every fading key (links, taps independent), where :math:`w_t` is an independent draw
    of ``channel.sample_state`` -- for a zero-mean Gaussian state :math:`w_{t,\ell} \sim \mathcal{CN}(0,p_\ell)`,
    so :math:`h_t` is stationary with the channel's own power profile :math:`p_\ell` and
    :math:`\mathbb E[h_{t+k,\ell} h_{t,\ell}^*] = \rho^{|k|} p_\ell`. ``rho = 0`` is i.i.d. block fading from
    frame to frame, ``rho = 1`` a static channel.

    :param rho: frame-to-frame correlation in [0, 1]; or give the Doppler instead:
    :param doppler_hz: maximum Doppler shift :math:`f_D` [Hz], or ``speed_mps`` [m/s] and ``carrier_hz`` [Hz]
        (:math:`f_D = v f_c/c`), with ``frame_duration_s`` :math:`T_f` [s]: :math:`\rho = J_0(2\pi f_D T_f)`
        (Clarke). A Doppler beyond the first zero of :math:`J_0` (:math:`f_D T_f > 0.3827`, negative
        :math:`\rho`) is rejected: use :class:`JakesFading` there.
    :param preserve_mean: if True, use the mean-preserving innovation
        :math:`h_t = \rho h_{t-1} + a w_t + b w'_t` with two independent draws and
        :math:`a, b = \tfrac12[(1-\rho) \pm \sqrt{(1-\rho)(1+3\rho)}]` (so :math:`a+b = 1-\rho`,
        :math:`a^2+b^2 = 1-\rho^2`). For zero-mean Gaussian states the law is the same as the default; for a state
        with a deterministic mean (Rician with a fixed LoS phase) it keeps the mean *and* the variance, which the
        plain recursion would not.
    :param keys: which state keys evolve (default ``("h", "taps")``); other keys are held.
    """

    def __init__(self, rho: float | None = None, *, doppler_hz: float | None = None,
                 speed_mps: float | None = None, carrier_hz: float | None = None,
                 frame_duration_s: float | None = None, preserve_mean: bool = False,
                 keys: Sequence[str] = DEFAULT_FADING_KEYS):
        fd = _resolve_doppler(doppler_hz, speed_mps, carrier_hz)
        if (rho is None) == (fd is None):
            raise ConfigError("rho", "give exactly one of rho (in [0, 1]) or a Doppler shift (doppler_hz, or "
                              "speed_mps with carrier_hz) together with frame_duration_s")
        if rho is not None:
            self.rho = check_probability("rho", rho)
            self.doppler_hz = None
        else:
            if frame_duration_s is None:
                raise ConfigError("frame_duration_s", "a Doppler shift needs the frame duration [s] (> 0)")
            r = doppler_rho(fd, frame_duration_s)
            if r < 0:
                raise ConfigError("doppler_hz", f"f_D * T_frame = {fd * frame_duration_s:.4g} is beyond the first "
                                  f"zero of J0 (0.3827): rho = J0(2 pi f_D T) = {r:.4f} < 0; use the jakes "
                                  "process or a shorter frame")
            self.rho = r
            self.doppler_hz = fd
        self.frame_duration_s = None if frame_duration_s is None else check_positive("frame_duration_s",
                                                                                     frame_duration_s)
        if not isinstance(preserve_mean, bool):
            raise ConfigError("preserve_mean", f"expected true or false, got {preserve_mean!r}")
        self.preserve_mean = preserve_mean
        self.keys = tuple(keys)

    def __repr__(self) -> str:
        return f"GaussMarkovFading(rho={self.rho:.6g}, preserve_mean={self.preserve_mean})"

    def autocorrelation(self, lag_frames: int) -> float:
        return self.rho ** abs(int(lag_frames))

    def states(self, channel, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        batch_size = _check_batch(batch_size)
        rho = self.rho

        def draw(parts: int = 1) -> list[State]:
            s = channel.sample_state(batch_size * parts, num_symbols, generator=generator, device=device,
                                     dtype=dtype)
            return _split_rows(s, parts)

        state = draw()[0]
        keys = self._keys_of(state, channel)
        if self.preserve_mean:
            root = math.sqrt((1.0 - rho) * (1.0 + 3.0 * rho))
            a, b = 0.5 * ((1.0 - rho) + root), 0.5 * ((1.0 - rho) - root)
        else:
            a, b = math.sqrt(max(0.0, 1.0 - rho * rho)), 0.0
        while True:
            yield dict(state)
            if not keys or rho == 1.0:
                continue
            if self.preserve_mean:
                w, w2 = draw(2)
                state = {**state, **{k: rho * state[k] + a * w[k] + b * w2[k] for k in keys}}
            else:
                w = draw()[0]
                state = {**state, **{k: rho * state[k] + a * w[k] for k in keys}}


class JakesFading(FadingProcess):
    r"""Clarke/Jakes fading by a sum of sinusoids, sampled at the frame times :math:`t_k = t_0 + k T_f`.

    Per link and tap (independently),

    .. math::  h(t) = \frac{1}{\sqrt{M}} \sum_{m=1}^{M} g_m\, e^{\,j 2\pi f_D t \cos\alpha_m}, \qquad
               \alpha_m = \frac{2\pi m + \theta_m}{M}, \quad \theta_m \sim U[-\pi, \pi),

    the angles of arrival of Xiao, Zheng & Beaulieu (IEEE Trans. Wireless Commun. 2006, eqs. (6)-(7) -- the model
    behind :class:`sionna.phy.channel.tr38901.TDL`), each angle uniform in its own :math:`2\pi/M` sector. The path
    gains :math:`g_m` are independent draws of the channel's own state (zero-mean Gaussian with the tap power
    :math:`p_\ell`) instead of unit-modulus random phases: then :math:`h(t)` is exactly
    :math:`\mathcal{CN}(0, p_\ell)` at every :math:`t` for any :math:`M`, and the ensemble autocorrelation is
    exactly Clarke's,

    .. math::  \mathbb E[h(t+\tau) h^*(t)] = \frac{p_\ell}{M}\sum_m \mathbb E\, e^{j 2\pi f_D\tau\cos\alpha_m}
               = p_\ell\, J_0(2\pi f_D \tau),

    because the sectors tile :math:`[0, 2\pi)`. The gains and angles are drawn once per :meth:`states` call
    (per link); only time advances from frame to frame, so there is no innovation noise.

    :param doppler_hz: maximum Doppler :math:`f_D` [Hz]; or ``speed_mps`` [m/s] and ``carrier_hz`` [Hz].
    :param frame_duration_s: :math:`T_f` [s] (> 0).
    :param num_sinusoids: :math:`M` (1 .. :data:`MAX_SINUSOIDS`; default 16).
    :param start_time_s: :math:`t_0` [s] of frame 0.
    :param keys: state keys that fade (default ``("h", "taps")``); they must hold zero-mean Gaussian gains.
    """

    def __init__(self, doppler_hz: float | None = None, *, speed_mps: float | None = None,
                 carrier_hz: float | None = None, frame_duration_s: float | None = None,
                 num_sinusoids: int = 16, start_time_s: float = 0.0,
                 keys: Sequence[str] = DEFAULT_FADING_KEYS):
        fd = _resolve_doppler(doppler_hz, speed_mps, carrier_hz)
        if fd is None:
            raise ConfigError("doppler_hz", "the Jakes process needs doppler_hz [Hz] (or speed_mps [m/s] and "
                              "carrier_hz [Hz])")
        if frame_duration_s is None:
            raise ConfigError("frame_duration_s", "the Jakes process needs the frame duration [s] (> 0)")
        self.doppler_hz = fd
        self.frame_duration_s = check_positive("frame_duration_s", frame_duration_s)
        self.num_sinusoids = check_positive_int("num_sinusoids", num_sinusoids, maximum=MAX_SINUSOIDS)
        self.start_time_s = check_finite("start_time_s", start_time_s)
        self.keys = tuple(keys)

    def __repr__(self) -> str:
        return (f"JakesFading(doppler_hz={self.doppler_hz:.6g}, frame_duration_s={self.frame_duration_s:.6g}, "
                f"num_sinusoids={self.num_sinusoids})")

    @property
    def rho(self) -> float:
        """Lag-1 correlation :math:`J_0(2\\pi f_D T_f)`."""
        return doppler_rho(self.doppler_hz, self.frame_duration_s)

    def autocorrelation(self, lag_frames: int) -> float:
        return doppler_rho(self.doppler_hz * abs(int(lag_frames)), self.frame_duration_s) if lag_frames else 1.0

    def states(self, channel, batch_size, num_symbols, *, generator=None, device=None, dtype=torch.complex64):
        batch_size = _check_batch(batch_size)
        m = self.num_sinusoids
        base = channel.sample_state(batch_size, num_symbols, generator=generator, device=device, dtype=dtype)
        keys = self._keys_of(base, channel)
        gains: dict[str, torch.Tensor] = {}
        omega_cos: dict[str, torch.Tensor] = {}
        for k in keys:
            # M independent gain draws per element: [M, B, ...]
            g = channel.sample_state(batch_size * m, num_symbols, generator=generator, device=device,
                                     dtype=dtype)
            if k not in g:
                raise ConfigError("keys", f"state key {k!r} missing from a fresh draw of {type(channel).__name__}")
            gk = g[k].reshape(m, batch_size, *g[k].shape[1:])
            f64 = torch.float64
            draw_dev = generator.device if generator is not None else gk.device
            theta = (torch.rand(gk.shape, generator=generator, dtype=f64, device=draw_dev) * 2.0 - 1.0) * math.pi
            idx = torch.arange(1, m + 1, dtype=f64, device=draw_dev).reshape(m, *([1] * (gk.dim() - 1)))
            alpha = (2.0 * math.pi * idx + theta) / m
            gains[k] = gk
            omega_cos[k] = (2.0 * math.pi * self.doppler_hz * torch.cos(alpha)).to(gk.device)
        norm = 1.0 / math.sqrt(m)
        frame = 0
        while True:
            t = self.start_time_s + frame * self.frame_duration_s
            state = dict(base)
            for k in keys:
                phase = omega_cos[k] * t
                rot = torch.polar(torch.ones_like(phase), phase).to(gains[k].dtype)
                state[k] = norm * (gains[k] * rot).sum(dim=0)
            yield state
            frame += 1


# ----------------------------------------------------------------------------------------------------------------
# SNR drift
# ----------------------------------------------------------------------------------------------------------------

def reflect(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    r"""Fold ``x`` into ``[low, high]`` by reflection at the bounds (any number of reflections).

    With :math:`W = \text{high}-\text{low}`: :math:`y = \text{low} + W - |((x-\text{low}) \bmod 2W) - W|`.
    """
    w = high - low
    if w == 0:
        return torch.full_like(x, low)
    return low + w - torch.abs(torch.remainder(x - low, 2.0 * w) - w)


class SNRProcess:
    """Per-frame SNR offsets in dB, one per link: :meth:`offsets_db` yields float32 ``[batch]`` tensors."""

    def offsets_db(self, batch_size: int, *, generator: torch.Generator | None = None,
                   device=None) -> Iterator[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def _draw_device(generator, device):
    return generator.device if generator is not None else torch.device(device or "cpu")


def _out_device(generator, device):
    return torch.device(device) if device is not None else _draw_device(generator, None)


class SNRRandomWalk(SNRProcess):
    r"""Gaussian random walk in dB, reflected into ``[min_db, max_db]``:

    .. math::  s_0 = s_{\text{start}}, \qquad s_t = \mathcal R\big(s_{t-1} + \sigma z_t\big), \quad
               z_t \sim \mathcal N(0,1),

    with :math:`\mathcal R` the reflection at the bounds (:func:`reflect`). Independent per link.

    :param step_db: standard deviation :math:`\sigma` of one frame's step [dB] (>= 0).
    :param min_db, max_db: bounds of the offset [dB] (``min_db <= max_db``).
    :param start_db: offset of frame 0 [dB], in the bounds (default: their midpoint).
    """

    def __init__(self, step_db: float, min_db: float, max_db: float, start_db: float | None = None):
        self.step_db = check_db("step_db", step_db, minimum=0.0)
        self.min_db = check_db("min_db", min_db)
        self.max_db = check_db("max_db", max_db)
        if self.max_db < self.min_db:
            raise ConfigError("max_db", f"must be >= min_db = {self.min_db}, got {self.max_db}")
        start = 0.5 * (self.min_db + self.max_db) if start_db is None else check_db("start_db", start_db)
        if not self.min_db <= start <= self.max_db:
            raise ConfigError("start_db", f"must lie in [min_db, max_db] = [{self.min_db}, {self.max_db}], "
                              f"got {start}")
        self.start_db = start

    def __repr__(self) -> str:
        return (f"SNRRandomWalk(step_db={self.step_db}, min_db={self.min_db}, max_db={self.max_db}, "
                f"start_db={self.start_db})")

    def offsets_db(self, batch_size, *, generator=None, device=None):
        b = _check_batch(batch_size)
        dd, od = _draw_device(generator, device), _out_device(generator, device)
        s = torch.full((b,), self.start_db, dtype=torch.float64, device=dd)
        while True:
            yield s.to(device=od, dtype=torch.float32)
            z = torch.randn((b,), generator=generator, dtype=torch.float64, device=dd)
            s = reflect(s + self.step_db * z, self.min_db, self.max_db)


class SinusoidalShadowing(SNRProcess):
    r"""Periodic shadowing :math:`s_t = A \sin(2\pi t / P + \varphi)` [dB].

    :param amplitude_db: :math:`A` [dB] (>= 0).
    :param period_frames: :math:`P` [frames] (> 0).
    :param phase_rad: :math:`\varphi` [rad]; ``None`` draws it uniformly in :math:`[0, 2\pi)` per link.
    """

    def __init__(self, amplitude_db: float, period_frames: float, phase_rad: float | None = None):
        self.amplitude_db = check_db("amplitude_db", amplitude_db, minimum=0.0)
        self.period_frames = check_positive("period_frames", period_frames)
        self.phase_rad = None if phase_rad is None else check_finite("phase_rad", phase_rad)

    def __repr__(self) -> str:
        return (f"SinusoidalShadowing(amplitude_db={self.amplitude_db}, period_frames={self.period_frames}, "
                f"phase_rad={self.phase_rad})")

    def offsets_db(self, batch_size, *, generator=None, device=None):
        b = _check_batch(batch_size)
        dd, od = _draw_device(generator, device), _out_device(generator, device)
        if self.phase_rad is None:
            phi = 2.0 * math.pi * torch.rand((b,), generator=generator, dtype=torch.float64, device=dd)
        else:
            phi = torch.full((b,), self.phase_rad, dtype=torch.float64, device=dd)
        t = 0
        while True:
            yield (self.amplitude_db * torch.sin(2.0 * math.pi * t / self.period_frames + phi)).to(
                device=od, dtype=torch.float32)
            t += 1


class DeepFades(SNRProcess):
    r"""Deep-fade events: Poisson-timed rectangular dips of ``depth_db`` lasting ``duration_frames`` frames.

    Per link, the number of events starting in a frame is Poisson(:math:`\lambda`) (a Poisson process of rate
    :math:`\lambda` events per frame, mean gap :math:`1/\lambda` frames); a frame is inside a fade if an event
    started in it or in one of the ``duration_frames - 1`` frames before, and its offset is then
    ``-depth_db`` (overlapping events do not add up). Stationary fraction of faded frames:
    :math:`1 - e^{-\lambda D}`.

    :param rate_per_frame: :math:`\lambda` (>= 0).
    :param depth_db: depth of a dip [dB] (>= 0).
    :param duration_frames: :math:`D` (positive integer).
    """

    def __init__(self, rate_per_frame: float, depth_db: float, duration_frames: int):
        self.rate_per_frame = check_nonneg("rate_per_frame", rate_per_frame)
        self.depth_db = check_db("depth_db", depth_db, minimum=0.0)
        self.duration_frames = check_positive_int("duration_frames", duration_frames, maximum=MAX_WORK)

    def __repr__(self) -> str:
        return (f"DeepFades(rate_per_frame={self.rate_per_frame}, depth_db={self.depth_db}, "
                f"duration_frames={self.duration_frames})")

    def offsets_db(self, batch_size, *, generator=None, device=None):
        b = _check_batch(batch_size)
        dd, od = _draw_device(generator, device), _out_device(generator, device)
        remaining = torch.zeros((b,), dtype=torch.int64, device=dd)
        lam = torch.full((b,), self.rate_per_frame, dtype=torch.float64, device=dd)
        while True:
            starts = torch.poisson(lam, generator=generator) > 0
            remaining = torch.where(starts, torch.full_like(remaining, self.duration_frames), remaining)
            active = remaining > 0
            yield torch.where(active, -self.depth_db, 0.0).to(device=od, dtype=torch.float32)
            remaining = (remaining - 1).clamp_min(0)


class SNRDrift(SNRProcess):
    """Sum of SNR processes (offsets in dB add), e.g. a bounded walk plus deep fades."""

    def __init__(self, *components: SNRProcess):
        for c in components:
            if not isinstance(c, SNRProcess):
                raise ConfigError("components", f"expected SNRProcess instances, got {type(c).__name__}")
        self.components = tuple(components)

    def __repr__(self) -> str:
        return f"SNRDrift{self.components!r}"

    def offsets_db(self, batch_size, *, generator=None, device=None):
        b = _check_batch(batch_size)
        its = [c.offsets_db(b, generator=generator, device=device) for c in self.components]
        od = _out_device(generator, device)
        while True:
            total = torch.zeros((b,), dtype=torch.float32, device=od)
            for it in its:
                total = total + next(it)
            yield total


# ----------------------------------------------------------------------------------------------------------------
# Impairment drift
# ----------------------------------------------------------------------------------------------------------------

class ParamProcess:
    """A scalar parameter over frames: :meth:`values` yields one Python float per frame."""

    def values(self, generator: torch.Generator | None = None) -> Iterator[float]:  # pragma: no cover
        raise NotImplementedError


class ConstantParam(ParamProcess):
    """The same value every frame."""

    def __init__(self, value: float):
        self.value = check_finite("value", value)

    def __repr__(self) -> str:
        return f"ConstantParam({self.value})"

    def values(self, generator=None):
        while True:
            yield self.value


class LinearRamp(ParamProcess):
    r"""Linear ramp :math:`v_t = v_0 + (v_1 - v_0)\, \min(t / (F-1), 1)`: ``start`` at frame 0, ``stop`` at
    frame ``F - 1 = frames - 1`` and held afterwards (``frames = 1``: ``stop`` from frame 0)."""

    def __init__(self, start: float, stop: float, frames: int):
        self.start = check_finite("start", start)
        self.stop = check_finite("stop", stop)
        self.frames = check_positive_int("frames", frames, maximum=MAX_WORK)

    def __repr__(self) -> str:
        return f"LinearRamp(start={self.start}, stop={self.stop}, frames={self.frames})"

    def values(self, generator=None):
        t = 0
        while True:
            frac = 1.0 if self.frames == 1 else min(t / (self.frames - 1), 1.0)
            yield self.start + (self.stop - self.start) * frac
            t += 1


class ParamRandomWalk(ParamProcess):
    """Gaussian random walk with per-frame step std ``step``, reflected into ``[low, high]``; starts at
    ``start``. Shared by all links of a batch (one device drifting)."""

    def __init__(self, start: float, step: float, low: float, high: float):
        self.start = check_finite("start", start)
        self.step = check_nonneg("step", step)
        self.low = check_finite("low", low)
        self.high = check_finite("high", high)
        if self.high < self.low:
            raise ConfigError("high", f"must be >= low = {self.low}, got {self.high}")
        if not self.low <= self.start <= self.high:
            raise ConfigError("start", f"must lie in [low, high] = [{self.low}, {self.high}], got {self.start}")

    def __repr__(self) -> str:
        return f"ParamRandomWalk(start={self.start}, step={self.step}, low={self.low}, high={self.high})"

    def values(self, generator=None):
        dd = _draw_device(generator, None)
        v = torch.tensor(self.start, dtype=torch.float64, device=dd)
        while True:
            yield float(v)
            z = torch.randn((), generator=generator, dtype=torch.float64, device=dd)
            v = reflect(v + self.step * z, self.low, self.high)


POSITIONS = ("tx", "rx")
STATE_POLICIES = ("fresh", "hold")


class ImpairmentDrift:
    """An impairment stage whose parameters change from frame to frame.

    :param factory: builds the impairment channel from keyword parameters, e.g.
        ``lambda **kw: make_channel("iq-imbalance", **kw)``.
    :param params: parameter name -> :class:`ParamProcess` or a constant number.
    :param position: ``"tx"`` (before the fading channel: PA, transmitter IQ imbalance) or ``"rx"`` (after it:
        receiver phase noise).
    :param state: the impairment's own random state (e.g. the per-device draw of ``random-iq-imbalance``, a
        phase-noise path): ``"fresh"`` draws it every frame from that frame's channel (so drifting parameters
        that shape the draw apply); ``"hold"`` draws it once at the start of the segment and keeps it (one device
        for the whole segment; a regime switch draws a new one).
    :param name: label for plots.

    :meth:`channels` yields ``(channel, values)`` per frame.
    """

    def __init__(self, factory: Callable[..., Channel], params: Mapping[str, ParamProcess | float], *,
                 position: str = "tx", state: str = "fresh", name: str = "impairment"):
        if not callable(factory):
            raise ConfigError("factory", "expected a callable returning a Channel")
        if position not in POSITIONS:
            raise ConfigError("position", f"unknown value {position!r}; allowed: {', '.join(POSITIONS)}")
        if state not in STATE_POLICIES:
            raise ConfigError("state", f"unknown value {state!r}; allowed: {', '.join(STATE_POLICIES)}")
        self.state = state
        self.factory = factory
        self.params = {k: (v if isinstance(v, ParamProcess) else ConstantParam(v)) for k, v in params.items()}
        self.position = position
        self.name = name

    def __repr__(self) -> str:
        return f"ImpairmentDrift({self.name!r}, params={self.params!r}, position={self.position!r})"

    @property
    def drifting(self) -> list[str]:
        """Names of the parameters that are not constant."""
        return [k for k, v in self.params.items() if not isinstance(v, ConstantParam)]

    def channels(self, generator: torch.Generator | None = None) -> Iterator[tuple[Channel, dict[str, float]]]:
        its = {k: p.values(generator) for k, p in self.params.items()}
        ch = None
        while True:
            vals = {k: next(it) for k, it in its.items()}
            if ch is None or self.drifting:  # constant parameters: build the stage once
                ch = self.factory(**vals)
                if not isinstance(ch, Channel):
                    raise ConfigError("factory", f"must return a metacomm Channel, got {type(ch).__name__}")
            yield ch, vals


# ----------------------------------------------------------------------------------------------------------------
# Timeline / regime switches
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Segment:
    """One regime of a :class:`Timeline`.

    :param frames: duration in frames (positive integer).
    :param channel: the fading channel family (a metacomm :class:`Channel`; AWGN is appended if it adds no noise).
    :param fading: how its state evolves; ``None`` = a fresh independent draw every frame (block fading,
        equivalent to ``GaussMarkovFading(rho=0)``).
    :param snr: SNR offsets [dB] added to the nominal Eb/N0, or ``None`` (no SNR drift).
    :param impairment: an :class:`ImpairmentDrift`, or ``None``.
    :param ebno_db: the nominal Eb/N0 [dB] of this segment (``None``: the timeline's).
    :param label: a name for plots and reports (e.g. ``"TDL-A"``).
    :param attack: an attacker active during the segment
        (:class:`~metacomm.channels.attacks.SegmentAttack`: kind and PSR), or ``None``.
    """

    frames: int
    channel: Channel
    fading: FadingProcess | None = None
    snr: SNRProcess | None = None
    impairment: ImpairmentDrift | None = None
    ebno_db: float | None = None
    label: str = ""
    attack: object | None = None

    def __post_init__(self):
        self.frames = check_positive_int("frames", self.frames, maximum=MAX_WORK)
        if not isinstance(self.channel, Channel):
            raise ConfigError("channel", f"expected a metacomm Channel, got {type(self.channel).__name__}")
        if self.fading is not None and not isinstance(self.fading, FadingProcess):
            raise ConfigError("fading", f"expected a FadingProcess, got {type(self.fading).__name__}")
        if self.snr is not None and not isinstance(self.snr, SNRProcess):
            raise ConfigError("snr", f"expected an SNRProcess, got {type(self.snr).__name__}")
        if self.impairment is not None and not isinstance(self.impairment, ImpairmentDrift):
            raise ConfigError("impairment", f"expected an ImpairmentDrift, got {type(self.impairment).__name__}")
        if self.ebno_db is not None:
            self.ebno_db = check_db("ebno_db", self.ebno_db)
        if self.attack is not None:
            from metacomm.channels.attacks import SegmentAttack
            if not isinstance(self.attack, SegmentAttack):
                raise ConfigError("attack", f"expected a SegmentAttack, got {type(self.attack).__name__}")


@dataclass
class Frame:
    """One frame of a drift run (identical for every scheme that consumes it).

    :ivar index: global frame index (0-based).
    :ivar segment: index of the timeline segment it belongs to.
    :ivar channel: the channel to apply, ``y = channel(x, no, state=state, generator=g)``.
    :ivar state: the channel state (batch of ``B`` links).
    :ivar ebno_db: Eb/N0 [dB] per link, float32 ``[B]``.
    :ivar no: N0 per complex sample for Es = 1, float32 ``[B]`` (from ``ebno_db`` and the rate).
    :ivar drift_name: name of the plotted drift quantity; :ivar drift_value: its value this frame.
    :ivar params: every tracked quantity by name: ``ebno_db`` (batch mean), ``gain_db`` (channel energy
        :math:`10\\log_{10}\\sum|h|^2` of link 0 over the fading keys, NaN without any), and each impairment
        parameter.
    """

    index: int
    segment: int
    channel: Channel
    state: State
    ebno_db: torch.Tensor
    no: torch.Tensor
    drift_name: str
    drift_value: float
    params: dict[str, float] = field(default_factory=dict)
    label: str = ""
    attack: object | None = None  # the segment's SegmentAttack (None: no attacker)


class Timeline:
    """Segments played one after another (regime switches at the boundaries).

    :param segments: the :class:`Segment` s, in order.
    :param ebno_db: nominal Eb/N0 [dB] (segments may override it).
    :param bits_per_channel_use: information bits per complex channel use (``k / n_c`` of the codec) for the
        Eb/N0 -> N0 conversion, :math:`N_0 = 1/(E_b/N_0 \\cdot k/n_c)`.
    :param plot: which quantity of :attr:`Frame.params` is the "drift value" (default: ``ebno_db`` if some segment
        has SNR drift, else the first drifting impairment parameter, else ``gain_db``).
    """

    def __init__(self, segments: Sequence[Segment], *, ebno_db: float, bits_per_channel_use: float,
                 plot: str | None = None):
        segments = list(segments)
        if not segments:
            raise ConfigError("segments", "a timeline needs at least one segment")
        for i, s in enumerate(segments):
            if not isinstance(s, Segment):
                raise ConfigError(f"segments[{i}]", f"expected a Segment, got {type(s).__name__}")
        self.segments = segments
        self.ebno_db = check_db("ebno_db", ebno_db)
        self.bits_per_channel_use = check_positive("bits_per_channel_use", bits_per_channel_use)
        names = {"ebno_db", "gain_db", "segment"}
        for s in segments:
            if s.impairment is not None:
                names.update(s.impairment.params)
        if plot is None:
            if any(s.snr is not None for s in segments):
                plot = "ebno_db"
            else:
                drifting = [p for s in segments if s.impairment is not None for p in s.impairment.drifting]
                plot = drifting[0] if drifting else ("segment" if len(segments) > 1 else "gain_db")
        if plot not in names:
            raise ConfigError("plot", f"unknown value {plot!r}; allowed: {', '.join(sorted(names))}")
        self.plot = plot

    @property
    def num_frames(self) -> int:
        """Total duration of the segments [frames]."""
        return sum(s.frames for s in self.segments)

    @property
    def boundaries(self) -> list[int]:
        """First frame index of every segment."""
        out, t = [], 0
        for s in self.segments:
            out.append(t)
            t += s.frames
        return out

    def frames(self, num_frames: int | None = None, *, batch_size: int, num_symbols: int,
               generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype = torch.complex64) -> Iterator[Frame]:
        """Yield ``num_frames`` :class:`Frame` s (default :attr:`num_frames`) for ``batch_size`` independent links
        with blocks of ``num_symbols`` complex channel uses. Beyond the last boundary the last segment
        continues. All draws come from ``generator`` in a fixed order, so the same seed repeats the run."""
        total = self.num_frames if num_frames is None else check_positive_int("num_frames", num_frames,
                                                                              maximum=MAX_WORK)
        b = _check_batch(batch_size)
        n = check_positive_int("num_symbols", num_symbols)
        out_dev = _out_device(generator, device)
        t = 0
        for si, seg in enumerate(self.segments):
            last = si == len(self.segments) - 1
            length = (total - t) if last else min(seg.frames, total - t)
            if length <= 0:
                break
            fading = seg.fading if seg.fading is not None else GaussMarkovFading(rho=0.0)
            states = fading.states(seg.channel, b, n, generator=generator, device=device, dtype=dtype)
            snr = seg.snr.offsets_db(b, generator=generator, device=out_dev) if seg.snr is not None else None
            imp = seg.impairment.channels(generator) if seg.impairment is not None else None
            base_ebno = self.ebno_db if seg.ebno_db is None else seg.ebno_db
            static_channel = self._compose(seg, None)
            imp_state = None
            for _ in range(length):
                state = next(states)
                gain = _gain_db(state, fading.keys)
                params: dict[str, float] = {"segment": float(si), "gain_db": gain}
                if imp is not None:
                    imp_ch, vals = next(imp)
                    params.update(vals)
                    channel = self._compose(seg, imp_ch)
                    if imp_state is None or seg.impairment.state == "fresh":
                        n_imp = n if seg.impairment.position == "tx" else seg.channel.output_length(n)
                        imp_state = imp_ch.sample_state(b, n_imp, generator=generator, device=device,
                                                        dtype=dtype)
                    ii, fi = (0, 1) if seg.impairment.position == "tx" else (1, 0)
                    full = {f"{fi}.{k}": v for k, v in state.items()}
                    full.update({f"{ii}.{k}": v for k, v in imp_state.items()})
                    state = full
                else:
                    channel = static_channel
                    if channel is not seg.channel:  # AWGN appended: the segment channel is stage 0
                        state = {f"0.{k}": v for k, v in state.items()}
                ebno = torch.full((b,), base_ebno, dtype=torch.float32, device=out_dev)
                if snr is not None:
                    ebno = ebno + next(snr)
                params["ebno_db"] = float(ebno.mean())
                no = ebnodb_to_no(ebno, self.bits_per_channel_use).to(torch.float32)
                yield Frame(index=t, segment=si, channel=channel, state=state, ebno_db=ebno, no=no,
                            drift_name=self.plot, drift_value=params.get(self.plot, float("nan")),
                            params=params, label=seg.label, attack=seg.attack)
                t += 1

    @staticmethod
    def _compose(seg: Segment, imp_ch: Channel | None) -> Channel:
        """The frame's channel: [impairment (tx)] -> fading [-> impairment (rx)] [-> AWGN]."""
        stages: list[Channel] = [seg.channel]
        if imp_ch is not None:
            stages = [imp_ch, seg.channel] if seg.impairment.position == "tx" else [seg.channel, imp_ch]
        if not any(s.adds_noise for s in stages):
            stages.append(AWGN())
        return stages[0] if len(stages) == 1 else Compose(*stages)


def _gain_db(state: State, keys: Sequence[str]) -> float:
    ks = fading_keys(state, keys)
    if not ks:
        return float("nan")
    e = sum(float(torch.sum(torch.abs(state[k][0]) ** 2)) for k in ks)
    return 10.0 * math.log10(e) if e > 0 else float("-inf")
