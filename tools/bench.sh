#!/usr/bin/env bash
# Reproduces the benchmark figures: writes DeepSeek-V2-Lite-shaped random-weight GGUFs with
# ../shared/tools/make_synth_gguf.py (outside the repo: $BENCH_DIR, default /tmp/moela-bench;
# Q4_0 is 8.85 GB, Q8_0 16.7 GB) and runs `moela bench` on each with the bandwidth reference.
# Usage: tools/bench.sh [q4_0|q8_0 ...]   (env: THREADS=2 PROMPT=512 GEN=128 DEPTH=0 REPS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/tmp/moela-bench}
mkdir -p "$dir"
cargo build --release --quiet
quants=("$@")
[ ${#quants[@]} -gt 0 ] || quants=(q4_0 q8_0)
for q in "${quants[@]}"; do
    f="$dir/dsv2lite-synth-$q.gguf"
    if [ ! -f "$f" ]; then
        python3 ../shared/tools/make_synth_gguf.py --quant "$q" --out "$f"
    fi
    target/release/moela -t "${THREADS:-2}" bench -m "$f" -p "${PROMPT:-512}" -n "${GEN:-128}" \
        -d "${DEPTH:-0}" -r "${REPS:-3}" --mem-bw
done
