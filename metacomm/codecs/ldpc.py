r"""5G NR LDPC (3GPP TS 38.212) + Gray QAM: Sionna's LDPC5GEncoder / LDPC5GDecoder and Mapper / Demapper.

Chain per block::

    u [B, k] --LDPC5GEncoder (rate matching, output interleaver)--> c [B, n]
      --Mapper (m bits/symbol)--> x [B, n/m]  --channel-->  y [B, n/m]
      --APP/max-log Demapper(y, N0)--> LLR [B, n] --LDPC5GDecoder (BP, num_iter)--> logits [B, k]

Rate and Eb/N0: ``rate = k / (n/m) = (k/n) * m`` information bits per complex channel use, so
``Eb/N0 = Es/N0 / ((k/n) m)`` with ``Es = 1`` (the usual Sionna convention,
``ebnodb2no(ebno_db, m, k/n)``).

Supported block lengths (those of Sionna's 5G encoder, TS 38.212 5.2.2 / 5.4.2.1): ``12 <= k <= 8448``
information bits, ``n <= 316 * 384 = 121344`` code bits, code rate ``1/5 <= k/n <= 0.95`` (rates above
948/1024 trigger Sionna's warning), and ``n`` a multiple of the bits per symbol ``m``.

The decoder is flooding belief propagation with the exact box-plus check-node update (Sionna's default),
``num_iter`` iterations without early stopping; it returns soft information-bit logits
``ln P(u=1)/P(u=0)`` (clipped to +-20 by Sionna). The encoder and the decoder each own their own
:class:`~sionna.phy.fec.ldpc.LDPC5GEncoder` instance (one owner per module, no shared sub-modules).
"""

from __future__ import annotations

from functools import partial

import torch
from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
from torch import nn

from metacomm._sionna import SionnaBlocks, sionna_device
from metacomm._validation import ConfigError, check_choice, check_positive_int
from metacomm.codecs.base import Codec
from metacomm.codecs.qam import (
    DEMAPPING_METHODS,
    QAMDemapper,
    QAMMapper,
    check_bits_per_symbol,
    sionna_precision,
)

__all__ = ["LDPC5G", "LDPC5G_K_RANGE", "LDPC5G_N_MAX", "LDPC5G_RATE_RANGE", "check_ldpc5g_params"]

LDPC5G_K_RANGE = (12, 8448)
LDPC5G_N_MAX = 316 * 384
LDPC5G_RATE_RANGE = (1.0 / 5.0, 0.95)
_SUPPORTED = (f"supported: {LDPC5G_K_RANGE[0]} <= k <= {LDPC5G_K_RANGE[1]} information bits, "
              f"n <= {LDPC5G_N_MAX} code bits, 1/5 <= k/n <= 0.95, n a multiple of the bits per symbol")


def check_ldpc5g_params(k, n, bits_per_symbol: int = 2, *, k_field: str = "block_length",
                        n_field: str = "n") -> tuple[int, int]:
    """Validate 5G NR LDPC parameters; raise :class:`ConfigError` naming the field and the supported ranges."""
    k = check_positive_int(k_field, k)
    n = check_positive_int(n_field, n)
    if not LDPC5G_K_RANGE[0] <= k <= LDPC5G_K_RANGE[1]:
        raise ConfigError(k_field, f"k={k} is not supported by 5G NR LDPC; {_SUPPORTED}")
    if n > LDPC5G_N_MAX:
        raise ConfigError(n_field, f"n={n} is not supported by 5G NR LDPC; {_SUPPORTED}")
    rate = k / n
    if not LDPC5G_RATE_RANGE[0] <= rate <= LDPC5G_RATE_RANGE[1]:
        raise ConfigError(n_field, f"code rate k/n={k}/{n}={rate:.4g} is not supported by 5G NR LDPC; "
                                   f"{_SUPPORTED}")
    if n % bits_per_symbol:
        raise ConfigError(n_field, f"n={n} is not a multiple of {bits_per_symbol} bits per symbol; {_SUPPORTED}")
    return k, n


def _ldpc_decoder(k: int, n: int, bits_per_symbol: int, num_iter: int, precision: str, *,
                  device: str) -> LDPC5GDecoder:
    # Its own encoder instance: the decoder needs the code description, not the transmitter's module.
    code = LDPC5GEncoder(k, n, num_bits_per_symbol=bits_per_symbol, precision=precision, device=device)
    return LDPC5GDecoder(code, num_iter=num_iter, hard_out=False, return_infobits=True, precision=precision,
                         device=device)


