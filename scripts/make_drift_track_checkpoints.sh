#!/usr/bin/env bash
# Meta-train the shipped tracking codecs (scenario `drift`: a Kalman-structured channel tracker whose dynamics --
# per-tap decay a, innovation variance q, prior p0 -- are learned from the drift scenario's own frame sequences,
# never told rho; decision-directed update with confident payload blocks, then the payload decided again).
# One checkpoint per (drift scenario, pilots per frame); the k = n = 8 codec of online_drift_k8n8.pt is kept.
# Measured: 788-813 s of CPU each (2249-2273 s wall with four at once on a loaded 2-core machine); step 100 of 200
# selected on held-out sequences each time. regime-switch and iq-drift (widely linear tracker, exact per-frame
# channels probed from the timeline, sequences starting anywhere in it): see the README for their training time.
set -euo pipefail
cd "$(dirname "$0")/.."
for spec in "doppler-slow 1" "doppler-slow 2" "doppler-slow 4" "doppler-fast 16" "regime-switch 16" "iq-drift 16"; do
  set -- $spec
  python -m metacomm.sims.cli meta-train --scenario drift --drift "$1" --set pilots="$2" \
      --meta-steps 200 --outer-lr 0.05 --val-every 100 --val-tasks 32 --quiet --overwrite \
      --out "metacomm/checkpoints/drift_track_$1_p$2.pt"
done
