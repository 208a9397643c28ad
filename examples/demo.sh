#!/usr/bin/env bash
# The main job on bundled data: embed English and Korean FLORES-200 dev sentences with the offline
# default model, then check that each Korean sentence finds its English translation.
set -euo pipefail
DATA=${XL_DATA:-../shared/data}
OUT=${OUT:-build/demo}
mkdir -p "$OUT"
head -n 200 "$DATA/flores200/dev/eng_Latn.dev" > "$OUT/en.txt"
head -n 200 "$DATA/flores200/dev/kor_Hang.dev" > "$OUT/ko.txt"
xl embed "$OUT/en.txt" -o "$OUT/en.npy"
cat "$OUT/ko.txt" | xl embed > "$OUT/ko.npy"      # stdin/stdout work the same
python - "$OUT/en.npy" "$OUT/ko.npy" <<'PY'
import sys
import numpy as np
en, ko = (np.load(p) for p in sys.argv[1:3])
en /= np.linalg.norm(en, axis=1, keepdims=True)
ko /= np.linalg.norm(ko, axis=1, keepdims=True)
acc = float((np.argmax(ko @ en.T, axis=1) == np.arange(len(ko))).mean())
print(f"ko->en retrieval, FLORES-200 dev[:200], default model: top-1 accuracy {acc:.3f} (n={len(ko)})")
PY
