r"""Uncoded Gray-labelled BPSK / QPSK / 16-QAM / 64-QAM on Sionna's Mapper and Demapper.

Model (per complex channel use, unit average symbol energy ``Es = 1``)::

    bits [B, k] --Mapper--> x [B, k/m] --channel--> y [B, k/m] --Demapper(y, N0)--> LLR [B, k]

with ``m`` bits per symbol. The rate is ``m`` information bits per complex channel use, so
``Eb/N0 = Es/N0 / m`` (:func:`metacomm.channels.units.ebnodb_to_no` with ``rate = m``).

* BPSK (``m = 1``) is Sionna's 1-bit PAM constellation, the *real* points ``{+1 (bit 0), -1 (bit 1)}``;
  transmitted as a complex symbol with zero imaginary part, so the imaginary part of the noise is ignored by
  the demapper and ``BER = Q(sqrt(2 Eb/N0))``.
* QPSK / 16-QAM / 64-QAM (``m = 2, 4, 6``) are Sionna's square QAM constellations with the 3GPP TS 38.211
  Gray labelling (nearest neighbours differ in one bit), normalised to ``E|x|^2 = 1``.

Demapping (Sionna's :class:`~sionna.phy.mapping.Demapper`) with noise variance ``N0`` per complex sample:

.. math::
    \mathrm{LLR}_i = \ln\frac{\sum_{c \in \mathcal{C}_{i,1}} e^{-|y-c|^2/N_0}}
                               {\sum_{c \in \mathcal{C}_{i,0}} e^{-|y-c|^2/N_0}}  \quad(\text{"app"}),

and the max-log approximation (sums replaced by maxima, ``"maxlog"``). The LLR is ``ln P(b=1|y)/P(b=0|y)``
(logits). ``N0`` may be one value, one per block ``[B]`` or one per symbol ``[B, n]`` (the effective noise
variance after equalisation, see :mod:`metacomm.codecs.equalization`).

The classical codecs hold no trainable parameters. The mapper and the demapper each build their own
:class:`~sionna.phy.mapping.Constellation` (one owner, one path), so the codec is safe under
:func:`torch.func.functional_call`. Sionna blocks are built for the device of the data they process
(:class:`metacomm._sionna.SionnaBlocks`): a codec built on the CPU and fed CUDA tensors computes on CUDA.
"""

from __future__ import annotations

from functools import partial

import torch
from sionna.phy.mapping import Constellation, Demapper, Mapper
from torch import nn

from metacomm._sionna import SionnaBlocks, sionna_device
from metacomm._validation import ConfigError, check_choice, check_positive_int
from metacomm.channels.units import broadcast_no
from metacomm.codecs.base import Codec

__all__ = [
    "BITS_PER_SYMBOL",
    "DEMAPPING_METHODS",
    "QAMDemapper",
    "QAMMapper",
    "UncodedQAM",
    "broadcast_no",
    "check_bits_per_symbol",
    "make_constellation",
    "sionna_device",
    "sionna_precision",
]

#: Supported modulations: bits per symbol -> name.
BITS_PER_SYMBOL = {1: "bpsk", 2: "qpsk", 4: "qam16", 6: "qam64"}
DEMAPPING_METHODS = ("app", "maxlog")
PRECISIONS = ("single", "double")


def sionna_precision(precision: str) -> str:
    return check_choice("precision", precision, PRECISIONS)


def check_bits_per_symbol(bits_per_symbol) -> int:
    m = check_positive_int("bits_per_symbol", bits_per_symbol)
    if m not in BITS_PER_SYMBOL:
        allowed = ", ".join(f"{k} ({v})" for k, v in BITS_PER_SYMBOL.items())
        raise ConfigError("bits_per_symbol", f"unsupported value {bits_per_symbol!r}; allowed: {allowed}")
    return m


def make_constellation(bits_per_symbol: int, *, device=None, precision: str = "single") -> Constellation:
    """Sionna's Gray-labelled constellation: real 2-PAM for BPSK, square QAM otherwise (unit energy)."""
    m = check_bits_per_symbol(bits_per_symbol)
    kind = "pam" if m == 1 else "qam"
    return Constellation(kind, m, precision=sionna_precision(precision), device=sionna_device(device))


def _mapper(m: int, precision: str, *, device: str) -> Mapper:
    return Mapper(constellation=make_constellation(m, device=device, precision=precision), precision=precision,
                  device=device)


def _demapper(m: int, demapping: str, precision: str, *, device: str) -> Demapper:
    return Demapper(demapping, constellation=make_constellation(m, device=device, precision=precision),
                    precision=precision, device=device)


