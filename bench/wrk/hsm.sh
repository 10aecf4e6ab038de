#!/usr/bin/env bash
# HSM signing throughput (issue 5), side by side in one run, with a SoftHSM2 token made here:
#   raw N     `stampd hsm bench --sessions N`: N threads, one session each, signing the way
#             the signer does (the ceiling for N sessions)
#   serve N   `stampd serve` with that key, `sessions = N`, the embedded defaults otherwise
#             (standard chain, group-commit audit, dispatch = "queue"), under wrk -t2
# and the ratio serve/raw for each N.
#
#   [SESSIONS="1 2 4"] [KEY=p256] [EXTRA='toml'] bash bench/wrk/hsm.sh [DURATION=10s] [CONNECTIONS=64] [ROUNDS=3]
#
# EXTRA is appended to the server's configuration (e.g. '[audit]\nstore = "none"' with
# '[[service]]\npreprocess = ["clock"]' to take the audit trail out).
#
# Prints the median over ROUNDS interleaved rounds. wrk, the server and SoftHSM2 share the
# machine's cores, as they would in any single-box measurement.
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10s}; conns=${2:-64}; rounds=${3:-3}
sessions=${SESSIONS:-1 2 4}; key=${KEY:-p256}
module=/usr/lib/softhsm/libsofthsm2.so
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -e $module ] || { apt-get update -qq && apt-get install -y -qq softhsm2; }
cargo build --release -q --bin stampd
bin=$PWD/target/release/stampd
tmp=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
. bench/wrk/lib.sh
port=3192
secs=${dur%s}

# The token and key, set up as an operator would (README "Keys in an HSM").
mkdir "$tmp/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$tmp/tokens" > "$tmp/softhsm2.conf"
export SOFTHSM2_CONF=$tmp/softhsm2.conf STAMPD_PIN=1234
softhsm2-util --init-token --free --label tsa --pin 1234 --so-pin 5678 >/dev/null
tok=(--module $module --token-label tsa --pin-env STAMPD_PIN)
"$bin" hsm keygen "${tok[@]}" --key-label tsa-key --key-type "$key" >/dev/null
"$bin" hsm csr "${tok[@]}" --key-label tsa-key --subject "/CN=bench TSA/O=stampd" --out "$tmp/tsa.csr" >/dev/null
"$bin" init --data-dir "$tmp/ca" >/dev/null
printf 'extendedKeyUsage = critical, timeStamping\nkeyUsage = critical, digitalSignature\n' > "$tmp/ext"
openssl x509 -req -days 30 -in "$tmp/tsa.csr" -CA "$tmp/ca/pki/ca.pem" -CAkey "$tmp/ca/pki/ca.key" \
  -extfile "$tmp/ext" -out "$tmp/tsa.pem" 2>/dev/null
cat "$tmp/tsa.pem" "$tmp/ca/pki/ca.pem" > "$tmp/chain.pem"
"$bin" hsm import-cert "${tok[@]}" --key-label tsa-key --cert "$tmp/chain.pem" >/dev/null
sleep 2 # genTime ± accuracy must be inside the certificate, which starts now
"$bin" hsm selftest "${tok[@]}" --key-label tsa-key

echo "wrk-bench data" > "$tmp/data.txt"
openssl ts -query -data "$tmp/data.txt" -sha256 -cert -out "$tmp/q.tsq" 2>/dev/null

raw() { # sessions
  "$bin" hsm bench "${tok[@]}" --key-label tsa-key --sessions "$1" --seconds "$secs" --json |
    python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)[0]["signs_per_second"])'
}

serve() { # sessions
  local data=$tmp/data-$1
  mkdir -p "$data"
  printf '[signer.main]\nkind = "pkcs11"\nmodule = "%s"\ntoken_label = "tsa"\npin_env = "STAMPD_PIN"\nkey_label = "tsa-key"\nsessions = %s\n' \
    $module "$1" > "$tmp/hsm-$1.toml"
  printf '%b\n' "${EXTRA:-}" >> "$tmp/hsm-$1.toml"
  STAMPD_LOG=warn "$bin" serve --config "$tmp/hsm-$1.toml" --data-dir "$data" \
    --listen "127.0.0.1:$port" > /dev/null &
  local pid=$!
  wait_healthy $port
  local rps cpu_us non2xx
  read -r rps cpu_us non2xx < <(STAMPD_QUERY=$tmp/q.tsq measure $pid "http://127.0.0.1:$port/tsa" "$tmp/wrk.out")
  kill $pid; wait $pid 2>/dev/null || true
  [ "${non2xx:-0}" = 0 ] || echo "warning: $non2xx non-2xx answers" >&2
  printf '%.0f\n' "$rps"
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

declare -A R S
for r in $(seq "$rounds"); do
  for n in $sessions; do
    a=$(raw "$n"); b=$(serve "$n")
    R[$n]+="$a "; S[$n]+="$b "
    echo "round $r, $n session(s): raw $a signs/s, served $b tokens/s" >&2
  done
done
printf '\n%-9s %12s %12s %7s\n' sessions "raw signs/s" "served/s" ratio
for n in $sessions; do
  raw_m=$(echo "${R[$n]}" | tr ' ' '\n' | grep . | median)
  srv_m=$(echo "${S[$n]}" | tr ' ' '\n' | grep . | median)
  printf '%-9s %12s %12s %6.1f%%\n' "$n" "$raw_m" "$srv_m" "$(echo "$srv_m $raw_m" | awk '{print 100*$1/$2}')"
done
