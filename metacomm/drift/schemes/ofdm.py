r"""The classical OFDM receivers as drift schemes (link ``"ofdm"``): every receiver of
:mod:`metacomm.codecs.ofdm_receivers` decides the same slots, each knowing what its docstring says.

* ``ls-nn`` / ``ls-lin`` (kind ``classical``): LS at this slot's pilots + nearest-neighbour / linear interpolation
  + LMMSE equalisation; know the pilots and N0. Stateless (nothing carried from slot to slot).
* ``lmmse-cov`` (``classical``): LS + Sionna's LMMSE channel estimator with the channel's **exact** second-order
  statistics *at this slot*: the time covariance at the slot's speed and the frequency covariance of the segment's
  profile and delay spread (:func:`metacomm.channels.ofdm_trajectory.tdl_covariances`, the model the scenario
  plays; the speed ramp's speed is known to it slot by slot) -- the classical receiver that knows the statistics.
  Covariances are cached per (profile, delay spread, speed rounded to 1e-3 m/s).
* ``lmmse-cov-turbo`` (``classical``): the same exact statistics, then data-aided (turbo) re-estimation from the
  decoder's a-posteriori LLRs (the adaptive receiver's loop on one known hypothesis).
* ``adaptive`` (``adaptive``): :class:`~metacomm.codecs.ofdm_adaptive.AdaptiveOFDMReceiver` -- a belief over a prior
  bank learned over the 3GPP family, carried per link from slot to slot, + the turbo loop; knows neither the
  profile nor the speed.
* ``perfect-csi`` (``reference``): the slot's true channel + LMMSE equalisation -- the genie.

Each is scored on the link's codewords after the same 5G LDPC decoder.
"""

from __future__ import annotations

import time
from functools import partial

import torch

from metacomm._sionna import SionnaBlocks
from metacomm.codecs.ofdm_receivers import OFDMReceiver, _lmmse_blocks
from metacomm.drift.protocol import Decision, DriftScheme
from metacomm.drift.registry import register_scheme

__all__ = ["OFDMReceiverScheme", "PerfectCSIScheme", "LMMSEKnownCovScheme", "KnownCovReceiver",
           "LMMSETurboKnownCovScheme", "AdaptiveOFDMScheme"]


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
    """``lmmse-cov`` with the slot's exact statistics (module docstring). Its receiver is built from the slot's
    covariances (:meth:`_build`) and cached per (profile, delay spread, speed rounded to 1e-3 m/s)."""

    def setup(self, ctx) -> None:
        DriftScheme.setup(self, ctx)
        self._cache: dict[tuple, OFDMReceiver] = {}
        rg = ctx.ofdm.resource_grid()
        self._sub = [int(i) for i in rg.effective_subcarrier_ind]

    def _build(self, covs: tuple) -> OFDMReceiver:
        """The receiver for exact covariances ``(time [S, S], frequency [F', F'], space [R, R])``."""
        return KnownCovReceiver(self.ctx.ofdm, covs)

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
            rx = self._cache[key] = self._build(covs)
        return rx


class LMMSETurboKnownCovScheme(LMMSEKnownCovScheme):
    """``lmmse-cov-turbo``: the data-aided (turbo) loop of the adaptive receiver run on the slot's **exact**
    statistics (one hypothesis: :func:`~metacomm.codecs.ofdm_adaptive.single_hypothesis_bank`) -- the classical
    receiver that knows the statistics and also re-estimates from its own decoded codewords: the fair baseline of
    ``adaptive``'s data-aided part. Stateless."""

    def __init__(self, name: str, *, turbo_iters: int = 2):
        super().__init__(name)
        self.turbo_iters = int(turbo_iters)

    def settings(self) -> dict:
        return {"turbo_iters": self.turbo_iters}

    def _build(self, covs: tuple) -> OFDMReceiver:
        from metacomm.codecs.ofdm_adaptive import AdaptiveOFDMReceiver, single_hypothesis_bank
        ct, cf, cs = covs
        bank = single_hypothesis_bank(ct, cf, self.ctx.scenario.link, self._sub)
        return AdaptiveOFDMReceiver(self.ctx.ofdm, bank, turbo_iters=self.turbo_iters, name=self.name,
                                    antenna_power=torch.diagonal(cs).real.float())


class AdaptiveOFDMScheme(DriftScheme):
    """``adaptive``: :class:`~metacomm.codecs.ofdm_adaptive.AdaptiveOFDMReceiver` (prior bank learned over the
    3GPP family, per-link belief over it carried from slot to slot, data-aided turbo re-estimation). Knows the
    pilots, N0, the code and the shipped prior bank -- not the profile, delay spread, speed or covariance. State
    per link: its log-belief (``state``), saved and resumed with the run. Latency: the slot's receiver wall time.
    Each frame's row also records ``doppler_hz_est`` / ``delay_spread_s_est``: the belief's posterior means (averaged
    over links); ``belief.png`` draws them against the truth."""

    kind = "adaptive"
    links = ("ofdm",)
    state_attrs = ("state",)

    def __init__(self, name: str, *, turbo_iters: int = 2, forget: float = 0.05, prior: str | None = None):
        super().__init__(name)
        self.turbo_iters, self.forget, self.prior = int(turbo_iters), float(forget), prior

    def settings(self) -> dict:
        return {"turbo_iters": self.turbo_iters, "forget": self.forget, "prior": self.prior}

    def setup(self, ctx) -> None:
        from metacomm.codecs.ofdm_adaptive import AdaptiveOFDMReceiver
        super().setup(ctx)
        self.rx = AdaptiveOFDMReceiver(ctx.ofdm, self.prior, turbo_iters=self.turbo_iters, forget=self.forget)
        self.state = self.rx.init_state(ctx.links)

    def decide(self, sig) -> Decision:
        t0 = time.perf_counter()
        llr, self.state, info = self.rx.step(sig.slot.y, sig.no, self.state)
        bits_hat = self.ctx.ofdm.decode(sig.slot, llr)
        ms = (time.perf_counter() - t0) * 1e3
        # what it has learned, for the belief plot: the posterior-mean Doppler and delay spread (mean over links)
        return Decision(bits_hat, ms, {"doppler_hz_est": float(info["doppler_hz"].mean()),
                                       "delay_spread_s_est": float(info["delay_spread_s"].mean())})


register_scheme("ls-nn", default=True)(OFDMReceiverScheme)
register_scheme("ls-lin", default=True)(OFDMReceiverScheme)
register_scheme("lmmse-cov", default=True)(LMMSEKnownCovScheme)
register_scheme("lmmse-cov-turbo", default=True)(LMMSETurboKnownCovScheme)
register_scheme("adaptive", default=True)(AdaptiveOFDMScheme)
register_scheme("perfect-csi", default=True)(PerfectCSIScheme)
