#!/usr/bin/env bash
# Legacy Authenticode stamps against RFC 3161 tokens on the same key (issue 19), side by side
# in one run: one release server on the embedded default (both /tsa and /authenticode, the
# P-256 dev key, group-commit journal), wrk against each path in turn, ROUNDS interleaved
# rounds, the order alternating.
#
#   bash bench/wrk/authenticode.sh [DURATION=8s] [CONNECTIONS=256] [ROUNDS=3]
#
# Prints per round and the median: replies/s and server CPU per reply, and authenticode/rfc3161.
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
# The RFC 3161 request (certReq, as signing tools send it) and an Authenticode request the
# way osslsigncode -t builds one: a 256-byte "signature" to countersign.
openssl ts -query -data bench/wrk/timestamp.lua -sha256 -cert -out "$tmp/req.tsq" 2>/dev/null
head -c 256 /dev/urandom > "$tmp/sig.bin"
python3 - "$tmp/sig.bin" "$tmp/req.b64" <<'PY'
import base64, sys
sig = open(sys.argv[1], "rb").read()
def tlv(tag, body):
    n = len(body)
    head = bytes([n]) if n < 128 else (bytes([0x81, n]) if n < 256 else bytes([0x82, n >> 8, n & 255]))
    return bytes([tag]) + head + body
data = bytes.fromhex("06092a864886f70d010701")
ms = bytes.fromhex("060a2b0601040182370302 01".replace(" ", ""))
ci = tlv(0x30, data + tlv(0xa0, tlv(0x04, sig)))
open(sys.argv[2], "w").write(base64.b64encode(tlv(0x30, ms + ci)).decode())
PY
STAMPD_LOG=warn "$bin" serve --data-dir "$tmp/data" > "$tmp/serve.log" 2>&1 &
pid=$!
wait_healthy 3180
run_case() { # case
  case $1 in
    rfc3161) STAMPD_QUERY="$tmp/req.tsq" measure "$pid" http://127.0.0.1:3180/tsa "$tmp/out.txt" ;;
    authenticode) STAMPD_QUERY="$tmp/req.b64" STAMPD_CONTENT_TYPE=application/octet-stream \
      measure "$pid" http://127.0.0.1:3180/authenticode "$tmp/out.txt" ;;
  esac
}
dur=2s run_case rfc3161 >/dev/null
dur=2s run_case authenticode >/dev/null
declare -A results
for r in $(seq "$rounds"); do
  order="rfc3161 authenticode"; [ $((r % 2)) = 0 ] && order="authenticode rfc3161"
  for case in $order; do
    line=$(run_case "$case")
    echo "round $r $case: replies/s cpu_us/reply non2xx = $line"
    results[$case]+="$line;"
  done
done
side_by_side rfc3161 authenticode "RFC 3161 (/tsa, certReq)" "Authenticode (/authenticode)"
