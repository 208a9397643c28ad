#!/usr/bin/env bash
# The main job, end to end, on bundled data with the offline default model, through xl commands and pipes:
#   1. embed FLORES-200 dev in English, German, Spanish and Korean; fit a map xx -> en on it (Procrustes);
#   2. on FLORES devtest (other sentences), bitext retrieval xx -> en before and after the map, the mapped
#      side straight from the pipe  xl embed xx.txt | tee xx.npy | xl apply-proj W.npy;
#   3. a short English STS fine-tune, and zero-shot STS in de, es, ko with and without it;
#   4. does task similarity predict transfer gains? xl tasksim correlate on the committed families study,
#      with a plot;
# and one summary table at the end. MODEL=, LANGS=, OUT=, TEST_N=, FIT_N= and XL_DATA= override the defaults.
set -euo pipefail
DATA=${XL_DATA:-../shared/data}
OUT=${OUT:-build/demo}
MODEL=${MODEL:-default}
LANGS=${LANGS:-de es ko}
STUDY=${STUDY:-examples/tasksim-families/results/e5-small}
TEST_N=${TEST_N:-500}        # devtest sentences per language for retrieval; STS test pairs per language
FIT_N=${FIT_N:-997}          # dev sentences per language the maps are fitted on (997: all of FLORES dev)
export XL_DATA=$DATA
mkdir -p "$OUT/text" "$OUT/emb" "$OUT/maps" "$OUT/results"
START=$SECONDS
step() { printf '\n== %s (%d s)\n' "$1" $((SECONDS - START)) >&2; }

# A metric of the first result line of a file (xl writes compact JSON: "key":value).
metric() { sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p" "$1" | head -n 1; }

step "texts: FLORES-200 dev (fit) and devtest (test), line-aligned across languages"
flores_code() { case $1 in en) echo eng_Latn ;; de) echo deu_Latn ;; es) echo spa_Latn ;; ko) echo kor_Hang ;;
  fr) echo fra_Latn ;; ru) echo rus_Cyrl ;; zh) echo zho_Hans ;; th) echo tha_Thai ;; *) echo "$1" ;; esac; }
for lang in en $LANGS; do
  code=$(flores_code "$lang")
  head -n "$FIT_N" "$DATA/flores200/dev/$code.dev" > "$OUT/text/$lang.dev.txt"
  head -n "$TEST_N" "$DATA/flores200/devtest/$code.devtest" > "$OUT/text/$lang.devtest.txt"
done

step "embed the fitting sentences and the English test side (one model load for all inputs)"
inputs=("$OUT/text/en.devtest.txt")
for lang in en $LANGS; do inputs+=("$OUT/text/$lang.dev.txt"); done
xl embed "${inputs[@]}" --model "$MODEL" -o "$OUT/emb/{stem}.npy" -q

step "fit a map xx -> en on dev; retrieval on devtest before and after it"
for lang in $LANGS; do
  xl fit-proj --src "$OUT/emb/$lang.dev.npy" --tgt "$OUT/emb/en.dev.npy" --method procrustes \
    -o "$OUT/maps/W.$lang.npy" -q
  xl embed "$OUT/text/$lang.devtest.txt" --model "$MODEL" -q \
    | tee "$OUT/emb/$lang.devtest.npy" \
    | xl apply-proj "$OUT/maps/W.$lang.npy" -q > "$OUT/emb/$lang.devtest.mapped.npy"
  xl eval retrieval --src "$OUT/emb/$lang.devtest.npy" --tgt "$OUT/emb/en.devtest.npy" --bootstrap 0 \
    --tag lang="$lang" --tag map=none -q > "$OUT/results/retrieval.$lang.none.jsonl"
  xl eval retrieval --src "$OUT/emb/$lang.devtest.mapped.npy" --tgt "$OUT/emb/en.devtest.npy" --bootstrap 0 \
    --tag lang="$lang" --tag map=procrustes -q > "$OUT/results/retrieval.$lang.procrustes.jsonl"
