"""Coded OFDM links over consecutive slots with a moving UE, and a 5G NR PUSCH link, from your own script.

    python examples/ofdm_drift.py            # tiny grid, about a minute on one CPU thread

What it shows:

1. an OFDM drift scenario written as TOML text (the format of ``metacomm drift --scenario FILE.toml``; the
   built-ins ``ofdm-speed-ramp``, ``ofdm-high-doppler`` and ``ofdm-profile-switch`` are such files): a TDL-B
   channel whose paths stay from slot to slot while the UE accelerates 10 -> 40 m/s, then a switch to TDL-D;
2. a drift run: every classical receiver (``ls-nn``, ``ls-lin``, ``lmmse-cov`` with the slot's exact statistics,
   ``perfect-csi``) decides the same slots; per-slot coded BLER and the summary with 95 % intervals;
3. the channel itself: the correlation of the last OFDM symbol of a slot with the first of the next is the
   model's J0(2 pi f_D T_sym) -- no jump at the slot boundary;
4. the ``nr-pusch`` link (Sionna's PUSCHTransmitter / PUSCHReceiver with TB CRC) at one Eb/N0 with two receivers.
"""

import math

import torch
from scipy.special import j0

from metacomm.channels.base import make_generator
from metacomm.codecs.nr_pusch import PUSCHLink
from metacomm.drift.run import DriftRun, DriftRunConfig
from metacomm.scenarios.drift_scenarios import parse_scenario

torch.set_num_threads(1)

# 1. the scenario (a small grid: 32 subcarriers, QPSK, one LDPC codeword of 648 bits per slot and link)
SCENARIO = """
kind = "ofdm"
name = "my-ofdm-drift"
link = "tdl-b-400hz"                  # a link preset (or a .toml file); keys below override it
ebno_db = 4.0
[link_overrides]
fft_size = 32
num_guard_carriers = [2, 2]
bits_per_symbol = 2
[[segment]]
slots = 6
label = "TDL-B, 10 -> 40 m/s"
speed = { ramp = [10.0, 40.0] }
[[segment]]
slots = 4
label = "TDL-D 30 ns (LoS)"
channel = "tdl-d"
delay_spread = 30e-9
speed = 40.0
"""
scenario = parse_scenario(SCENARIO, default_name="my-ofdm-drift")
print(scenario.describe())

# 2. a drift run: 8 links, every receiver on the same slots (common random numbers)
result = DriftRun(scenario, None, DriftRunConfig(frames=10, links=8, seed=0)).run()
for f in result.frames[::3]:
    row = ", ".join(f"{s} {r['bler']:.3f}" for s, r in f["schemes"].items())
    print(f"slot {f['frame']:2d} ({f['speed']:.1f} m/s, f_D {f['doppler_hz']:.0f} Hz): BLER {row}")
print(result.summary_table())

# 3. continuity across a slot boundary (1000 links, one subcarrier): measured vs J0(2 pi f_D T_sym)
frames = list(scenario.frames(2, batch_size=1000, generator=make_generator(1)))
a = frames[0].state["h_freq"][:, 0, 0, 0, 0, -1, 5].to(torch.complex128)  # last symbol of slot 0
b = frames[1].state["h_freq"][:, 0, 0, 0, 0, 0, 5].to(torch.complex128)   # first symbol of slot 1
rho = float((a * b.conj()).mean().real / (a.abs().square().mean() * b.abs().square().mean()).sqrt())
print(f"slot boundary correlation {rho:.4f}; model J0(2 pi f_D T_sym) = "
      f"{j0(2 * math.pi * frames[0].doppler_hz * scenario.symbol_duration):.4f}")

# 4. the 5G NR PUSCH link (4 PRB here; the built-in preset `nr-pusch` has 16): same draws for both receivers
small = dict(num_prb=4, mcs_index=9, channel="tdl-c", delay_spread=100e-9, speed=10.0, num_rx_ant=2)
for receiver in ("ls-lin", "perfect-csi"):
    bits, bits_hat = PUSCHLink(small, receiver)(32, 0.0, make_generator(2))
    print(f"nr-pusch {receiver:12s} TBLER {float((bits != bits_hat).any(-1).float().mean()):.3f} at 0 dB "
          "(32 transport blocks)")
