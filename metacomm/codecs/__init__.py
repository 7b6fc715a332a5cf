"""Codecs (encoder/decoder pairs) and links; protocol in :mod:`metacomm.codecs.base`.

Classical baselines: uncoded Gray QAM (:class:`UncodedQAM`), Hamming(7,4) (:class:`Hamming74`), 5G NR LDPC
(:class:`LDPC5G`); pilot-aided fading links (:class:`PilotLink`, :mod:`metacomm.codecs.equalization`); classical estimation and
detection over a codebook -- LS taps, minimum-distance / ML, LMMSE flat gain (:mod:`metacomm.codecs.detection`);
tap estimation with a known prior and Kalman tracking over frames (:mod:`metacomm.codecs.tracking`); widely-linear
LS and detection for IQ imbalance (:mod:`metacomm.codecs.widely_linear`);
by name via :func:`make_codec` / :func:`make_link`.

Coded OFDM (lazily imported, Sionna's OFDM blocks): :class:`OFDMLink` with :class:`OFDMLinkConfig` (presets and TOML
files, :func:`load_link_config`) and the receivers :data:`OFDM_RECEIVERS` (:mod:`metacomm.codecs.ofdm`).

Learned codecs: the (n, k) :class:`Autoencoder` (O'Shea & Hoydis), :class:`TrainableConstellation` (learned
geometry + neural or APP demapper), the pilot-aided :class:`NeuralReceiver`; :func:`train` trains any of them
end to end through a differentiable channel; :func:`save_codec` / :func:`load_codec` for checkpoints.
"""

from metacomm.codecs.autoencoder import Autoencoder
from metacomm.codecs.base import Codec, CodecLink, random_bits
from metacomm.codecs.checkpoint import load_codec, save_codec
from metacomm.codecs.constellation import TrainableConstellation, bmd_rate
from metacomm.codecs.detection import (
    convolve_codewords,
    lmmse_flat,
    ls_solve,
    ls_taps,
    matrix_images,
    min_distance_decide,
    ml_block_logits,
    noiseless_images,
    pilot_matrix,
    sq_distances,
    stacked_pilot_matrix,
)
from metacomm.codecs.equalization import (
    lmmse_equalize,
    ls_estimate_flat,
    ls_estimate_multipath,
    one_tap_equalize,
)
from metacomm.codecs.hamming import Hamming74
from metacomm.codecs.ldpc import LDPC5G
from metacomm.codecs.learned_base import LearnedCodec
from metacomm.codecs.links import PilotLink, qpsk_pilots
from metacomm.codecs.neural_rx import NeuralReceiver
from metacomm.codecs.qam import UncodedQAM
from metacomm.codecs.registry import CODEC_NAMES, DECODERS, make_codec, make_link
from metacomm.codecs.tracking import (
    kalman_predict,
    kalman_steady_state,
    kalman_step,
    lmmse_error_cov,
    lmmse_taps,
    lmmse_update,
    riccati_step,
    scalar_steady_state,
)
from metacomm.codecs.training import TrainingHistory, train
from metacomm.codecs.widely_linear import (
    iq_coefficients,
    stacked_conv_pilot_matrix,
    wl_images,
    wl_ls_taps,
    wl_pilot_matrix,
)

__all__ = [
    "bmd_rate",
    "load_codec",
    "save_codec",
    "TrainingHistory",
    "train",
    "LearnedCodec",
    "NeuralReceiver",
    "TrainableConstellation",
    "Autoencoder",
    "CODEC_NAMES",
    "DECODERS",
    "Codec",
    "CodecLink",
    "Hamming74",
    "LDPC5G",
    "PilotLink",
    "UncodedQAM",
    "convolve_codewords",
    "lmmse_equalize",
    "lmmse_flat",
    "ls_solve",
    "ls_taps",
    "matrix_images",
    "min_distance_decide",
    "ml_block_logits",
    "noiseless_images",
    "pilot_matrix",
    "sq_distances",
    "stacked_pilot_matrix",
    "ls_estimate_flat",
    "ls_estimate_multipath",
    "make_codec",
    "make_link",
    "one_tap_equalize",
    "qpsk_pilots",
    "random_bits",
    "kalman_predict",
    "kalman_steady_state",
    "kalman_step",
    "lmmse_error_cov",
    "lmmse_taps",
    "lmmse_update",
    "riccati_step",
    "scalar_steady_state",
    "iq_coefficients",
    "stacked_conv_pilot_matrix",
    "wl_images",
    "wl_ls_taps",
    "wl_pilot_matrix",
]

# coded OFDM: imported on first use (metacomm.codecs.ofdm pulls in Sionna's OFDM and 3GPP channel modules)
_LAZY = {"OFDMLink": ("metacomm.codecs.ofdm", "OFDMLink"), "OFDMSlot": ("metacomm.codecs.ofdm", "OFDMSlot"),
         "OFDMLinkConfig": ("metacomm.codecs.ofdm_config", "OFDMLinkConfig"),
         "load_link_config": ("metacomm.codecs.ofdm_config", "load_link_config"),
         "OFDMReceiver": ("metacomm.codecs.ofdm_receivers", "OFDMReceiver"),
         "OFDM_RECEIVERS": ("metacomm.codecs.ofdm_receivers", "RECEIVERS")}
__all__ += list(_LAZY)


def __getattr__(name: str):
    from metacomm._lazy import lazy_getattr
    return lazy_getattr(globals(), _LAZY, name)
