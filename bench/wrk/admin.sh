#!/usr/bin/env bash
# The admin plane never slows the TSA (issue 18): the same wrk load with and without a
# dashboard open, side by side in one run, ROUNDS interleaved rounds on one server.
#   quiet    wrk only
#   polled   wrk while a poller does what an open dashboard does, every second: GET
#            /api/live (the live figures the page refreshes) and GET /api/dashboard (more
#            than the page asks for: services, signers, clock, audit, /metrics parsed)
#
#   bash bench/wrk/admin.sh [DURATION=8s] [CONNECTIONS=256] [ROUNDS=3]
#
# The server runs the embedded default with a transaction monitor (what the live figures
# read), a fresh one with an empty data directory for each measurement; the order of the
# two cases alternates between rounds. Prints per round and the median: tokens/s, server
# CPU per token (from /proc), the stampd-admin thread's CPU, and polled/quiet.
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-8s}; conns=${2:-256}; rounds=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q --bin stampd
bin=$PWD/target/release/stampd
source bench/wrk/lib.sh
tmp=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
cat > "$tmp/stampd.toml" <<'TOML'
[[service]]
name = "default"
listen = "127.0.0.1:3180"
preprocess = ["transaction-monitor", "clock", "audit"]
[admin]
listen = "127.0.0.1:3181"
TOML
openssl ts -query -data bench/wrk/timestamp.lua -sha256 -cert -out "$tmp/req.tsq" 2>/dev/null
export STAMPD_QUERY="$tmp/req.tsq"
url=http://127.0.0.1:3180/tsa
pid=""
# Each measurement gets a fresh server and data directory (a growing journal would make
# later measurements slower), warmed up for 2 s.
start_server() {
  [ -n "$pid" ] && { kill "$pid"; wait "$pid" 2>/dev/null || true; }
  rm -rf "$tmp/data"
  STAMPD_LOG=warn "$bin" serve --config "$tmp/stampd.toml" --data-dir "$tmp/data" > "$tmp/serve.log" 2>&1 &
  pid=$!
  wait_healthy 3180
  token=$(cat "$tmp/data/admin-token")
  admin_tid=$(grep -l '^stampd-admin$' /proc/$pid/task/*/comm | head -1 | cut -d/ -f5)
  dur=2s measure "$pid" "$url" "$tmp/warm.txt" >/dev/null
}
admin_ticks() { awk '{print $14 + $15}' "/proc/$pid/task/$admin_tid/stat"; }
poll() {
  while :; do
    curl -s -o /dev/null -H "Authorization: Bearer $token" http://127.0.0.1:3181/api/live
    curl -s -o /dev/null -H "Authorization: Bearer $token" http://127.0.0.1:3181/api/dashboard
    sleep 1
  done
}
declare -A results
for r in $(seq "$rounds"); do
  # Alternate the order (quiet first in odd rounds, polled first in even ones).
  order="quiet polled"; [ $((r % 2)) = 0 ] && order="polled quiet"
  for case in $order; do
    start_server
    poller=""
    if [ "$case" = polled ]; then poll & poller=$!; fi
    a0=$(admin_ticks)
    line=$(measure "$pid" "$url" "$tmp/$case-$r.txt")
    a1=$(admin_ticks)
    [ -n "$poller" ] && { kill "$poller"; wait "$poller" 2>/dev/null || true; }
    admin_ms=$(awk -v t=$((a1 - a0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", t * 1000 / hz}')
    echo "round $r $case: tokens/s cpu_us/token non2xx = $line; stampd-admin thread ${admin_ms} ms CPU"
    results[$case]+="$line;"
  done
done
side_by_side quiet polled "quiet" "dashboard polled every second"
