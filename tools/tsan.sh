#!/usr/bin/env bash
# Runs tests/concurrency.rs (one model, several threads each with its own session, outputs
# compared with the single-threaded ones; the same tokens for every worker count) under
# ThreadSanitizer. std is rebuilt with TSan instrumentation (-Zbuild-std), so this needs the
# nightly toolchain with rust-src:
#   rustup toolchain install nightly && rustup component add rust-src --toolchain nightly
# Not part of tools/test.sh (the instrumented build takes several minutes).
# Usage: tools/tsan.sh [seconds each stress thread runs, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    echo "tsan: needs nightly with rust-src (rustup component add rust-src --toolchain nightly)" >&2
    exit 1
fi
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=thread -Cdebuginfo=1"
export RUSTDOCFLAGS="-Zsanitizer=thread"
# The C kernels are compiled by build.rs with cc: instrument them as well.
export CFLAGS="-fsanitize=thread"
# Abort on the first report, with stacks.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
export MOELA_STRESS_SECS=${1:-3}
cargo +nightly test -Zbuild-std --target "$target" --target-dir target/tsan \
    --test concurrency -- --test-threads=1
