r"""Trainable constellation geometry with a neural (or Sionna APP) demapper.

Transmitter: ``num_symbols`` symbols per block, each carrying ``m = bits_per_symbol`` bits through Sionna's
:class:`~sionna.phy.mapping.Mapper` on a ``Constellation("custom", m, points=..., normalize=True, center=True)``.
The trainable tensors are ``encoder.points_r`` and ``encoder.points_i`` (``[2^m]`` each, initialised from Sionna's
Gray-labelled square QAM); every forward assigns ``constellation.points = torch.complex(points_r, points_i)``,
and Sionna centres and normalises them, so the transmitted points always satisfy :math:`\sum_c c = 0` and
:math:`\frac{1}{2^m}\sum_c |c|^2 = 1` (Es = 1 per complex channel use). The label of point ``c`` is the binary
expansion of its index, MSB first.

Receiver (``demapper=``):

* ``"neural"`` -- a per-symbol MLP on :math:`[\Re y, \Im y, \log_{10} N_0]` -> ``m`` bit logits (LLRs
  ``ln P(b=1|y)/P(b=0|y)``), trained jointly with the geometry with the bit-wise binary cross-entropy, i.e. by
  maximising the bit-metric-decoding (BMD) rate
  :math:`R_\mathrm{BMD} = m - \sum_{i=1}^{m} \mathrm{BCE}_i / \ln 2` bits per channel use (:func:`bmd_rate`);
* ``"app"`` -- Sionna's exact APP :class:`~sionna.phy.mapping.Demapper` on the current learned points
  ("learned geometry, classical receiver"); only the geometry is trained.

Parameter ownership: the points are owned by the encoder only. The encoder's and the APP decoder's Sionna
``Constellation`` objects are separate, parameter-free holders (built per device by
:class:`metacomm._sionna.SionnaBlocks`, not registered sub-modules) whose ``points`` are re-assigned from the
encoder's parameters on every call (the decoder reads them through a non-registered reference), so each
parameter is reached by exactly one module path and :func:`torch.func.functional_call` is safe.

Rate: :math:`\rho = m` information bits per complex channel use, :math:`N_0 = 1/(m\,E_b/N_0)`.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from sionna.phy.mapping import Constellation, Demapper, Mapper, qam
from torch import nn

from metacomm._sionna import SionnaBlocks
from metacomm._validation import ConfigError, check_choice, check_positive_int
from metacomm.channels.base import Channel, make_generator
from metacomm.channels.units import broadcast_no, ebnodb_to_no
from metacomm.codecs.base import random_bits
from metacomm.codecs.learned_base import LearnedCodec, index_to_bits, reset_linear_

__all__ = ["TrainableConstellation", "ConstellationEncoder", "NeuralDemapper", "APPDemapperOnLearned",
           "bmd_rate", "DEMAPPERS", "BITS_PER_SYMBOL"]

DEMAPPERS = ("neural", "app")
BITS_PER_SYMBOL = (2, 4, 6, 8)


def _no_per_symbol(no, y: torch.Tensor) -> torch.Tensor:
    """N0 (> 0) as a real ``[B, n]`` tensor (from a scalar, ``[B]``, ``[B, 1]`` or ``[B, n]``)."""
    return torch.broadcast_to(broadcast_no(no, y), y.shape)


def _custom_constellation(m: int, *, device: str) -> Constellation:
    """A parameter-free ``Constellation("custom", ...)`` holder (points assigned before every use)."""
    init = torch.as_tensor(qam(m, normalize=True), dtype=torch.complex64)
    return Constellation("custom", m, points=init.to(device), normalize=True, center=True, device=device)


def _custom_mapper(m: int, *, device: str) -> Mapper:
    return Mapper(constellation=_custom_constellation(m, device=device), device=device)


def _custom_app_demapper(m: int, *, device: str) -> Demapper:
    return Demapper("app", constellation=_custom_constellation(m, device=device), device=device)


class ConstellationEncoder(nn.Module):
    """bits ``[B, n*m]`` -> symbols complex64 ``[B, n]`` on the learned, centred, unit-energy points.

    The Sionna Mapper runs on the device of the points (:class:`metacomm._sionna.SionnaBlocks`).
    """

    def __init__(self, bits_per_symbol: int, num_symbols: int):
        super().__init__()
        self.m, self.n = bits_per_symbol, num_symbols
        init = qam(bits_per_symbol, normalize=True)
        init = torch.as_tensor(init, dtype=torch.complex64)
        self.points_r = nn.Parameter(init.real.clone())
        self.points_i = nn.Parameter(init.imag.clone())
        self._mappers = SionnaBlocks(partial(_custom_mapper, bits_per_symbol), device="cpu")

    def _mapper(self) -> Mapper:
        """The Mapper on the points' device, its constellation holding the current (raw) points."""
        mapper = self._mappers.get(self.points_r.device)
        mapper.constellation.points = self.raw_points()
        return mapper

    @property
    def constellation(self) -> Constellation:
        """Sionna's Constellation holding the current points (centred and normalised when called)."""
        return self._mapper().constellation

    def raw_points(self) -> torch.Tensor:
        """The parameters as complex points ``[2^m]`` (before centring/normalisation)."""
        return torch.complex(self.points_r, self.points_i)

    def points(self) -> torch.Tensor:
        """Transmitted points ``[2^m]`` complex (centred, ``mean |c|^2 = 1``); index = bit label, MSB first."""
        return self._mapper().constellation()

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        if bits.shape[-1] != self.n * self.m:
            raise ConfigError("bits", f"expected [batch, {self.n * self.m}] bits, got {tuple(bits.shape)}")
        return self._mapper()(bits)

    def labels(self) -> torch.Tensor:
        """Bit labels ``[2^m, m]`` (0/1) of the points."""
        return index_to_bits(torch.arange(2 ** self.m), self.m)


