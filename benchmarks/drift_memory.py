"""The drift run's up-front memory estimate against the measured peak: for each scheme, a short `metacomm drift` run
at two link counts in fresh processes, the peak RSS growth per block (the frame's pilot + payload blocks) against
what `metacomm.experiments.drift_session.check_drift_memory` assumes; prints the ratio estimate / measured (the
target: within 1.5x, and never an underestimate by more than that).

    python benchmarks/drift_memory.py [--schemes pilot-ls,genie,track] [--links 250,2000] [--threads 1]
        [--device cpu|cuda]

With ``--device cuda`` the peak is the CUDA allocator's (``torch.cuda.max_memory_allocated``) instead of the RSS
(the estimate is the same: it budgets the tensors of a frame wherever they live).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile


def peak_mib(scheme: str, links: int, threads: int, out: str, device: str = "cpu") -> float:
    peak = ("print(torch.cuda.max_memory_allocated() / 1024)" if device.startswith("cuda") else
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")  # KiB either way
    code = (f"import resource, torch\ntorch.set_num_threads({threads})\nfrom metacomm.cli.main import main\n"
            f"main(['drift', '--scenario', 'doppler-fast', '--frames', '2', '--links', '{links}', '--payload', '64', "
            f"'--pilots', '16', '--schemes', '{scheme}', '--device', '{device}', '--quiet', '--out', '{out}'])\n"
            + peak)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1]) / 1024


def estimate_kib(scheme: str, links: int) -> float:
    """KiB per block that ``check_drift_memory`` budgets for a run of ``scheme`` (read from the library: the
    ``nbytes`` of its frame check, divided by the frame's blocks)."""
    from types import SimpleNamespace

    import metacomm._validation as v
    from metacomm.experiments.drift_session import check_drift_memory
    got, orig = [], v.check_memory
    v.check_memory = lambda fields, nbytes, what: got.append(nbytes)
    try:
        check_drift_memory(SimpleNamespace(links=links, pilots=16, payload=64, schemes=[scheme], frames=2))
    finally:
        v.check_memory = orig
    return got[0] / (links * (16 + 64)) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schemes", default="pilot-ls,genie,track")
    ap.add_argument("--links", default="250,2000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.links.split(","))
    blocks = (hi - lo) * (16 + 64)
    for s in a.schemes.split(","):
        with tempfile.TemporaryDirectory() as d:
            p_lo = peak_mib(s, lo, a.threads, f"{d}/lo", a.device)
            p_hi = peak_mib(s, hi, a.threads, f"{d}/hi", a.device)
        measured = (p_hi - p_lo) * 1024 / blocks  # KiB per block
        assumed = estimate_kib(s, hi)
        print(f"{s:12s} peak {p_lo:.0f} MiB at {lo} links, {p_hi:.0f} MiB at {hi}: measured {measured:.2f} KiB per "
              f"block, estimate {assumed:.1f} KiB -> estimate / measured {assumed / measured:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
