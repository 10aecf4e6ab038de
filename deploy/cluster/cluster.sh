#!/usr/bin/env bash
# cluster.sh: three stampd nodes behind HAProxy on loopback, one PostgreSQL for the audit
# trail (deploy/cluster/README.md).
#
#   bash deploy/cluster/cluster.sh start|stop|status [DIR]      (DIR default ./cluster-data)
#
#   127.0.0.1:3280          HAProxy (clients POST to http://127.0.0.1:3280/tsa)
#   127.0.0.1:3281..3283    the nodes' service listeners (/tsa, /authenticode, /ready, /health)
#   127.0.0.1:3291..3293    the nodes' admin listeners (web interface, /metrics)
#   127.0.0.1:55432         PostgreSQL (trust authentication, loopback only)
#
# DIR holds everything: pg/ (PostgreSQL), pki-src/ (the one development PKI), node1..3/
# (each node's data directory, with a copy of the PKI), *.log, *.pid, haproxy.sock.
# `start` reuses what DIR already holds, so a stop and a start keep the audit trail.
# The binary: $STAMPD, else stampd on PATH, else target/release/stampd, target/debug/stampd.
# As root, PostgreSQL runs as the postgres user (DIR must be reachable by it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cmd=${1:-}
dir=${2:-./cluster-data}
nodes=(1 2 3)
lb=127.0.0.1:3280
pg_port=55432

usage() {
  echo "usage: bash deploy/cluster/cluster.sh start|stop|status [DIR]   (DIR default ./cluster-data)" >&2
  exit 2
}

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

find_stampd() {
  local b=${STAMPD:-stampd}
  if command -v "$b" >/dev/null; then
    command -v "$b"
    return
  fi
  [ -n "${STAMPD:-}" ] && die "STAMPD=$STAMPD is not an executable"
  for b in "$root/target/release/stampd" "$root/target/debug/stampd"; do
    if [ -x "$b" ]; then
      echo "$b"
      return
    fi
  done
  die "no stampd: put it on PATH, set STAMPD, or run cargo build --release"
}

find_haproxy() {
  # Debian installs it in /usr/sbin, which a non-root PATH may lack.
  command -v haproxy || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; } ||
    die "no haproxy: apt-get install haproxy"
}

find_pgbin() {
  local d
  d=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -1 || true)
  if [ -n "$d" ]; then
    echo "$d"
  elif command -v pg_ctl >/dev/null; then
    dirname "$(command -v pg_ctl)"
  else
    die "no PostgreSQL server: apt-get install postgresql"
  fi
}

# PostgreSQL refuses to run as root: as root, run its programs as the postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The pid in a pid file, when that process is alive and its command line names $2 (so a
# stale file whose pid was reused by another process is never signalled).
live_pid() { # pidfile marker
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  echo "$pid"
}

