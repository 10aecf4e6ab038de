# Shared by the wrk scripts (source it): start a server, measure one wrk run.

# Waits until the server on 127.0.0.1:PORT answers /health (up to 10 s).
wait_healthy() { # port
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return; sleep 0.1; done
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# utime + stime of each of a process's threads, in clock ticks, summed by thread name with
# its number dropped (stampd-core-0 and stampd-core-1 count as stampd-core): "name ticks".
thread_ticks() { # pid
  for s in /proc/"$1"/task/*/stat; do cat "$s" 2>/dev/null; done |
    sed -E 's/^[0-9]+ \(([^)]*)\) /\1 /' |
    awk '{n=$1; sub(/-[0-9]+$/, "", n); t[n] += $13 + $14} END {for (n in t) print n, t[n]}' | sort
}

# The CPU per token of each thread group between two thread_ticks snapshots, one line:
# "stampd-core=40.1 stampd-audit=6.9 ...", in µs per token for REQUESTS tokens.
thread_split() { # before after requests
  join -a2 -e0 -o 0,1.2,2.2 <(echo "$1") <(echo "$2") |
    awk -v r="$3" -v hz="$(getconf CLK_TCK)" '$3 > $2 {printf "%s=%.1f ", $1, ($3 - $2) * 1e6 / hz / r}'
}

# Runs wrk (extra wrk flags in WRK_FLAGS) against PID's server at URL with the request in
# STAMPD_QUERY and prints "tokens/s cpu_us_per_token non2xx"; wrk's whole output goes to
# the file OUT, for callers that want more (latency percentiles).
measure() { # pid url out
  local before after reqs
  before=$(cpu_ticks "$1")
  # shellcheck disable=SC2086
  wrk -t2 -c"$conns" -d"$dur" ${WRK_FLAGS:-} -s bench/wrk/timestamp.lua "$2" > "$3"
  after=$(cpu_ticks "$1")
  reqs=$(awk '/requests in/ {print $1}' "$3")
  awk -v t=$((after - before)) -v r="$reqs" -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ {rps = $2} /Non-2xx/ {e = $5}
    END {printf "%s %.1f %d\n", rps, t * 1e6 / hz / r, e}' "$3"
}

# The median of field F of the ';'-separated measure() lines on stdin.
median() { # field
  tr ';' '\n' | grep . | awk -v f="$1" '{print $f}' | sort -n |
    awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# The side-by-side table of cases A and B from the global array `results` (each entry the
# ';'-separated measure() lines of one case over $rounds rounds): median replies/s and server
# CPU per reply, then B/A.
side_by_side() { # a b label_a label_b
  local ra rb ca cb
  ra=$(echo "${results[$1]}" | median 1); rb=$(echo "${results[$2]}" | median 1)
  ca=$(echo "${results[$1]}" | median 2); cb=$(echo "${results[$2]}" | median 2)
  echo
  echo "| Case | replies/s (median of $rounds) | server CPU per reply |"
  echo "|---|---|---|"
  echo "| $3 | $ra | $ca µs |"
  echo "| $4 | $rb | $cb µs |"
  awk -v ra="$ra" -v rb="$rb" -v ca="$ca" -v cb="$cb" -v a="$1" -v b="$2" \
    'BEGIN {printf "%s/%s: replies/s %.3f, CPU per reply %.3f\n", b, a, rb / ra, cb / ca}'
}
