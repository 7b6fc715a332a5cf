"""The base class of the OFDM receivers (:class:`OFDMReceiver`), in a module of its own so that receivers outside
:mod:`metacomm.codecs.ofdm_receivers` (the adaptive one, :mod:`metacomm.codecs.ofdm_adaptive`) subclass it without an
import circle; :mod:`metacomm.codecs.ofdm_receivers` re-exports it and describes the interface."""

from __future__ import annotations

import torch
from torch import nn

from metacomm._validation import ConfigError
from metacomm.codecs.ofdm_config import OFDMLinkConfig

__all__ = ["OFDMReceiver"]


class OFDMReceiver(nn.Module):
    """Base class: ``(y [G, 1, R, S, F], no [G], *, h_freq=None) -> LLR [G, 1, 1, N_data m]`` (the interface is
    described in :mod:`metacomm.codecs.ofdm_receivers`).

    Subclasses set ``name``, ``needs_channel`` and implement :meth:`estimate` (or override :meth:`forward`).
    """

    name = "receiver"
    needs_channel = False

    def __init__(self, link):
        super().__init__()
        self.config: OFDMLinkConfig = link.config
        self.precision: str = link.precision

    def estimate(self, blocks, y, no, h_freq):
        raise NotImplementedError

    def blocks(self, device):
        return self._blocks.get(device, self.precision)

    def forward(self, y: torch.Tensor, no: torch.Tensor, *, h_freq: torch.Tensor | None = None) -> torch.Tensor:
        if self.needs_channel and h_freq is None:
            raise ConfigError("receiver", f"{self.name!r} needs the true channel h_freq")
        blocks = self.blocks(y.device)
        est, eq, dm = blocks
        h_hat, err_var = self.estimate(blocks, y, no, h_freq)
        x_hat, no_eff = eq(y, h_hat, err_var, no)
        return dm(x_hat, no_eff)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"