# Polls a command every 0.1 s, at most $1 tenths of a second.
wait_until() { # tenths command...
  local n=$1 i
  shift
  for ((i = 0; i < n; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

http_code() { # url
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true
}

ready() { # host:port
  [ "$(http_code "http://$1/ready")" = 200 ]
}

# One command on HAProxy's admin socket: socat when installed, else python3.
lb_cmd() { # command
  local sock=$dir/haproxy.sock
  if command -v socat >/dev/null; then
    printf '%s\n' "$1" | socat - "UNIX-CONNECT:$sock"
  else
    python3 - "$sock" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    sys.stdout.write(chunk.decode())
EOF
  fi
}

# The backend's servers from `show stat`, one line each, tab-separated: name, status
# ("UP", "DOWN", "UP 1/2" while a check result is pending or failing, "MAINT", ...), last
# check and its HTTP code, seconds since the last change of status.
lb_servers() {
  lb_cmd 'show stat' | awk -F, -v OFS='\t' '
    NR == 1 { for (i = 1; i <= NF; i++) { sub(/^# /, "", $i); col[$i] = i }; next }
    $1 == "stampd" && $2 != "BACKEND" {
      print $2, $col["status"], $col["check_status"] "/" $col["check_code"], $col["lastchg"]
    }'
}

# Every server UP after a passed check (HAProxy counts a server UP before its first check).
all_up() {
  [ "$(lb_servers 2>/dev/null | awk -F'\t' '$2 == "UP" && $3 ~ /^L7OK/' | wc -l)" = "${#nodes[@]}" ]
}

start_pg() {
  local pgbin=$1
  if [ -s "$dir/pg/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
    echo "PostgreSQL already running"
    return
  fi
  if [ ! -s "$dir/pg/PG_VERSION" ]; then
    mkdir -p "$dir/pg"
    touch "$dir/pg.log"
    if [ "$(id -u)" = 0 ]; then
      chown postgres: "$dir/pg" "$dir/pg.log"
      runuser -u postgres -- test -w "$dir/pg" ||
        die "the postgres user cannot write $dir/pg: choose a DIR it can reach (not under /root)"
    fi
    as_pg "$pgbin/initdb" -D "$dir/pg" -U postgres -A trust -E UTF8 >/dev/null
  fi
  as_pg "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k '$dir/pg'" start >/dev/null ||
    die "PostgreSQL did not start (port $pg_port in use?): see $dir/pg.log"
  local have
  have=$(psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -Atc \
    "SELECT 1 FROM pg_database WHERE datname = 'stampd'")
  if [ "$have" != 1 ]; then
    psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc 'CREATE DATABASE stampd'
  fi
  echo "PostgreSQL on 127.0.0.1:$pg_port, database stampd"
}

start_node() { # n
  local n=$1 pid
  if [ ! -d "$dir/node$n/pki" ]; then
    mkdir -p "$dir/node$n"
    cp -a "$dir/pki-src/pki" "$dir/node$n/"
  fi
  # setsid: off the terminal's session, so closing it sends no SIGHUP (stampd reloads on
  # SIGHUP). In this non-interactive shell setsid execs stampd itself, so $! is its pid.
  # NO_COLOR: plain log lines in the file (stampd colours them even when not on a tty).
  NO_COLOR=1 setsid "$bin" serve --config "$here/node$n.toml" --data-dir "$dir/node$n" \
    --listen "127.0.0.1:328$n" --admin-listen "127.0.0.1:329$n" \
    >>"$dir/node$n.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/node$n.pid"
}

wait_node() { # n
  local n=$1 i
  for ((i = 0; i < 300; i++)); do
    ready "127.0.0.1:328$n" && { echo "node$n ready on 127.0.0.1:328$n (admin 127.0.0.1:329$n)"; return; }
    if ! live_pid "$dir/node$n.pid" "$dir/node$n" >/dev/null; then
      tail -20 "$dir/node$n.log" >&2
      die "node$n exited: see $dir/node$n.log (then: cluster.sh stop $dir)"
    fi
    sleep 0.1
  done
  tail -20 "$dir/node$n.log" >&2
  die "node$n not ready after 30 s: see $dir/node$n.log (then: cluster.sh stop $dir)"
}

start_lb() {
  local haproxy
  haproxy=$(find_haproxy)
  export STAMPD_LB_BIND=$lb STAMPD_LB_SOCKET=$dir/haproxy.sock
  export STAMPD_NODE1=127.0.0.1:3281 STAMPD_NODE2=127.0.0.1:3282 STAMPD_NODE3=127.0.0.1:3283
  "$haproxy" -c -q -f "$here/haproxy.cfg" || die "haproxy.cfg does not check"
  # Foreground mode (-db) in the background: its log (stdout) goes to DIR/haproxy.log.
  setsid "$haproxy" -db -f "$here/haproxy.cfg" >>"$dir/haproxy.log" 2>&1 </dev/null &
  echo "$!" >"$dir/haproxy.pid"
  wait_until 100 all_up ||
    die "HAProxy does not show every node UP after 10 s: see $dir/haproxy.log"
  wait_until 50 ready "$lb" || die "HAProxy does not answer on $lb: see $dir/haproxy.log"
  echo "HAProxy on $lb, stats socket $dir/haproxy.sock"
}

do_start() {
  for n in "${nodes[@]}"; do
    if live_pid "$dir/node$n.pid" "$dir/node$n" >/dev/null; then
      die "node$n is already running: cluster.sh stop $dir first"
    fi
  done
  live_pid "$dir/haproxy.pid" haproxy.cfg >/dev/null && die "HAProxy is already running: cluster.sh stop $dir first"
  bin=$(find_stampd)
  command -v curl >/dev/null || die "no curl: apt-get install curl"
  command -v psql >/dev/null || die "no psql: apt-get install postgresql-client"
  start_pg "$(find_pgbin)"
  # One TSA: one key and certificate, copied to every node.
  if [ ! -s "$dir/pki-src/pki/tsa.key" ]; then
    "$bin" init --data-dir "$dir/pki-src" >/dev/null
  fi
  for n in "${nodes[@]}"; do start_node "$n"; done
  for n in "${nodes[@]}"; do wait_node "$n"; done
  start_lb
  cat <<EOF

Get a token through HAProxy and verify it:
  echo hello > data.txt
  openssl ts -query -data data.txt -sha256 -cert -out q.tsq
  curl -s --data-binary @q.tsq -H 'Content-Type: application/timestamp-query' http://$lb/tsa -o r.tsr
  openssl ts -reply -in r.tsr -text
  openssl ts -verify -in r.tsr -queryfile q.tsq -CAfile $dir/pki-src/pki/ca.pem
State: bash $0 status $dir    Stop: bash $0 stop $dir
EOF
}

# Whether a process has exited: no such pid, or a zombie its parent has not reaped yet.
gone() { # pid
  ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# Signals a process ($4; "-" for none) and waits at most $5 tenths of a second for it to
# exit, then SIGKILLs it.
stop_pid() { # name pid pidfile signal|- tenths
  [ "$4" = - ] || kill "-$4" "$2" 2>/dev/null || true
  if ! wait_until "$5" gone "$2"; then
    echo "$1 (pid $2) still running after $(($5 / 10)) s: SIGKILL" >&2
    kill -KILL "$2" 2>/dev/null || true
  fi
  echo "$1 stopped"
  rm -f "$3"
}

do_stop() {
  local pid pids=()
  # HAProxy first, so no request goes to a stopping node; SIGUSR1 is its soft stop (it
  # stops listening and finishes the requests in flight).
  if pid=$(live_pid "$dir/haproxy.pid" haproxy.cfg); then
    stop_pid haproxy "$pid" "$dir/haproxy.pid" USR1 100
  fi
  rm -f "$dir/haproxy.pid" "$dir/haproxy.sock"
  # SIGTERM to every node at once: each drains (answers what it accepted, commits its
  # audit queue, gives the PostgreSQL shipper 5 s) and exits. Only one SIGTERM: a second
  # one makes stampd exit at once. Wait for drain_timeout_ms (30 s) + 5 s + a margin.
  for n in "${nodes[@]}"; do
    pids[n]=
    if pid=$(live_pid "$dir/node$n.pid" "$dir/node$n"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids[n]=$pid
    fi
  done
  for n in "${nodes[@]}"; do
    if [ -n "${pids[n]}" ]; then
      stop_pid "node$n" "${pids[n]}" "$dir/node$n.pid" - 400
    fi
    rm -f "$dir/node$n.pid"
  done
  if [ -s "$dir/pg/postmaster.pid" ]; then
    as_pg "$(find_pgbin)/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null && echo "PostgreSQL stopped"
  fi
}

do_status() {
  local pid
  if pid=$(live_pid "$dir/haproxy.pid" haproxy.cfg); then
    echo "HAProxy (pid $pid) on $lb, servers:"
    lb_servers | awk -F'\t' '{printf "  %-3s %-8s check %-10s since %ss\n", $1, $2, $3, $4}' ||
      echo "  (no answer on $dir/haproxy.sock)"
  else
    echo "HAProxy: not running"
  fi
  for n in "${nodes[@]}"; do
    if pid=$(live_pid "$dir/node$n.pid" "$dir/node$n"); then
      echo "node$n (pid $pid): /ready $(http_code "http://127.0.0.1:328$n/ready")"
    else
      echo "node$n: not running"
    fi
  done
  if [ -s "$dir/pg/postmaster.pid" ] && as_pg "$(find_pgbin)/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
    echo "PostgreSQL on 127.0.0.1:$pg_port: running"
  else
    echo "PostgreSQL: not running"
  fi
}

case $cmd in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    do_start
    ;;
  stop | status)
    [ -d "$dir" ] || die "no $dir"
    dir=$(cd "$dir" && pwd)
    "do_$cmd"
    ;;
  *) usage ;;
esac
