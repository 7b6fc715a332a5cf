r"""A bit-wise learned demapper for long blocks (``k > 12``, where scoring all :math:`2^k` messages is out).

:class:`BitwiseCodec` transmits ``k`` bits per block on ``n`` complex channel uses with Gray-labelled QAM
(Sionna's ``Mapper``, ``k / n`` bits per use, Es = 1 per use) and receives them with :class:`BitwiseDemapper`: an
MLP from the block's ``n`` received samples (as ``2n`` reals) and ``log N0`` to ``k`` bit logits
:math:`L_i = \ln P(b_i = 1 \mid \mathbf y) / P(b_i = 0 \mid \mathbf y)` (Sionna's convention). Seeing the whole
block lets it undo inter-symbol interference that a per-symbol demapper cannot; it is trained with bit-wise
binary cross-entropy, and :class:`~metacomm.adaptation.online.AdaptiveCodec` adapts it per link from pilot blocks
exactly as it adapts a block decoder (the pilot loss is the bit-wise BCE, ``loss="bce"``), so it drops into coded
pipelines in place of a demapper: ``AdaptiveCodec(BitwiseCodec(16, 8)).decode(y)`` gives ``[B, N, 16]`` LLRs.

Shapes: ``encoder(bits)`` float 0/1 ``[..., k]`` -> complex ``[..., n]``; ``encoder.forward_index(msg)`` int64
``[...]`` (``k <= 62``) -> ``[..., n]``; ``decoder.bit_logits(y, no=None)`` complex ``[..., n]`` -> float
``[..., k]``. Every trainable tensor is an ``nn.Parameter`` of the demapper (the QAM mapper has none).
"""

from __future__ import annotations

import torch
from torch import nn

from metacomm._validation import ConfigError, check_positive_int
from metacomm.codecs.learned_base import index_to_bits
from metacomm.codecs.qam import QAMMapper

__all__ = ["BitwiseCodec", "BitwiseDemapper", "GrayQAMEncoder"]


class GrayQAMEncoder(nn.Module):
    """``k`` bits -> ``n`` Gray-labelled QAM symbols of ``k / n`` bits each (Sionna's mapper; no parameters)."""

    def __init__(self, k: int, n: int, *, device=None):
        super().__init__()
        self.k, self.n = k, n
        self.bits_per_symbol = k // n
        self.mapper = QAMMapper(self.bits_per_symbol, device=device)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        if bits.shape[-1] != self.k:
            raise ConfigError("bits", f"expected [..., {self.k}] bits, got {tuple(bits.shape)}")
        return self.mapper(bits.to(torch.float32)).reshape(*bits.shape[:-1], self.n)

    def forward_index(self, msg: torch.Tensor) -> torch.Tensor:
        """Message indices (MSB first, as :func:`~metacomm.codecs.learned_base.bits_to_index`) -> symbols."""
        return self.forward(index_to_bits(msg, self.k))


class BitwiseDemapper(nn.Module):
    """MLP ``[Re y, Im y, log N0]`` (``2n + 1``) -> ``hidden`` -> ``hidden`` -> ``k`` bit logits (ReLU)."""

    def __init__(self, k: int, n: int, hidden: int = 128):
        super().__init__()
        self.k, self.n = k, n
        self.net = nn.Sequential(nn.Linear(2 * n + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, k))

    def bit_logits(self, y: torch.Tensor, no=None) -> torch.Tensor:
        """Bit LLRs ``[..., k]`` of blocks ``y`` complex ``[..., n]``; ``no`` (N0 per complex sample: a float or a
        tensor broadcastable to ``y[..., 0]``; default 0.1, i.e. 10 dB Es/N0) enters as ``log N0``."""
        no_t = torch.as_tensor(0.1 if no is None else no, dtype=y.real.dtype, device=y.device)
        lno = torch.log(no_t).expand(y.shape[:-1]).unsqueeze(-1)
        return self.net(torch.cat([y.real, y.imag, lno], dim=-1))

    def forward(self, y: torch.Tensor, no=None) -> torch.Tensor:
        return self.bit_logits(y, no)


class BitwiseCodec(nn.Module):
    """Gray QAM transmitter + learned bit-wise demapper for ``k`` bits on ``n`` complex uses (module docstring).

    :param k: information bits per block (``n`` must divide ``k``; ``k / n`` in {1, 2, 4, 6, 8} bits per use);
    :param n: complex channel uses per block; :param hidden: width of the demapper's two hidden layers.
    """

    def __init__(self, k: int = 16, n: int = 8, hidden: int = 128, *, device=None):
        super().__init__()
        k, n = check_positive_int("k", k), check_positive_int("n", n)
        if k % n or k // n not in (1, 2, 4, 6, 8):
            raise ConfigError("k", f"k / n must be 1, 2, 4, 6 or 8 bits per complex use (BPSK..256-QAM), got "
                                   f"k = {k}, n = {n}")
        if k > 62:
            raise ConfigError("k", f"message indices are int64: k must be <= 62, got {k}")
        self.encoder = GrayQAMEncoder(k, n, device=device)
        self.decoder = BitwiseDemapper(k, n, check_positive_int("hidden", hidden))
        self.num_info_bits, self.num_channel_uses = k, n
        self._config = dict(k=k, n=n, hidden=hidden)

    @property
    def rate(self) -> float:
        """Information bits per complex channel use."""
        return self.num_info_bits / self.num_channel_uses

    def config(self) -> dict:
        return dict(self._config)

    def forward(self, bits: torch.Tensor, channel=None, no=None) -> torch.Tensor:
        """Bits -> symbols (-> ``channel(x, no)`` -> bit logits when a channel is given)."""
        x = self.encoder(bits)
        if channel is None:
            return x
        return self.decoder.bit_logits(channel(x, no), no)

    def decide(self, y: torch.Tensor, no=None) -> torch.Tensor:
        """Hard bits (float 0/1) ``[..., k]``."""
        return (self.decoder.bit_logits(y, no) > 0).to(y.real.dtype)

    def extra_repr(self) -> str:
        return f"k={self.num_info_bits}, n={self.num_channel_uses}, {self.encoder.bits_per_symbol} bits/use"
