#!/usr/bin/env bash
# Side by side: `moela bench` and llama.cpp's `llama-bench` on the same GGUF, same threads,
# alternating runs (moela, llama.cpp, moela, llama.cpp, ...), then a ratio table.
#
#   tools/bench_vs_llamacpp.sh LLAMA_BUILD_DIR MODEL.gguf
#
# Cases: decode (tg128), prefill (pp512), and decode at depth 4096 with an f16 cache
# (llama-bench -d 4096 -fa 1; moela bench -d 4096 --kv-type f16). Each figure is the mean over
# ROUNDS rounds of each engine's own mean over REPS repetitions.
# Environment: THREADS (default 2), ROUNDS (2), REPS (2), DEPTH (4096; 0 skips that case),
# CASES (default "tg pp depth"), MOELA (the moela binary; default: target/release/moela, built
# if missing), MOELA_KERNELS (passed through: e.g. avx2 to compare against an AVX2-only
# llama.cpp build). Needs python3. Building llama.cpp is up to you (outside this repository),
# e.g. for an AVX2-only build on an AVX-512 machine:
#   cmake -B build-avx2 -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
#         -DGGML_AVX512=OFF && cmake --build build-avx2 -j --target llama-bench
set -euo pipefail
if [ $# -ne 2 ]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
llama_dir=$1
model=$2
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${THREADS:-2}
rounds=${ROUNDS:-2}
reps=${REPS:-2}
depth=${DEPTH:-4096}
cases=${CASES:-"tg pp depth"}
moela=${MOELA:-$root/target/release/moela}
llama_bench=$llama_dir/bin/llama-bench
[ -x "$llama_bench" ] || llama_bench=$llama_dir/llama-bench
[ -x "$llama_bench" ] || { echo "no llama-bench under $llama_dir (bin/llama-bench)" >&2; exit 1; }
[ -f "$model" ] || { echo "no model file $model" >&2; exit 1; }
if [ ! -x "$moela" ]; then
    (cd "$root" && cargo build --release --quiet --bin moela)
fi
[ "$depth" = 0 ] && cases=${cases//depth/}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "# $(date -u +%FT%TZ) | $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores | load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# model $model | threads $threads | MOELA_KERNELS=${MOELA_KERNELS:-best} | llama-bench $llama_bench"
"$moela" -t "$threads" bench --mem-bw --json > "$out/bw.json"

# Case arguments: moela bench, llama-bench.
margs() {
    case $1 in
        tg) echo "-p 0 -n 128" ;;
        pp) echo "-p 512 -n 0" ;;
        depth) echo "-p 0 -n 128 -d $depth --kv-type f16" ;;
    esac
}
largs() {
    case $1 in
        tg) echo "-p 0 -n 128" ;;
        pp) echo "-p 512 -n 0" ;;
        depth) echo "-p 0 -n 128 -d $depth -fa 1" ;;
    esac
}

for round in $(seq 1 "$rounds"); do
    for c in $cases; do
        echo "round $round/$rounds: $c: moela $(margs "$c")" >&2
        # shellcheck disable=SC2046
        /usr/bin/time -f '%M' -o "$out/m-$c-$round.rss" \
            "$moela" -t "$threads" bench -m "$model" -r "$reps" $(margs "$c") --json \
            > "$out/m-$c-$round.json" 2> "$out/m-$c-$round.log"
        echo "round $round/$rounds: $c: llama-bench $(largs "$c")" >&2
        # shellcheck disable=SC2046
        /usr/bin/time -f '%M' -o "$out/l-$c-$round.rss" \
            "$llama_bench" -m "$model" -t "$threads" -r "$reps" $(largs "$c") -o json \
            > "$out/l-$c-$round.json" 2> "$out/l-$c-$round.log"
    done
done

python3 - "$out" "$rounds" "$cases" <<'EOF'
import json, sys, statistics as st
out, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
bw = json.load(open(f"{out}/bw.json"))["mem_bw_bytes_s"]
names = {"tg": "decode tg128", "pp": "prefill pp512", "depth": "decode tg128 @ depth, f16 cache"}
def rss(p):
    try:
        return int(open(p).read().split()[-1]) * 1024
    except Exception:
        return 0
rows, active, m_peak, l_peak = [], 0, 0, 0
for c in cases:
    m, l = [], []
    for r in range(1, rounds + 1):
        j = json.load(open(f"{out}/m-{c}-{r}.json"))
        m.append(j["pp_tok_s"] if c == "pp" else j["tg_tok_s"])
        active = j["active_bytes_per_token"]
        depth = j["depth"]
        m_peak = max(m_peak, rss(f"{out}/m-{c}-{r}.rss"))
        lj = json.load(open(f"{out}/l-{c}-{r}.json"))
        l.append(lj[-1]["avg_ts"])
        l_peak = max(l_peak, rss(f"{out}/l-{c}-{r}.rss"))
    rows.append((names[c].replace("depth", f"depth {depth}") if c == "depth" else names[c], m, l))
print(f"read bandwidth {bw/1e9:.1f} GB/s; moela reads {active/1e9:.3f} GB of weights per token: decode limit {bw/active:.1f} tok/s" if active else "")
print()
print("| | moela tok/s | llama.cpp tok/s | moela / llama.cpp |")
print("|---|---|---|---|")
for name, m, l in rows:
    sp = lambda v: f"{st.mean(v):.2f}" + (f" ({min(v):.2f}-{max(v):.2f})" if len(v) > 1 else "")
    print(f"| {name} | {sp(m)} | {sp(l)} | {st.mean(m)/st.mean(l):.2f} |")
print(f"| peak RSS | {m_peak/1e9:.1f} GB | {l_peak/1e9:.1f} GB | |")
EOF
