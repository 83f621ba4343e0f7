#!/usr/bin/env bash
# Runs a command and samples its resident set size (VmRSS, and the peak VmHWM) every
# $INTERVAL seconds (default 1), printing one line per sample: seconds since start, RSS in GB,
# peak in GB. For the offloading RSS table (docs/OFFLOADING.md): plain mmap grows into the
# page cache as tokens touch new experts, a budget stays flat.
#   tools/rss_over_run.sh target/release/moela -t 2 bench -m F.gguf -p 16 -n 256 -r 1 --expert-budget 25%
# The command's own output goes to stderr so the samples stay on stdout.
set -euo pipefail
interval=${INTERVAL:-1}
"$@" >&2 &
pid=$!
start=$(date +%s.%N)
echo "# t_s rss_gb peak_gb"
while kill -0 "$pid" 2>/dev/null; do
    if st=$(cat "/proc/$pid/status" 2>/dev/null); then
        rss=$(awk '/^VmRSS:/ {print $2}' <<<"$st")
        hwm=$(awk '/^VmHWM:/ {print $2}' <<<"$st")
        now=$(date +%s.%N)
        if [ -n "$rss" ]; then
            awk -v t="$now" -v s="$start" -v r="$rss" -v h="$hwm" \
                'BEGIN { printf "%.1f %.2f %.2f\n", t - s, r / 1e6 * 1.024, h / 1e6 * 1.024 }'
        fi
    fi
    sleep "$interval"
done
wait "$pid"
