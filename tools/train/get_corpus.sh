#!/usr/bin/env bash
# Fetch and extract the training corpus of moela's default model from Debian packages (no other network).
# Usage: bash tools/train/get_corpus.sh [OUT_DIR]   (default models/build/corpus). Needs root for apt-get.
# Every source is public domain except the fortune files (BSD licence of the fortune-mod collection);
# see models/README.md for the per-package provenance and licences.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$HERE/../../models/build/corpus}"
mkdir -p "$OUT/debs" "$OUT/x"
OUT="$(cd "$OUT" && pwd)"
PKGS="bible-kjv-text fortunes fortunes-min fortunes-zh dict-devil jargon-text"
if ! ls "$OUT"/debs/*.deb >/dev/null 2>&1; then
  apt-get update -qq || true
  (cd "$OUT/debs" && apt-get download $PKGS)
fi
for f in "$OUT"/debs/*.deb; do
  n="$(basename "$f")"; n="${n%%_*}"
  mkdir -p "$OUT/x/$n"; dpkg-deb -x "$f" "$OUT/x/$n"
done
# The KJV text is stored in a compressed format that only the `bible` program (package bible-kjv) reads.
command -v bible >/dev/null || apt-get install -y -qq bible-kjv
bible -l0 -p "$OUT/x/bible-kjv-text/usr/lib" "Gen1:1-Rev22:21" </dev/null > "$OUT/kjv.raw.txt"
(cd "$OUT/debs" && sha256sum *.deb) > "$OUT/debs.sha256"
python3 "$HERE/build_corpus.py" "$OUT"
