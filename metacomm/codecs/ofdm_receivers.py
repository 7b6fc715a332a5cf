r"""Classical OFDM receivers for :class:`metacomm.codecs.ofdm.OFDMLink`: Sionna's channel estimators + LMMSE
equalisation + demapping, producing coded-bit LLRs for the link's 5G LDPC decoder.

Every receiver maps the received grids ``y`` complex ``[G, 1, R, S, F]`` and ``N0`` float ``[G]`` (per complex
resource element) to LLRs ``ln P(b=1)/P(b=0)`` float ``[G, 1, 1, N_data m]`` of the data resource elements' coded
bits, in Sionna's ResourceGridMapper order (what :meth:`OFDMLink.llr` splits into codewords):

1. a channel estimate :math:`\hat H` ``[G, 1, R, 1, 1, S, F']`` on the effective subcarriers with its error
   variance (receiver-specific, below);
2. :class:`sionna.phy.ofdm.LMMSEEqualizer` per resource element (one stream, ``R`` antennas), which takes the
   estimation error variance into account: ``x_hat``, ``no_eff`` ``[G, 1, 1, N_data]``;
3. :class:`sionna.phy.mapping.Demapper` (``app`` or ``maxlog``) with ``no_eff``.

The receivers (:data:`RECEIVERS`) and what each knows:

* ``ls-nn``: the pilots and N0. LS estimates on the pilot REs (:class:`LSChannelEstimator`), nearest-neighbour
  interpolation to the data REs (Sionna's neural-receiver tutorial's "LS estimation" baseline).
* ``ls-lin``: the pilots and N0; LS + linear interpolation across subcarriers and OFDM symbols.
* ``lmmse-cov``: the pilots, N0 and the channel's second-order statistics: Sionna's
  :class:`LMMSEChannelEstimator` (LS at the pilots, then 1-D LMMSE filtering in the order ``lmmse_order``; in
  Sionna 1.x this was ``LSChannelEstimator(interpolator=LMMSEInterpolator(...))``) with the time ``[S, S]``,
  frequency ``[F', F']`` and space ``[R, R]`` covariance matrices estimated from ``cov_draws`` channel draws of the
  same model (seeded ``cov_seed``, independent of the simulated draws; Sionna's channel-estimation tutorial's
  Monte-Carlo estimator, :meth:`metacomm.channels.ofdm.OFDMChannel.covariances`), computed once per link
  configuration and cached for the process. It does not know the realisation.
* ``adaptive`` / ``lmmse-cov-turbo``: the adaptive receiver and its classical turbo baseline
  (:mod:`metacomm.codecs.ofdm_adaptive`).
* ``perfect-csi``: the true channel of the slot (``h_freq`` with the nulled subcarriers removed) and N0, error
  variance 0 -- the genie reference (the tutorial's "Perfect CSI" baseline).

A receiver of one's own is an :class:`OFDMReceiver` subclass with ``name``, ``needs_channel`` (``True``: the link
passes ``h_freq``) and ``forward(y, no, *, h_freq=None) -> LLR [G, ..., N_data m]``; pass an instance as
``OFDMLink(config, receiver=...)``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from sionna.phy.mapping import Demapper
from sionna.phy.mimo import StreamManagement
from sionna.phy.ofdm import LMMSEChannelEstimator, LMMSEEqualizer, LSChannelEstimator, RemoveNulledSubcarriers
from torch import nn

from metacomm._sionna import SionnaBlocks
from metacomm._validation import ConfigError, check_choice
from metacomm.codecs.ofdm_config import OFDMLinkConfig, build_resource_grid
from metacomm.codecs.ofdm_receiver_base import OFDMReceiver

__all__ = ["RECEIVERS", "RECEIVER_HELP", "OFDMReceiver", "LSReceiver", "LMMSECovReceiver", "PerfectCSIReceiver",
           "make_receiver"]

RECEIVER_HELP = {
    "ls-nn": "LS channel estimates at the pilots + nearest-neighbour interpolation + LMMSE equalisation "
             "(knows the pilots and N0)",
    "ls-lin": "LS + linear interpolation in frequency and time + LMMSE equalisation (knows the pilots and N0)",
    "lmmse-cov": "LS + LMMSE filtering with the channel's time/frequency/space covariance estimated from cov_draws "
                 "draws of the same model + LMMSE equalisation (knows the pilots, N0 and the channel statistics)",
    "perfect-csi": "the true channel of the slot + LMMSE equalisation (genie reference: knows H and N0)",
    "adaptive": "LMMSE estimation with time/frequency statistics inferred per slot from a prior bank learned over a "
                "family of 3GPP channels (the shipped checkpoint for the grid, or a checkpoint), then 2 data-aided "
                "(turbo) re-estimations from its own decoder's a-posteriori LLRs (knows the pilots, N0, the code "
                "and the family; not the link's statistics)",
    "lmmse-cov-turbo": "lmmse-cov's true covariances in the same 2-iteration data-aided (turbo) loop as adaptive "
                       "(classical baseline of the turbo part: knows the pilots, N0, the code and the statistics)",
}
RECEIVERS = tuple(RECEIVER_HELP)


def _common(cfg_dict: dict, precision: str, device: str):
    cfg = OFDMLinkConfig(**cfg_dict).validate()
    rg = build_resource_grid(cfg, precision, device=device)
    sm = StreamManagement(np.array([[1]]), 1)
    eq = LMMSEEqualizer(rg, sm, precision=precision, device=device)
    dm = Demapper(cfg.demapping, "qam", cfg.bits_per_symbol, precision=precision, device=device)
    return cfg, rg, eq, dm


def _ls_blocks(cfg_dict: dict, interpolation: str, precision: str, *, device: str):
    cfg, rg, eq, dm = _common(cfg_dict, precision, device)
    return LSChannelEstimator(rg, interpolation_type=interpolation, precision=precision, device=device), eq, dm


def _perfect_blocks(cfg_dict: dict, precision: str, *, device: str):
    cfg, rg, eq, dm = _common(cfg_dict, precision, device)
    return RemoveNulledSubcarriers(rg, precision=precision, device=device), eq, dm


def _lmmse_blocks(cfg_dict: dict, covs: tuple, precision: str, *, device: str):
    cfg, rg, eq, dm = _common(cfg_dict, precision, device)
    order = cfg.resolved_lmmse_order
    ct, cf, cs = (c.to(device) for c in covs)
    est = LMMSEChannelEstimator(rg, ct, cf, cs if "s" in order.split("-") else None, order=order,
                                precision=precision, device=device)
    return est, eq, dm


class LSReceiver(OFDMReceiver):
    """LS estimation at the pilots + ``interpolation`` (``"nn"``: ``ls-nn``, ``"lin"``: ``ls-lin``) + LMMSE
    equalisation + demapping. Knows the pilot values and positions and N0, nothing about the channel law."""

    def __init__(self, link, interpolation: str = "nn"):
        super().__init__(link)
        self.interpolation = check_choice("interpolation", interpolation, ("nn", "lin"))
        self.name = f"ls-{self.interpolation}"
        self._blocks = SionnaBlocks(partial(_ls_blocks, self.config.to_dict(), self.interpolation))

    def estimate(self, blocks, y, no, h_freq):
        return blocks[0](y, no)


class LMMSECovReceiver(OFDMReceiver):
    """LS + LMMSE filtering with estimated channel covariances (``lmmse-cov``; module docstring). Knows the pilots,
    N0 and the channel model's time/frequency/space covariance (``cov_draws`` Monte-Carlo draws, ``cov_seed``)."""

    name = "lmmse-cov"

    def __init__(self, link):
        super().__init__(link)
        rg = link.resource_grid()
        covs = link.channel.covariances(num_draws=self.config.cov_draws, seed=self.config.cov_seed,
                                        subcarriers=[int(i) for i in rg.effective_subcarrier_ind],
                                        dtype=link.dtype)
        self.cov_time, self.cov_freq, self.cov_space = covs
        self._blocks = SionnaBlocks(partial(_lmmse_blocks, self.config.to_dict(), covs))

    def estimate(self, blocks, y, no, h_freq):
        return blocks[0](y, no)


