"""Differentiable channel models (see :mod:`metacomm.channels.base` for the protocol).

* noise: :class:`AWGN`
* flat block fading: :class:`RayleighBlockFading`, :class:`RicianBlockFading`
* frequency-selective: :class:`MultipathBlockFading` (L-tap, exponential PDP), :class:`TDL` (3GPP TR 38.901
  TDL-A..E through Sionna); :func:`convolve`, :func:`convolution_matrix` for equalisers
* hardware impairments (noiseless stages): :class:`IQImbalance`, :class:`RandomIQImbalance`,
  :class:`PhaseOffset`, :class:`WienerPhaseNoise`, :class:`RappPA`, :class:`SalehPA`
* drift processes (:mod:`metacomm.channels.drift`): :class:`GaussMarkovFading`, :class:`JakesFading`, SNR
  drift (:class:`SNRRandomWalk`, :class:`SinusoidalShadowing`, :class:`DeepFades`), :class:`ImpairmentDrift`,
  and the segment :class:`Timeline` that yields one :class:`Frame` (state + N0) per frame
* OFDM (lazily imported): :class:`OFDMChannel` -- 3GPP CDL/TDL/UMi frequency responses on a resource grid
  (:mod:`metacomm.channels.ofdm`)
* :class:`Compose` chains stages; :func:`make_channel` builds any of :data:`CHANNEL_NAMES` by name.
* units (:mod:`metacomm.channels.units`): Eb/N0 <-> N0 conversions and :func:`broadcast_no` (N0 against samples).
"""

from metacomm.channels.awgn import AWGN
from metacomm.channels.base import Channel, State, complex_normal, make_generator
from metacomm.channels.compose import Compose
from metacomm.channels.drift import (
    ConstantParam,
    DeepFades,
    Frame,
    GaussMarkovFading,
    ImpairmentDrift,
    JakesFading,
    LinearRamp,
    ParamRandomWalk,
    Segment,
    SinusoidalShadowing,
    SNRDrift,
    SNRRandomWalk,
    Timeline,
    doppler_frequency,
    doppler_rho,
)
from metacomm.channels.fading import RayleighBlockFading, RicianBlockFading
from metacomm.channels.impairments import (
    IQImbalance,
    PhaseOffset,
    RandomIQImbalance,
    RappPA,
    SalehPA,
    WienerPhaseNoise,
    iq_imbalance,
)
from metacomm.channels.multipath import MultipathBlockFading, convolution_matrix, convolve, exponential_pdp
from metacomm.channels.registry import CHANNEL_NAMES, channel_help, make_channel
from metacomm.channels.tdl import TDL
from metacomm.channels.units import (
    broadcast_no,
    ebnodb_to_esnodb,
    ebnodb_to_no,
    esnodb_to_ebnodb,
    esnodb_to_no,
)

__all__ = [
    "ConstantParam",
    "DeepFades",
    "Frame",
    "GaussMarkovFading",
    "ImpairmentDrift",
    "JakesFading",
    "LinearRamp",
    "ParamRandomWalk",
    "Segment",
    "SinusoidalShadowing",
    "SNRDrift",
    "SNRRandomWalk",
    "Timeline",
    "doppler_frequency",
    "doppler_rho",
    "AWGN",
    "CHANNEL_NAMES",
    "Channel",
    "Compose",
    "IQImbalance",
    "MultipathBlockFading",
    "PhaseOffset",
    "RandomIQImbalance",
    "RappPA",
    "RayleighBlockFading",
    "RicianBlockFading",
    "SalehPA",
    "State",
    "TDL",
    "WienerPhaseNoise",
    "broadcast_no",
    "channel_help",
    "complex_normal",
    "convolution_matrix",
    "convolve",
    "ebnodb_to_esnodb",
    "ebnodb_to_no",
    "esnodb_to_ebnodb",
    "esnodb_to_no",
    "exponential_pdp",
    "iq_imbalance",
    "make_channel",
    "make_generator",
]

# imported on first use (metacomm.channels.ofdm pulls in Sionna's 3GPP channel models and OFDM blocks)
_LAZY = {"OFDMChannel": ("metacomm.channels.ofdm", "OFDMChannel")}
__all__ += list(_LAZY)


def __getattr__(name: str):
    from metacomm._lazy import lazy_getattr
    return lazy_getattr(globals(), _LAZY, name)
