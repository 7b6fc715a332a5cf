r"""Hamming(7,4) with BPSK: soft-decision maximum-likelihood and hard-decision syndrome decoding.

Code: systematic generator :math:`G = [I_4 \mid P]` and parity-check matrix :math:`H = [P^T \mid I_3]` with

.. math::
    P = \begin{pmatrix}1&1&0\\1&0&1\\0&1&1\\1&1&1\end{pmatrix},\qquad c = u G \bmod 2,

minimum distance 3 (corrects every single error). Encoding uses Sionna's
:class:`~sionna.phy.fec.linear.LinearEncoder` with this ``G``.

Modulation and power: each code bit is one BPSK symbol :math:`s = 1 - 2c \in \{+1, -1\}` sent as a complex
channel use with zero imaginary part, ``Es = 1``. A codeword takes ``n_c = 7`` complex channel uses for
``k = 4`` information bits, so ``rate = 4/7`` bits per complex use and

.. math::
    E_b/N_0 = \frac{E_s/N_0}{4/7}, \qquad
    p = Q\!\left(\sqrt{2 \cdot \tfrac{4}{7} \cdot E_b/N_0}\right) \text{ (raw BPSK bit error probability)},

and the hard-decision block error rate is :math:`1 - (1-p)^7 - 7p(1-p)^6`.

Decoders (``y`` complex ``[B, 7c]``, only ``r = Re(y)`` is used; N0 per complex sample, N0/2 in the real
dimension):

* ``"ml"``: the codeword log-likelihoods are :math:`L_m = \sum_j 2 r_j s_{m,j} / N_{0,j}` (up to a constant
  common to all 16 codewords), i.e. an exhaustive correlation with the 16 codewords. The block decision
  (:meth:`Hamming74.decide`) is :math:`\arg\max_m L_m` (ML for equiprobable messages). Bit logits are the
  exact marginals :math:`\ln \sum_{m: u_i=1} e^{L_m} - \ln \sum_{m: u_i=0} e^{L_m}` (``bit_llr="exact"``)
  or their max-log approximation (``bit_llr="maxlog"``).
* ``"hard"``: per-symbol hard decisions :math:`\hat c_j = [r_j < 0]`, syndrome :math:`z = H \hat c^T`,
  flip the position whose column of ``H`` equals ``z`` (single-error correction), keep the 4 systematic bits.
  Its logits are the hard decisions scaled by the BSC reliability :math:`\ln\frac{1-p}{p}`,
  :math:`p = Q(\sqrt{2/N_0})` (the raw channel crossover probability, a documented convention: the hard
  decoder has no soft output).

A block can hold ``num_codewords`` independent codewords (``k = 4c``, ``n_c = 7c``); a block is in error when
any of its codewords is.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import torch
from sionna.phy.fec.linear import LinearEncoder
from torch import nn

from metacomm._sionna import SionnaBlocks, sionna_device
from metacomm._validation import check_choice, check_positive_int
from metacomm.channels.units import broadcast_no
from metacomm.codecs.base import Codec

__all__ = ["HAMMING74_G", "HAMMING74_H", "Hamming74", "Hamming74Encoder", "Hamming74Decoder", "HAMMING_DECODERS"]

_P = [[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
#: Systematic generator matrix [4, 7] (rows: information bits).
HAMMING74_G = torch.tensor([[1 if i == j else 0 for j in range(4)] + _P[i] for i in range(4)], dtype=torch.float32)
#: Parity-check matrix [3, 7], ``H G^T = 0 (mod 2)``.
HAMMING74_H = torch.tensor([[_P[j][i] for j in range(4)] + [1 if i == j else 0 for j in range(3)]
                            for i in range(3)], dtype=torch.float32)
HAMMING_DECODERS = ("ml", "hard")
BIT_LLR_METHODS = ("exact", "maxlog")


class Hamming74Encoder(nn.Module):
    """Info bits ``[B, 4c]`` (0/1 float) -> BPSK symbols ``[B, 7c]`` complex (``+1`` for code bit 0).

    Sionna's :class:`~sionna.phy.fec.linear.LinearEncoder` runs on the device of the bits (built there on first
    use, :class:`metacomm._sionna.SionnaBlocks`); ``device`` is where it is built first (``None``: CPU).
    """

    def __init__(self, num_codewords: int = 1, *, device=None):
        super().__init__()
        self.num_codewords = check_positive_int("num_codewords", num_codewords)
        self._linear = SionnaBlocks(partial(LinearEncoder, HAMMING74_G.numpy()), device=sionna_device(device))

    @property
    def linear(self) -> LinearEncoder:
        """The Sionna encoder on the construction device."""
        return self._linear.get()

    def codewords(self, bits: torch.Tensor) -> torch.Tensor:
        """Code bits ``[B, 7c]`` (0/1 float) of the info bits ``[B, 4c]``."""
        b = bits.reshape(*bits.shape[:-1], self.num_codewords, 4)
        c = self._linear.get(bits.device)(b)
        return c.reshape(*bits.shape[:-1], 7 * self.num_codewords)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        c = self.codewords(bits)
        s = 1.0 - 2.0 * c
        return torch.complex(s, torch.zeros_like(s))


class Hamming74Decoder(nn.Module):
    """``(y [B, 7c] complex, N0)`` -> info-bit logits ``[B, 4c]``; ``method`` ``"ml"`` or ``"hard"``."""

    def __init__(self, num_codewords: int = 1, method: str = "ml", bit_llr: str = "exact", *, device=None):
        super().__init__()
        self.num_codewords = check_positive_int("num_codewords", num_codewords)
        self.method = check_choice("decoder", method, HAMMING_DECODERS)
        self.bit_llr = check_choice("bit_llr", bit_llr, BIT_LLR_METHODS)
        dev = torch.device(sionna_device(device))
        msgs = torch.tensor(list(itertools.product([0, 1], repeat=4)), dtype=torch.float32)  # [16, 4]
        cws = torch.remainder(msgs @ HAMMING74_G, 2.0)  # [16, 7]
        # Buffers (not parameters): the message table, the BPSK codebook and the syndrome -> position table.
        self.register_buffer("messages", msgs.to(dev), persistent=False)
        self.register_buffer("codebook", (1.0 - 2.0 * cws).to(dev), persistent=False)  # [16, 7] +-1
        self.register_buffer("parity_check", HAMMING74_H.to(dev), persistent=False)
        # syndrome value (as integer z0*4 + z1*2 + z2) -> error position (7 = no error)
        table = torch.full((8,), 7, dtype=torch.long)
        for j in range(7):
            col = HAMMING74_H[:, j].long()
            table[int(col[0] * 4 + col[1] * 2 + col[2])] = j
        self.register_buffer("syndrome_table", table.to(dev), persistent=False)

    # -- soft ML -----------------------------------------------------------------------------------------
    def codeword_metrics(self, y: torch.Tensor, no) -> torch.Tensor:
        r"""Codeword log-likelihoods :math:`L_m = \sum_j 2 r_j s_{m,j} / N_{0,j}`, ``[B, c, 16]``."""
        no_t = broadcast_no(no, y)
        r = y.real if torch.is_complex(y) else y
        w = (2.0 * r / no_t).reshape(*r.shape[:-1], self.num_codewords, 7)
        return w @ self.codebook.to(w.dtype).T

    def ml_messages(self, y: torch.Tensor, no=1.0) -> torch.Tensor:
        """Block-ML information bits ``[B, 4c]`` (argmax over the 16 codewords of each codeword slot)."""
        idx = self.codeword_metrics(y, no).argmax(dim=-1)  # [B, c]
        return self.messages[idx].to(y.real.dtype).reshape(*y.shape[:-1], 4 * self.num_codewords)

    def _ml_logits(self, y, no):
        metric = self.codeword_metrics(y, no)  # [B, c, 16]
        ones = self.messages.bool()  # [16, 4]
        m = metric.unsqueeze(-1)  # [B, c, 16, 1]
        neg_inf = torch.tensor(-math.inf, dtype=metric.dtype, device=metric.device)
        m1 = torch.where(ones, m, neg_inf)
        m0 = torch.where(~ones, m, neg_inf)
        if self.bit_llr == "exact":
            llr = torch.logsumexp(m1, dim=-2) - torch.logsumexp(m0, dim=-2)
        else:
            llr = m1.amax(dim=-2) - m0.amax(dim=-2)
        return llr.reshape(*y.shape[:-1], 4 * self.num_codewords)

    # -- hard syndrome decoding --------------------------------------------------------------------------
    def hard_messages(self, y: torch.Tensor) -> torch.Tensor:
        """Syndrome-decoded information bits ``[B, 4c]`` from per-symbol hard decisions."""
        r = y.real if torch.is_complex(y) else y
        c_hat = (r < 0).to(r.dtype).reshape(*r.shape[:-1], self.num_codewords, 7)
        z = torch.remainder(c_hat @ self.parity_check.to(r.dtype).T, 2.0).long()  # [B, c, 3]
        pos = self.syndrome_table[z[..., 0] * 4 + z[..., 1] * 2 + z[..., 2]]  # [B, c]
        flip = nn.functional.one_hot(pos, 8)[..., :7].to(r.dtype)
        c_corr = torch.remainder(c_hat + flip, 2.0)
        return c_corr[..., :4].reshape(*r.shape[:-1], 4 * self.num_codewords)

    def forward(self, y: torch.Tensor, no) -> torch.Tensor:
        if self.method == "ml":
            return self._ml_logits(y, no)
        u = self.hard_messages(y)
        no_t = broadcast_no(no, y)
        # BSC crossover p = Q(sqrt(2/N0)); logit magnitude ln((1-p)/p), averaged over the codeword if per-symbol.
        p = 0.5 * torch.special.erfc(torch.sqrt(1.0 / no_t))
        p = p.clamp(min=torch.finfo(p.dtype).tiny, max=0.5)
        rel = torch.log1p(-p) - torch.log(p)
        rel = torch.broadcast_to(rel, y.shape)
        rel = rel.reshape(*y.shape[:-1], self.num_codewords, 7).mean(-1)  # [B, c]
        rel = rel.repeat_interleave(4, dim=-1)
        return (2.0 * u - 1.0) * rel


class Hamming74(Codec):
    """Hamming(7,4) + BPSK codec (see module docstring); ``decoder`` ``"ml"`` (soft) or ``"hard"``.

    ``k = 4 * num_codewords`` info bits, ``n_c = 7 * num_codewords`` complex channel uses, ``rate = 4/7``.
    :meth:`decide` returns the block decision (ML codeword or syndrome-corrected word), not the sign of the
    marginal bit logits.
    """

    def __init__(self, decoder: str = "ml", *, num_codewords: int = 1, bit_llr: str = "exact", device=None):
        super().__init__()
        self.num_codewords = check_positive_int("num_codewords", num_codewords)
        self.decoder_method = check_choice("decoder", decoder, HAMMING_DECODERS)
        self.num_info_bits = 4 * self.num_codewords
        self.num_channel_uses = 7 * self.num_codewords
        self.encoder = Hamming74Encoder(self.num_codewords, device=device)
        self.decoder = Hamming74Decoder(self.num_codewords, decoder, bit_llr, device=device)

    def decide(self, y: torch.Tensor, no=1.0) -> torch.Tensor:
        if self.decoder_method == "ml":
            return self.decoder.ml_messages(y, no)
        return self.decoder.hard_messages(y)

    def extra_repr(self) -> str:
        return f"decoder={self.decoder_method!r}, num_codewords={self.num_codewords}"
