#!/usr/bin/env bash
# Meta-train the shipped tracking codecs (scenario `drift`: a Kalman-structured channel tracker whose dynamics --
# per-tap decay a, innovation variance q, prior p0 -- are learned from the drift scenario's own frame sequences,
# never told rho; decision-directed update with confident payload blocks, then the payload decided again).
# One checkpoint per (drift scenario, pilots per frame). For k = n = 8 the codebook of online_drift_k8n8.pt is
# kept (frozen) and only the tracker learns; iq-drift (k = 4, n = 1) learns its constellation with the tracker.
# Measured CPU time (one thread; wall was 2-3x that on a loaded 2-core machine):
#   doppler-slow 1/2/4, doppler-fast 16: 788-813 s each (200 steps, step 100 selected on held-out sequences);
#   regime-switch 16: 584 s (200 steps; widely-linear 14-tap window with 6 pre-cursor taps, exact per-frame channels
#     probed from the timeline, sequences starting anywhere in it; step 200 selected);
#   snr-drift 16: 111 s (200 steps, step 200 selected);
#   iq-drift 16: 965 s (4000 steps at outer rate 0.02: the 16-point constellation is learned too; step 3250).
#   pa-drift 16: 251 s (200 steps; the tracker with the learned PA correction f_theta and, in the same run on the
#     same sequences, the linear tracker without it -- the `track-linear` baseline; step 100 selected; 617 s wall).
#   phase-noise-drift 16: 557 s (200 steps; the per-position phase-noise belief with its learned variance and, in the
#     same run, the fixed-tap tracker -- `track-linear`; step 100 selected; learned s2 0.049, true 0.05).
set -euo pipefail
cd "$(dirname "$0")/.."
for spec in "doppler-slow 1 200 0.05 100" "doppler-slow 2 200 0.05 100" "doppler-slow 4 200 0.05 100" \
            "doppler-fast 16 200 0.05 100" "regime-switch 16 200 0.05 100" "snr-drift 16 200 0.05 100" \
            "iq-drift 16 4000 0.02 250" "pa-drift 16 200 0.05 50" "phase-noise-drift 16 200 0.05 50"; do
  set -- $spec
  python -m metacomm.cli.main meta-train --scenario drift --drift "$1" --set pilots="$2" \
      --meta-steps "$3" --outer-lr "$4" --val-every "$5" --val-tasks 32 --quiet --overwrite \
      --out "metacomm/checkpoints/drift_track_$1_p$2.pt"
done
