r"""Pilot-aided classical links over block-fading channels.

:class:`PilotLink` implements the Link protocol ``link(batch_size, ebno_db, generator) -> (bits, bits_hat)``
for a codec over a block-fading channel (flat ``"h"`` or multipath ``"taps"`` state, also inside a
:class:`~metacomm.channels.Compose`). Per block:

1. draw the information bits and encode them, ``x`` ``[B, n_c]`` (``Es = 1``);
2. draw one channel realisation ``state = channel.sample_state(B, n_c)``;
3. send a pilot block of ``num_pilots`` random unit-energy QPSK symbols (known to the receiver, drawn from
   the generator, independent per block; or one fixed sequence given as ``pilots``) and then the data block through the *same* realisation, each with
   fresh noise of variance ``N0`` (the pilot and the data blocks are separate transmissions: no ISI between
   them, as with a guard interval);
4. estimate the channel (``"ls"`` from the pilots, or ``"perfect"``: the true state, a genie reference),
   equalise (``"one-tap"`` for flat fading, ``"lmmse"`` for multipath; see
   :mod:`metacomm.codecs.equalization`) and decode with the per-symbol effective noise variance.

Energy bookkeeping: ``N0 = 1 / (Eb/N0 * rate)`` with the codec's rate; **the pilot energy is not counted in
Eb** (the usual convention for estimation-loss comparisons). The pilots are always transmitted, also with the
genie estimator, so LS and perfect-CSI links with the same seed see the same data-block noise.

With ``account_estimation_error=True`` (default) the LS error variance (:math:`N_0/\sum|p|^2` for flat fading,
the LS error covariance for multipath) is added to the equaliser's noise model, so the demapper LLRs are not
over-confident.

Note on truncated multipath (``MultipathBlockFading(mode="truncate")``, Park et al.'s model): the last
symbols of a block reach the receiver only through the first taps, so for non-minimum-phase taps the linear
LMMSE equaliser cannot recover the tail of the block at any SNR (an error floor concentrated on the last
``L-1`` symbols). ``mode="full"`` keeps all ``n + L - 1`` outputs and has no such floor.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metacomm._validation import ConfigError, check_choice, check_positive_int
from metacomm.channels.base import Channel, make_generator
from metacomm.channels.multipath import convolution_matrix
from metacomm.channels.units import ebnodb_to_no
from metacomm.codecs.base import Codec, random_bits
from metacomm.codecs.equalization import (
    estimation_noise_diagonal,
    lmmse_equalize,
    ls_estimate_flat,
    ls_estimate_multipath,
    one_tap_equalize,
)

__all__ = ["ESTIMATORS", "EQUALIZERS", "PilotLink", "fading_state_key", "qpsk_pilots"]

ESTIMATORS = ("ls", "perfect")
EQUALIZERS = ("one-tap", "lmmse")


def qpsk_pilots(batch_size: int, num_pilots: int, *, generator: torch.Generator | None = None, device=None,
                dtype=torch.complex64) -> torch.Tensor:
    r"""Random unit-energy QPSK pilots :math:`(\pm 1 \pm j)/\sqrt 2`, complex ``[batch_size, num_pilots]``."""
    if generator is not None and device is None:
        device = generator.device
    b = torch.randint(0, 2, (batch_size, num_pilots, 2), generator=generator, device=device)
    rdt = torch.float64 if dtype == torch.complex128 else torch.float32
    s = (1.0 - 2.0 * b.to(rdt)) / math.sqrt(2.0)
    return torch.complex(s[..., 0], s[..., 1]).to(device)


def fading_state_key(state: dict) -> tuple[str, str]:
    """The key of the fading coefficient in a channel state and its kind (``"flat"`` or ``"multipath"``).

    Accepts ``"h"`` / ``"taps"`` and the prefixed keys of a Compose (``"1.h"``); raises :class:`ConfigError`
    when there is none or more than one.
    """
    found = [(k, "flat" if k.rsplit(".", 1)[-1] == "h" else "multipath")
             for k in state if k.rsplit(".", 1)[-1] in ("h", "taps")]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise ConfigError("channel", f"a pilot link needs a block-fading channel with exactly one 'h' (flat) or "
                                       f"'taps' (multipath) state entry; found {what} in {sorted(state)}")
    return found[0]


class PilotLink(nn.Module):
    """Pilot-aided link over a block-fading channel (see the module docstring).

    Args:
        codec: any :class:`~metacomm.codecs.base.Codec` (its decoder must accept a per-symbol N0 ``[B, n_c]``).
        channel: a :class:`~metacomm.channels.Channel` whose state has ``"h"`` ``[B, 1]`` or block-constant
            ``"taps"`` ``[B, L]``.
        num_pilots: pilot symbols per block (>= L for multipath LS).
        estimator: ``"ls"`` or ``"perfect"`` (genie CSI).
        equalizer: ``"one-tap"`` (flat fading) or ``"lmmse"`` (multipath); ``None`` picks by channel.
        account_estimation_error: add the LS estimation-error variance to the equaliser's noise model.
        pilots: optional fixed pilot sequence, complex ``[num_pilots]`` (e.g. a learned receiver's pilots for a
            like-for-like comparison), sent in every block instead of fresh random QPSK pilots; its energy is
            not counted in Eb either.
    """

    def __init__(self, codec: Codec, channel: Channel, num_pilots: int = 16, estimator: str = "ls",
                 equalizer: str | None = None, *, account_estimation_error: bool = True,
                 pilots: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(codec, Codec):
            raise ConfigError("codec", f"expected a metacomm Codec, got {type(codec).__name__}")
        if not isinstance(channel, Channel):
            raise ConfigError("channel", f"expected a metacomm Channel, got {type(channel).__name__}")
        self.codec = codec
        self.channel = channel
        self.num_pilots = check_positive_int("num_pilots", num_pilots)
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        self.account_estimation_error = bool(account_estimation_error)
        if pilots is not None:
            if (not isinstance(pilots, torch.Tensor) or not torch.is_complex(pilots) or pilots.dim() != 1
                    or pilots.shape[0] != self.num_pilots):
                got = (f"{pilots.dtype} {tuple(pilots.shape)}" if isinstance(pilots, torch.Tensor)
                       else type(pilots).__name__)
                raise ConfigError("pilots", f"expected a complex tensor [{self.num_pilots}] (num_pilots), got {got}")
            if not bool(torch.isfinite(torch.view_as_real(pilots)).all()) or float(pilots.abs().square().sum()) == 0:
                raise ConfigError("pilots", "pilot symbols must be finite and not all zero")
            pilots = pilots.detach().clone()
        self.register_buffer("fixed_pilots", pilots, persistent=False)
        n_c = codec.num_channel_uses
        if not float(n_c).is_integer():
            raise ConfigError("codec", f"a pilot link needs an integer number of complex channel uses, got {n_c}")
        self.n_c = int(n_c)
        probe = channel.sample_state(1, self.n_c, generator=make_generator(0, "cpu"), device="cpu")
        self.state_key, self.kind = fading_state_key(probe)
        default_eq = "one-tap" if self.kind == "flat" else "lmmse"
        self.equalizer = check_choice("equalizer", default_eq if equalizer is None else equalizer, EQUALIZERS)
        if self.equalizer != default_eq:
            raise ConfigError("equalizer", f"{self.equalizer!r} does not fit a {self.kind} fading channel; "
                                           f"allowed: {default_eq}")
        if self.kind == "multipath":
            taps = probe[self.state_key]
            if taps.dim() != 2:
                raise ConfigError("channel", f"a pilot link needs block-constant taps [batch, L]; the channel's "
                                               f"taps vary within the block (shape {tuple(taps.shape)}): set its "
                                               f"speed to 0")
            self.num_taps = taps.shape[-1]
            self._stage = self._fading_stage()
            rx = self._stage.output_length(self.num_pilots)
            if self.estimator == "ls" and rx < self.num_taps:
                raise ConfigError("num_pilots", f"LS estimation of {self.num_taps} taps needs at least "
                                                f"{self.num_taps} received pilot samples; got {rx} for "
                                                f"{self.num_pilots} pilots")
        else:
            self.num_taps = 1

    # -- helpers ------------------------------------------------------------------------------------------
    @property
    def num_info_bits(self) -> int:
        return self.codec.num_info_bits

    @property
    def rate(self) -> float:
        return self.codec.rate

    def _fading_stage(self) -> Channel:
        if "." in self.state_key and hasattr(self.channel, "stages"):
            return self.channel.stages[int(self.state_key.split(".", 1)[0])]
        return self.channel

    def conv_matrix(self, taps: torch.Tensor, n: int) -> torch.Tensor:
        """The channel matrix ``[B, n_rx, n]`` of the fading stage for block-constant taps ``[B, L]``."""
        stage = self._stage
        if hasattr(stage, "convolution_matrix"):
            return stage.convolution_matrix({"taps": taps}, n)
        mode = "truncate" if stage.output_length(n) == n else "full"
        return convolution_matrix(taps, n, mode=mode, lag0=int(getattr(stage, "lag0", 0)))

    def equalize(self, y: torch.Tensor, y_p: torch.Tensor | None, pilots: torch.Tensor, no, state: dict):
        """Estimate the channel from ``(pilots, y_p)`` (or take it from ``state``) and equalise ``y``.

        Returns ``(x_hat [B, n_c] complex, no_eff [B, n_c] real)``.
        """
        if self.kind == "flat":
            if self.estimator == "perfect":
                h, err = state[self.state_key], 0.0
            else:
                h, err = ls_estimate_flat(y_p, pilots, no)
                err = err if self.account_estimation_error else 0.0
            return one_tap_equalize(y, h, no, kind="zf", h_err_var=err)
        if self.estimator == "perfect":
            taps, extra = state[self.state_key], None
        else:
            taps, cov = ls_estimate_multipath(y_p, pilots, self.num_taps, no, conv_matrix=self.conv_matrix)
            extra = (estimation_noise_diagonal(cov, self.n_c, self.conv_matrix)
                     if self.account_estimation_error else None)
        H = self.conv_matrix(taps.to(y.dtype), self.n_c)
        return lmmse_equalize(y, H, no, extra_noise_var=extra)

    @torch.no_grad()
    def forward(self, batch_size: int, ebno_db: float, generator: torch.Generator | None = None):
        batch_size = check_positive_int("batch_size", batch_size)
        device = generator.device if generator is not None else None
        bits = random_bits(batch_size, self.codec.num_info_bits, generator=generator, device=device)
        no = ebnodb_to_no(float(ebno_db), self.codec.rate)
        x = self.codec.encoder(bits)
        state = self.channel.sample_state(batch_size, self.n_c, generator=generator, device=x.device,
                                          dtype=x.dtype)
        if self.fixed_pilots is not None:
            pilots = self.fixed_pilots.to(device=x.device, dtype=x.dtype).expand(batch_size, -1)
        else:
            pilots = qpsk_pilots(batch_size, self.num_pilots, generator=generator, device=x.device, dtype=x.dtype)
        y_p = self.channel(pilots, no, state=state, generator=generator)
        y = self.channel(x, no, state=state, generator=generator)
        x_hat, no_eff = self.equalize(y, y_p, pilots, no, state)
        return bits, self.codec.decide(x_hat, no_eff).to(bits.dtype)

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, num_pilots={self.num_pilots}, estimator={self.estimator!r}, "
                f"equalizer={self.equalizer!r}")
