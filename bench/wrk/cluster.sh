#!/usr/bin/env bash
# The cluster's costs, measured on this box (deploy/cluster/: HAProxy in front of three
# stampd nodes shipping to one PostgreSQL, all on loopback):
#   * tokens/s through HAProxy with 1, 2 and 3 nodes in the pool (the others in MAINT),
#     HAProxy's CPU per request, and the nodes' CPU per token (all nodes summed); and, as
#     the baseline of the same run, wrk straight at node 1 (`direct`);
#   * PostgreSQL's intake with three shippers at once: PostgreSQL is stopped during a load
#     run, so every node's journal holds a backlog, then started; the rows/s until all are in
#     (records and their chain frames; the shippers and PostgreSQL share the box).
#
#   bash bench/wrk/cluster.sh [DURATION=8s] [CONNECTIONS=64] [ROUNDS=3]
#
# On a box with few cores the nodes, HAProxy, PostgreSQL and wrk compete for them: read
# tokens/s as what this box gives, and the CPU per token and per request as the costs to
# project from (bench/RESULTS.md, "Cluster").
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-8s}; conns=${2:-64}; rounds=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$haproxy" ] || { apt-get update -qq && apt-get install -y -qq haproxy; haproxy=/usr/sbin/haproxy; }
cargo build --release -q --bin stampd
bin=$PWD/target/release/stampd
tmp=""; pgbin=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  if [ -n "$pgbin" ]; then
    as_pg "$pgbin/pg_ctl" -D "$tmp/pg" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
tmp=$(mktemp -d); chmod 755 "$tmp"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
. bench/wrk/lib.sh

pgport=3390
mkdir "$tmp/pg"; [ "$(id -u)" = 0 ] && chown postgres: "$tmp/pg"
as_pg "$pgbin/initdb" -D "$tmp/pg" -U postgres -A trust -E UTF8 >/dev/null
pg_start() {
  as_pg "$pgbin/pg_ctl" -D "$tmp/pg" -l "$tmp/pg/log" -w \
    -o "-p $pgport -c listen_addresses=127.0.0.1 -k $tmp/pg" start >/dev/null
}
pg_stop() { as_pg "$pgbin/pg_ctl" -D "$tmp/pg" -m fast -w stop >/dev/null; }
pg_start
psql_() { psql -h 127.0.0.1 -p $pgport -U postgres -d postgres -At -c "$1"; }

"$bin" init --data-dir "$tmp/pki-src" >/dev/null
echo "cluster-bench data" > "$tmp/data.txt"
openssl ts -query -data "$tmp/data.txt" -sha256 -out "$tmp/q.tsq" 2>/dev/null
pids=()
for n in 1 2 3; do
  mkdir -p "$tmp/node$n"; cp -r "$tmp/pki-src/pki" "$tmp/node$n/"
  sed "s/port=55432 user=postgres dbname=stampd/port=$pgport user=postgres dbname=postgres/" \
    "deploy/cluster/node$n.toml" > "$tmp/node$n.toml"
  NO_COLOR=1 STAMPD_LOG=warn "$bin" serve --config "$tmp/node$n.toml" --data-dir "$tmp/node$n" \
    --listen "127.0.0.1:$((3380 + n))" --admin-listen off > /dev/null 2> "$tmp/node$n.log" &
  pids+=($!)
done
for n in 1 2 3; do wait_healthy $((3380 + n)); done
STAMPD_LB_BIND=127.0.0.1:3380 STAMPD_LB_SOCKET=$tmp/lb.sock STAMPD_NODE1=127.0.0.1:3381 \
  STAMPD_NODE2=127.0.0.1:3382 STAMPD_NODE3=127.0.0.1:3383 \
  "$haproxy" -f deploy/cluster/haproxy.cfg -db > "$tmp/haproxy.log" 2>&1 &
lb=$!
lb_cmd() { python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile().read(), end="")' "$tmp/lb.sock" "$1"; }
# Waits until every server in the pool (not in MAINT) passed its last check.
lb_settled() {
  for _ in $(seq 200); do
    lb_cmd "show stat" | awk -F, '$1 == "stampd" && $2 ~ /^n/ && $18 !~ /MAINT/ && !($18 == "UP" && $37 == "L7OK") {bad=1} END {exit bad}' && return
    sleep 0.1
  done
  echo "HAProxy did not settle" >&2; exit 1
}
sleep 0.2; lb_settled

