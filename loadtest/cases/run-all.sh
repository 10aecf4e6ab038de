#!/usr/bin/env bash
# Runs every case in loadtest/cases (release build); reports in target/loadtest-reports.
#   bash loadtest/cases/run-all.sh [CASE ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q --workspace --bins || exit 2
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(saturation latency-50 latency-90 certreq-mix idle-10k hsm)
failed=0
for c in "${cases[@]}"; do
  target/release/stampd-loadtest case "loadtest/cases/$c.toml" || failed=$((failed + 1))
done
echo "$failed case(s) failed; reports in target/loadtest-reports/"
[ "$failed" = 0 ]
