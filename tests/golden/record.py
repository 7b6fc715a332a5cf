"""Record the numbers the pinning test (tests/test_golden.py) compares against.

Run once *before* a refactor of the seam (issue 9) -- ``python tests/golden/record.py`` writes
``tests/golden/values.json`` -- and never again to make a failing pin pass: the file is the reference the
refactored code must reproduce bit for bit (CPU, same seeds).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))

# Each case: a list of CLI invocations (the last writes the results file that is pinned), with {d} the run dir.
CASES = {
    "fewshot-fading-ae": [
        "meta-train --scenario fading-ae --algo maml --meta-steps 12 --joint-steps 6 --val-every 6 --val-tasks 8 "
        "--restarts 1 --checkpoint-every 0 --quiet --out {d}/m.pt",  # --restarts 1: the default when recorded
        "fewshot --checkpoint {d}/m.pt --pilots 4,16 --steps 0,1,3 --test-channels 3 --test-blocks 300 "
        "--genie-steps 15 --out {d}/fs",
    ],
    "fewshot-iq-demod": [
        "meta-train --scenario iq-demod --algo metasgd --meta-steps 10 --joint-steps 5 --val-every 5 --val-tasks 6 "
        "--checkpoint-every 0 --quiet --out {d}/m.pt",
        "fewshot --checkpoint {d}/m.pt --pilots 2,8 --steps 0,1,2 --test-channels 4 --test-blocks 200 "
        "--genie-steps 10 --out {d}/fs",
    ],
    "drift-doppler-fast": [
        "drift --scenario doppler-fast --frames 6 --links 3 --payload 16 --retrain-every 3 --retrain-steps 5 "
        "--schemes static,retrain,meta,warm,online-meta,on-detection,reset-on-change,pilot-ls,genie --quiet "
        "--out {d}/dr",
    ],
    "drift-regime-switch": [
        "drift --scenario regime-switch --frames 5 --links 2 --payload 16 --schemes meta,warm,pilot-ls,genie "
        "--seed 3 --quiet --out {d}/dr",
    ],
    "ber-qpsk-awgn": [
        "ber --codec qpsk --channel awgn --ebno-db 0:6:2 --max-blocks 2000 --target-block-errors 50 --quiet "
        "--out {d}/b",
    ],
    "ber-hamming-ml": [
        "ber --codec hamming74 --decoder ml --channel awgn --ebno-db 0,3 --max-blocks 3000 --target-block-errors 40 "
        "--quiet --out {d}/b",
    ],
    "ber-bpsk-rayleigh-ls": [
        "ber --codec bpsk --channel rayleigh --csi ls --num-pilots 4 --ebno-db 0:10:5 --max-blocks 2000 "
        "--target-block-errors 40 --seed 5 --quiet --out {d}/b",
    ],
}

# Keys that are measured times or paths, not results.
VOLATILE = {"runtime_s", "latency_ms", "time_s", "checkpoint", "elapsed_s", "adapt_ms", "mean_latency_ms",
            "version", "versions", "out", "path"}


def run_case(name: str, d: str) -> list[str]:
    from metacomm.sims.cli import main
    for cmd in CASES[name]:
        rc = main(cmd.format(d=d).split())
        if rc not in (0, None):
            raise RuntimeError(f"{name}: {cmd!r} exited {rc}")
    return CASES[name]


def numbers(obj, prefix=""):
    """Flatten a results file into ``{path: number}`` for every numeric leaf not under a volatile key."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in VOLATILE or "latency" in k or "time" in k:
                continue
            out.update(numbers(v, f"{prefix}/{k}"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(numbers(v, f"{prefix}[{i}]"))
    elif isinstance(obj, bool):
        pass
    elif isinstance(obj, int | float):
        out[prefix] = obj
    return out


def load_results(path: str):
    # The pre-refactor drift results.json contains bare NaN tokens: accept them when recording.
    with open(path) as f:
        return json.load(f)


def results_of(name: str, d: str) -> dict:
    last = CASES[name][-1]
    outdir = last.split("--out ")[1].split()[0].format(d=d)
    res = load_results(os.path.join(outdir, "results.json"))
    key = {"fewshot": "results", "drift": "frames", "ber": "points"}[name.split("-")[0]]
    return numbers(res[key])


def main() -> int:
    torch.set_num_threads(1)
    values = {}
    for name in CASES:
        with tempfile.TemporaryDirectory() as d:
            run_case(name, d)
            values[name] = results_of(name, d)
            print(f"{name}: {len(values[name])} numbers")
    with open(os.path.join(HERE, "values.json"), "w") as f:
        json.dump(values, f, indent=0, sort_keys=True, allow_nan=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
