r"""End-to-end neural receiver for multipath block fading: :class:`NetRxDecoder` (``architecture="net"`` of
:class:`~metacomm.codecs.neural_rx.NeuralReceiver`).

Same frame as the iterative receiver (``[pilots P | L-1 guard zeros | n_d data symbols]``, one channel
realisation per block). No equaliser, no demapper and no iterations: a 1-D residual convolutional network over
the data-symbol index maps the received block to the bit LLRs ``[B, n_d m]`` (``ln P(b=1)/P(b=0)``).

Input (all derived from the received frame :math:`\mathbf y` and :math:`N_0`; nothing from the true channel):

* :math:`\hat{\mathbf h} = (\mathbf X^H\mathbf X)^{-1}\mathbf X^H\mathbf y_p` -- the LS tap estimate, a fixed
  linear map of the received pilots. It loses nothing: under white Gaussian noise :math:`\mathbf X^H\mathbf y_p`
  is a sufficient statistic of the pilots for :math:`\mathbf h`, and :math:`\hat{\mathbf h}` is an invertible
  function of it.
* Normalisation: every complex quantity is divided by the received-power scale
  :math:`\rho = \sqrt{\|\hat{\mathbf h}\|^2 + N_0}` (so a deep fade and a strong channel give inputs of the same
  size), products by :math:`\rho^2`; :math:`\log_{10}N_0` and :math:`\log_{10}\|\hat{\mathbf h}\|^2` carry the
  scale.
* Per data symbol :math:`t` (one column of the network input): the :math:`L` received samples that carry it,
  :math:`y_t\dots y_{t+L-1}` (zero beyond the block) with a validity mask, and the per-tap matched-filter
  products :math:`\hat h_\ell^* y_{t+\ell}` (their sum is the matched filter of symbol :math:`t`; giving the
  products spares the ReLU network from learning complex multiplications of two inputs);
* block-wide, repeated in every column: :math:`\hat{\mathbf h}`, the tap correlations
  :math:`\hat h_\ell^*\hat h_k` (:math:`\ell \le k`), :math:`\log_{10}N_0`, :math:`\log_{10}\|\hat{\mathbf h}\|^2`.

Network: a 1x1 input convolution to ``hidden`` channels, ``num_blocks`` residual blocks
:math:`z \leftarrow z + W_2 * \mathrm{ReLU}(W_1 * \mathrm{ReLU}(z) + G\,\overline{W_1 * \mathrm{ReLU}(z)})`
(kernel-3 convolutions over the symbol index; :math:`\overline{\cdot}` the mean over the block, mixed by the
linear map :math:`G`, so every block sees block-wide context such as the decided data, which can refine the
channel estimate), and a 1x1 output convolution to the ``m`` LLRs of each symbol. Trained end to end with the
bit-wise BCE (:func:`metacomm.codecs.training.train`, ``loss="bce"``) over random channels and Eb/N0.
"""

from __future__ import annotations

import torch
from torch import nn

from metacomm._validation import ConfigError
from metacomm.channels.units import broadcast_no
from metacomm.codecs.learned_base import reset_linear_

__all__ = ["NetRxDecoder"]

_KERNEL = 3


