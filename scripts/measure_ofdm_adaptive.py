"""Measure the adaptive OFDM receiver against the classical ones on the same draws (one script, the numbers of the
adaptive-receiver results section).

    OMP_NUM_THREADS=1 python scripts/measure_ofdm_adaptive.py --link sionna-nrx-tutorial \
        --ebno-db=-1.6,-1.4,-1.2,-1.0 --blocks 1024 --out runs/adaptive-nrx.json

Every point draws ``--blocks`` codewords once (``OFDMLink.draw`` from a generator seeded ``seed + point index``)
and decodes them with every receiver (``OFDMLink.decide``): a paired comparison. Prints BLER with 95 %
Clopper-Pearson intervals per point and the Eb/N0 where each receiver's BLER crosses each target (log-linear
interpolation between the two grid points around it; the interval from interpolating the intervals' bounds the same
way; ``None`` where the grid does not bracket it). ``--skip R@EBNO`` leaves a receiver out at a point (e.g. where
it is known to be at BLER 1). Receivers: the names of ``metacomm ber --receiver``, plus ``adaptive:T`` /
``lmmse-cov-turbo:T`` for T turbo iterations (``adaptive:0``: pilots only).
"""

import argparse
import json
import math
import time

import numpy as np
import torch

from metacomm.channels.base import make_generator
from metacomm.codecs.ofdm import OFDMLink
from metacomm.codecs.ofdm_adaptive import AdaptiveOFDMReceiver, classical_turbo_receiver
from metacomm.sims.stats import clopper_pearson


def crossing(ebno, bler, target):
    """Eb/N0 where ``bler`` (decreasing in Eb/N0) crosses ``target``, log-linear between grid points, or None."""
    for i in range(len(ebno) - 1):
        a, b = bler[i], bler[i + 1]
        if a >= target > b:
            la, lb = math.log(max(a, 1e-12)), math.log(max(b, 1e-12))
            return ebno[i] + (math.log(target) - la) / (lb - la) * (ebno[i + 1] - ebno[i])
    return None


def summarise(receivers: dict, targets) -> None:
    """Print each receiver's crossings of ``targets`` from ``{name: {"points": [...]}}`` (adds ``crossings``)."""
    for n, r in receivers.items():
        pts = sorted(r["points"], key=lambda q: q["ebno_db"])
        xs = [q["ebno_db"] for q in pts]
        cross = {}
        for t in targets:
            mid = crossing(xs, [q["bler"] for q in pts], t)
            lo = crossing(xs, [q["bler_ci"][0] for q in pts], t)  # the lower BLER bound crosses first
            hi = crossing(xs, [q["bler_ci"][1] for q in pts], t)
            cross[f"{t:g}"] = {"ebno_db": mid, "ci": [lo, hi]}
        r["crossings"] = cross

        def f(v):
            return "None" if v is None else f"{v:+.2f}"

        cs = ", ".join(f"BLER {k} at {f(v['ebno_db'])} dB [{f(v['ci'][0])}, {f(v['ci'][1])}]" for k, v in cross.items())
        errs = sum(q["block_errors"] for q in pts)
        blocks = sum(q["blocks"] for q in pts)
        print(f"{n:16s} {cs}  ({blocks} blocks, {errs} block errors over {len(pts)} points)")


