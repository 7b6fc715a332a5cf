"""The adaptive OFDM receiver in a Sionna user's script (about 30 s on one CPU core).

    python examples/ofdm_adaptive_rx.py

1. Sionna's neural-receiver tutorial link (CDL-C, 1 x 2, QPSK, 5G LDPC n = 2784); one batch of slots drawn once and
   decoded by the adaptive receiver and by the classical ones on the same draws;
2. what it inferred: the family hypotheses its belief puts the most weight on (it is not told the link's profile,
   delay spread or speed);
3. its channel estimate as a Sionna ``channel_estimator``-style callable ``(y, no) -> (h_hat, err_var)`` feeding
   Sionna's own LMMSEEqualizer;
4. the per-link state carried over slots (``init_state`` / ``step``), saved and loaded like any tensor dict.
"""

import numpy as np
import torch
from sionna.phy.mimo import StreamManagement
from sionna.phy.ofdm import LMMSEEqualizer

from metacomm.channels.base import make_generator
from metacomm.codecs.ofdm import OFDMLink
from metacomm.codecs.ofdm_adaptive import AdaptiveOFDMReceiver

torch.set_num_threads(1)
link = OFDMLink("sionna-nrx-tutorial", receiver="adaptive")  # the shipped prior bank for this grid
rx: AdaptiveOFDMReceiver = link.receiver
print(rx)

# 1. same slots, every receiver (perfect-csi knows H; lmmse-cov the true statistics; adaptive neither)
slot = link.draw(32, ebno_db=-1.0, generator=make_generator(0))
for name in ("ls-lin", "lmmse-cov", "adaptive", "perfect-csi"):
    bit_err, block_err = link.score(slot, link.decide(slot, name))
    print(f"{name:12s} BLER {block_err.float().mean():.3f}  BER {bit_err.sum() / slot.bits.numel():.2e}")

# 2. the belief after one slot, for the first grid
state = rx.init_state(slot.num_grids)
_, state, info = rx.step(slot.y, slot.no, state)
w = state["log_belief"][0].exp()
top = torch.topk(w, 3)
pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
print("belief:", ", ".join(f"{rx.bank.labels[i]} {p:.2f}" for p, i in pairs))
print(f"posterior mean Doppler {info['doppler_hz'][0]:.0f} Hz (true {link.channel.doppler:.0f} Hz), delay spread "
      f"{info['delay_spread_s'][0] * 1e9:.0f} ns (true {link.config.delay_spread * 1e9:.0f} ns)")

# 3. as a Sionna channel estimator (pilots only), into Sionna's equaliser
h_hat, err_var = rx.estimate_channel(slot.y, slot.no)
eq = LMMSEEqualizer(link.resource_grid(), StreamManagement(np.array([[1]]), 1), device="cpu")
x_hat, no_eff = eq(slot.y, h_hat, err_var, slot.no)
h_true = slot.h_freq[..., rx._eff]
print(f"pilot-only estimate MSE {(h_hat - h_true).abs().square().mean():.4f}; equalised symbols {tuple(x_hat.shape)}")

# 4. slots of the same 4 links in a row (here fresh realisations of the same statistics; a drift run gives
#    continuous ones): the belief over the family is carried from slot to slot (a tensor dict: torch.save-able)
state = rx.init_state(4)
g = make_generator(1)
for t in range(3):
    s = link.draw(4, -1.0, generator=g)
    llr, state, info = rx.step(s.y, s.no, state)
    print(f"slot {t}: max belief weight {state['log_belief'].exp().max(-1).values.mean():.2f}")
