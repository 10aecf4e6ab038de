#!/usr/bin/env bash
# HTTP throughput of stampd with wrk, side by side in one run:
# dispatch inline vs queue, certReq false vs true; P-256 software key.
#
#   bash bench/wrk/run.sh [DURATION=10s] [CONNECTIONS=64] [ROUNDS=3]
#
# Prints tokens/s (wrk's Requests/sec; wrk shares the box with the server) and server CPU
# time per token (utime+stime of the stampd process from /proc, divided by requests).
# Each case runs ROUNDS times, interleaved, and the median is reported.
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10s}; conns=${2:-64}; rounds=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q --bin stampd
# The raw P-256 signing cost on this machine, measured in the same run (criterion).
sign_us=$(cargo bench -q --bench protocol -- --warm-up-time 1 --measurement-time 3 'sign/ecdsa-p256$' 2>/dev/null \
  | awk '/time:/ {v=$5; u=$6; if (u ~ /^ns/) v/=1000; if (u ~ /^ms/) v*=1000; print v; exit}')
bin=target/release/stampd
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
"$bin" init --data-dir "$tmp/data" >/dev/null
echo "wrk-bench data" > "$tmp/data.txt"
openssl ts -query -data "$tmp/data.txt" -sha256 -out "$tmp/nocert.tsq" 2>/dev/null
openssl ts -query -data "$tmp/data.txt" -sha256 -cert -out "$tmp/cert.tsq" 2>/dev/null
port=3190
. bench/wrk/lib.sh

run_case() { # dispatch certreq
  local dispatch=$1 cert=$2
  printf '[server]\ndispatch = "%s"\n' "$dispatch" > "$tmp/$dispatch.toml"
  STAMPD_LOG=warn "$bin" serve --config "$tmp/$dispatch.toml" --data-dir "$tmp/data" \
    --listen "127.0.0.1:$port" > /dev/null &
  local pid=$!
  wait_healthy $port
  local q=$tmp/$([ "$cert" = true ] && echo cert || echo nocert).tsq
  echo "$dispatch $cert $(STAMPD_QUERY=$q measure $pid "http://127.0.0.1:$port/tsa" "$tmp/wrk.out")"
  kill $pid; wait $pid 2>/dev/null || true
}

results=$tmp/results
for r in $(seq "$rounds"); do
  for dispatch in inline queue; do
    for cert in false true; do
      run_case $dispatch $cert | tee -a "$results" >&2
    done
  done
done
echo
echo "raw aws-lc-rs P-256 sign: ${sign_us} µs ($(awk -v s="$sign_us" 'BEGIN {printf "%.0f", 1e6 / s}')/s per core);" \
     "CPU target per token 1/(0.7 x raw rate) = $(awk -v s="$sign_us" 'BEGIN {printf "%.1f", s / 0.7}') µs"
echo "median of $rounds rounds, ${dur} each, $conns connections, wrk -t2 on the same $(nproc)-core box"
printf '%-8s %-9s %12s %16s %8s\n' dispatch cert_req tokens/s cpu_us/token non2xx
for dispatch in inline queue; do
  for cert in false true; do
    grep "^$dispatch $cert " "$results" | sort -k3 -n | awk -v n="$rounds" \
      '{a[NR]=$3; c[NR]=$4; e+=$5} END {m=int((n+1)/2); printf "%-8s %-9s %12.0f %16s %8d\n", $1, $2, a[m], c[m], e}'
  done
done
