#!/usr/bin/env bash
# The default model's corpus, validation split and tokenizer in BUILD_DIR (the first steps of
# run_all.sh; run_mtp.sh calls it with --if-missing so an existing build is reused as it is).
#   bash tools/train/prepare.sh BUILD_DIR [--if-missing]
set -euo pipefail
B="$1"
if [ "${2:-}" = "--if-missing" ] && [ -f "$B/corpus/docs.jsonl" ] && [ -f "$B/tokenizer/tokenizer.json" ]; then
  exit 0
fi
bash tools/train/get_corpus.sh "$B/corpus"
python3 - "$B" <<'PY'
import json, sys
sys.path.insert(0, "tools/train")
from train import val_doc_ids
b = sys.argv[1]
n = sum(1 for _ in open(f"{b}/corpus/docs.jsonl", encoding="utf-8"))
json.dump(val_doc_ids(n), open(f"{b}/val_ids.json", "w"))
PY
python3 tools/train/train_tokenizer.py --corpus "$B/corpus/docs.jsonl" --out "$B/tokenizer" \
  --exclude-docs "$B/val_ids.json" ${DEEPSEEK_V3_TOKENIZER:+--ref "$DEEPSEEK_V3_TOKENIZER"}
