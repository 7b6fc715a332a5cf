"""The decision-directed drift schemes of the label-noise pack run next to the pilot-only ones on the same draws."""

from __future__ import annotations

import torch

from metacomm.scenarios.drift_scenarios import parse_scenario
from metacomm.scenarios.online_drift import DriftAutoencoder
from metacomm.sims.drift_run import run_drift

TOML = """
name = "dd"
ebno_db = 10.0
seed = 3
[codec]
k = 4
n = 4
[[segment]]
frames = 3
channel = "multipath"
[segment.channel_args]
num_taps = 3
[segment.drift]
process = "gauss-markov"
rho = 0.9
"""


def test_decision_directed_schemes_run_on_the_same_draws_as_the_pilot_only_ones():
    m = DriftAutoencoder(k=4, n=4, num_taps=3, hidden=8)
    m.reset_parameters(torch.Generator().manual_seed(0))
    res = run_drift(parse_scenario(TOML), m, frames=3, pilots=1, links=2, payload=16, seed=5,
                    schemes=["warm", "dd-gated", "dd-l2rw", "genie"])
    assert res.schemes[:4] == ["warm", "dd-gated", "dd-l2rw", "genie"]
    for f in res.frames:
        assert all(f["schemes"][s]["blocks"] == 32 for s in ("warm", "dd-gated", "dd-l2rw"))
    # a smoke test: the schemes' BLER is measured on the doppler-slow run in docs/packs/label-noise.md
    errs = {s: sum(f["schemes"][s]["block_errors"] for f in res.frames) for s in ("warm", "dd-gated", "dd-l2rw")}
    assert all(0 <= e <= 96 for e in errs.values())
