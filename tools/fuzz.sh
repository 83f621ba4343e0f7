#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds each (default 60), starting from the committed
# seeds in fuzz/corpus/<target>/ and growing a working corpus in fuzz/work/<target>/ (ignored
# by git). A crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
# Usage: tools/fuzz.sh [seconds] [target...]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); without them it says
# so and exits 0 unless MOELA_FUZZ_REQUIRED=1.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(gguf safetensors_config tokenizer_load tokenizer_encode chat_template session_state)
fi

if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo fuzz --version >/dev/null 2>&1; then
    msg="fuzz: skipped (needs the nightly toolchain and cargo-fuzz: rustup toolchain install nightly; cargo install cargo-fuzz)"
    if [ "${MOELA_FUZZ_REQUIRED:-0}" = 1 ]; then
        echo "$msg" >&2
        exit 1
    fi
    echo "$msg"
    exit 0
fi

cd fuzz
# -a: debug assertions and overflow checks on, so wrapping arithmetic on hostile sizes panics
# (and is found) instead of passing silently.
echo "== fuzz: building the targets (cargo fuzz build -a)"
cargo +nightly fuzz build -a --release
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "== fuzz $t for ${secs}s"
    # -rss_limit_mb: an input that makes the library allocate more than 2 GiB is a bug too.
    # chat_template: a template can tie minijinja's reference-counted namespace to itself
    # (`{% set ns.x = ns %}`), which leaks that object (a few hundred bytes per render, fuel
    # bounds how many); that is minijinja's design, documented in docs/UNTRUSTED_INPUTS.md, so
    # leak detection is off for that target only (crashes, panics and timeouts still count).
    # -detect_leaks=0 stops libFuzzer's per-input check; LeakSanitizer's own check when the
    # process exits is switched off by ASAN_OPTIONS (else a leak from any input of the run
    # fails it at exit, with an empty "crash" file).
    leaks=1
    [ "$t" = chat_template ] && leaks=0
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=$leaks" \
        cargo +nightly fuzz run -a --release "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
        -detect_leaks="$leaks" \
        -print_final_stats=1 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==|SUMMARY|thread .* panicked|Done [0-9]+ runs|INFO: Running with)" || true
    if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
        echo "fuzz $t: crash inputs in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
