#!/usr/bin/env bash
# Writes the C header (default include/moela.h) from src/capi/ with cbindgen, adding the
# version macros computed from Cargo.toml's version. The test command runs it into a
# temporary file and fails if the committed header differs.
#   bash tools/gen_header.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-include/moela.h}
version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n 1)
IFS=. read -r major minor patch <<<"${version%%[-+]*}"
if [ "$major" = 0 ]; then abi=$minor; else abi=$((major << 16)); fi
# The version macros live in cbindgen.toml's after_includes (so that plain
# `cbindgen --config cbindgen.toml .` gives this same header); rewrite them from Cargo.toml.
block=$(
    printf 'after_includes = """\n'
    printf '/** The version of moela this header belongs to (Cargo'"'"'s package version). */\n'
    printf '#define MOELA_VERSION "%s"\n' "$version"
    printf '#define MOELA_VERSION_MAJOR %s\n' "$major"
    printf '#define MOELA_VERSION_MINOR %s\n' "$minor"
    printf '#define MOELA_VERSION_PATCH %s\n' "$patch"
    printf '/**\n * The ABI this header describes: a library whose moela_abi_version() differs must not be\n'
    printf ' * used. Cargo'"'"'s semver rule as one number: major << 16 from 1.0 on, minor for 0.x.\n */\n'
    printf '#define MOELA_ABI_VERSION %s\n' "$abi"
    printf '"""'
)
python3 - "$block" <<'PY'
import re, sys
p = "cbindgen.toml"
s = open(p, encoding="utf-8").read()
new = re.sub(r'after_includes = """.*?"""', lambda m: sys.argv[1], s, count=1, flags=re.S)
if new != s:
    open(p, "w", encoding="utf-8").write(new)
PY
cbindgen --quiet --config cbindgen.toml --output "$out" .
