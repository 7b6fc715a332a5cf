"""The ``track`` drift scheme alone: link-frames per CPU-second, the fused path (issue 24) against the old one, in
one run (not a test).

Frames of ``doppler-fast`` (shipped tracker ``drift_track_doppler-fast_p16.pt``: 16 pilots, 64 payload blocks per
link, 256 messages of 8 complex uses) are drawn once; then, on the same frames, each path decides them frame by
frame from the prior:

* ``old``      -- :func:`metacomm.adaptation.tracking.track_frames` (the recursion, two full
  ``gaussian_block_logits`` passes + ``log_softmax``/``argmax``/``max`` per frame): the path before issue 24;
* ``fused``    -- :func:`metacomm.adaptation.tracking.track_frame_decide`, re-deciding every block after the
  decision-directed update (``redecode="all"``, the default);
* ``changed``  -- the same, re-deciding only the blocks whose decision can change (a proven bound);
* ``2 plain``  -- the yardstick: two passes of plain ``baddbmm`` + ``logsumexp`` + ``argmax`` over the same
  ``[links, 64, 256]`` scores (freshly allocated, as torch does by default).

Prints CPU ms per frame, link-frames per CPU-second, the ratios against ``old`` and ``2 plain``, the share of
blocks re-decoded, and whether every path took the same decisions as ``old``. Usage::

    python benchmarks/drift_track_speed.py [--links 64,512,4096] [--frames 6] [--threads 1] [--device cpu|cuda]

Measured (2-core AMD EPYC, shared, one thread, ``--links 64,512,2000 --frames 6``) in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _clock(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", default="64,512,2000")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from metacomm.drift.run import DriftRun, DriftRunConfig
    from metacomm.drift.schemes.tracking import TrackScheme
    from metacomm.experiments.drift_session import load_drift_codec
    from metacomm.scenarios.drift_scenarios import load_scenario

    dev = torch.device(a.device)
    clock = "wall (synchronised)" if dev.type == "cuda" else "CPU"
    model, *_ = load_drift_codec("metacomm/checkpoints/drift_track_doppler-fast_p16.pt", device=dev)
    print(f"track alone, doppler-fast, device {dev}, {torch.get_num_threads()} thread(s), {clock} time per frame "
          f"(frame 0 excluded: warm-up)")
    for B in (int(x) for x in a.links.split(",")):
        run = DriftRun(load_scenario("doppler-fast"), model, DriftRunConfig(frames=a.frames, links=B,
                                                                            schemes=["track"], device=str(dev)))
        sigs = [run.ctx.link.draw(run.ctx, next(run._frames), run.g_data) for _ in range(a.frames)]
        res, dec = {}, {}
        for mode in ("old", "fused", "changed"):
            s = TrackScheme("track")
            s.setup(run.ctx)
            s.fused = mode != "old"
            s.redecode = "all" if mode == "fused" else "changed"
            out, t = [], 0.0
            for i, sg in enumerate(sigs):
                t0 = _clock(dev)
                out.append(s.decide(sg).msg_hat)
                if i:
                    t += _clock(dev) - t0
            res[mode], dec[mode] = t / (a.frames - 1), torch.stack(out)
            if mode == "changed":
                share = s.stats["redecoded"] / s.stats["blocks"]
        y = torch.view_as_real(sigs[0].y_d).flatten(-2)
        r = torch.randn(B, 256, y.shape[-1], device=dev, generator=torch.Generator(dev).manual_seed(0))
        rr = r.square().sum(-1)[:, None, :]

        def plain(y=y, r=r, rr=rr):
            s = torch.baddbmm(rr, y, r.transpose(1, 2), alpha=2.0)
            return s.logsumexp(-1), s.argmax(-1)

        plain()
        t0, reps = _clock(dev), 5
        for _ in range(reps):
            plain(), plain()
        res["2 plain"] = (_clock(dev) - t0) / reps
        same = {k: int((v != dec["old"]).sum()) for k, v in dec.items() if k != "old"}
        print(f"\n{B} links x {sigs[0].y_d.shape[1]} blocks:")
        for k, v in res.items():
            print(f"  {k:8s} {v * 1e3:8.1f} ms/frame  {B / v:8.0f} link-frames/s   x{res['old'] / v:5.2f} vs old   "
                  f"{v / res['2 plain']:5.2f} of 2 plain passes")
        print(f"  changed re-decoded {share:.1%} of the blocks; decisions differing from old: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
