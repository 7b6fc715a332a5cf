#!/usr/bin/env bash
# Meta-train the shipped `dd-mwnet` decision weightings (drift scheme of the label-noise pack): a 4-16-1 net from
# (decision loss, logit margin, log10 N0, pilot loss) to a weight in (0, 1) of each payload decision in the
# per-frame decision-directed step, meta-learned on doppler-slow's own frame sequences (channel seeds 101-110, 150
# frames x 8 links x 64 blocks each; the evaluation run uses the scenario's seed 2020) with the true payload labels
# in the outer loss (metacomm/experiments/dd_mwnet.py). One checkpoint per pilot count; deterministic.
# Measured CPU time (one thread, nice 10, on a loaded 2-core machine): p1 71 s, p2 72 s (recorded in each checkpoint's "training" entry).
set -euo pipefail
cd "$(dirname "$0")/.."
for p in 1 2; do
  OMP_NUM_THREADS=1 python -m metacomm.experiments.dd_mwnet --scenario doppler-slow --pilots "$p" \
      --seeds 101,102,103,104,105,106,107,108,109,110 --frames 150 --outer-lr 0.01 --threads 1 --quiet \
      --out "metacomm/checkpoints/dd_mwnet_doppler-slow_p$p.pt"
done