class LDPC5GEncoderBlock(nn.Module):
    """Info bits ``[B, k]`` -> QAM symbols ``[B, n/m]`` (5G LDPC encoding + rate matching + Gray mapping).

    The Sionna blocks run on the device of the bits (:class:`metacomm._sionna.SionnaBlocks`); ``device`` is
    where they are built first (``None``: CPU).
    """

    def __init__(self, k: int, n: int, bits_per_symbol: int, *, device=None, precision: str = "single"):
        super().__init__()
        self._ldpc = SionnaBlocks(partial(LDPC5GEncoder, k, n, num_bits_per_symbol=bits_per_symbol,
                                          precision=precision), device=sionna_device(device))
        self.mapper = QAMMapper(bits_per_symbol, device=device, precision=precision)

    @property
    def ldpc(self) -> LDPC5GEncoder:
        """The Sionna encoder on the construction device."""
        return self._ldpc.get()

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        return self.mapper(self._ldpc.get(bits.device)(bits))


class LDPC5GDecoderBlock(nn.Module):
    """``(y [B, n/m], N0)`` -> info-bit logits ``[B, k]`` (demapper + BP decoder)."""

    def __init__(self, k: int, n: int, bits_per_symbol: int, demapping: str = "app", num_iter: int = 20, *,
                 device=None, precision: str = "single"):
        super().__init__()
        self.demapper = QAMDemapper(bits_per_symbol, demapping, device=device, precision=precision)
        self._bp = SionnaBlocks(partial(_ldpc_decoder, k, n, bits_per_symbol, num_iter, precision),
                                device=sionna_device(device))

    @property
    def bp(self) -> LDPC5GDecoder:
        """The Sionna BP decoder on the construction device."""
        return self._bp.get()

    def forward(self, y: torch.Tensor, no) -> torch.Tensor:
        return self._bp.get(y.device)(self.demapper(y, no))


class LDPC5G(Codec):
    """5G NR LDPC code (``k`` info bits, ``n`` code bits) on Gray ``2^m``-QAM (BPSK for ``m = 1``).

    Args:
        k: information bits per block (12..8448).
        n: code bits per block (``k/n`` in [1/5, 0.95], ``n <= 121344``, multiple of ``bits_per_symbol``).
        bits_per_symbol: 1, 2, 4 or 6 (BPSK, QPSK, 16-QAM, 64-QAM).
        demapping: ``"app"`` or ``"maxlog"`` (soft demapper feeding the decoder).
        num_iter: belief-propagation iterations (no early stopping).
        device, precision: as for :class:`~metacomm.codecs.qam.UncodedQAM`.

    ``num_channel_uses = n / bits_per_symbol``; ``rate = k * bits_per_symbol / n``.
    """

    def __init__(self, k: int = 512, n: int = 1024, bits_per_symbol: int = 2, *, demapping: str = "app",
                 num_iter: int = 20, device=None, precision: str = "single"):
        super().__init__()
        m = check_bits_per_symbol(bits_per_symbol)
        self.k, self.n = check_ldpc5g_params(k, n, m)
        self.bits_per_symbol = m
        self.num_iter = check_positive_int("num_iter", num_iter)
        self.demapping = check_choice("demapping", demapping, DEMAPPING_METHODS)
        sionna_precision(precision)
        self.num_info_bits = self.k
        self.num_channel_uses = self.n // m
        try:
            self.encoder = LDPC5GEncoderBlock(self.k, self.n, m, device=device, precision=precision)
            self.decoder = LDPC5GDecoderBlock(self.k, self.n, m, demapping, self.num_iter, device=device,
                                              precision=precision)
        except ValueError as err:  # any remaining constraint of Sionna's 5G code construction
            if isinstance(err, ConfigError):
                raise
            raise ConfigError("block_length", f"k={self.k}, n={self.n}: {err}; {_SUPPORTED}") from None

    @property
    def coderate(self) -> float:
        return self.k / self.n

    def extra_repr(self) -> str:
        return (f"k={self.k}, n={self.n}, bits_per_symbol={self.bits_per_symbol}, "
                f"demapping={self.demapping!r}, num_iter={self.num_iter}")
