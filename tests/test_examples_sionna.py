"""The Sionna coded-link example runs end to end (a few frames) and reports the three receivers' coded BLER."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sionna_tdl_ldpc_example_runs():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "sionna_tdl_ldpc.py"), "--frames", "2",
                          "--links", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    m = re.search(r"track ([\d.]+), sionna-ls-lmmse ([\d.]+), sionna-perfect-csi ([\d.]+) \(4 codewords each\)",
                  last)
    assert m, last
    assert all(0.0 <= float(v) <= 1.0 for v in m.groups())