def merge(paths, targets) -> dict:
    """Pool the points of several result files of one link (a point's draws are one file's)."""
    out = None
    for p in paths:
        with open(p) as fh:
            d = json.load(fh)
        if out is None:
            out = {"link": d["link"], "files": [], "receivers": {}}
        if d["link"] != out["link"]:
            raise SystemExit(f"{p}: link {d['link']!r}, expected {out['link']!r}")
        out["files"].append(str(p))
        for n, r in d["receivers"].items():
            pts = out["receivers"].setdefault(n, {"points": []})["points"]
            for q in r["points"]:
                same = [x for x in pts if math.isclose(x["ebno_db"], q["ebno_db"])]
                if same:  # the same Eb/N0 in two files: pool the counts
                    same[0]["block_errors"] += q["block_errors"]
                    same[0]["blocks"] += q["blocks"]
                else:
                    pts.append(dict(q))
    for r in out["receivers"].values():
        for q in r["points"]:
            q["bler"] = q["block_errors"] / q["blocks"]
            q["bler_ci"] = list(clopper_pearson(q["block_errors"], q["blocks"]))
    summarise(out["receivers"], targets)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="only pool the points of these result files of one link and print the crossings")
    p.add_argument("--link")
    p.add_argument("--ebno-db", help="comma-separated Eb/N0 points [dB]")
    p.add_argument("--blocks", type=int, default=512, help="codewords per point")
    p.add_argument("--batch", type=int, default=64, help="grids per draw")
    p.add_argument("--receivers", default="perfect-csi,lmmse-cov,lmmse-cov-turbo,adaptive")
    p.add_argument("--skip", default="", help="R@EBNO pairs not run (e.g. ls-lin@-1.0), comma-separated")
    p.add_argument("--targets", default="1e-2,1e-3")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.merge:
        out = merge(a.merge, [float(x) for x in a.targets.split(",")])
        if a.out:
            with open(a.out, "w") as f:
                json.dump(out, f, indent=1)
        return
    if not a.link or not a.ebno_db:
        p.error("--link and --ebno-db are required (or --merge FILES)")
    ebnos = [float(x) for x in a.ebno_db.split(",")]
    names = a.receivers.split(",")
    skip = {tuple(s.split("@")) for s in a.skip.split(",") if s}
    link = OFDMLink(a.link, receiver="perfect-csi")
    rx = {}
    for n in names:
        base, _, iters = n.partition(":")
        if not iters:
            rx[n] = link.get_receiver(n)
        elif base == "adaptive":
            rx[n] = AdaptiveOFDMReceiver(link, turbo_iters=int(iters), name=n)
        else:
            rx[n] = classical_turbo_receiver(link, turbo_iters=int(iters))
    counts = {n: {"blocks": [0] * len(ebnos), "errors": [0] * len(ebnos), "bit_errors": [0] * len(ebnos),
                  "seconds": [0.0] * len(ebnos)} for n in names}
    t_all = time.time()
    for i, eb in enumerate(ebnos):
        g = make_generator(a.seed + i)
        done = 0
        while done < a.blocks:
            b = min(a.batch, a.blocks - done)
            slot = link.draw(b, eb, g)
            for n in names:
                if (n, f"{eb:g}") in skip:
                    continue
                t = time.process_time()
                bit_err, blk_err = link.score(slot, link.decide(slot, rx[n]))
                c = counts[n]
                c["seconds"][i] += time.process_time() - t
                c["blocks"][i] += b
                c["errors"][i] += int(blk_err.sum())
                c["bit_errors"][i] += int(bit_err.sum())
            done += b
        line = []
        for n in names:
            c = counts[n]
            if c["blocks"][i]:
                line.append(f"{n} {c['errors'][i]}/{c['blocks'][i]}")
        print(f"Eb/N0 {eb:+.2f} dB: " + ", ".join(line), flush=True)
    targets = [float(x) for x in a.targets.split(",")]
    out = {"link": a.link, "ebno_db": ebnos, "blocks_per_point": a.blocks, "seed": a.seed,
           "num_rx_ant": link.config.num_rx_ant, "receivers": {}, "wall_seconds": time.time() - t_all}
    for n in names:
        c = counts[n]
        pts = [(eb, c["errors"][i], c["blocks"][i]) for i, eb in enumerate(ebnos) if c["blocks"][i]]
        bl = [e / nb for _, e, nb in pts]
        ci = [clopper_pearson(e, nb) for _, e, nb in pts]
        xs = [eb for eb, _, _ in pts]
        cross = {}
        for t in targets:
            mid = crossing(xs, bl, t)
            lo = crossing(xs, [c_[0] for c_ in ci], t)  # the lower BLER bound crosses first
            hi = crossing(xs, [c_[1] for c_ in ci], t)
            cross[f"{t:g}"] = {"ebno_db": mid, "ci": [lo, hi]}
        out["receivers"][n] = {"points": [{"ebno_db": eb, "block_errors": e, "blocks": nb, "bler": e / nb,
                                            "bler_ci": list(clopper_pearson(e, nb))}
                                           for eb, e, nb in pts],
                               "crossings": cross, "cpu_seconds_per_block": sum(c["seconds"]) / max(1, sum(c["blocks"]))}
        cs = ", ".join(f"BLER {k}: {v['ebno_db'] if v['ebno_db'] is None else round(v['ebno_db'], 3)} dB "
                       f"[{None if v['ci'][0] is None else round(v['ci'][0], 2)}, "
                       f"{None if v['ci'][1] is None else round(v['ci'][1], 2)}]" for k, v in cross.items())
        print(f"{n:16s} {cs}; {out['receivers'][n]['cpu_seconds_per_block'] * 1e3:.0f} ms CPU/block")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1, default=lambda o: float(o) if isinstance(o, np.floating) else str(o))


if __name__ == "__main__":
    main()
