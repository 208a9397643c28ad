#!/usr/bin/env bash
# On the GPU machine (see bench/gpu_prepare.sh): CUDA tests, then embed and finetune timings on the e5-small
# architecture with random weights (the real 4-bit weights are too big to carry; timing only).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD XL_DATA=$PWD/gpu-carry/data XL_WHEELS=$PWD/gpu-carry/wheels XL_HOME=/tmp/xlhome
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/gpu_fake_default.py 2>&1 | tail -1
echo "== GPU tests"; timeout 300 python3 -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tail -15
echo "== bench-embed cuda"; timeout 150 python3 bench/bench_embed.py --device cuda --per-lang 997 --speed-only --no-readme
echo "== bench-finetune cuda"; timeout 200 python3 bench/bench_finetune.py --device cuda --steps 300 --no-readme
