#!/usr/bin/env bash
# Two stampd binaries side by side, interleaved, same request, same box:
#
#   bash bench/wrk/compare.sh OLD_BINARY NEW_BINARY [DURATION=10s] [CONNECTIONS=64] [ROUNDS=3]
#
# Each binary serves its embedded default (P-256 dev key, inline dispatch, standard chain)
# from the same data directory; wrk -t2 posts one fixed SHA-256 request (certReq false).
# Prints the median tokens/s and server CPU per token of each, and NEW/OLD.
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$1; new=$2; dur=${3:-10s}; conns=${4:-64}; rounds=${5:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
"$new" init --data-dir "$tmp/data" >/dev/null
echo "compare" > "$tmp/data.txt"
openssl ts -query -data "$tmp/data.txt" -sha256 -out "$tmp/q.tsq" 2>/dev/null
port=3191
. bench/wrk/lib.sh

run() { # label binary
  STAMPD_LOG=warn "$2" serve --data-dir "$tmp/data" --listen "127.0.0.1:$port" >/dev/null &
  local pid=$!
  wait_healthy $port
  local rps cpu_us _
  read -r rps cpu_us _ < <(STAMPD_QUERY=$tmp/q.tsq measure $pid "http://127.0.0.1:$port/tsa" "$tmp/wrk.out")
  kill $pid; wait $pid 2>/dev/null || true
  echo "$1 $rps $cpu_us"
}

for _ in $(seq "$rounds"); do
  run old "$old" | tee -a "$tmp/r" >&2
  run new "$new" | tee -a "$tmp/r" >&2
done
med() { grep "^$1 " "$tmp/r" | sort -k2 -n | awk -v n="$rounds" '{a[NR]=$2; c[NR]=$3} END {m=int((n+1)/2); print a[m], c[m]}'; }
read -r old_rps old_cpu < <(med old)
read -r new_rps new_cpu < <(med new)
echo
echo "median of $rounds interleaved rounds, ${dur} each, $conns connections"
printf '%-5s %12s %14s\n' bin tokens/s cpu_us/token
printf '%-5s %12.0f %14s\n' old "$old_rps" "$old_cpu"
printf '%-5s %12.0f %14s\n' new "$new_rps" "$new_cpu"
awk -v a="$old_rps" -v b="$new_rps" 'BEGIN {printf "new/old throughput: %.1f%%\n", 100 * b / a}'