done

# No --dev: the model after the last step is kept (with --dev, xl keeps the best step on the English dev set,
# and for the default model that is the starting model: it was trained on STS-like data already).
step "fine-tune on English STS (STSb train, 600 pairs, one epoch)"
if [ ! -f "$OUT/runs/sts/run.json" ] || [ ! -f "$OUT/runs/sts/model.safetensors" ]; then
  rm -rf "$OUT/runs/sts"
  xl finetune --task sts --model "$MODEL" \
    --train <(xl data convert stsb train en --limit 600 -q) --epochs 1 --max-length 128 --seed 0 -o "$OUT/runs/sts" -q
fi

step "STS in English (the source task) and zero-shot in $LANGS, with and without the English STS training"
sets=(stsb:test:en)
for lang in $LANGS; do
  case $lang in ko) sets+=("korsts:test:ko") ;; *) sets+=("stsb-multi-mt:test:$lang") ;; esac
done
xl eval sts --model "$MODEL" "${sets[@]}" --limit "$TEST_N" --bootstrap 0 --no-summary -q \
  > "$OUT/results/sts.base.jsonl"
xl eval sts --model "$OUT/runs/sts" "${sets[@]}" --limit "$TEST_N" --bootstrap 0 --no-summary -q \
  > "$OUT/results/sts.finetuned.jsonl"

step "does task similarity predict the gains? (the committed families study, TaskEmb)"
xl tasksim correlate --sim "$STUDY/sim/taskemb.npy" --gains "$STUDY/gains.jsonl" --methods spearman \
  --plot "$OUT/results/taskemb-vs-gain.png" -q > "$OUT/results/correlate.taskemb.jsonl"

# ---------------------------------------------------------------------------------------------- summary
overall=$(grep '"scope":"overall"' "$OUT/results/correlate.taskemb.jsonl" | head -n 1)
{
  printf '\n%-48s %-8s %10s %10s   %s\n' "what" "lang" "without" "with" "files"
  for lang in $LANGS; do
    none=$(metric "$OUT/results/retrieval.$lang.none.jsonl" accuracy)
    mapped=$(metric "$OUT/results/retrieval.$lang.procrustes.jsonl" accuracy)
    printf '%-48s %-8s %10.1f %10.1f   %s\n' "retrieval $lang->en top-1 %, Procrustes map" "$lang" \
      "$(echo "$none" | awk '{print $1 * 100}')" "$(echo "$mapped" | awk '{print $1 * 100}')" \
      "$OUT/maps/W.$lang.npy"
  done
  i=0
  for lang in en $LANGS; do
    i=$((i + 1))
    base=$(sed -n "${i}p" "$OUT/results/sts.base.jsonl" | sed -n 's/.*"spearman":\([-0-9.e]*\).*/\1/p')
    tuned=$(sed -n "${i}p" "$OUT/results/sts.finetuned.jsonl" | sed -n 's/.*"spearman":\([-0-9.e]*\).*/\1/p')
    printf '%-48s %-8s %10.1f %10.1f   %s\n' "STS Spearman x100 (en: source, else zero-shot)" "$lang" "$base" "$tuned" \
      "$OUT/runs/sts"
  done
  rho=$(echo "$overall" | sed -n 's/.*"value":\([-0-9.e]*\).*/\1/p')
  p=$(echo "$overall" | sed -n 's/.*"p_perm":\([-0-9.e]*\).*/\1/p')
  n=$(echo "$overall" | sed -n 's/.*"n":\([0-9]*\).*/\1/p')
  printf '\nTaskEmb similarity vs transfer gain (the families study, %s source-target pairs): Spearman %.2f, ' "$n" "$rho"
  printf 'permutation p %.3f; plot %s\n' "$p" "$OUT/results/taskemb-vs-gain.png"
  printf '\nmodel %s; all result lines in %s/results/; %d s in all\n' "$MODEL" "$OUT" $((SECONDS - START))
} | tee "$OUT/summary.txt"
