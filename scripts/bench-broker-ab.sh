#!/usr/bin/env bash
# Two or more broker benchmark binaries side by side (issue 4): the
# BenchmarkProduce configurations of each `go test -c ./broker/` binary in
# interleaved rounds whose order rotates, so that load from elsewhere on the
# machine falls on every binary alike.
#   git worktree add /tmp/base main && (cd /tmp/base && go test -c -o /tmp/base.test ./broker/)
#   go test -c -o /tmp/new.test ./broker/
#   BINS="/tmp/base.test /tmp/new.test" ROUNDS=3 scripts/bench-broker-ab.sh
#   CONFIGS="rf=3/acks=all/p=4/c=8/batch=16KiB" BENCHTIME=3s scripts/bench-broker-ab.sh
# Per binary: MB/s and MB per CPU second of the whole process; medians per
# configuration at the end, with ratios to the first binary.
set -euo pipefail
: "${BINS:?BINS: the broker.test binaries to compare, first one the baseline}"
ROUNDS=${ROUNDS:-3} BENCHTIME=${BENCHTIME:-2s}
CONFIGS=${CONFIGS:-rf=1/acks=1/p=4/c=8/batch=16KiB rf=3/acks=all/p=4/c=8/batch=16KiB rf=1/acks=1/p=1/c=4/batch=256KiB rf=3/acks=all/p=1/c=4/batch=256KiB}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run_config() { # bin config -> "MB/s MB/cpu-s"
  local re="^BenchmarkProduce\$"
  for part in ${2//\// }; do re+="/^${part}\$"; done
  sync
  (cd "$tmp" && "$1" -test.run '^$' -test.bench "$re" -test.benchtime "$BENCHTIME") |
    awk '/^BenchmarkProduce\// { for (i = 1; i <= NF; i++) v[$(i+1)] = $i; print v["MB/s"], v["MB/cpu-s"] }'
}
. "$(dirname "$0")/ab-rounds.sh"
ab_rounds "$tmp/rows" MB/s MB/cpu-s