class NeuralDemapper(nn.Module):
    r"""Per-symbol MLP :math:`[\Re y, \Im y, \log_{10} N_0] \to` ``m`` LLRs; ``(y [B,n], no) -> [B, n*m]``."""

    def __init__(self, bits_per_symbol: int, hidden: int, num_hidden_layers: int):
        super().__init__()
        self.m = bits_per_symbol
        layers: list[nn.Module] = []
        d = 3
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        layers.append(nn.Linear(d, bits_per_symbol))
        self.net = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor, no) -> torch.Tensor:
        if not torch.is_complex(y):
            raise ConfigError("y", f"expected complex received symbols [batch, n], got {y.dtype}")
        no_t = _no_per_symbol(no, y)
        feats = torch.stack([y.real, y.imag, torch.log10(no_t)], dim=-1)
        return self.net(feats).reshape(*y.shape[:-1], y.shape[-1] * self.m)


class APPDemapperOnLearned(nn.Module):
    """Sionna's APP :class:`~sionna.phy.mapping.Demapper` on the encoder's current points (no parameters).

    The Sionna Demapper runs on the device of the encoder's points (:class:`metacomm._sionna.SionnaBlocks`).
    """

    def __init__(self, encoder: ConstellationEncoder):
        super().__init__()
        object.__setattr__(self, "_encoder", encoder)  # not registered: the encoder owns the points
        self.m = encoder.m
        self._demappers = SionnaBlocks(partial(_custom_app_demapper, self.m), device="cpu")

    def forward(self, y: torch.Tensor, no) -> torch.Tensor:
        enc = self._encoder
        demapper = self._demappers.get(enc.points_r.device)
        demapper.constellation.points = enc.raw_points()
        return demapper(y, _no_per_symbol(no, y))


class TrainableConstellation(LearnedCodec):
    """Learned 2^m-point geometry + neural or APP demapper, ``num_symbols`` symbols per block.

    Args:
        bits_per_symbol: m in {2, 4, 6, 8} (initialised from Gray square QAM with 2^m points).
        num_symbols: complex channel uses per block n_c; k = m * n_c bits per block.
        demapper: ``"neural"`` or ``"app"`` (see the module docstring).
        hidden, num_hidden_layers: width and depth of the neural demapper's MLP.

    Shapes: ``encoder(bits [B, k]) -> complex64 [B, n_c]``; ``decoder(y [B, n_c], no) -> LLRs [B, k]`` with ``no``
    a scalar, ``[B]`` or ``[B, n_c]`` N0 per complex sample. ``rate = m``.
    """

    def __init__(self, bits_per_symbol: int = 4, num_symbols: int = 64, *, demapper: str = "neural",
                 hidden: int = 64, num_hidden_layers: int = 2):
        super().__init__()
        m = check_positive_int("bits_per_symbol", bits_per_symbol)
        if m not in BITS_PER_SYMBOL:
            raise ConfigError("bits_per_symbol", f"unsupported value {m}; allowed: "
                                                 f"{', '.join(map(str, BITS_PER_SYMBOL))} (square-QAM start)")
        n = check_positive_int("num_symbols", num_symbols)
        check_choice("demapper", demapper, DEMAPPERS)
        hidden = check_positive_int("hidden", hidden)
        num_hidden_layers = check_positive_int("num_hidden_layers", num_hidden_layers)
        self._config = dict(bits_per_symbol=m, num_symbols=n, demapper=demapper, hidden=hidden,
                            num_hidden_layers=num_hidden_layers)
        self.bits_per_symbol = m
        self.num_info_bits = m * n
        self.num_channel_uses = n
        self.encoder = ConstellationEncoder(m, n)
        self.decoder = (NeuralDemapper(m, hidden, num_hidden_layers) if demapper == "neural"
                        else APPDemapperOnLearned(self.encoder))

    def points(self) -> torch.Tensor:
        """Current transmitted points ``[2^m]`` (centred, unit energy)."""
        return self.encoder.points()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Points back to Gray QAM; the neural demapper's layers re-drawn from ``generator``."""
        init = torch.as_tensor(qam(self.bits_per_symbol, normalize=True), dtype=torch.complex64)
        with torch.no_grad():
            self.encoder.points_r.copy_(init.real)
            self.encoder.points_i.copy_(init.imag)
        for mod in self.decoder.modules():
            if isinstance(mod, nn.Linear):
                reset_linear_(mod, generator)


@torch.no_grad()
def bmd_rate(codec, channel: Channel, ebno_db: float, *, num_blocks: int = 100, seed: int = 0) -> float:
    r"""Estimated BMD rate :math:`m - \sum_i \mathrm{BCE}_i / \ln 2` in bits per complex channel use.

    Monte-Carlo over ``num_blocks`` blocks at Eb/N0 = ``ebno_db`` dB (N0 from the codec's rate). With exact
    LLRs (APP demapper) this is the achievable rate of bit-interleaved coded modulation; a mismatched demapper
    gives a lower bound.
    """
    num_blocks = check_positive_int("num_blocks", num_blocks)
    first = next(iter(codec.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    g = make_generator(seed, device)
    bits = random_bits(num_blocks, codec.num_info_bits, generator=g, device=device)
    no = ebnodb_to_no(float(ebno_db), codec.rate)
    llr = codec(bits, channel, no, generator=g)
    bce = F.binary_cross_entropy_with_logits(llr, bits)  # nats per bit
    m = codec.num_info_bits / codec.num_channel_uses
    return float(m * (1.0 - bce / math.log(2.0)))
