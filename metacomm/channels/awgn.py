"""Additive white Gaussian noise."""

from __future__ import annotations

import torch

from metacomm.channels.base import Channel, State, add_noise

__all__ = ["AWGN"]


class AWGN(Channel):
    r"""AWGN channel :math:`y = x + n`, :math:`n \sim \mathcal{CN}(0, N_0)`.

    Same model as :class:`sionna.phy.channel.AWGN` (N0 per complex sample, N0/2 per real dimension), but drawing
    its noise from the explicit generator of the metacomm channel protocol.

    Input: ``x`` complex ``[batch, n]``, ``no`` N0 (float or ``[batch]``). Output: ``y`` complex ``[batch, n]``.
    """

    adds_noise = True

    def apply(self, x: torch.Tensor, no: torch.Tensor, state: State, generator, noise) -> torch.Tensor:
        return add_noise(x, no, generator, noise)
