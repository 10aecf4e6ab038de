#!/usr/bin/env bash
# The cost of the audit trail, side by side in one run (issue 4):
#   off           no audit filter, [audit] store = "none"  (the baseline)
#   group-commit  the embedded default: journal, reply after fdatasync
#   gc-tmpfs      group commit with the journal on tmpfs (/dev/shm): fdatasync costs nothing,
#                 so group-commit minus gc-tmpfs is what the disk's writes and syncs cost
#                 as charged to stampd's process, and gc-tmpfs minus off is what stampd's
#                 own code costs
#   async         journal, reply at once
#   async-tmpfs   async with the journal on tmpfs: async minus async-tmpfs is the disk
#   gc+postgres   group-commit journal shipped to a local PostgreSQL (started here)
#   pg-only       no journal, group commit waits for the PostgreSQL commit
# then the shipper's own rate: `stampd audit ship` of the group-commit journal into an empty
# database. With BASE_BIN=PATH (another build of stampd, e.g. today's main), every case
# named `base-CASE` runs CASE on that binary, side by side with this tree's build.
#
#   [CASES="off group-commit"] [BASE_BIN=...] bash bench/wrk/audit.sh [DURATION=10s] [CONNECTIONS=64] [ROUNDS=3]
#
# Prints, per case, the median over ROUNDS interleaved rounds of: tokens/s (wrk -t2 on the
# same box), server CPU per token, wrk's p50/p99 latency at saturation, and p50/p99 with a
# single connection (the latency one request sees when the server is idle), plus the ratio
# to the baseline; and, on stderr, each round's server CPU per token split by thread
# (stampd-core: the frontend cores, stampd-audit: writer threads, stampd-shipper, ...).
# Run as root (PostgreSQL runs as the postgres user) or as a user that can
# run the PostgreSQL server binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10s}; conns=${2:-64}; rounds=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q --bin stampd
bin=$PWD/target/release/stampd
cases=${CASES:-"off group-commit gc-tmpfs async gc+postgres pg-only"}
tmp=""; shm=""; pgbin=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  if [ -n "$pgbin" ]; then
    as_pg "$pgbin/pg_ctl" -D "$tmp/pg" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp" "$shm"
}
trap cleanup EXIT
tmp=$(mktemp -d); chmod 755 "$tmp"
case " $cases " in *"-tmpfs "*)
  # The tmpfs journal lives in memory: about 0.5 GB per 10 s round at 50k tokens/s (it is
  # emptied before each round). A small /dev/shm (a container's 64 MiB) would fill up and
  # turn the case into a measurement of refusals.
  avail_kib=$(df --output=avail -k /dev/shm | tail -1)
  [ "$avail_kib" -ge $((2 * 1024 * 1024)) ] || {
    echo "the tmpfs cases need 2 GiB free in /dev/shm (has $((avail_kib / 1024)) MiB); leave it out of CASES" >&2
    exit 1
  }
  shm=$(mktemp -d /dev/shm/stampd-bench.XXXXXX) ;;
esac
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# PostgreSQL with its default durability (fsync on), on a loopback port.
pgport=3291
mkdir "$tmp/pg"; [ "$(id -u)" = 0 ] && chown postgres: "$tmp/pg"
as_pg "$pgbin/initdb" -D "$tmp/pg" -U postgres -A trust -E UTF8 >/dev/null
as_pg "$pgbin/pg_ctl" -D "$tmp/pg" -l "$tmp/pg/log" -w \
  -o "-p $pgport -c listen_addresses=127.0.0.1 -k $tmp/pg" start >/dev/null
dsn="host=127.0.0.1 port=$pgport user=postgres dbname=postgres"
psql_() { psql -h 127.0.0.1 -p $pgport -U postgres -d postgres -At -c "$1"; }

"$bin" init --data-dir "$tmp/pki-src" >/dev/null
echo "wrk-bench data" > "$tmp/data.txt"
openssl ts -query -data "$tmp/data.txt" -sha256 -out "$tmp/q.tsq" 2>/dev/null
port=3190
. bench/wrk/lib.sh

config() { # case
  case $1 in
    off) printf '[audit]\nstore = "none"\n[[service]]\npreprocess = ["clock"]\n' ;;
    group-commit) printf '' ;;
    gc-tmpfs) printf '[audit.journal]\ndir = "%s/journal"\n' "$shm" ;;
    async) printf '[audit]\ndurability = "async"\n' ;;
    async-tmpfs) printf '[audit]\ndurability = "async"\n[audit.journal]\ndir = "%s/journal"\n' "$shm" ;;
    gc+postgres) printf '[audit]\npostgres = "%s"\nidentity = "bench"\n' "$dsn" ;;
    pg-only) printf '[audit]\nstore = "postgres"\npostgres = "%s"\nidentity = "bench-pg-only"\n' "$dsn" ;;
  esac
}