nodes_ticks() { local t=0; for p in "${pids[@]}"; do t=$((t + $(cpu_ticks "$p"))); done; echo $t; }
hz=$(getconf CLK_TCK)
results=$tmp/results
for _ in $(seq "$rounds"); do
  for pool in 0 1 2 3; do
    for n in 1 2 3; do
      if [ "$n" -le "$pool" ]; then lb_cmd "set server stampd/n$n state ready" >/dev/null
      else lb_cmd "set server stampd/n$n state maint" >/dev/null; fi
    done
    lb_settled
    # Pool 0: wrk straight at node 1, no HAProxy (the baseline of the same run).
    url=http://127.0.0.1:3380/tsa; [ $pool = 0 ] && url=http://127.0.0.1:3381/tsa
    nb=$(nodes_ticks); hb=$(cpu_ticks $lb)
    STAMPD_QUERY=$tmp/q.tsq wrk -t2 -c"$conns" -d"$dur" -s bench/wrk/timestamp.lua \
      "$url" > "$tmp/wrk.out"
    na=$(nodes_ticks); ha=$(cpu_ticks $lb)
    reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
    awk -v pool=$pool -v nt=$((na - nb)) -v ht=$((ha - hb)) -v r="$reqs" -v hz="$hz" '
      /Requests\/sec/ {rps = $2} /Non-2xx/ {e = $5}
      END {printf "%d %.0f %.1f %.1f %d\n", pool, rps, nt * 1e6 / hz / r, ht * 1e6 / hz / r, e}' \
      "$tmp/wrk.out" | tee -a "$results" >&2
  done
done
for n in 1 2 3; do lb_cmd "set server stampd/n$n state ready" >/dev/null; done
lb_settled

# Three shippers at once: a backlog in every journal, then PostgreSQL back.
journal_records() { # the records of every node's journal, all shards
  local t=0
  for n in 1 2 3; do
    t=$((t + $("$bin" audit verify --json --data-dir "$tmp/node$n" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["records"])')))
  done
  echo $t
}
for _ in $(seq 600); do
  [ "$(psql_ "SELECT count(*) FROM audit_record")" = "$(journal_records)" ] && break
  sleep 0.2
done
before=$(psql_ "SELECT count(*) FROM audit_record")
pg_stop
STAMPD_QUERY=$tmp/q.tsq wrk -t2 -c"$conns" -d"$dur" -s bench/wrk/timestamp.lua \
  "http://127.0.0.1:3380/tsa" > /dev/null
total=$(journal_records)
pg_start
# Timed from the first row in (the shippers reconnect with a backoff of up to 5 s).
while [ "$(psql_ "SELECT count(*) FROM audit_record")" -le "$before" ]; do sleep 0.02; done
start=$(date +%s.%N); first=$(psql_ "SELECT count(*) FROM audit_record")
while [ "$(psql_ "SELECT count(*) FROM audit_record")" -lt "$total" ]; do sleep 0.05; done
end=$(date +%s.%N)
backlog=$((total - first))

echo
echo "median of $rounds rounds, ${dur} each, $conns connections through HAProxy, wrk -t2, all on this $(nproc)-core box"
printf '%-6s %10s %16s %18s %7s\n' nodes tokens/s node_cpu_us/token haproxy_cpu_us/req non2xx
for pool in 0 1 2 3; do
  grep "^$pool " "$results" | sort -k2 -n | awk -v n="$rounds" \
    '{a[NR]=$2; c[NR]=$3; h[NR]=$4; e+=$5} END {m=int((n+1)/2); printf "%-6s %10.0f %16s %18s %7d\n", ($1 == 0 ? "direct" : $1), a[m], c[m], h[m], e}'
done
awk -v b="$backlog" -v s="$start" -v e="$end" \
  'BEGIN {printf "three shippers at once: a backlog of %d records (and their chain frames) into PostgreSQL in %.2f s: %.0f records/s\n", b, e - s, b / (e - s)}'
