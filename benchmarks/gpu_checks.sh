#!/usr/bin/env bash
# One prepared run of every GPU check (device machine; not CI). Writes logs to $OUT (or ./gpu-out) and ends with
# every ratio line of the run in one block ("=== ratios").
# The device image has torch with CUDA but no Sionna: a copy of sionna-no-rt (+ importlib_resources) is carried
# in build/gpu_site (git-ignored) and put on PYTHONPATH. The drift frame benchmark's old code comes from
# build/baseline.tar (git-ignored; make it here first: git archive d9a0c18 -o build/baseline.tar), since the
# device's copy of the checkout has no git history. Carry both: run(carry=["build/gpu_site", "build/baseline.tar"]).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=.:build/gpu_site PYTHONUNBUFFERED=1 MPLBACKEND=Agg
run() { echo "=== $*" | tee -a "$OUT/gpu.log"; timeout "${T:-150}" "$@" 2>&1 | tee -a "$OUT/gpu.log"; }
nvidia-smi -L | tee "$OUT/gpu.log"
python -c "import torch, sionna.phy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/gpu.log"
T=150 run python benchmarks/ber_vs_sionna.py --device cuda --repeats 2
T=90  run python benchmarks/meta_step.py --device cuda --repeats 5
T=60  run python benchmarks/adapt_latency.py --device cuda --links 1,16,1000,4096 --repeats 20
T=120 run python benchmarks/drift_track_speed.py --device cuda --links 512,10000,100000 --frames 6
T=150 run python benchmarks/drift_frame_speed.py --device cuda --links 8,512,4096 --frames 10 --baseline-tar build/baseline.tar
T=150 run python benchmarks/scenario_meta_step.py --device cuda --repeats 3
T=120 run python benchmarks/drift_memory.py --device cuda --schemes pilot-ls,track --links 2000,10000
T=150 run python -m pytest -q -x -p no:cacheprovider -k cuda tests/channels tests/codecs tests/adaptation tests/sims tests/drift
echo "=== ratios" | tee -a "$OUT/gpu.log"
grep -E "ratio|x *[0-9.]+ vs old|: x[0-9]|loop/|estimate / measured|automatic / loop" "$OUT/gpu.log" | tee "$OUT/ratios.txt"
