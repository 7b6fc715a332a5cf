"""A coded OFDM link with Sionna's classical receivers, driven from your own script.

    python examples/ofdm_link.py            # tiny grid, well under a minute on one CPU core

What it shows:

1. a link described in Python (the same keys as a ``metacomm ber --link FILE.toml`` file; the built-in preset
   ``sionna-nrx-tutorial`` is Sionna's neural-receiver tutorial link);
2. one batch of slots drawn once from an explicit generator and decoded by every receiver (``ls-nn``, ``ls-lin``,
   ``lmmse-cov``, ``perfect-csi``): same bits, channel and noise for all -- a paired comparison;
3. a receiver of your own, built from Sionna blocks (LS with time-averaged linear interpolation + LMMSE + APP),
   plugged in as an ``OFDMReceiver``;
4. a BER/BLER sweep through metacomm's engine (95 % intervals; every point a function of the seed).
"""

import numpy as np
import torch
from sionna.phy.mapping import Demapper
from sionna.phy.mimo import StreamManagement
from sionna.phy.ofdm import LMMSEEqualizer, LSChannelEstimator

from metacomm.channels.base import make_generator
from metacomm.codecs.ofdm import RECEIVERS, OFDMLink, OFDMLinkConfig, OFDMReceiver
from metacomm.sims.engine import simulate

torch.set_num_threads(1)

# 1. a small link: 48 subcarriers (2 + 1 guards, DC null) x 7 OFDM symbols, pilots on symbols 1 and 5,
#    QPSK, one rate-1/2 5G LDPC codeword per grid, TDL-C 100 ns at 3.5 GHz, UE at 10 m/s, 2 receive antennas
config = OFDMLinkConfig(name="tiny-tdl-c", fft_size=48, num_ofdm_symbols=7, subcarrier_spacing=30e3,
                        pilot_ofdm_symbol_indices=[1, 5], num_guard_carriers=[2, 1], dc_null=True,
                        bits_per_symbol=2, coderate=0.5, channel="tdl-c", delay_spread=100e-9,
                        carrier_frequency=3.5e9, speed=10.0, num_rx_ant=2, cov_draws=1000).validate()
print(f"{config.num_data_symbols} data REs, n = {config.n}, k = {config.k}, {config.num_codewords} codeword/grid")

# 2. the same slots through every receiver
link = OFDMLink(config, receiver="perfect-csi")
slot = link.draw(64, ebno_db=1.5, generator=make_generator(0))  # bits, grid, channel, noise: drawn once
for name in RECEIVERS:
    _, block_errors = link.score(slot, link.decide(slot, receiver=name))
    print(f"{name:12s} BLER {block_errors.float().mean():.3f} at Eb/N0 = 1.5 dB (64 blocks, same draws)")


# 3. your own receiver: any module (y [G,1,R,S,F], no [G], *, h_freq) -> coded-bit LLRs [G, 1, 1, N_data m],
#    built from Sionna blocks on the link's resource grid
class LSTimeAveraged(OFDMReceiver):
    """LS at the pilots, linear interpolation in frequency, averaged over the pilot symbols in time, LMMSE
    equalisation, APP demapping (knows the pilots and N0; suits slowly varying channels)."""

    name = "ls-lin-time-avg"

    def __init__(self, link):
        super().__init__(link)
        rg = link.resource_grid()
        self.estimator = LSChannelEstimator(rg, interpolation_type="lin_time_avg", device="cpu")
        self.equalizer = LMMSEEqualizer(rg, StreamManagement(np.array([[1]]), 1), device="cpu")
        self.demapper = Demapper("app", "qam", link.config.bits_per_symbol, device="cpu")

    def forward(self, y, no, *, h_freq=None):
        h_hat, err_var = self.estimator(y, no)
        x_hat, no_eff = self.equalizer(y, h_hat, err_var, no)
        return self.demapper(x_hat, no_eff)


mine = LSTimeAveraged(link)
_, block_errors = link.score(slot, link.decide(slot, receiver=mine))
print(f"{mine.name:12s} BLER {block_errors.float().mean():.3f} at Eb/N0 = 1.5 dB (same draws)")

# 4. a sweep through the engine (the Link protocol: link(batch_size, ebno_db, generator) -> (bits, bits_hat))
result = simulate(OFDMLink(config, receiver="ls-nn"), [0.0, 2.0, 4.0], batch_size=32, max_blocks=128,
                  target_block_errors=20, seed=1, quiet=True)
print(result.summary())
