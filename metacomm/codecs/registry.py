"""Classical codecs and links by name, for the CLI (``metacomm ber --codec ... --decoder ... --block-length``).

``make_codec(name, decoder=None, block_length=None, device=None, ...)`` builds one of :data:`CODEC_NAMES`;
``make_link(codec, channel, ...)`` wraps it into a Link: a :class:`~metacomm.codecs.base.CodecLink` for
channels without a fading state (AWGN, impairments + AWGN) and a :class:`~metacomm.codecs.links.PilotLink`
(pilot-based LS estimation or genie CSI, one-tap / LMMSE equalisation) for block-fading channels (state
``"h"`` or ``"taps"``). Bad names, decoders or block lengths raise :class:`~metacomm.ConfigError` naming the
CLI flag and what is allowed.
"""

from __future__ import annotations

from metacomm._validation import ConfigError, check_finite, check_positive_int
from metacomm.channels.base import Channel, make_generator
from metacomm.codecs.base import Codec, CodecLink
from metacomm.codecs.hamming import HAMMING_DECODERS, Hamming74
from metacomm.codecs.ldpc import LDPC5G, check_ldpc5g_params
from metacomm.codecs.links import PilotLink
from metacomm.codecs.qam import DEMAPPING_METHODS, UncodedQAM, check_bits_per_symbol

__all__ = ["CODEC_NAMES", "CODEC_SUMMARY", "DECODERS", "DEFAULT_BLOCK_LENGTH", "make_codec", "make_link"]

CODEC_NAMES = ("bpsk", "qpsk", "qam16", "qam64", "hamming74", "ldpc5g")
_QAM_BITS = {"bpsk": 1, "qpsk": 2, "qam16": 4, "qam64": 6}

#: Allowed ``--decoder`` values per codec; the first is the default.
DECODERS: dict[str, tuple[str, ...]] = {
    **{name: DEMAPPING_METHODS for name in _QAM_BITS},
    "hamming74": HAMMING_DECODERS,
    "ldpc5g": ("bp",),
}

#: Default information bits per block (``--block-length``). 64-QAM: 1020 = 170 symbols (1024 is no multiple of 6).
DEFAULT_BLOCK_LENGTH = {"bpsk": 1024, "qpsk": 1024, "qam16": 1024, "qam64": 1020, "hamming74": 4, "ldpc5g": 512}

CODEC_SUMMARY = {
    "bpsk": "uncoded BPSK (real), 1 bit per complex use; --decoder app|maxlog",
    "qpsk": "uncoded Gray QPSK, 2 bits per complex use; --decoder app|maxlog",
    "qam16": "uncoded Gray 16-QAM, 4 bits per complex use; --decoder app|maxlog",
    "qam64": "uncoded Gray 64-QAM, 6 bits per complex use; --decoder app|maxlog",
    "hamming74": "Hamming(7,4) + BPSK, rate 4/7 bit per complex use; --decoder ml (soft ML) | hard (syndrome)",
    "ldpc5g": "5G NR LDPC (k=512, n=1024 by default) + Gray QAM, 20 BP iterations; --decoder bp",
}


def _check_name(name) -> str:
    if name not in CODEC_NAMES:
        raise ConfigError("codec", f"unknown codec {name!r}; allowed: {', '.join(CODEC_NAMES)}")
    return name


