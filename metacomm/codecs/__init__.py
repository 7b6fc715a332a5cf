"""Codecs (encoder/decoder pairs) and links; protocol in :mod:`metacomm.codecs.base`.

Classical baselines: uncoded Gray QAM (:class:`UncodedQAM`), Hamming(7,4) (:class:`Hamming74`), 5G NR LDPC
(:class:`LDPC5G`); pilot-aided fading links (:class:`PilotLink`, :mod:`metacomm.codecs.equalization`);
by name via :func:`make_codec` / :func:`make_link`.
"""

from metacomm.codecs.base import Codec, CodecLink, random_bits
from metacomm.codecs.equalization import (
    lmmse_equalize,
    ls_estimate_flat,
    ls_estimate_multipath,
    one_tap_equalize,
)
from metacomm.codecs.hamming import Hamming74
from metacomm.codecs.ldpc import LDPC5G
from metacomm.codecs.links import PilotLink, qpsk_pilots
from metacomm.codecs.qam import UncodedQAM
from metacomm.codecs.registry import CODEC_NAMES, DECODERS, make_codec, make_link

__all__ = [
    "CODEC_NAMES",
    "DECODERS",
    "Codec",
    "CodecLink",
    "Hamming74",
    "LDPC5G",
    "PilotLink",
    "UncodedQAM",
    "lmmse_equalize",
    "ls_estimate_flat",
    "ls_estimate_multipath",
    "make_codec",
    "make_link",
    "one_tap_equalize",
    "qpsk_pilots",
    "random_bits",
]
