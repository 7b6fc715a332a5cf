#!/usr/bin/env bash
# One prepared run of every GPU check (device machine; not CI). Writes logs to $OUT (or ./gpu-out).
# The device image has torch with CUDA but no Sionna: a copy of sionna-no-rt (+ importlib_resources) is carried
# in build/gpu_site (git-ignored) and put on PYTHONPATH.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=.:build/gpu_site PYTHONUNBUFFERED=1 MPLBACKEND=Agg
run() { echo "=== $*"; timeout "${T:-150}" "$@" 2>&1 | tee -a "$OUT/gpu.log"; }
nvidia-smi -L | tee "$OUT/gpu.log"
python -c "import torch, sionna.phy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/gpu.log"
T=150 run python benchmarks/ber_vs_sionna.py --device cuda --repeats 2
T=90  run python benchmarks/meta_step.py --device cuda --repeats 5
T=60  run python benchmarks/adapt_latency.py --device cuda --links 1,16,1000,4096 --repeats 20
T=150 run python -m pytest -q -x -p no:cacheprovider -k cuda tests/channels tests/codecs tests/adaptation tests/sims