class QAMMapper(nn.Module):
    """Bits ``[B, k]`` (0/1 float) -> symbols ``[B, k/m]`` complex, ``E|x|^2 = 1`` (Sionna Mapper).

    The Sionna block runs on the device of ``bits`` (built there on first use); ``device`` is where it is
    built first (``None``: CPU).
    """

    def __init__(self, bits_per_symbol: int, *, device=None, precision: str = "single"):
        super().__init__()
        self.bits_per_symbol = check_bits_per_symbol(bits_per_symbol)
        self.precision = sionna_precision(precision)
        self._mappers = SionnaBlocks(partial(_mapper, self.bits_per_symbol, self.precision),
                                     device=sionna_device(device))

    @property
    def mapper(self) -> Mapper:
        """The Sionna :class:`~sionna.phy.mapping.Mapper` on the construction device."""
        return self._mappers.get()

    @property
    def points(self) -> torch.Tensor:
        """The constellation points ``[2^m]``; the binary expansion of the index is the bit label (MSB first)."""
        return self.mapper.constellation()

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        if bits.shape[-1] % self.bits_per_symbol:
            raise ConfigError("bits", f"last dimension {bits.shape[-1]} is not a multiple of "
                                      f"bits_per_symbol={self.bits_per_symbol}")
        return self._mappers.get(bits.device)(bits)


class QAMDemapper(nn.Module):
    """``(y [B, n] complex, N0)`` -> bit LLRs ``[B, n*m]`` (``ln P(b=1)/P(b=0)``), Sionna Demapper.

    ``N0`` per complex sample, > 0: scalar, ``[B]`` or ``[B, n]``
    (:func:`metacomm.channels.units.broadcast_no`). The Sionna block runs on the device of ``y``.
    """

    def __init__(self, bits_per_symbol: int, demapping: str = "app", *, device=None, precision: str = "single"):
        super().__init__()
        self.bits_per_symbol = check_bits_per_symbol(bits_per_symbol)
        self.demapping = check_choice("decoder", demapping, DEMAPPING_METHODS)
        self.precision = sionna_precision(precision)
        self._demappers = SionnaBlocks(partial(_demapper, self.bits_per_symbol, self.demapping, self.precision),
                                       device=sionna_device(device))

    @property
    def demapper(self) -> Demapper:
        """The Sionna :class:`~sionna.phy.mapping.Demapper` on the construction device."""
        return self._demappers.get()

    def forward(self, y: torch.Tensor, no) -> torch.Tensor:
        return self._demappers.get(y.device)(y, broadcast_no(no, y))


class UncodedQAM(Codec):
    """Uncoded Gray-labelled M-ary modulation, ``num_symbols`` symbols per block.

    Args:
        bits_per_symbol: 1 (BPSK), 2 (QPSK), 4 (16-QAM) or 6 (64-QAM).
        num_symbols: complex channel uses per block ``n_c``; ``k = n_c * bits_per_symbol`` bits per block.
        demapping: ``"app"`` (exact LLRs) or ``"maxlog"``.
        device: where the Sionna blocks are built first (``None``: CPU); inputs on another device get blocks
            built there on first use (:class:`metacomm._sionna.SionnaBlocks`).
        precision: ``"single"`` (complex64) or ``"double"`` (complex128).

    ``encoder(bits [B, k]) -> x [B, n_c]`` complex; ``decoder(y [B, n_c], no) -> LLR [B, k]``;
    ``rate = bits_per_symbol`` bits per complex channel use.
    """

    def __init__(self, bits_per_symbol: int, num_symbols: int = 512, demapping: str = "app", *, device=None,
                 precision: str = "single"):
        super().__init__()
        self.bits_per_symbol = check_bits_per_symbol(bits_per_symbol)
        self.num_symbols = check_positive_int("num_symbols", num_symbols)
        self.demapping = check_choice("decoder", demapping, DEMAPPING_METHODS)
        self.num_info_bits = self.num_symbols * self.bits_per_symbol
        self.num_channel_uses = self.num_symbols
        self.encoder = QAMMapper(self.bits_per_symbol, device=device, precision=precision)
        self.decoder = QAMDemapper(self.bits_per_symbol, demapping, device=device, precision=precision)

    @property
    def name(self) -> str:
        return BITS_PER_SYMBOL[self.bits_per_symbol]

    def decide(self, y: torch.Tensor, no) -> torch.Tensor:
        """Hard bit decisions ``[B, k]``.

        For BPSK and Gray QPSK the bit LLRs separate per real dimension, so the sign of every APP or max-log LLR
        is the sign of ``Re y`` (bit 0 of a symbol) or ``Im y`` (bit 1), for any N0 > 0: a sign slicer gives the
        same decisions without computing LLRs (label 1 <-> negative half-axis, Sionna's Gray labelling).
        Higher orders use the demapper's LLR signs.
        """
        if self.bits_per_symbol == 1:
            return (y.real < 0).to(y.real.dtype)
        if self.bits_per_symbol == 2:
            return torch.stack([y.real < 0, y.imag < 0], dim=-1).flatten(-2).to(y.real.dtype)
        return super().decide(y, no)

    def extra_repr(self) -> str:
        return f"{self.name}, num_symbols={self.num_symbols}, demapping={self.demapping!r}"
