r"""The (n, k) autoencoder of O'Shea & Hoydis (2017).

Transmitter: the k-bit message is turned into its index :math:`m \in \{0, \dots, M-1\}`, :math:`M = 2^k`
(MSB first, Sionna's ``Mapper`` convention), one-hot encoded and passed through

    one-hot(M) -> [Linear(., H) -> ReLU] x L -> Linear(H, D) -> energy normalisation

Receiver: the received complex samples as reals -> [Linear(., H) -> ReLU] x L -> Linear(H, M) = block logits.

Channel uses and energy (Es = 1 per complex channel use, see :mod:`metacomm.channels.units`):

* ``real_uses=True`` (O'Shea & Hoydis): the encoder emits ``D = n`` reals packed two per complex channel use,
  :math:`x_j = r_{2j} + i\,r_{2j+1}`, so :math:`n_c = n/2` complex uses (``ceil(n/2)`` samples; for odd ``n``
  the last imaginary part is 0 and the decoder ignores it). Each real carries energy 1/2 on average and sees
  noise variance :math:`N_0/2`: exactly the BPSK-per-real-dimension picture of the paper with
  :math:`\sigma^2 = 1/(2 R\, E_b/N_0)`, :math:`R = k/n`.
* ``real_uses=False`` (Park et al.): ``D = 2n`` reals, laid out as ``[Re x_0..Re x_{n-1}, Im x_0..Im x_{n-1}]``,
  giving :math:`n_c = n` complex uses.

Energy normalisation: ``power="block"`` scales every codeword to :math:`\|x\|^2 = n_c` exactly;
``power="average"`` scales the whole codebook so that :math:`\frac1M\sum_m \|x_m\|^2 = n_c` (the exact average
over uniformly distributed messages, independent of the batch). The rate is :math:`\rho = k / n_c`
information bits per complex use, so :math:`N_0 = 1/(\rho\, E_b/N_0)`; with these conventions AE(2,2) with
real uses is uncoded BPSK/QPSK.

The decoder's bit outputs are the exact marginal LLRs of the softmax block posterior
(:func:`~metacomm.codecs.learned_base.bit_llrs_from_block_logits`); :meth:`Autoencoder.decide` returns the bits
of the arg-max block.

``Autoencoder(4, 4, real_uses=False, hidden=16)`` is exactly the architecture of Park, Simeone & Kang (2020):
encoder Linear(16,16)-ReLU-Linear(16,8), decoder Linear(8,16)-ReLU-Linear(16,16).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from metacomm._validation import ConfigError, check_choice, check_positive_int
from metacomm.codecs.learned_base import (
    LearnedCodec,
    bit_llrs_from_block_logits,
    bits_to_index,
    index_to_bits,
    message_bit_table,
)

__all__ = ["Autoencoder", "AEEncoder", "AEDecoder", "MAX_K", "POWER_MODES"]

MAX_K = 16
"""Largest k: the one-hot input and the softmax output have 2^k entries (65 536 for k = 16)."""

MAX_DEFAULT_HIDDEN = 1024
"""Default hidden width is 2^k, capped at this value (2^k x 2^k weights would not fit memory for k > 10)."""

POWER_MODES = ("block", "average")


def _mlp(d_in: int, hidden: int, d_out: int, num_hidden_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(num_hidden_layers):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class AEEncoder(nn.Module):
    """bits ``[B, k]`` (0/1 float) -> complex ``[B, ceil(n/2)]`` (real uses) or ``[B, n]`` (complex uses).

    The first layer acts on a one-hot vector, which is computed as a column lookup of its weight (identical to
    the matrix product, without materialising ``[B, 2^k]``).
    """

    def __init__(self, k: int, n: int, real_uses: bool, hidden: int, num_hidden_layers: int, power: str):
        super().__init__()
        self.k, self.n, self.real_uses, self.power = k, n, real_uses, power
        self.num_channel_uses = n / 2 if real_uses else n
        self.num_samples = math.ceil(n / 2) if real_uses else n
        self.net = _mlp(2 ** k, hidden, n if real_uses else 2 * n, num_hidden_layers)

    def _pack(self, r: torch.Tensor) -> torch.Tensor:
        """Reals ``[..., D]`` -> complex ``[..., num_samples]``."""
        if self.real_uses:
            if self.n % 2:
                r = F.pad(r, (0, 1))
            r = r.reshape(*r.shape[:-1], self.num_samples, 2)
            return torch.complex(r[..., 0], r[..., 1])
        return torch.complex(r[..., : self.n], r[..., self.n:])

    def _raw(self, index: torch.Tensor) -> torch.Tensor:
        first = self.net[0]
        h = first.weight.t()[index] + first.bias
        for layer in list(self.net)[1:]:
            h = layer(h)
        return h

    def _normalise(self, r: torch.Tensor) -> torch.Tensor:
        nc = self.num_channel_uses
        if self.power == "block":
            return r * torch.rsqrt(r.square().sum(-1, keepdim=True) / nc)
        book = self._raw(torch.arange(2 ** self.k, device=r.device))
        return r * torch.rsqrt(book.square().sum(-1).mean() / nc)

    def forward_index(self, index: torch.Tensor) -> torch.Tensor:
        """Message indices int ``[B]`` -> complex symbols ``[B, num_samples]`` (Es = 1 per channel use)."""
        r = self._raw(index)
        return self._pack(self._normalise(r))

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        if bits.shape[-1] != self.k:
            raise ConfigError("bits", f"expected [batch, {self.k}] bits, got shape {tuple(bits.shape)}")
        return self.forward_index(bits_to_index(bits))

    def codebook(self) -> torch.Tensor:
        """All 2^k codewords, complex ``[2^k, num_samples]`` (row m = message index m)."""
        return self.forward_index(torch.arange(2 ** self.k, device=self.net[0].weight.device))


class AEDecoder(nn.Module):
    """``(y, no)`` -> bit LLRs ``[B, k]``; ``block_logits(y)`` -> ``[B, 2^k]``.

    ``y`` is complex ``[B, n_rx]``. Real uses with the default ``n_rx`` feed the ``n`` transmitted reals
    ``[Re y_0, Im y_0, Re y_1, ...]`` (the unused last imaginary part of an odd ``n`` dropped); otherwise all
    ``2 n_rx`` reals are fed, as ``[Re y_0..Re y_{n_rx-1}, Im y_0..Im y_{n_rx-1}]`` for complex uses and
    interleaved for real uses. ``no`` is accepted for the protocol and ignored (the network is trained at a
    fixed Eb/N0, as in O'Shea & Hoydis).
    """

    def __init__(self, k: int, n: int, real_uses: bool, hidden: int, num_hidden_layers: int, n_rx: int,
                 default_rx: bool):
        super().__init__()
        self.k, self.n, self.real_uses, self.n_rx = k, n, real_uses, n_rx
        self._drop_last_imag = real_uses and default_rx and n % 2 == 1
        d_in = n if (real_uses and default_rx) else 2 * n_rx
        self.net = _mlp(d_in, hidden, 2 ** k, num_hidden_layers)
        self.register_buffer("bit_table", message_bit_table(k), persistent=False)

    def _features(self, y: torch.Tensor) -> torch.Tensor:
        if not torch.is_complex(y) or y.shape[-1] != self.n_rx:
            raise ConfigError("y", f"expected complex received samples [batch, {self.n_rx}], got "
                                   f"{y.dtype} {tuple(y.shape)}")
        if self.real_uses:
            r = torch.view_as_real(y).reshape(*y.shape[:-1], 2 * self.n_rx)
            return r[..., : self.n] if self._drop_last_imag else r
        return torch.cat([y.real, y.imag], dim=-1)

    def block_logits(self, y: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-posteriors of the 2^k messages, float ``[B, 2^k]``."""
        return self.net(self._features(y))

    def forward(self, y: torch.Tensor, no=None) -> torch.Tensor:
        return bit_llrs_from_block_logits(self.block_logits(y), self.bit_table.to(y.device))

    def decide_block(self, y: torch.Tensor) -> torch.Tensor:
        """Arg-max message index, int64 ``[B]``."""
        return self.block_logits(y).argmax(-1)


class Autoencoder(LearnedCodec):
    """(n, k) autoencoder codec (see the module docstring for architecture, packing and energy).

    Args:
        k: information bits per block, 1 <= k <= 16 (the softmax has 2^k outputs).
        n: channel uses per block: real channel uses (``real_uses=True``, n_c = n/2 complex uses) or complex
            channel uses (``real_uses=False``, n_c = n).
        real_uses: see above.
        hidden: hidden width H of both MLPs (default 2^k, capped at 1024).
        num_hidden_layers: number of Linear+ReLU layers before the output layer in each MLP (>= 1).
        power: ``"block"`` (||x||^2 = n_c per codeword) or ``"average"`` (codebook average = n_c).
        n_rx: number of received complex samples the decoder takes (default: the transmitted samples,
            ``ceil(n/2)`` or ``n``); set it to ``n_c + L - 1`` for a multipath channel in "full" mode.

    Shapes: ``encoder(bits [B,k] float) -> complex64 [B, ceil(n/2) | n]``; ``decoder(y [B, n_rx], no) ->
    float [B, k]`` LLRs; ``decoder.block_logits(y) -> [B, 2^k]``; ``decide(y, no) -> [B, k]`` 0/1 bits of
    the arg-max block.
    """

    def __init__(self, k: int, n: int, *, real_uses: bool = True, hidden: int | None = None,
                 num_hidden_layers: int = 1, power: str = "block", n_rx: int | None = None):
        super().__init__()
        k = check_positive_int("k", k)
        if k > MAX_K:
            raise ConfigError("k", f"must be <= {MAX_K} (the one-hot input and softmax output have 2^k "
                                   f"entries), got {k}")
        n = check_positive_int("n", n)
        if not isinstance(real_uses, bool):
            raise ConfigError("real_uses", f"must be True or False, got {real_uses!r}")
        hidden = min(2 ** k, MAX_DEFAULT_HIDDEN) if hidden is None else check_positive_int("hidden", hidden)
        num_hidden_layers = check_positive_int("num_hidden_layers", num_hidden_layers)
        check_choice("power", power, POWER_MODES)
        n_samples = math.ceil(n / 2) if real_uses else n
        default_rx = n_rx is None
        n_rx = n_samples if n_rx is None else check_positive_int("n_rx", n_rx)
        self._config = dict(k=k, n=n, real_uses=real_uses, hidden=hidden,
                            num_hidden_layers=num_hidden_layers, power=power,
                            n_rx=None if default_rx else n_rx)
        self.num_info_bits = k
        self.num_channel_uses = n / 2 if real_uses else n
        self.encoder = AEEncoder(k, n, real_uses, hidden, num_hidden_layers, power)
        self.decoder = AEDecoder(k, n, real_uses, hidden, num_hidden_layers, n_rx, default_rx)

    @property
    def num_messages(self) -> int:
        return 2 ** self.num_info_bits

    def block_logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.decoder.block_logits(y)

    def decide(self, y: torch.Tensor, no=None) -> torch.Tensor:
        """Bits ``[B, k]`` (0/1, float of y's real dtype) of the arg-max message."""
        return index_to_bits(self.decoder.decide_block(y), self.num_info_bits, dtype=y.real.dtype)