def make_codec(name: str, *, decoder: str | None = None, block_length: int | None = None, device=None,
               bits_per_symbol: int | None = None, coderate: float | None = None, num_iter: int = 20,
               precision: str = "single") -> Codec:
    """Build a classical codec by name.

    Args:
        name: one of :data:`CODEC_NAMES`.
        decoder: ``"app"``/``"maxlog"`` (QAM demapping), ``"ml"``/``"hard"`` (Hamming), ``"bp"`` (LDPC);
            ``None`` = the first of :data:`DECODERS` ``[name]``.
        block_length: information bits per block (``None``: :data:`DEFAULT_BLOCK_LENGTH`). QAM: a multiple of
            the bits per symbol; Hamming: a multiple of 4 (that many codewords per block); LDPC: ``k`` in
            [12, 8448] with ``n = k / coderate``.
        device: device of the codec's tensors (``None``: CPU).
        bits_per_symbol: LDPC only: modulation, 1/2/4/6 (default 2, QPSK).
        coderate: LDPC only: ``k/n`` (default 1/2; ``n = round(k / coderate)``).
        num_iter: LDPC only: belief-propagation iterations.
        precision: ``"single"`` or ``"double"`` (QAM, LDPC).
    """
    _check_name(name)
    allowed = DECODERS[name]
    decoder = allowed[0] if decoder is None else decoder
    if decoder not in allowed:
        raise ConfigError("decoder", f"decoder {decoder!r} does not apply to codec {name!r}; allowed for "
                                       f"{name}: {', '.join(allowed)}")
    if name != "ldpc5g" and (bits_per_symbol is not None or coderate is not None):
        raise ConfigError("codec", f"bits_per_symbol / coderate only apply to ldpc5g, not to {name!r}")
    k = DEFAULT_BLOCK_LENGTH[name] if block_length is None else check_positive_int("block_length",
                                                                                     block_length)
    if name in _QAM_BITS:
        m = _QAM_BITS[name]
        if k % m:
            raise ConfigError("block_length", f"{k} bits is not a multiple of {m} bits per {name} symbol; "
                                                f"allowed: positive multiples of {m}")
        return UncodedQAM(m, k // m, decoder, device=device, precision=precision)
    if name == "hamming74":
        if k % 4:
            raise ConfigError("block_length", f"{k} bits is not a multiple of 4 (Hamming(7,4) codewords per "
                                                f"block); allowed: positive multiples of 4")
        return Hamming74(decoder, num_codewords=k // 4, device=device)
    # ldpc5g
    m = 2 if bits_per_symbol is None else check_bits_per_symbol(bits_per_symbol)
    r = 0.5 if coderate is None else check_finite("coderate", coderate)
    if not 0.0 < r <= 1.0:
        raise ConfigError("coderate", f"must lie in (0, 1], got {coderate!r}")
    n = int(round(k / r))
    check_ldpc5g_params(k, n, m, n_field="block_length")
    return LDPC5G(k, n, m, num_iter=num_iter, device=device, precision=precision)


def _is_fading(channel: Channel, n: int) -> bool:
    probe = channel.sample_state(1, n, generator=make_generator(0, "cpu"), device="cpu")
    return any(key.rsplit(".", 1)[-1] in ("h", "taps") for key in probe)


def make_link(codec: str | Codec, channel: Channel | str, *, num_pilots: int = 16, estimator: str = "ls",
              equalizer: str | None = None, **codec_kwargs):
    """A Link for ``codec`` over ``channel``.

    ``codec``: a name (then ``codec_kwargs`` go to :func:`make_codec`) or a built :class:`Codec`.
    ``channel``: a :class:`~metacomm.channels.Channel` or a channel name
    (:func:`metacomm.channels.registry.make_channel` with defaults).
    Returns a :class:`CodecLink` when the channel has no fading state, else a :class:`PilotLink` with
    ``num_pilots``, ``estimator`` (``"ls"``/``"perfect"``) and ``equalizer`` (``None``: one-tap for flat,
    LMMSE for multipath). Pilot energy is not counted in Eb.
    """
    if isinstance(codec, str):
        codec = make_codec(codec, **codec_kwargs)
    elif codec_kwargs:
        raise ConfigError("codec", f"codec options {sorted(codec_kwargs)} need a codec name, not a built codec")
    if not isinstance(codec, Codec):
        raise ConfigError("codec", f"expected a codec name or a Codec, got {type(codec).__name__}")
    if isinstance(channel, str):
        from metacomm.channels.registry import make_channel

        channel = make_channel(channel)
    if not isinstance(channel, Channel):
        raise ConfigError("channel", f"expected a metacomm Channel, got {type(channel).__name__}")
    n = codec.num_channel_uses
    if float(n).is_integer() and _is_fading(channel, int(n)):
        return PilotLink(codec, channel, num_pilots, estimator, equalizer)
    return CodecLink(codec, channel)
