#!/usr/bin/env bash
# Every test of the project, in the order a reviewer would want them to fail:
# formatting and lints, the Rust unit and integration tests (golden logits against
# transformers' references, converter round trips, error cases), freshness of the generated
# kernel bindings, the GGUF layout checks with the `gguf` Python package, and the C API
# (tools/test_capi.sh: header freshness, exported symbols, C/C++ tests under ASan/UBSan,
# examples, the Python package), then a short fuzz run of every parser (tools/fuzz.sh).
# Needs: cargo; python3 with gguf, numpy, safetensors; libclang (for bindgen); cbindgen
# 0.24.3, gcc/g++, pkg-config (for the C API); gcc-aarch64-linux-gnu and qemu-user (NEON
# tests). tools/install-test-deps.sh installs whatever is missing first. Honours
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
# Cargo's output directory: $CARGO_TARGET_DIR when set (CI, shared machines), else target/.
target=${CARGO_TARGET_DIR:-target}

# Each step prints "== name"; any failure stops the script (set -e), so reaching the end means
# every step passed, which the last line says in the plain "N passed, N failed" form.
steps=0
step() {
    steps=$((steps + 1))
    echo "== $*"
}

step "prerequisites"
bash tools/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test --all-targets

# The `constrain` feature (llguidance) is on by default; without it everything still builds
# and the constraint API says "unsupported" (same C ABI).
step "without the constrain feature"
cargo clippy --no-default-features --all-targets -- -D warnings
cargo test --no-default-features --quiet --test constrained

# `cargo test` above ran with the best kernel set; the model-level tests (golden logits with
# the long-context and f16-cache cases, the default model, offload) run again under every
# other set this CPU can execute, forced by MOELA_KERNELS (`moela kernels` lists them, best
# last). tests/kernel_sets.rs already forces each set itself, once per process.
sets=$(cargo run --quiet --bin moela -- kernels)
for set in $sets; do
    [ "$set" = "$(echo "$sets" | tail -n 1)" ] && continue
    step "model-level tests with MOELA_KERNELS=$set"
    MOELA_KERNELS=$set cargo test --quiet --test golden --test default_model --test offload
done

step "kernel bindings are current (bindgen)"
cargo build --features bindgen --quiet
generated=$(ls -t "$target"/debug/build/moela-*/out/bindings.rs | head -n 1)
if ! diff <(tail -n +3 src/kernels/bindings.rs) "$generated" >/dev/null; then
    echo "src/kernels/bindings.rs is stale: regenerate it from $generated" >&2
    exit 1
fi

step "C kernels against the generic ones (native, and NEON under qemu-aarch64; csrc/tests/test_kernels.c, test_iquants.c)"
kt=$(mktemp -d)
trap 'rm -rf "$kt"' EXIT
cflags="-O2 -std=c11 -Wall -Wextra -Werror -Icsrc/include"
gcc $cflags -c csrc/generic/generic.c -o "$kt/generic.o"
gcc $cflags -c csrc/generic/iquants.c -o "$kt/iquants.o"
gcc $cflags -c csrc/generic/iquant_grids.c -o "$kt/iquant_grids.o"
gcc $cflags -c csrc/tests/test_kernels.c -o "$kt/test.o"
gcc $cflags -O3 -mavx2 -mfma -mf16c -c csrc/x86/avx2.c -o "$kt/avx2.o"
gcc $cflags -O3 -mavx2 -mfma -mf16c -c csrc/x86/iquants_avx2.c -o "$kt/iquants_avx2.o"
gcc $cflags -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx2 -mfma -mf16c \
    -c csrc/x86/avx512.c -o "$kt/avx512.o"
gcc $cflags -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512vbmi -mavx2 \
    -mfma -mf16c -c csrc/x86/avx512vbmi.c -o "$kt/avx512vbmi.o"
gcc "$kt"/generic.o "$kt"/iquants.o "$kt"/iquant_grids.o "$kt"/test.o "$kt"/avx2.o "$kt"/avx512.o "$kt"/avx512vbmi.o -lm \
    -o "$kt/test_x86"
"$kt/test_x86"
gcc $cflags -c csrc/tests/test_iquants.c -o "$kt/test_iquants.o"
gcc "$kt"/generic.o "$kt"/iquants.o "$kt"/iquant_grids.o "$kt"/test_iquants.o "$kt"/iquants_avx2.o -lm \
    -o "$kt/test_iquants_x86"
"$kt/test_iquants_x86"
A=aarch64-linux-gnu-gcc
$A $cflags -c csrc/generic/generic.c -o "$kt/a_generic.o"
$A $cflags -c csrc/generic/iquants.c -o "$kt/a_iquants.o"
$A $cflags -c csrc/generic/iquant_grids.c -o "$kt/a_iquant_grids.o"
$A $cflags -c csrc/tests/test_kernels.c -o "$kt/a_test.o"
$A $cflags -O3 -c csrc/arm/neon.c -o "$kt/a_neon.o"
$A $cflags -O3 -march=armv8.2-a+dotprod -c csrc/arm/dotprod.c -o "$kt/a_dotprod.o"
$A $cflags -O3 -march=armv8.2-a+dotprod+i8mm -c csrc/arm/i8mm.c -o "$kt/a_i8mm.o"
$A -static "$kt"/a_generic.o "$kt"/a_iquants.o "$kt"/a_iquant_grids.o "$kt"/a_test.o "$kt"/a_neon.o "$kt"/a_dotprod.o "$kt"/a_i8mm.o -lm \
    -o "$kt/test_arm"
qemu-aarch64 -cpu max "$kt/test_arm"
$A $cflags -c csrc/tests/test_iquants.c -o "$kt/a_test_iquants.o"
$A $cflags -O3 -march=armv8.2-a+dotprod -c csrc/arm/iquants_dotprod.c -o "$kt/a_iquants_dotprod.o"
$A $cflags -O3 -c csrc/arm/iquants_neon.c -o "$kt/a_iquants_neon.o"
$A -static "$kt"/a_generic.o "$kt"/a_iquants.o "$kt"/a_iquant_grids.o "$kt"/a_test_iquants.o \
    "$kt"/a_iquants_dotprod.o "$kt"/a_iquants_neon.o -lm -o "$kt/test_iquants_arm"
qemu-aarch64 -cpu max "$kt/test_iquants_arm"

step "GGUF layout (gguf PyPI package)"
cargo build --release --quiet
python3 tools/check_gguf_layout.py --moela "$target/release/moela"
python3 tools/gen_iquant_grids.py --check

step "C API (tools/test_capi.sh)"
bash tools/test_capi.sh

# A short bounded fuzz run of every parser (fuzz/, cargo-fuzz on nightly; the longer runs are
# `tools/fuzz.sh 600`). MOELA_FUZZ_SECS=0 skips it; without nightly + cargo-fuzz it is skipped
# with a message.
fuzz_secs=${MOELA_FUZZ_SECS:-10}
if [ "$fuzz_secs" != 0 ]; then
    step "fuzz (tools/fuzz.sh, ${fuzz_secs}s per target)"
    bash tools/fuzz.sh "$fuzz_secs"
fi

echo "tools/test.sh: $steps passed, 0 failed"
