#!/usr/bin/env bash
# The C API's tests (run by tools/test.sh after `cargo build --release`):
#   1. include/moela.h is what tools/gen_header.sh generates now;
#   2. the library exports exactly include/moela.symbols, and the header declares them all;
#   3. an install into a temporary prefix (tools/install.sh) works with pkg-config;
#   4. the C tests, compiled as C99 with -fsanitize=address,undefined against the installed
#      library: every function and misuse, speculative decoding, two threads on one model;
#   5. the header as C++ (twice in one unit, with moela.hpp) and the C++ RAII layer;
#   6. the examples (C shared and static, C++, Rust, Python) and the CLI give the same greedy
#      tokens;
#   7. the Python package's tests, and `pip install ./python` / `pip wheel ./python` in a fresh
#      venv (tools/test_python_install.sh).
# Needs: cbindgen 0.24.3, gcc/g++ with libasan/libubsan, pkg-config, python3 with setuptools
# >= 61, wheel, venv and ensurepip (tools/install-test-deps.sh installs them). Honours
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# Cargo's output: $CARGO_TARGET_DIR (absolute or relative to the checkout) or target/.
release=${CARGO_TARGET_DIR:-target}/release
case $release in /*) ;; *) release=$root/$release ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== C header is current (cbindgen)"
bash tools/gen_header.sh "$tmp/moela.h"
if ! diff -u include/moela.h "$tmp/moela.h"; then
    echo "include/moela.h is stale: run tools/gen_header.sh and commit it" >&2
    exit 1
fi

echo "== exported symbols = include/moela.symbols"
nm -D --defined-only "$release/libmoela.so" | awk '$3 ~ /^moela_/ {print $3}' | sort >"$tmp/exported"
if ! diff -u include/moela.symbols "$tmp/exported"; then
    echo "the library's exported symbols differ from include/moela.symbols: a removed or renamed" >&2
    echo "symbol breaks the ABI (deprecate instead); a new one must be added to the list" >&2
    exit 1
fi
# Every function the header declares is exported, and nothing else named moela_ is.
grep -E '^[a-z].*[ *]moela_[a-z0-9_]+\(' include/moela.h | grep -v '^typedef' |
    sed -E 's/.*[ *](moela_[a-z0-9_]+)\(.*/\1/' | sort >"$tmp/declared"
if ! diff -u "$tmp/declared" "$tmp/exported"; then
    echo "include/moela.h declares other functions than the library exports" >&2
    exit 1
fi
if nm -D --defined-only "$release/libmoela.so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | grep -v '^moela_' | grep -q .; then
    echo "the library exports symbols outside the moela_ namespace:" >&2
    nm -D --defined-only "$release/libmoela.so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | grep -v '^moela_' >&2
    exit 1
fi

echo "== install into a temporary prefix, pkg-config"
bash tools/install.sh --prefix "$tmp/prefix" --no-build >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
pkg-config --exists moela
[ "$(pkg-config --modversion moela)" = "$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n 1)" ]
cflags=$(pkg-config --cflags moela)
libs="$(pkg-config --libs moela) -Wl,-rpath,$tmp/prefix/lib"
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
warn="-Wall -Wextra -Werror -pedantic"
# Rust's runtime keeps some allocations for the life of the process (thread-local slots,
# the standard streams); they are reachable, so LeakSanitizer's default settings pass.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

echo "== C tests (C99, ASan + UBSan)"
gcc -std=c99 $warn $san $cflags tests/capi/test_capi.c -o "$tmp/test_capi" $libs -lm
mkdir -p "$tmp/scratch"
"$tmp/test_capi" tests/fixtures/v3 tests/fixtures/v3/llamacpp-f16.gguf "$tmp/scratch" models/moela-tiny-v3.gguf
# Speculative decoding: the default model (lookup), the MTP fixture (lookup, mtp), v3 (no MTP).
gcc -std=c99 $warn $san $cflags tests/capi/test_spec.c -o "$tmp/test_spec" $libs
"$tmp/test_spec" models/moela-tiny-v3.gguf tests/fixtures/v3_mtp tests/fixtures/v3
gcc -std=c99 $warn $san $cflags tests/capi/test_threads.c -o "$tmp/test_threads" $libs -pthread
"$tmp/test_threads" tests/fixtures/v3

echo "== C++ (header twice, RAII layer; ASan + UBSan)"
g++ -std=c++11 $warn $san $cflags tests/capi/test_header.cpp -o "$tmp/test_header" $libs
"$tmp/test_header" tests/fixtures/v3
g++ -std=c++11 $warn $san $cflags examples/cpp/chat.cpp -o "$tmp/chat" $libs
printf '1 2 3\n4 5\n' | "$tmp/chat" tests/fixtures/v3 -n 6 >"$tmp/chat.out" 2>/dev/null
[ "$(wc -l <"$tmp/chat.out")" = 2 ] || { echo "chat example: unexpected output" >&2; cat "$tmp/chat.out" >&2; exit 1; }

echo "== examples give the same greedy tokens (C shared + static, Rust, Python, CLI)"
gcc -std=c99 $warn $san $cflags examples/c/generate.c -o "$tmp/generate" $libs
# Static: libmoela.a plus what pkg-config lists for it.
gcc -std=c99 $warn $cflags examples/c/generate.c -o "$tmp/generate_static" \
    "$tmp/prefix/lib/libmoela.a" $(pkg-config --libs-only-l --static moela | sed 's/-lmoela//')
if readelf -d "$tmp/generate_static" | grep -q 'libmoela'; then
    echo "the static example links libmoela.so" >&2
    exit 1
fi
cargo build --release --quiet --example generate
norm() { tr -s ' \n' ' ' | sed 's/^ *//; s/ *$//'; }
for m in tests/fixtures/v3 tests/fixtures/v2_lite tests/fixtures/v3/llamacpp-f16.gguf; do
    c=$("$tmp/generate" "$m" --tokens 1,2,3 -n 16 | norm)
    cs=$("$tmp/generate_static" "$m" --tokens 1,2,3 -n 16 | norm)
    r=$("$release/examples/generate" "$m" --tokens 1,2,3 -n 16 | norm)
    p=$(MOELA_LIBRARY="$release/libmoela.so" python3 examples/python/generate.py "$m" --tokens 1,2,3 -n 16 | norm)
    cli=$("$release/moela" run -m "$m" --tokens 1,2,3 -n 16 --temp 0 2>/dev/null | norm)
    echo "  $m: $c"
    if [ "$c" != "$cs" ] || [ "$c" != "$r" ] || [ "$c" != "$p" ] || [ "$c" != "$cli" ] || [ -z "$c" ]; then
        printf 'C: %s\nC static: %s\nRust: %s\nPython: %s\nCLI: %s\n' "$c" "$cs" "$r" "$p" "$cli" >&2
        exit 1
    fi
done

echo "== Python package"
MOELA_LIBRARY="$release/libmoela.so" python3 -m unittest discover -s python/tests
# pip wheel / pip install ./python (the build bundles this target dir's libmoela) in a fresh
# venv, then import and generate with no MOELA_* variable.
bash tools/test_python_install.sh
echo "C API: all checks passed"
