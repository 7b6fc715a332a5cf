"""A drift frame with every default scheme: CPU time per frame now against the code before issue 24, in one run
(not a test).

The same measurement runs twice in fresh processes: on this checkout, and on a ``git archive`` of ``--baseline``
(default ``d9a0c18``, the last commit before the issue-24 work: unfused searches, vmapped ``functional_call``
decisions, ``retrain`` in the default list). Each builds a ``doppler-fast`` run with the shipped tracker
(``drift_track_doppler-fast_p16.pt``) and *its own* default scheme list, plays one warm-up frame and times the next
``--frames`` (CPU time of the whole ``DriftRun.step``: the link's draw, every scheme, the scoring; with the old
list's ``retrain`` retraining every 10 frames, ``--frames 10`` holds one retrain), then prints CPU ms per frame,
the ratio old / new and the per-scheme split. Usage::

    python benchmarks/drift_frame_speed.py [--links 8,512] [--frames 10] [--threads 1] [--baseline REV]
        [--baseline-tar FILE] [--device cpu|cuda]

``--baseline-tar FILE``: the old code from a tar made beforehand (``git archive d9a0c18 -o build/baseline.tar``),
for a machine whose copy of the checkout has no git history (the GPU machine: ``benchmarks/gpu_checks.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MEASURE = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from metacomm.experiments.drift_session import load_drift_codec
from metacomm.scenarios.drift_scenarios import load_scenario
from metacomm.drift.run import DriftRun, DriftRunConfig, run_frame
dev = torch.device(sys.argv[4])
sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
clock = time.perf_counter if dev.type == "cuda" else time.process_time
B, F = int(sys.argv[1]), int(sys.argv[2])
model, *_ = load_drift_codec("metacomm/checkpoints/drift_track_doppler-fast_p16.pt", device=dev)
run = DriftRun(load_scenario("doppler-fast"), model, DriftRunConfig(frames=F + 1, links=B, device=str(dev)))
run.step()
per = {s.name: 0.0 for s in run.schemes}
orig = {s.name: s.decide for s in run.schemes}
def timed(name):
    def f(sig):
        sync(); t0 = clock(); d = orig[name](sig); sync(); per[name] += clock() - t0; return d
    return f
for s in run.schemes:
    s.decide = timed(s.name)
sync(); t0 = clock()
for _ in range(F):
    run.step()
sync(); total = clock() - t0
print(json.dumps({"schemes": [s.name for s in run.schemes], "ms": total / F * 1e3,
                  "per": {k: v / F * 1e3 for k, v in per.items()}}))
"""


def measure(root: str, links: int, frames: int, threads: int, device: str) -> dict:
    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run([sys.executable, "-c", MEASURE, str(links), str(frames), str(threads), device], cwd=root,
                         env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"measurement in {root} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", default="8,512")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", default="d9a0c18")
    ap.add_argument("--baseline-tar", default=None)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as old:
        if a.baseline_tar:
            subprocess.run(["tar", "-x", "-C", old, "-f", a.baseline_tar], check=True)
        else:
            arch = subprocess.run(["git", "-C", HERE, "archive", a.baseline], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=arch, check=True)
        clock = "wall (synchronised)" if a.device.startswith("cuda") else "CPU"
        print(f"doppler-fast, default schemes, device {a.device}, {a.threads} thread(s), {clock} ms per frame over "
              f"{a.frames} frames (after one warm-up frame); old = {a.baseline}")
        for B in (int(x) for x in a.links.split(",")):
            o = measure(old, B, a.frames, a.threads, a.device)
            n = measure(HERE, B, a.frames, a.threads, a.device)
            print(f"\n{B} links x 64 blocks: old {o['ms']:.1f} ms/frame ({len(o['schemes'])} schemes), new "
                  f"{n['ms']:.1f} ms/frame ({len(n['schemes'])} schemes): x{o['ms'] / n['ms']:.2f}")
            for k in o["per"]:
                nv = n["per"].get(k)
                print(f"  {k:12s} {o['per'][k]:8.1f} -> " + (f"{nv:8.1f}" if nv is not None else "   (not a default)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
