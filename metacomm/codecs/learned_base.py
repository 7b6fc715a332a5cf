"""Shared plumbing of the learned codecs (autoencoder, trainable constellation, neural receiver).

* :class:`LearnedCodec` -- a :class:`~metacomm.codecs.base.Codec` that can report its constructor arguments
  (:meth:`LearnedCodec.config`, stored in checkpoints) and re-initialise every trainable tensor from an explicit
  :class:`torch.Generator` (:meth:`LearnedCodec.reset_parameters`, used by the trainer's restarts so training is
  reproducible per seed without touching torch's global RNG).
* Bit <-> message-index conversion with the MSB-first convention of Sionna's ``Mapper`` (bit 0 of a block is
  the most significant bit of the message index).
* :func:`bit_llrs_from_block_logits` -- exact per-bit log-likelihood ratios from the 2^k block logits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metacomm.codecs.base import Codec

__all__ = [
    "LearnedCodec",
    "bits_to_index",
    "index_to_bits",
    "message_bit_table",
    "bit_llrs_from_block_logits",
    "reset_linear_",
]


def bits_to_index(bits: torch.Tensor) -> torch.Tensor:
    """Message index of each row of ``bits`` ``[..., k]`` (0/1, any dtype), MSB first -> int64 ``[...]``."""
    k = bits.shape[-1]
    weights = 2 ** torch.arange(k - 1, -1, -1, device=bits.device, dtype=torch.int64)
    return (bits.round().to(torch.int64) * weights).sum(-1)


def index_to_bits(index: torch.Tensor, k: int, dtype=torch.float32) -> torch.Tensor:
    """Inverse of :func:`bits_to_index`: int ``[...]`` -> 0/1 ``[..., k]`` of ``dtype`` (MSB first)."""
    shifts = torch.arange(k - 1, -1, -1, device=index.device, dtype=torch.int64)
    return ((index.to(torch.int64).unsqueeze(-1) >> shifts) & 1).to(dtype)


def message_bit_table(k: int, device=None) -> torch.Tensor:
    """Bool ``[2^k, k]``: entry (m, i) says whether bit i of message m is 1."""
    return index_to_bits(torch.arange(2 ** k, device=device), k, dtype=torch.bool)


def bit_llrs_from_block_logits(logits: torch.Tensor, bit_table: torch.Tensor) -> torch.Tensor:
    r"""Exact bit LLRs from block logits.

    With block posterior :math:`P(m|y) = \mathrm{softmax}(z)_m` the LLR of bit :math:`i` is

    .. math:: L_i = \ln \frac{\sum_{m: b_i(m)=1} e^{z_m}}{\sum_{m: b_i(m)=0} e^{z_m}}
              = \operatorname{LSE}_{m: b_i(m)=1} z_m - \operatorname{LSE}_{m: b_i(m)=0} z_m

    (``ln P(b=1)/P(b=0)``, Sionna's sign convention). ``logits`` ``[..., M]`` float, ``bit_table`` bool
    ``[M, k]`` -> ``[..., k]`` float.
    """
    neg_inf = torch.finfo(logits.dtype).min
    z = logits.unsqueeze(-1)  # [..., M, 1]
    one = torch.where(bit_table, z, torch.full_like(z, neg_inf)).logsumexp(-2)
    zero = torch.where(~bit_table, z, torch.full_like(z, neg_inf)).logsumexp(-2)
    return one - zero


def reset_linear_(layer: nn.Linear | nn.Conv1d, generator: torch.Generator | None) -> None:
    """PyTorch's default :class:`~torch.nn.Linear` / :class:`~torch.nn.Conv1d` initialisation, drawn from
    ``generator``.

    Weights ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (kaiming-uniform with a = sqrt(5)), bias likewise; fan_in =
    input features (x kernel size for a convolution).
    """
    gdev = generator.device if generator is not None else layer.weight.device
    with torch.no_grad():
        w = torch.empty(layer.weight.shape, dtype=layer.weight.dtype, device=gdev)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
        layer.weight.copy_(w)
        if layer.bias is not None:
            fan_in = layer.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            b = torch.empty(layer.bias.shape, dtype=layer.bias.dtype, device=gdev)
            nn.init.uniform_(b, -bound, bound, generator=generator)
            layer.bias.copy_(b)


class LearnedCodec(Codec):
    """A codec with trainable parameters that can be checkpointed and re-initialised deterministically.

    Subclasses set ``self._config`` (the keyword arguments that rebuild an identical, untrained instance) and
    may override :meth:`reset_parameters` (the default re-initialises every :class:`~torch.nn.Linear`).
    """

    _config: dict

    def config(self) -> dict:
        """Constructor keyword arguments (JSON-serialisable) that rebuild this codec's architecture."""
        return dict(self._config)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every trainable tensor from ``generator`` (``None``: torch's default generator)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                reset_linear_(m, generator)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._config.items())
