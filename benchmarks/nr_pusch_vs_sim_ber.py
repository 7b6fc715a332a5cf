"""The ``nr-pusch`` link: metacomm's sweep against Sionna's own pipeline under ``sim_ber`` (not a test).

Same settings on both sides (``metacomm/codecs/ofdm_links/nr-pusch.toml``: 16 PRB x 30 kHz, MCS 14, DMRS 1+1,
CDL-B 300 ns at 10 m/s, 1 x 2 VH, LS + linear interpolation + LMMSE, Eb/N0 via ``ebnodb2no(.., resource_grid)``):

* ``sionna``   -- Sionna's reference chain, written here from Sionna's blocks only: ``PUSCHTransmitter(return_bits=
  True)`` -> ``sionna.phy.channel.OFDMChannel(CDL, add_awgn=True, normalize_channel=True)`` -> ``PUSCHReceiver``,
  driven by :func:`sionna.phy.utils.sim_ber` (Sionna's global generators);
* ``metacomm`` -- ``metacomm ber --link nr-pusch`` as a library call: :class:`metacomm.codecs.nr_pusch.PUSCHLink`
  (the same Sionna PUSCH blocks, metacomm's channel with explicit generators) driven by
  :func:`metacomm.sims.engine.simulate`.

Both run the same fixed number of blocks per point (no early stop) and print BLER with 95 % Clopper-Pearson
intervals (do they overlap?) and the wall-time ratio sionna / metacomm (> 1: metacomm faster), measured in this one
process (repeats alternate which side runs first). Usage::

    python benchmarks/nr_pusch_vs_sim_ber.py [--ebno-db 2,4] [--blocks 200] [--batch-size 20] [--device cpu]
        [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def sionna_mc_fun(device: str):
    from sionna.phy.channel import OFDMChannel
    from sionna.phy.channel.tr38901 import CDL, Antenna, AntennaArray
    from sionna.phy.nr import PUSCHReceiver, PUSCHTransmitter
    from sionna.phy.utils import ebnodb2no

    from metacomm.codecs.ofdm_config import load_link_config
    cfg = load_link_config("nr-pusch")
    pc = cfg.pusch_config()
    tx = PUSCHTransmitter(pc, return_bits=True, device=device)
    rx = PUSCHReceiver(tx, device=device)
    ut = Antenna("single", "V", "38.901", cfg.carrier_frequency, device=device)
    bs = AntennaArray(1, cfg.num_rx_ant // 2, "dual", "VH", "38.901", cfg.carrier_frequency, device=device)
    cdl = CDL(cfg.channel[-1].upper(), cfg.delay_spread, cfg.carrier_frequency, ut, bs, "uplink",
              min_speed=cfg.speed, max_speed=cfg.speed, device=device)
    channel = OFDMChannel(cdl, tx.resource_grid, add_awgn=True, normalize_channel=True, device=device)
    m, r = int(pc.tb.num_bits_per_symbol), float(pc.tb.target_coderate)

    def mc_fun(batch_size, ebno_db):
        x, b = tx(batch_size)
        no = ebnodb2no(ebno_db, m, r, tx.resource_grid)
        y = channel(x, no)
        return b, rx(y, no)

    return mc_fun


def clopper_pearson(e: int, n: int) -> tuple[float, float]:
    from metacomm.sims.stats import clopper_pearson as cp
    return tuple(float(v) for v in cp(e, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ebno-db", default="2,4", help="comma list of Eb/N0 points [dB]")
    ap.add_argument("--blocks", type=int, default=200, help="transport blocks per point (both sides)")
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (timing: median paired ratio)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from sionna.phy.utils import sim_ber

    from metacomm.codecs.nr_pusch import PUSCHLink
    from metacomm.codecs.ofdm_config import load_link_config
    from metacomm.sims.engine import simulate

    pts = [float(v) for v in a.ebno_db.split(",")]
    iters = -(-a.blocks // a.batch_size)
    blocks = iters * a.batch_size
    link = PUSCHLink(load_link_config("nr-pusch"), "ls-lin", device=a.device)
    mc = sionna_mc_fun(a.device)
    simulate(link, [pts[0]], batch_size=2, max_blocks=2, target_block_errors=None, quiet=True, device=a.device)
    mc(2, pts[0])  # warm-up both
    errs_m, errs_s, ratios, t_m, t_s = [0] * len(pts), [0] * len(pts), [], 0.0, 0.0
    def run_metacomm(rep):
        t0 = time.perf_counter()
        r = simulate(link, pts, batch_size=a.batch_size, max_blocks=blocks, target_block_errors=None, quiet=True,
                     early_stop=False, device=a.device, seed=rep)
        return r, time.perf_counter() - t0

    def run_sionna(rep):
        torch.manual_seed(rep)
        t0 = time.perf_counter()
        _, b = sim_ber(mc, torch.tensor(pts), batch_size=a.batch_size, max_mc_iter=iters, early_stop=False,
                       verbose=False, device=a.device)
        return b, time.perf_counter() - t0

    for rep in range(a.repeats):  # interleaved, the order alternating per repeat: paired ratios without order bias
        if rep % 2 == 0:
            res, dm = run_metacomm(rep)
            bler_s, ds = run_sionna(rep)
        else:
            bler_s, ds = run_sionna(rep)
            res, dm = run_metacomm(rep)
        for i, p in enumerate(res.points):
            errs_m[i] += int(p.block_errors)
            errs_s[i] += int(round(float(bler_s[i]) * blocks))
        ratios.append(ds / dm)
        t_m, t_s = t_m + dm, t_s + ds
    total = blocks * a.repeats
    print(f"nr-pusch, LS + linear + LMMSE, {total} transport blocks per point and side ({a.repeats} interleaved "
          f"repeats), device {a.device}, {a.threads} thread(s)")
    print(f"{'Eb/N0':>6} {'metacomm BLER [95% CI]':>32} {'sionna sim_ber BLER [95% CI]':>34}  overlap")
    for i, p in enumerate(pts):
        lo_m, hi_m = clopper_pearson(errs_m[i], total)
        lo_s, hi_s = clopper_pearson(errs_s[i], total)
        ok = not (hi_m < lo_s or hi_s < lo_m)
        print(f"{p:6.2f} {errs_m[i] / total:10.4f} [{lo_m:.4f}, {hi_m:.4f}] {errs_s[i] / total:12.4f} [{lo_s:.4f}, "
              f"{hi_s:.4f}]  {'yes' if ok else 'NO'}")
    print(f"wall time: metacomm {t_m:.1f} s, sionna sim_ber {t_s:.1f} s; ratio sionna/metacomm per repeat "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
