r"""Neural receiver for multipath (ISI) block fading, with pilots, against pilot-LS + LMMSE.

Frame (one channel realisation per block, so :class:`~metacomm.codecs.base.CodecLink` and the BER engine use it
unchanged)::

    x = [ pilots (P) | zeros (G = L-1 guard) | data symbols (n_d, Gray QPSK / 16-QAM via Sionna's Mapper) ]

The guard keeps the pilot tail off the data, so the receiver sees exactly what
:class:`~metacomm.codecs.links.PilotLink` sees (a pilot block and a data block through the same taps, each
``n`` or ``n + L - 1`` samples for ``channel_mode`` "truncate" / "full"). The pilots are a fixed QPSK sequence
(unit energy, drawn once from ``pilot_seed`` and stored with the weights).

Receiver (decoder, ``(y [B, frame_rx], no) -> LLRs [B, n_d m]``):

1. LS tap estimate :math:`\hat h = (X^H X)^{-1} X^H y_p` from the received pilots and its error covariance;
2. unbiased LMMSE block equalisation of the data with :math:`\hat H`, the estimation error added to the noise
   model, giving :math:`\hat x_t` and the per-symbol error variance :math:`N_{0,\mathrm{eff},t}`
   (:mod:`metacomm.codecs.equalization`);
3. LLRs = Sionna APP demapper on :math:`(\hat x, N_{0,\mathrm{eff}})` **plus** an MLP correction computed from
   :math:`[\Re/\Im\, y_d, \Re/\Im\, y_p, \Re/\Im\, \hat h, \Re/\Im\, \hat x, \log_{10} N_{0,\mathrm{eff}},
   \log_{10} N_0]`. The MLP's output layer starts at zero, so the untrained receiver *is* pilot-LS + LMMSE + APP;
   training with the bit-wise BCE (BMD rate) over the channel distribution learns the non-linear corrections
   (residual ISI, estimation error, truncated tails) that a linear equaliser cannot make.

Energy: Es = 1 per data symbol; the pilot energy is **not** counted in Eb (as in ``PilotLink``):
``num_channel_uses = n_d``, ``rate = m`` bits per data symbol, although the encoder emits the whole frame
(``frame_length = P + G + n_d`` samples).
"""

from __future__ import annotations

import torch
from torch import nn

from metacomm._validation import ConfigError, check_choice, check_nonneg_int, check_positive_int
from metacomm.channels.base import make_generator
from metacomm.codecs.learned_base import LearnedCodec, reset_linear_

__all__ = ["NeuralReceiver", "CHANNEL_MODES", "DATA_BITS_PER_SYMBOL"]

CHANNEL_MODES = ("truncate", "full")
DATA_BITS_PER_SYMBOL = (2, 4)


def _fixed_qpsk(num: int, seed: int) -> torch.Tensor:
    g = make_generator(seed, "cpu")
    b = torch.randint(0, 2, (num, 2), generator=g).float()
    s = (1.0 - 2.0 * b) / (2.0 ** 0.5)
    return torch.complex(s[:, 0], s[:, 1])


class FrameEncoder(nn.Module):
    """bits ``[B, n_d m]`` -> frame complex64 ``[B, P + G + n_d]`` (pilots, guard zeros, Gray QAM data)."""

    def __init__(self, bits_per_symbol: int, num_data: int, num_guard: int, pilots: torch.Tensor):
        super().__init__()
        from metacomm.codecs.qam import QAMMapper

        self.m, self.num_data, self.num_guard = bits_per_symbol, num_data, num_guard
        self.register_buffer("pilots", pilots)
        self.mapper = QAMMapper(bits_per_symbol)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        if bits.shape[-1] != self.num_data * self.m:
            raise ConfigError("bits", f"expected [batch, {self.num_data * self.m}] bits, got {tuple(bits.shape)}")
        data = self.mapper(bits.cpu()).to(bits.device) if bits.device.type != "cpu" else self.mapper(bits)
        b = bits.shape[0]
        p = self.pilots.to(data.dtype).expand(b, -1)
        guard = torch.zeros(b, self.num_guard, dtype=data.dtype, device=data.device)
        return torch.cat([p.to(data.device), guard, data], dim=-1)


