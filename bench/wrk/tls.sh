#!/usr/bin/env bash
# HTTPS against plain HTTP, side by side in one run, same binary, same request:
#
#   bash bench/wrk/tls.sh [DURATION=10s] [CONNECTIONS=64] [ROUNDS=3]
#
# Cases: plain keep-alive, TLS keep-alive (TLS 1.3, a P-256 server key), and TLS with
# `Connection: close` (one full handshake per request: handshakes per second). Prints the
# median tokens/s and server CPU per token of each.
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10s}; conns=${2:-64}; rounds=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q --bin stampd
bin=target/release/stampd
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
"$bin" init --data-dir "$tmp/data" >/dev/null
echo "tls-bench data" > "$tmp/data.txt"
openssl ts -query -data "$tmp/data.txt" -sha256 -out "$tmp/q.tsq" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$tmp/server.key" -out "$tmp/server.pem" 2>/dev/null
chmod 600 "$tmp/server.key"
printf '[[service]]\nname = "default"\npath = "/tsa"\ntls = { cert = "%s", key = "%s" }\n' \
  "$tmp/server.pem" "$tmp/server.key" > "$tmp/tls.toml"
: > "$tmp/plain.toml"
port=3192
. bench/wrk/lib.sh

run_case() { # name config scheme [close]
  STAMPD_LOG=warn "$bin" serve --config "$tmp/$2.toml" --data-dir "$tmp/data" \
    --listen "127.0.0.1:$port" --admin-listen off >/dev/null &
  local pid=$!
  for _ in $(seq 100); do curl -skf "$3://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  if [ -n "${4:-}" ]; then export STAMPD_CLOSE=1; else unset STAMPD_CLOSE; fi
  echo "$1 $(STAMPD_QUERY=$tmp/q.tsq measure $pid "$3://127.0.0.1:$port/tsa" "$tmp/wrk.out")"
  kill $pid; wait $pid 2>/dev/null || true
}

for _ in $(seq "$rounds"); do
  run_case plain plain http | tee -a "$tmp/r" >&2
  run_case tls tls https | tee -a "$tmp/r" >&2
  run_case tls-handshake tls https close | tee -a "$tmp/r" >&2
done
echo
echo "median of $rounds interleaved rounds, ${dur} each, $conns connections, wrk -t2 on the same box"
printf '%-14s %12s %14s %8s\n' case tokens/s cpu_us/token non2xx
for c in plain tls tls-handshake; do
  grep "^$c " "$tmp/r" | sort -k2 -n | awk -v n="$rounds" \
    '{a[NR]=$2; u[NR]=$3; e+=$4} END {m=int((n+1)/2); printf "%-14s %12.0f %14s %8d\n", $1, a[m], u[m], e}'
done
