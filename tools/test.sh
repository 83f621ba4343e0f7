#!/usr/bin/env bash
# Every test of the project, in the order a reviewer would want them to fail:
# formatting and lints, the Rust unit and integration tests (golden logits against
# transformers' references, converter round trips, error cases), freshness of the generated
# kernel bindings, the GGUF layout checks with the `gguf` Python package, and the C API
# (tools/test_capi.sh: header freshness, exported symbols, C/C++ tests under ASan/UBSan,
# examples, the Python package).
# Needs: cargo; python3 with gguf, numpy, safetensors; libclang (for bindgen); cbindgen
# 0.24.3, gcc/g++, pkg-config (for the C API). .ci/run installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings

echo "== cargo test"
cargo test --all-targets

echo "== kernel bindings are current (bindgen)"
cargo build --features bindgen --quiet
generated=$(ls -t target/debug/build/moela-*/out/bindings.rs | head -n 1)
if ! diff <(tail -n +3 src/kernels/bindings.rs) "$generated" >/dev/null; then
    echo "src/kernels/bindings.rs is stale: regenerate it from $generated" >&2
    exit 1
fi

echo "== GGUF layout (gguf PyPI package)"
cargo build --release --quiet
python3 tools/check_gguf_layout.py --moela target/release/moela

echo "== C API (tools/test_capi.sh)"
bash tools/test_capi.sh
