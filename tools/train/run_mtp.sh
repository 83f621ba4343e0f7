#!/usr/bin/env bash
# Train the default model's multi-token-prediction module on its frozen trunk and put it into
# models/moela-tiny-v3.gguf (CPU, one thread, ~35 min; see models/README.md, "MTP module").
#   bash tools/train/run_mtp.sh [MINUTES]
# Needs the corpus and the tokenizer (run_all.sh's first steps, redone here when missing) and a release
# build of moela (cargo build --release). The trunk is read from models/moela-tiny-v3.gguf and left as is.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
B=models/build
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
[ -f "$B/corpus/docs.jsonl" ] || bash tools/train/get_corpus.sh "$B/corpus"
if [ ! -f "$B/tokenizer/tokenizer.json" ]; then
  python3 - "$B" <<'PY'
import json, sys
sys.path.insert(0, "tools/train")
from train import val_doc_ids
b = sys.argv[1]
n = sum(1 for _ in open(f"{b}/corpus/docs.jsonl", encoding="utf-8"))
json.dump(val_doc_ids(n), open(f"{b}/val_ids.json", "w"))
PY
  python3 tools/train/train_tokenizer.py --corpus "$B/corpus/docs.jsonl" --out "$B/tokenizer" \
    --exclude-docs "$B/val_ids.json"
fi
python3 tools/train/train_mtp.py --build "$B" --minutes "${1:-30}" --moela target/release/moela 2>&1 | tee "$B/train_mtp.out"
python3 tools/train/ship_mtp.py --build "$B" --moela target/release/moela 2>&1 | tee "$B/ship_mtp.out"
python3 tools/train/bench_mtp.py --build "$B" --moela target/release/moela 2>&1 | tee "$B/bench_mtp.out"
