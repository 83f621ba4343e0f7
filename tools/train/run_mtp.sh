#!/usr/bin/env bash
# Train the default model's multi-token-prediction module on its frozen trunk and put it into
# models/moela-tiny-v3.gguf (CPU, one thread, ~35 min; see models/README.md, "MTP module").
#   bash tools/train/run_mtp.sh [MINUTES]
# Needs the corpus and the tokenizer (tools/train/prepare.sh, run here when missing) and a release
# build of moela (cargo build --release). The trunk is read from models/moela-tiny-v3.gguf and left as is.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
B=models/build
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
bash tools/train/prepare.sh "$B" --if-missing
python3 tools/train/train_mtp.py --build "$B" --minutes "${1:-30}" --moela target/release/moela 2>&1 | tee "$B/train_mtp.out"
python3 tools/train/ship_mtp.py --build "$B" --moela target/release/moela 2>&1 | tee "$B/ship_mtp.out"
python3 tools/train/bench_mtp.py --build "$B" --moela target/release/moela 2>&1 | tee "$B/bench_mtp.out"
