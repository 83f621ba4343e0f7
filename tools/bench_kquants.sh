#!/usr/bin/env bash
# K-quant figures on the DeepSeek-V2-Lite-shaped benchmark model: requantizes the Q8_0 file
# written by tools/bench.sh (`moela convert IN.gguf OUT.gguf --type T`, src/requant.rs) into
# each type in turn, runs `moela bench` on it, deletes it (the files are 9-14 GB), and prints
# a table: type, file bytes, weight bytes read per decoded token, prefill and decode tokens/s,
# and decode as a fraction of the read bandwidth (measured once, first). The source Q8_0 file
# is benchmarked too, as the reference row.
#
# Usage: tools/bench_kquants.sh [type ...]      (default: q4_k_m q5_k_m q6_k)
# Env: SRC (default /tmp/moela-bench/dsv2lite-synth-q8_0.gguf, only read), OUT_DIR (default
# /tmp/moela-bench-kq), KEEP=1 keeps the files (an existing file is reused, not converted
# again), THREADS=2 PROMPT=64 GEN=32 REPS=2.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${SRC:-/tmp/moela-bench/dsv2lite-synth-q8_0.gguf}
dir=${OUT_DIR:-/tmp/moela-bench-kq}
threads=${THREADS:-2}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q4_k_m q5_k_m q6_k)
[ -f "$src" ] || { echo "no $src: write it with tools/bench.sh q8_0" >&2; exit 1; }
mkdir -p "$dir"
cargo build --release --quiet
moela=target/release/moela

json_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

bw=$(json_field "$("$moela" -t "$threads" bench --mem-bw --json)" mem_bw_bytes_s)
echo "read bandwidth ($threads threads): $(python3 -c "print(f'{$bw/1e9:.2f}')") GB/s"

rows=()
bench_one() { # name file convert_seconds
    local j
    j=$("$moela" -t "$threads" bench -m "$2" -p "${PROMPT:-64}" -n "${GEN:-32}" \
        -r "${REPS:-2}" --json 2>/dev/null)
    rows+=("$(python3 - "$j" "$1" "$(stat -c %s "$2")" "$bw" "$3" <<'EOF'
import json, sys
r, name, size, bw, conv = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
a = r["active_bytes_per_token"]
print(f"| {name} | {size} | {a} | {r['pp_tok_s']:.2f} ± {r['pp_tok_s_sd']:.2f} | "
      f"{r['tg_tok_s']:.2f} ± {r['tg_tok_s_sd']:.2f} | {100 * r['tg_tok_s'] * a / bw:.0f}% | {conv} |")
EOF
)")
    echo "${rows[-1]}   (load: $(cut -d' ' -f1-3 /proc/loadavg))"
}

bench_one "q8_0 (source)" "$src" "-"
for t in "${types[@]}"; do
    f="$dir/dsv2lite-synth-$t.gguf"
    conv="reused"
    if [ ! -f "$f" ]; then
        start=$(date +%s)
        "$moela" -t "$threads" convert "$src" "$f" --type "$t" > "$dir/convert-$t.log" 2>&1 ||
            { tail -5 "$dir/convert-$t.log" >&2; exit 1; }
        conv="$(( $(date +%s) - start )) s"
        echo "converted $t in $conv (log: $dir/convert-$t.log)"
    fi
    bench_one "$t" "$f" "$conv"
    [ "${KEEP:-0}" = 1 ] || rm -f "$f"
done

echo
echo "moela -t $threads bench -p ${PROMPT:-64} -n ${GEN:-32} -r ${REPS:-2}; read bandwidth $(python3 -c "print(f'{$bw/1e9:.2f}')") GB/s"
echo "| type | file bytes | bytes read / token | pp tok/s | tg tok/s | tg / bandwidth | requantize |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
