"""Channels by name, for the CLI and scenario files.

``make_channel(name, **kwargs)`` builds a complete noisy channel (``y`` includes ``CN(0, N0)`` noise):

* ``awgn``, ``rayleigh``, ``rician``, ``multipath``, ``tdl-a`` ... ``tdl-e`` -- the channel models themselves;
* the impairment names (``iq-imbalance``, ``random-iq-imbalance``, ``phase-offset``, ``phase-noise``,
  ``rapp``, ``saleh``) -- ``Compose(<impairment>, AWGN())``; pass ``with_noise=False`` for the bare,
  noiseless stage (to compose it yourself).

Keyword arguments are the constructor arguments of the model (see :func:`channel_help`); an unknown name or
keyword raises :class:`~metacomm.ConfigError` listing what is allowed, and each value is validated by the
model's constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from metacomm._validation import ConfigError
from metacomm.channels.awgn import AWGN
from metacomm.channels.base import Channel
from metacomm.channels.compose import Compose
from metacomm.channels.fading import RayleighBlockFading, RicianBlockFading
from metacomm.channels.impairments import (
    IQImbalance,
    PhaseOffset,
    RandomIQImbalance,
    RappPA,
    SalehPA,
    WienerPhaseNoise,
)
from metacomm.channels.multipath import MultipathBlockFading
from metacomm.channels.tdl import TDL

__all__ = ["CHANNEL_NAMES", "FADING_CHANNEL_NAMES", "IMPAIRMENT_NAMES", "make_channel", "channel_help"]


@dataclass(frozen=True)
class _Entry:
    cls: type
    summary: str
    params: dict[str, str]
    fixed: dict = field(default_factory=dict)
    impairment: bool = False

    def allowed(self) -> list[str]:
        sig = inspect.signature(self.cls.__init__)
        names = [p for p in sig.parameters if p != "self" and p not in self.fixed]
        return names + (["with_noise"] if self.impairment else [])


_TDL_PARAMS = {
    "delay_spread": "RMS delay spread [s], default 100e-9 (TR 38.901: 10 ns very short ... 1000 ns very long)",
    "carrier_frequency": "carrier frequency [Hz], default 3.5e9 (sets the Doppler shift)",
    "bandwidth": "sampling rate = symbol rate [Hz], default 10e6 (one discrete tap per 1/bandwidth s)",
    "speed": "UE speed [m/s], default 0 (block fading; > 0: taps vary within the block)",
    "min_speed": "min UE speed [m/s] (speed drawn uniformly per block in [min_speed, max_speed])",
    "max_speed": "max UE speed [m/s]",
    "num_sinusoids": "sum-of-sinusoids terms, default 20",
    "l_min": "smallest lag [samples], default -6",
    "l_max": "largest lag [samples], default ceil(bandwidth * max delay) + 6",
    "mode": "'full' (n + L - 1 outputs, default) or 'truncate' (n outputs)",
    "normalize": "'average' (E sum|h_l|^2 = 1, default), 'block' (each block unit energy) or 'none'",
    "spec_version": "TR 38.901 tables, '19.2' (default) or '16.1'",
}

_TDL_SUMMARY = {
    "a": "3GPP TR 38.901 TDL-A (NLoS, 23 paths) via Sionna",
    "b": "3GPP TR 38.901 TDL-B (NLoS, 23 paths) via Sionna",
    "c": "3GPP TR 38.901 TDL-C (NLoS, 24 paths) via Sionna",
    "d": "3GPP TR 38.901 TDL-D (LoS, Rician first path K = 13.3 dB) via Sionna",
    "e": "3GPP TR 38.901 TDL-E (LoS, Rician first path K = 22 dB) via Sionna",
}

_REGISTRY: dict[str, _Entry] = {
    "awgn": _Entry(AWGN, "additive white Gaussian noise, y = x + n, n ~ CN(0, N0)", {}),
    "rayleigh": _Entry(RayleighBlockFading, "flat Rayleigh block fading, y = h x + n, h ~ CN(0, 1) per block", {}),
    "rician": _Entry(RicianBlockFading, "flat Rician block fading (E|h|^2 = 1)", {
        "k_factor_db": "K-factor [dB] (LoS / scattered power), default 10; or",
        "k_factor": "K-factor, linear (>= 0)",
        "los_phase": "fixed LoS phase [rad], default 0",
        "random_los_phase": "True: LoS phase uniform per block, default False",
    }),
    "multipath": _Entry(MultipathBlockFading, "L-tap Rayleigh multipath (ISI) block fading, causal convolution", {
        "num_taps": "number of taps L (1 .. 4096), default 3",
        "decay_db_per_tap": "exponential PDP decay [dB/tap], default 0 (uniform, taps CN(0, 1/L))",
        "pdp": "explicit tap powers (linear, normalised to sum 1) instead of the exponential PDP",
        "mode": "'truncate' (n outputs, default) or 'full' (n + L - 1 outputs)",
    }),
    **{f"tdl-{m}": _Entry(TDL, s, _TDL_PARAMS, fixed={"model": m.upper()}) for m, s in _TDL_SUMMARY.items()},
    "iq-imbalance": _Entry(IQImbalance, "fixed IQ imbalance, then AWGN", {
        "epsilon": "amplitude imbalance (linear, |eps| < 1), default 0",
        "delta_deg": "phase imbalance [deg], default 0",
        "renormalize": "divide by sqrt(1 + eps^2) for unit output energy, default True",
    }, impairment=True),
    "random-iq-imbalance": _Entry(RandomIQImbalance, "IQ imbalance drawn per block "
                                  "(eps = 0.15 Beta(5,2), delta = 15 deg Beta(5,2)), then AWGN", {
        "epsilon_max": "amplitude imbalance scale (linear), default 0.15",
        "delta_max_deg": "phase imbalance scale [deg], default 15",
        "beta_a": "Beta shape a, default 5", "beta_b": "Beta shape b, default 2",
        "renormalize": "unit output energy, default True",
    }, impairment=True),
    "phase-offset": _Entry(PhaseOffset, "carrier phase offset y = x e^{j phi}, then AWGN", {
        "phase_deg": "fixed offset [deg], default 0",
        "random": "True: phi ~ U[-pi, pi) per block, default False",
    }, impairment=True),
    "phase-noise": _Entry(WienerPhaseNoise, "Wiener phase noise phi_t = phi_{t-1} + N(0, sigma^2), then AWGN", {
        "variance": "sigma^2 [rad^2 per symbol]; or",
        "linewidth": "3-dB linewidth [Hz] together with",
        "symbol_rate": "symbol rate [symbols/s] (sigma^2 = 2 pi linewidth / symbol_rate)",
        "initial_phase": "'zero' (default) or 'uniform'",
    }, impairment=True),
    "rapp": _Entry(RappPA, "Rapp PA (AM/AM), unit small-signal gain, then AWGN", {
        "smoothness": "p > 0, default 2",
        "saturation": "output saturation amplitude A_sat (unit RMS input); or",
        "input_backoff_db": "input back-off [dB] from saturation (A_sat = 10^(IBO/20)); default A_sat = 1",
    }, impairment=True),
    "saleh": _Entry(SalehPA, "Saleh TWT PA (AM/AM + AM/PM), then AWGN", {
        "alpha_a": "default 2.1587", "beta_a": "default 1.1517",
        "alpha_phi": "[rad], default 4.0033", "beta_phi": "default 9.1040",
        "input_backoff_db": "input back-off [dB] below input saturation 1/sqrt(beta_a); default: none",
        "normalize_gain": "unit small-signal gain, default True",
    }, impairment=True),
}

FADING_CHANNEL_NAMES: tuple[str, ...] = tuple(k for k, e in _REGISTRY.items() if not e.impairment)
IMPAIRMENT_NAMES: tuple[str, ...] = tuple(k for k, e in _REGISTRY.items() if e.impairment)
CHANNEL_NAMES: tuple[str, ...] = FADING_CHANNEL_NAMES + IMPAIRMENT_NAMES


def _entry(name: str) -> _Entry:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ConfigError("channel", f"unknown channel {name!r}; allowed: {', '.join(CHANNEL_NAMES)}")
    return _REGISTRY[key]


def make_channel(name: str, **kwargs) -> Channel:
    """Build the channel called ``name`` (one of :data:`CHANNEL_NAMES`) with constructor ``kwargs``.

    Raises :class:`~metacomm.ConfigError` for an unknown name (field ``channel``), an unknown keyword
    (field = the keyword) or a bad value (field = the argument name).
    """
    entry = _entry(name)
    allowed = entry.allowed()
    for k in kwargs:
        if k not in allowed:
            raise ConfigError(k, f"not a parameter of channel {name!r}; allowed: {', '.join(allowed) or 'none'}")
    with_noise = kwargs.pop("with_noise", True)
    if not isinstance(with_noise, bool):
        raise ConfigError("with_noise", f"expected True or False, got {with_noise!r}")
    builder: Callable[..., Channel] = entry.cls
    ch = builder(**entry.fixed, **kwargs)
    if entry.impairment and with_noise:
        ch = Compose(ch, AWGN())
    return ch


def channel_help(name: str | None = None) -> str:
    """Help text: every channel (or only ``name``) with its parameters and units."""
    names = CHANNEL_NAMES if name is None else (_entry(name) and (name.strip().lower(),))
    lines = []
    shown: dict[int, str] = {}
    for n in names:
        e = _REGISTRY[n]
        lines.append(f"{n}: {e.summary}")
        if e.params and id(e.params) in shown:
            lines.append(f"    (parameters as {shown[id(e.params)]})")
            continue
        shown[id(e.params)] = n
        for p, doc in e.params.items():
            lines.append(f"    {p}: {doc}")
    if name is None:
        lines.append("All channels: input x complex [batch, n] with Es = 1; N0 per complex sample "
                     "(N0/2 per real dimension); fading has E|h|^2 = 1 (E sum|h_l|^2 = 1).")
    return "\n".join(lines)