class _Block(nn.Module):
    """Residual block with block-mean context (see the module docstring)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.c1 = nn.Conv1d(hidden, hidden, _KERNEL, padding=_KERNEL // 2)
        self.glob = nn.Linear(hidden, hidden)
        self.c2 = nn.Conv1d(hidden, hidden, _KERNEL, padding=_KERNEL // 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.c1(torch.relu(z))
        h = h + self.glob(h.mean(-1)).unsqueeze(-1)
        return z + self.c2(torch.relu(h))


class NetRxDecoder(nn.Module):
    """Frame ``y [B, frame_rx]`` + N0 (float or ``[B]``) -> data-bit LLRs ``[B, n_d m]`` (module docstring)."""

    def __init__(self, bits_per_symbol: int, num_data: int, num_pilots: int, num_guard: int, num_taps: int,
                 channel_mode: str, hidden: int, num_blocks: int, pilots: torch.Tensor):
        super().__init__()
        self.m, self.n_d, self.n_p, self.n_g, self.L = bits_per_symbol, num_data, num_pilots, num_guard, num_taps
        self.mode = channel_mode
        tail = num_taps - 1 if channel_mode == "full" else 0
        self.n_p_rx, self.n_d_rx = num_pilots + tail, num_data + tail
        self.frame_rx = num_pilots + num_guard + num_data + tail
        self.register_buffer("pilots", pilots.clone(), persistent=False)
        self.inp = nn.Conv1d(self.num_features, hidden, 1)
        self.blocks = nn.ModuleList(_Block(hidden) for _ in range(num_blocks))
        self.out = nn.Conv1d(hidden, bits_per_symbol, 1)

    @property
    def num_features(self) -> int:
        """Input channels per data symbol: 2L window + L mask + 2L products + 2L taps + L(L+1) correlations + 2."""
        L = self.L
        return 7 * L + L * (L + 1) + 2

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Every convolution / linear layer re-drawn from ``generator`` (PyTorch's default law)."""
        for mod in self.modules():
            if isinstance(mod, (nn.Conv1d, nn.Linear)):
                reset_linear_(mod, generator)

    def _conv(self, taps: torch.Tensor, n: int) -> torch.Tensor:
        from metacomm.channels.multipath import convolution_matrix

        return convolution_matrix(taps, n, mode=self.mode)

    def features(self, y: torch.Tensor, no) -> torch.Tensor:
        """Network input ``[B, num_features, n_d]`` (module docstring)."""
        from metacomm.codecs.equalization import ls_estimate_multipath

        if not torch.is_complex(y) or y.dim() != 2 or y.shape[-1] != self.frame_rx:
            raise ConfigError("y", f"expected the received frame, complex [batch, {self.frame_rx}], got "
                                   f"{y.dtype} {tuple(y.shape)}")
        b, n, L = y.shape[0], self.n_d, self.L
        rdt = y.real.dtype
        no_b = broadcast_no(no, y, per_block=True).expand(b, 1).reshape(b)
        start = self.n_p + self.n_g
        y_p, y_d = y[:, : self.n_p_rx], y[:, start: start + self.n_d_rx]
        taps = ls_estimate_multipath(y_p, self.pilots.to(y.device), L, conv_matrix=self._conv)  # [B, L]
        tiny = torch.finfo(rdt).tiny
        energy = taps.abs().square().sum(-1)  # [B]
        p2 = (energy + no_b).clamp_min(tiny).unsqueeze(-1)  # rho^2
        rho = p2.sqrt()
        pad = n + L - 1 - y_d.shape[-1]
        padded = torch.cat([y_d, y_d.new_zeros(b, pad)], dim=-1)
        win = padded.unfold(-1, L, 1)[:, :n]  # [B, n_d, L]: y_t .. y_{t+L-1}
        valid = (torch.arange(n, device=y.device).unsqueeze(-1) + torch.arange(L, device=y.device)
                 < y_d.shape[-1]).to(rdt).expand(b, n, L)
        prod = taps.conj().unsqueeze(1) * win / p2.unsqueeze(-1)  # [B, n_d, L]
        iu = torch.triu_indices(L, L, device=y.device)
        corr = (taps.conj().unsqueeze(-1) * taps.unsqueeze(-2))[:, iu[0], iu[1]] / p2  # [B, L(L+1)/2]
        glob = torch.cat([taps.real / rho, taps.imag / rho, corr.real, corr.imag,
                          torch.log10(no_b.clamp_min(tiny)).unsqueeze(-1),
                          torch.log10(energy.clamp_min(tiny)).unsqueeze(-1)], dim=-1)
        w = win / rho.unsqueeze(-1)
        feats = torch.cat([w.real, w.imag, valid, prod.real, prod.imag,
                           glob.unsqueeze(1).expand(b, n, -1)], dim=-1)
        return feats.transpose(1, 2)

    def forward(self, y: torch.Tensor, no) -> torch.Tensor:
        z = self.inp(self.features(y, no))
        for blk in self.blocks:
            z = blk(z)
        return self.out(torch.relu(z)).transpose(1, 2).reshape(y.shape[0], -1)
