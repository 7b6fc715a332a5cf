"""Start-up time of the ``metacomm`` command against a bare ``python -c pass``.

Times, in fresh interpreters, ``metacomm --help``, ``metacomm --version``, ``metacomm drift --help`` and the usage
error ``metacomm drift --bogus`` and a scenario file that is not there (``drift --scenario no-such-file.toml``,
refused before torch is imported; each runs ``python -m metacomm ...``, the console script's ``main``), and
``python -c pass`` as the floor of any Python command; median of ``--runs`` runs each, interleaved so that a load
change on a shared machine hits every command alike. Prints each command's median wall time, its ratio to
``python -c pass`` and the time above it, and whether it stays under the issue-22 target (1 s).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/cli_startup.py --runs 15

Measured 2026-12-08 on the shared 2-core machine (load average 8-9, one torch thread), 15 runs: python -c pass
0.076 s; metacomm --help 0.194 s (2.6x, +0.12 s), --version 0.194 s, drift --help 0.199 s, drift --bogus 0.196 s,
drift --scenario no-such-file.toml 0.194 s. The same script on the code before (commit 00ebb8b, where every parser
imported metacomm.experiments -> torch, Sionna, matplotlib), 3 runs, load 7-8: 13.4 / 14.4 / 14.9 / 12.4 s
(python -c pass 0.133 s; 93-113x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "metacomm --help": [sys.executable, "-m", "metacomm", "--help"],
    "metacomm --version": [sys.executable, "-m", "metacomm", "--version"],
    "metacomm drift --help": [sys.executable, "-m", "metacomm", "drift", "--help"],
    "metacomm drift --bogus": [sys.executable, "-m", "metacomm", "drift", "--bogus"],
    "drift --scenario missing": [sys.executable, "-m", "metacomm", "drift", "--scenario", "no-such-file.toml",
                                 "--out", os.devnull],
}
TARGET_S = 1.0


def _time(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(argv)} exited {r.returncode}")
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="runs per command (median reported; default 15)")
    args = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for cmd in COMMANDS.values():  # warm the file cache once
        _time(cmd, env)
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            times[name].append(_time(cmd, env))
    base = statistics.median(times["python -c pass"])
    print(f"{args.runs} runs each, median wall time (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']})")
    print(f"{'command':<26}{'median s':>10}{'min s':>8}{'max s':>8}{'x python':>10}{'+ s':>8}  target")
    worst = 0.0
    for name, ts in times.items():
        med = statistics.median(ts)
        ok = "" if name == "python -c pass" else ("< 1 s" if med < TARGET_S else "OVER 1 s")
        if name != "python -c pass":
            worst = max(worst, med)
        print(f"{name:<26}{med:>10.3f}{min(ts):>8.3f}{max(ts):>8.3f}{med / base:>10.1f}{med - base:>8.3f}  {ok}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
