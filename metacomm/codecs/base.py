"""The codec and link protocols.

**Codec** -- an encoder/decoder pair (classical or learned), an :class:`torch.nn.Module` with two sub-modules:

* ``codec.encoder(bits)``: ``bits`` float ``[batch, k]`` with values in {0, 1} -> ``x`` complex
  ``[batch, n_c]`` with unit *average* energy per complex channel use (Es = 1).
* ``codec.decoder(y, no)``: received ``y`` complex ``[batch, n_rx]`` and N0 (float or ``[batch]``) -> bit
  logits ``[batch, k]`` in the LLR convention of Sionna, ``ln P(b=1|y) / P(b=0|y)`` (so
  ``binary_cross_entropy_with_logits(logits, bits)`` is the bit-wise training loss and ``logits > 0`` the hard
  decision).

Attributes: ``num_info_bits`` (k), ``num_channel_uses`` (n_c complex uses per block) and ``rate`` =
k / n_c information bits per complex channel use (the ``rho`` of :mod:`metacomm.channels.units`), which fixes
the Eb/N0 -> N0 conversion. The encoder and decoder are separate modules so that adaptation can touch only
the decoder.

**Link** -- a complete chain used by the Monte-Carlo engine: ``link(batch_size, ebno_db, generator)`` returns
``(bits, bits_hat)``, both ``[batch, k]`` (0/1 floats). Block errors are counted per row.
:class:`CodecLink` builds one from a codec and a channel.
"""

from __future__ import annotations

import torch
from torch import nn

from metacomm.channels.base import Channel
from metacomm.channels.units import ebnodb_to_no

__all__ = ["Codec", "CodecLink", "random_bits"]


def random_bits(batch_size: int, k: int, *, generator: torch.Generator | None = None, device=None,
                dtype=torch.float32) -> torch.Tensor:
    """Uniform i.i.d. bits ``[batch_size, k]`` as 0/1 floats drawn from ``generator``."""
    if generator is not None and device is None:
        device = generator.device
    return torch.randint(0, 2, (batch_size, k), generator=generator, device=device).to(dtype)


class Codec(nn.Module):
    """Base class for encoder/decoder pairs (see module docstring)."""

    encoder: nn.Module
    decoder: nn.Module
    num_info_bits: int
    num_channel_uses: int

    @property
    def rate(self) -> float:
        """Information bits per complex channel use, k / n_c."""
        return self.num_info_bits / self.num_channel_uses

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        return self.encoder(bits)

    def decode(self, y: torch.Tensor, no) -> torch.Tensor:
        return self.decoder(y, no)

    def decide(self, y: torch.Tensor, no) -> torch.Tensor:
        """Hard bit decisions ``[batch, k]`` (0/1 floats). Default: the sign of the bit logits.

        Block decoders (an ML decoder, an autoencoder's argmax over 2^k messages) override this so that block
        errors are those of the block decision.
        """
        return (self.decoder(y, no) > 0).to(y.real.dtype)

    def forward(self, bits: torch.Tensor, channel: Channel, no, *, generator=None, state=None) -> torch.Tensor:
        """bits -> encoder -> channel -> decoder -> logits (differentiable end to end)."""
        x = self.encoder(bits)
        y = channel(x, no, state=state, generator=generator)
        return self.decoder(y, no)


class CodecLink(nn.Module):
    """``(batch_size, ebno_db, generator) -> (bits, bits_hat)`` for a codec over a channel.

    N0 is set from Eb/N0 with the codec's rate: ``N0 = 1 / (Eb/N0 * rate)`` (Es = 1).
    """

    def __init__(self, codec: Codec, channel: Channel):
        super().__init__()
        self.codec = codec
        self.channel = channel

    @property
    def num_info_bits(self) -> int:
        return self.codec.num_info_bits

    @torch.no_grad()
    def forward(self, batch_size: int, ebno_db: float, generator: torch.Generator | None = None):
        device = generator.device if generator is not None else None
        bits = random_bits(batch_size, self.codec.num_info_bits, generator=generator, device=device)
        no = ebnodb_to_no(float(ebno_db), self.codec.rate)
        x = self.codec.encoder(bits)
        y = self.channel(x, no, generator=generator)
        return bits, self.codec.decide(y, no).to(bits.dtype)
