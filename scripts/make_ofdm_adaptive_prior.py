"""Make the shipped prior bank of the adaptive OFDM receiver (``metacomm ber --receiver adaptive``).

    OMP_NUM_THREADS=1 python scripts/make_ofdm_adaptive_prior.py                       # the shipped one
    OMP_NUM_THREADS=1 python scripts/make_ofdm_adaptive_prior.py --link my_link.toml --out my_prior.pt

The bank is learned from Monte-Carlo draws of the family (``metacomm.codecs.ofdm_adaptive.FAMILY_*``: 3GPP CDL-A..E
and TDL-A..E at RMS delay spreads 20..500 ns, UMi; speeds 0..60 m/s at 3.5 GHz) on the link's OFDM numerology
(subcarrier spacing, FFT size, OFDM symbols, CP); it does not depend on the link's channel settings. The shipped
``metacomm/checkpoints/ofdm_adaptive_30khz_128x14.pt`` serves every link on that grid (``sionna-nrx-tutorial``,
``tdl-b-400hz``). It records the CPU seconds it took.
"""

import argparse
import time

import torch

from metacomm.codecs.ofdm_adaptive import CHECKPOINT_DIR, build_prior_bank
from metacomm.codecs.ofdm_config import load_link_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--link", default="sionna-nrx-tutorial", help="preset name or link TOML file (its numerology)")
    p.add_argument("--draws", type=int, default=500, help="channel draws per bank entry")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(CHECKPOINT_DIR / "ofdm_adaptive_30khz_128x14.pt"))
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_link_config(a.link)
    t0 = time.time()
    bank = build_prior_bank(cfg, num_draws=a.draws, seed=a.seed, progress=lambda s: print(" ", s, flush=True))
    bank.meta["script"] = "scripts/make_ofdm_adaptive_prior.py"
    bank.meta["command"] = f"--link {a.link} --draws {a.draws} --seed {a.seed}"
    bank.save(a.out)
    print(f"{bank.num_hypotheses} hypotheses, {bank.freq_lags.shape[0]} frequency and {bank.time_lags.shape[0]} time "
          f"entries; {bank.meta['cpu_seconds']:.0f} s CPU, {time.time() - t0:.0f} s wall -> {a.out}")


if __name__ == "__main__":
    main()