# wrk's latency line for a percentile, in µs.
pct() { # output percentile
  echo "$1" | awk -v p="$2%" '$1 == p {v=$2; if (v ~ /us$/) {sub(/us$/,"",v)} else if (v ~ /ms$/) {sub(/ms$/,"",v); v*=1000} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1e6}; printf "%.0f", v}'
}

run_case() { # case
  local c=$1 data=$tmp/data-$1 server=$bin kind=${1#base-}
  [ "$kind" != "$c" ] && server=${BASE_BIN:?base-CASE needs BASE_BIN}
  [ -d "$data" ] || { mkdir -p "$data"; cp -r "$tmp/pki-src/pki" "$data/"; }
  case $kind in *tmpfs) rm -rf "$shm/journal" ;; esac
  config "$kind" > "$tmp/$c.toml"
  STAMPD_LOG=warn "$server" serve --config "$tmp/$c.toml" --data-dir "$data" \
    --listen "127.0.0.1:$port" > /dev/null &
  local pid=$!
  wait_healthy $port
  local rps cpu_us non2xx one before
  before=$(thread_ticks $pid)
  read -r rps cpu_us non2xx < <(STAMPD_QUERY=$tmp/q.tsq WRK_FLAGS=--latency \
    measure $pid "http://127.0.0.1:$port/tsa" "$tmp/wrk.out")
  echo "  $c threads, µs per token: $(thread_split "$before" "$(thread_ticks $pid)" \
    "$(awk '/requests in/ {print $1}' "$tmp/wrk.out")")" >&2
  one=$(STAMPD_QUERY=$tmp/q.tsq wrk -t1 -c1 -d3s --latency -s bench/wrk/timestamp.lua "http://127.0.0.1:$port/tsa")
  kill $pid; wait $pid 2>/dev/null || true
  local out; out=$(cat "$tmp/wrk.out")
  echo "$c $rps $cpu_us $(pct "$out" 50) $(pct "$out" 99) $(pct "$one" 50) $(pct "$one" 99) $non2xx"
}

results=$tmp/results
for r in $(seq "$rounds"); do
  for c in $cases; do
    run_case "$c" | tee -a "$results" >&2
  done
done

# The records of every shard of a data directory's journal.
records() { # data_dir
  "$bin" audit verify --json --data-dir "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["records"])'
}

case " $cases " in *" gc+postgres "*) has_pg=1 ;; *) has_pg=0 ;; esac
case " $cases " in *" group-commit "*) has_gc=1 ;; *) has_gc=0 ;; esac
if [ $has_pg = 1 ]; then
# Everything issued with shipping on must be in PostgreSQL once the shipper caught up.
journal_rows=$(records "$tmp/data-gc+postgres")
for _ in $(seq 600); do
  [ "$(psql_ "SELECT count(*) FROM audit_record WHERE tsa = 'bench'")" = "$journal_rows" ] && break
  sleep 0.1
done
shipped=$(psql_ "SELECT count(*) FROM audit_record WHERE tsa = 'bench'")
fi

if [ $has_gc = 1 ]; then
# The shipper alone: the whole group-commit journal into the database under a new identity.
ship_rows=$(records "$tmp/data-group-commit")
ship=$("$bin" audit ship --data-dir "$tmp/data-group-commit" --postgres "$dsn" --identity ship-bench)
fi

echo
echo "median of $rounds rounds, ${dur} each, $conns connections, wrk -t2 on the same $(nproc)-core box;"
echo "1conn = one connection, 3 s (latency of a request on an idle server)"
printf '%-13s %10s %7s %9s %9s %9s %12s %12s %7s\n' case tokens/s ratio cpu_us p50_us p99_us 1conn_p50us 1conn_p99us non2xx
base=$(grep '^off ' "$results" | sort -k2 -n | awk -v n="$rounds" '{a[NR]=$2} END {print a[int((n+1)/2)]}')
for c in $cases; do
  grep "^$c " "$results" | sort -k2 -n | awk -v n="$rounds" -v base="$base" \
    '{a[NR]=$2; cpu[NR]=$3; p50[NR]=$4; p99[NR]=$5; o50[NR]=$6; o99[NR]=$7; e+=$8}
     END {m=int((n+1)/2); printf "%-13s %10.0f %6.1f%% %9s %9s %9s %12s %12s %7d\n", $1, a[m], 100*a[m]/base, cpu[m], p50[m], p99[m], o50[m], o99[m], e}'
done
[ $has_pg = 1 ] && echo "gc+postgres: journal $journal_rows records, PostgreSQL $shipped rows after catching up"
[ $has_gc = 1 ] && echo "shipper alone ($ship_rows records): $ship"
true
