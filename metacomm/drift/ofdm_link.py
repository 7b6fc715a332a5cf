r"""The OFDM link of a drift run: one slot per link and frame, a coded OFDM resource grid over the scenario's
moving 3GPP TDL channel (:class:`~metacomm.scenarios.ofdm_drift.OFDMDriftScenario`).

:class:`OFDMSlotLink` (``name = "ofdm"``): per frame ``t`` every link ``b`` sends one resource grid of the
scenario's link (:class:`~metacomm.codecs.ofdm.OFDMLink`: 5G LDPC codewords, QAM, pilots) through its channel in
slot ``t`` (the frame's ``h_freq``, continuous from slot to slot), at the frame's N0; every scheme decides the same
received grids (:class:`OFDMSignals`) and is scored per codeword (BLER) and information bit (BER). Draws from the
run's data generator, in this order per frame: information bits ``[B C, k]``, padding bits, noise
``[B, 1, R, S, F]`` (the channel comes from the scenario's generator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from metacomm._validation import ConfigError, check_memory
from metacomm.drift.protocol import Decision, DriftContext, DriftLink, SharedSignals

__all__ = ["OFDMSlotLink", "OFDMSignals"]


@dataclass
class OFDMSignals(SharedSignals):
    """One frame's signals of the OFDM link, shared by every scheme.

    :ivar frame: the :class:`~metacomm.scenarios.ofdm_drift.OFDMFrame` (true channel, speed, N0 per link).
    :ivar no: N0 per complex resource element float ``[B]``.
    :ivar slot: the :class:`~metacomm.codecs.ofdm.OFDMSlot` (bits ``[B C, k]``, grids, noise, received ``y``
        ``[B, 1, R, S, F]``) -- link ``b`` is grid ``b``.
    """

    frame: Any
    no: torch.Tensor
    slot: Any
    _memo: dict = field(default_factory=dict, repr=False)

    def shared(self) -> dict:
        """What ``DriftRun.run(on_frame=...)`` hands out: the bits and the received grids."""
        return {"bits": self.slot.bits, "y": self.slot.y}


class OFDMSlotLink(DriftLink):
    """The OFDM slot link (module docstring). ``ctx.ofdm`` is the :class:`~metacomm.codecs.ofdm.OFDMLink`."""

    name = "ofdm"

    def context(self, scenario, model, config, device) -> DriftContext:
        from metacomm.codecs.ofdm import OFDMLink
        if getattr(scenario, "link_kind", "block") != "ofdm":
            raise ConfigError("scenario", f"{getattr(scenario, 'name', scenario)!r} is not an OFDM drift scenario "
                                          "(kind = \"ofdm\")")
        link = OFDMLink(scenario.link, receiver="perfect-csi", device=str(device))
        c = scenario.link
        check_memory("links", 4.0 * c.bytes_per_block() * config.links * c.num_codewords,
                     "one slot of OFDM grids for every link (with the receivers' working sets)")
        ctx = DriftContext(model=model, codebook=None, config=config, device=device, k=c.k, n=c.n,
                           inner_loss="ce", num_taps=0, scenario=scenario, link=self)
        ctx.ofdm = link
        return ctx

    def draw(self, ctx: DriftContext, frame, g_data: torch.Generator) -> OFDMSignals:
        link, c = ctx.ofdm, ctx.scenario.link
        B = ctx.config.links
        no = frame.no.to(ctx.device)
        slot = link.draw(B * c.num_codewords, float(frame.ebno_db.mean()), g_data, no=no, state=frame.state)
        return OFDMSignals(frame=frame, no=no, slot=slot)

    def score(self, ctx: DriftContext, sig: OFDMSignals, decision: Decision) -> dict:
        bits, hat = sig.slot.bits, decision.msg_hat
        if tuple(hat.shape) != tuple(bits.shape):
            raise ConfigError("scheme", f"decided {tuple(hat.shape)} bits, expected {tuple(bits.shape)} "
                                        "(codewords x information bits)")
        err = hat != bits
        be, bi = int(err.any(-1).sum()), int(err.sum())
        bl, nb = bits.shape[0], bits.numel()
        return {"block_errors": be, "blocks": bl, "bit_errors": bi, "bits": nb, "bler": be / bl, "ber": bi / nb}

    def frame_record(self, ctx: DriftContext, sig: OFDMSignals) -> dict:
        """``gain_db`` (mean over links of the channel power per resource element and antenna, and its 10th/90th
        percentiles across links), the slot's ``speed`` [m/s], ``doppler_hz`` and the segment's ``delay_spread_s``."""
        with torch.no_grad():
            g = sig.slot.h_freq.abs().square().flatten(1).mean(1)
            g_db = 10 * torch.log10(g.clamp_min(1e-12)).cpu()
        return {"gain_db": {"mean": float(10 * torch.log10(g.mean().clamp_min(1e-12))),
                            "p10": float(torch.quantile(g_db, 0.1)), "p90": float(torch.quantile(g_db, 0.9))},
                "speed": float(sig.frame.speed), "doppler_hz": float(sig.frame.doppler_hz),
                "delay_spread_s": float(sig.frame.channel.delay_spread)}

    def config_record(self, ctx: DriftContext) -> dict:
        """The link's settings for ``results.json`` (replacing the block link's pilot/payload counts)."""
        return {"ofdm_link": ctx.ofdm.describe(), "payload_blocks_per_link": ctx.scenario.link.num_codewords,
                "pilots": None}
