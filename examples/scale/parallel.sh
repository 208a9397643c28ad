#!/usr/bin/env bash
# Embed one text file in N shards on this machine, N processes at a time, then merge them into one matrix.
#
#   examples/scale/parallel.sh INPUT.txt OUT.npy [N]      (N: shards, default 2; MODEL=… and XL_EMBED_ARGS=…)
#
# Each shard is `xl embed --shard K/N -o DIR/shard-K.npy`; `xl merge` checks that the shards are one run (model,
# layer, dtype, input; no gap, no overlap) and writes OUT.npy, which np.load reads. With GNU parallel installed the
# shards run under it (its {#} is the job number, 1-based: the K of --shard K/N); without it, under `xargs -P`.
# Each process gets 1 thread of BLAS/torch by default (THREADS=…): N processes of one thread keep N cores busy
# without oversubscribing them.
set -euo pipefail
input=${1:?usage: parallel.sh INPUT.txt OUT.npy [N]}
out=${2:?usage: parallel.sh INPUT.txt OUT.npy [N]}
n=${3:-2}
model=${MODEL:-default}
threads=${THREADS:-1}
dir=$(mktemp -d "${out}.shards.XXXXXX")
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
# word splitting of XL_EMBED_ARGS is wanted: it holds options
if command -v parallel > /dev/null && [[ -z ${XL_NO_GNU_PARALLEL:-} ]]; then
    # shellcheck disable=SC2086
    seq "$n" | parallel --halt now,fail=1 -j "$n" \
        xl embed "$input" --model "$model" --shard "{#}/$n" -q ${XL_EMBED_ARGS:-} -o "$dir/shard-{#}.npy"
else
    # shellcheck disable=SC2016,SC2086
    seq "$n" | xargs -P "$n" -I {} sh -c 'xl embed "$1" --model "$2" --shard "{}/$3" -q $4 -o "$5/shard-{}.npy"' \
        _ "$input" "$model" "$n" "${XL_EMBED_ARGS:-}" "$dir"
fi
xl merge "$dir"/shard-*.npy -o "$out"