class PerfectCSIReceiver(OFDMReceiver):
    """The genie (``perfect-csi``): the slot's true ``h_freq`` on the effective subcarriers, error variance 0, LMMSE
    equalisation + demapping. Knows the channel realisation and N0."""

    name = "perfect-csi"
    needs_channel = True

    def __init__(self, link):
        super().__init__(link)
        self._blocks = SionnaBlocks(partial(_perfect_blocks, self.config.to_dict()))

    def estimate(self, blocks, y, no, h_freq):
        h_hat = blocks[0](h_freq.to(device=y.device, dtype=y.dtype))
        return h_hat, torch.zeros((), dtype=y.real.dtype, device=y.device)


def make_receiver(receiver, link, *, checkpoint=None) -> OFDMReceiver:
    """A receiver for ``link`` by name (:data:`RECEIVERS`), or ``receiver`` itself if it is an nn.Module with the
    receiver interface. ConfigError ``receiver`` otherwise. ``checkpoint``: the prior bank of ``adaptive``
    (default: the shipped one for the link's grid; :mod:`metacomm.codecs.ofdm_adaptive`); refused for the others."""
    if isinstance(receiver, nn.Module):
        if not callable(receiver):
            raise ConfigError("receiver", "a receiver module must be callable (y, no, *, h_freq) -> LLRs")
        return receiver
    check_choice("receiver", receiver, RECEIVERS)
    if checkpoint is not None and receiver != "adaptive":
        raise ConfigError("checkpoint", f"receiver {receiver!r} takes no checkpoint (only adaptive does)")
    if receiver in ("adaptive", "lmmse-cov-turbo"):
        from metacomm.codecs import ofdm_adaptive  # imports this module: loaded on first use

        if receiver == "adaptive":
            return ofdm_adaptive.AdaptiveOFDMReceiver(link, checkpoint)
        return ofdm_adaptive.classical_turbo_receiver(link)
    if receiver == "ls-nn":
        return LSReceiver(link, "nn")
    if receiver == "ls-lin":
        return LSReceiver(link, "lin")
    if receiver == "lmmse-cov":
        return LMMSECovReceiver(link)
    return PerfectCSIReceiver(link)