class NeuralRxDecoder(nn.Module):
    """Frame ``y [B, frame_rx]`` + N0 -> data-bit LLRs ``[B, n_d m]`` (see the module docstring)."""

    def __init__(self, bits_per_symbol: int, num_data: int, num_pilots: int, num_guard: int, num_taps: int,
                 channel_mode: str, hidden: int, num_hidden_layers: int, pilots: torch.Tensor):
        super().__init__()
        from metacomm.codecs.qam import QAMDemapper

        self.m, self.n_d, self.n_p, self.n_g, self.L = bits_per_symbol, num_data, num_pilots, num_guard, num_taps
        self.mode = channel_mode
        tail = num_taps - 1 if channel_mode == "full" else 0
        self.n_p_rx, self.n_d_rx = num_pilots + tail, num_data + tail
        self.frame_rx = num_pilots + num_guard + num_data + tail
        self.register_buffer("pilots", pilots.clone(), persistent=False)
        self.demapper = QAMDemapper(bits_per_symbol)
        d_in = 2 * (self.n_d_rx + self.n_p_rx + num_taps + num_data) + num_data + 1
        layers: list[nn.Module] = []
        d = d_in
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        layers.append(nn.Linear(d, num_data * bits_per_symbol))
        self.net = nn.Sequential(*layers)

    def _conv(self, taps: torch.Tensor, n: int) -> torch.Tensor:
        from metacomm.channels.multipath import convolution_matrix

        return convolution_matrix(taps, n, mode=self.mode)

    @torch.no_grad()
    def classical(self, y: torch.Tensor, no):
        """Pilot-LS + LMMSE: ``(y_data, y_p, taps_hat, x_hat [B, n_d], no_eff [B, n_d], no [B])``."""
        from metacomm.codecs.equalization import (
            estimation_noise_diagonal,
            lmmse_equalize,
            ls_estimate_multipath,
        )

        if not torch.is_complex(y) or y.dim() != 2 or y.shape[-1] != self.frame_rx:
            raise ConfigError("y", f"expected the received frame, complex [batch, {self.frame_rx}], got "
                                   f"{y.dtype} {tuple(y.shape)}")
        b = y.shape[0]
        no_b = torch.as_tensor(no, dtype=y.real.dtype, device=y.device).reshape(-1).expand(b)
        y_p = y[:, : self.n_p_rx]
        start = self.n_p + self.n_g
        y_d = y[:, start: start + self.n_d_rx]
        taps, cov = ls_estimate_multipath(y_p, self.pilots.to(y.device), self.L, no_b, conv_matrix=self._conv)
        extra = estimation_noise_diagonal(cov, self.n_d, self._conv)
        x_hat, no_eff = lmmse_equalize(y_d, self._conv(taps.to(y.dtype), self.n_d), no_b, extra_noise_var=extra)
        return y_d, y_p, taps, x_hat, no_eff, no_b

    def forward(self, y: torch.Tensor, no) -> torch.Tensor:
        y_d, y_p, taps, x_hat, no_eff, no_b = self.classical(y, no)
        base = self.demapper(x_hat, no_eff)
        tiny = torch.finfo(no_eff.dtype).tiny
        feats = torch.cat([y_d.real, y_d.imag, y_p.real, y_p.imag, taps.real, taps.imag, x_hat.real,
                           x_hat.imag, torch.log10(no_eff.clamp_min(tiny)),
                           torch.log10(no_b.clamp_min(tiny)).unsqueeze(-1)], dim=-1)
        return base + self.net(feats)


class NeuralReceiver(LearnedCodec):
    """Pilot-aided neural receiver codec over L-tap multipath block fading (module docstring for the frame).

    Args:
        bits_per_symbol: data modulation, 2 (Gray QPSK) or 4 (Gray 16-QAM).
        num_data: data symbols per block n_d (k = n_d m bits).
        num_pilots: pilot symbols P per block (P >= L in "truncate" mode for the LS estimate).
        num_taps: channel taps L the receiver assumes (the channel's ``num_taps``).
        channel_mode: the multipath channel's ``mode``, ``"truncate"`` or ``"full"``.
        hidden, num_hidden_layers: the correction MLP.
        pilot_seed: seed of the fixed QPSK pilot sequence.

    Shapes: ``encoder(bits [B, k]) -> frame [B, P + L - 1 + n_d]``; ``decoder(y [B, frame_rx], no) -> [B, k]``.
    """

    def __init__(self, bits_per_symbol: int = 2, num_data: int = 16, num_pilots: int = 8, num_taps: int = 3,
                 channel_mode: str = "truncate", *, hidden: int = 128, num_hidden_layers: int = 2,
                 pilot_seed: int = 1234):
        super().__init__()
        m = check_positive_int("bits_per_symbol", bits_per_symbol)
        if m not in DATA_BITS_PER_SYMBOL:
            raise ConfigError("bits_per_symbol", f"unsupported value {m}; allowed: 2 (QPSK), 4 (16-QAM)")
        n_d = check_positive_int("num_data", num_data)
        n_p = check_positive_int("num_pilots", num_pilots)
        L = check_positive_int("num_taps", num_taps)
        check_choice("channel_mode", channel_mode, CHANNEL_MODES)
        if channel_mode == "truncate" and n_p < L:
            raise ConfigError("num_pilots", f"LS estimation of {L} taps needs num_pilots >= {L}, got {n_p}")
        hidden = check_positive_int("hidden", hidden)
        num_hidden_layers = check_positive_int("num_hidden_layers", num_hidden_layers)
        pilot_seed = check_nonneg_int("pilot_seed", pilot_seed)
        self._config = dict(bits_per_symbol=m, num_data=n_d, num_pilots=n_p, num_taps=L,
                            channel_mode=channel_mode, hidden=hidden, num_hidden_layers=num_hidden_layers,
                            pilot_seed=pilot_seed)
        pilots = _fixed_qpsk(n_p, pilot_seed)
        self.num_info_bits = n_d * m
        self.num_channel_uses = n_d
        self.frame_length = n_p + (L - 1) + n_d
        self.encoder = FrameEncoder(m, n_d, L - 1, pilots)
        self.decoder = NeuralRxDecoder(m, n_d, n_p, L - 1, L, channel_mode, hidden, num_hidden_layers, pilots)
        self.reset_parameters(None)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Hidden layers re-drawn from ``generator``; the output layer zeroed (untrained = LS + LMMSE + APP)."""
        layers = [m for m in self.decoder.net if isinstance(m, nn.Linear)]
        for layer in layers[:-1]:
            reset_linear_(layer, generator)
        with torch.no_grad():
            layers[-1].weight.zero_()
            layers[-1].bias.zero_()
