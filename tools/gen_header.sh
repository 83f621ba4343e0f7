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
cfg=$(mktemp)
trap 'rm -f "$cfg"' EXIT
# after_includes is a top-level key, so it goes before cbindgen.toml's tables.
{
    printf 'after_includes = """\n'
    printf '/** The version of moela this header belongs to (Cargo'"'"'s package version). */\n'
    printf '#define MOELA_VERSION "%s"\n' "$version"
    printf '#define MOELA_VERSION_MAJOR %s\n' "$major"
    printf '#define MOELA_VERSION_MINOR %s\n' "$minor"
    printf '#define MOELA_VERSION_PATCH %s\n' "$patch"
    printf '/**\n * The ABI this header describes: a library whose moela_abi_version() differs must not be\n'
    printf ' * used. Cargo'"'"'s semver rule as one number: major << 16 from 1.0 on, minor for 0.x.\n */\n'
    printf '#define MOELA_ABI_VERSION %s\n' "$abi"
    printf '"""\n'
    cat cbindgen.toml
} >"$cfg"
cbindgen --quiet --config "$cfg" --lang c --output "$out" src/capi/mod.rs
