#!/usr/bin/env bash
# Rebuild moela's default model from scratch (CPU, one thread, ~1.6 h; see models/README.md).
#   bash tools/train/run_all.sh [MINUTES]
# Then: moela convert models/build/hf -> models/<name>.gguf (Q8_0), as the lead's commit describes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
B=models/build
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
bash tools/train/prepare.sh "$B"
python3 tools/train/train.py --build "$B" --minutes "${1:-92}" 2>&1 | tee "$B/train.out"
python3 tools/train/finalize.py --build "$B" --fixture tests/fixtures/default_model 2>&1 | tee "$B/finalize.out"
