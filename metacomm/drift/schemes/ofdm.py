r"""The classical OFDM receivers as drift schemes (link ``"ofdm"``): every receiver of
:mod:`metacomm.codecs.ofdm_receivers` decides the same slots, each knowing what its docstring says.

* ``ls-nn`` / ``ls-lin`` (kind ``classical``): LS at this slot's pilots + nearest-neighbour / linear interpolation
  + LMMSE equalisation; know the pilots and N0. Stateless (nothing carried from slot to slot).
* ``lmmse-cov`` (``classical``): LS + Sionna's LMMSE channel estimator with the channel's **exact** second-order
  statistics *at this slot*: the time covariance at the slot's speed and the frequency covariance of the segment's
  profile and delay spread (:func:`metacomm.channels.ofdm_trajectory.tdl_covariances`, the model the scenario
  plays; the speed ramp's speed is known to it slot by slot) -- the classical receiver that knows the statistics.
  Covariances are cached per (profile, delay spread, speed rounded to 1e-3 m/s).
* ``perfect-csi`` (``reference``): the slot's true channel + LMMSE equalisation -- the genie.

Each is scored on the link's codewords after the same 5G LDPC decoder.
"""

from __future__ import annotations

import time
from functools import partial

from metacomm._sionna import SionnaBlocks
from metacomm.codecs.ofdm_receivers import OFDMReceiver, _lmmse_blocks
from metacomm.drift.protocol import Decision, DriftScheme
from metacomm.drift.registry import register_scheme

__all__ = ["OFDMReceiverScheme", "PerfectCSIScheme", "LMMSEKnownCovScheme", "KnownCovReceiver"]


class OFDMReceiverScheme(DriftScheme):
    """A receiver of :data:`metacomm.codecs.ofdm_receivers.RECEIVERS` deciding every link's slot (module
    docstring). Latency: the wall time [ms] of estimating, equalising and decoding the frame's slots."""

    kind = "classical"
    links = ("ofdm",)
    state_attrs = ()

    def __init__(self, name: str, *, receiver: str | None = None):
        super().__init__(name)
        self.receiver = receiver or name

    def settings(self) -> dict:
        return {}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.rx = ctx.ofdm.get_receiver(self.receiver)

    def _receiver(self, sig):
        return self.rx

    def decide(self, sig) -> Decision:
        t0 = time.perf_counter()
        bits_hat = self.ctx.ofdm.decide(sig.slot, self._receiver(sig))
        ms = (time.perf_counter() - t0) * 1e3
        return Decision(bits_hat, None if self.kind == "reference" else ms)


class PerfectCSIScheme(OFDMReceiverScheme):
    """``perfect-csi``: the genie of the OFDM link (the slot's true channel + LMMSE); latency ``None``."""

    kind = "reference"


class KnownCovReceiver(OFDMReceiver):
    """``lmmse-cov`` with given covariances ``(time [S, S], frequency [F', F'], space [R, R])``."""

    name = "lmmse-cov"

    def __init__(self, link, covs):
        super().__init__(link)
        self._blocks = SionnaBlocks(partial(_lmmse_blocks, self.config.to_dict(), covs))

    def estimate(self, blocks, y, no, h_freq):
        return blocks[0](y, no)


class LMMSEKnownCovScheme(OFDMReceiverScheme):
    """``lmmse-cov`` with the slot's exact statistics (module docstring)."""

    def setup(self, ctx) -> None:
        DriftScheme.setup(self, ctx)
        self._cache: dict[tuple, KnownCovReceiver] = {}
        rg = ctx.ofdm.resource_grid()
        self._sub = [int(i) for i in rg.effective_subcarrier_ind]

    def _receiver(self, sig):
        from metacomm.channels.ofdm_trajectory import tdl_covariances
        fr = sig.frame
        traj = fr.channel
        key = (traj.profile, traj.delay_spread, round(float(fr.speed), 3))
        rx = self._cache.get(key)
        if rx is None:
            sc = self.ctx.scenario
            covs = tdl_covariances(traj, key[2], num_ofdm_symbols=sc.link.num_ofdm_symbols,
                                   symbol_duration=sc.symbol_duration, subcarriers=self._sub,
                                   dtype=self.ctx.ofdm.dtype)
            if len(self._cache) > 64:
                self._cache.clear()
            rx = self._cache[key] = KnownCovReceiver(self.ctx.ofdm, covs)
        return rx


register_scheme("ls-nn", default=True)(OFDMReceiverScheme)
register_scheme("ls-lin", default=True)(OFDMReceiverScheme)
register_scheme("lmmse-cov", default=True)(LMMSEKnownCovScheme)
register_scheme("perfect-csi", default=True)(PerfectCSIScheme)
