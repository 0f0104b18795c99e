#!/usr/bin/env bash
# Two or more `strata` client binaries side by side (issue 5): `strata perf
# produce` (1 KiB records, RF 1, one combined node) of each binary against one
# server (the first binary's), in interleaved rounds whose order rotates, so
# that load from elsewhere on the machine falls on every binary alike.
#   git archive main | tar -x -C /tmp/main-src && (cd /tmp/main-src && go build -o /tmp/main/strata ./cmd/strata)
#   go build -o /tmp/branch/strata ./cmd/strata
#   BINS="/tmp/main/strata /tmp/branch/strata" ROUNDS=5 scripts/bench-client-ab.sh
#   IDEM=false CONFIGS="1:256KiB 4:16KiB" BASE_PORT=31000 scripts/bench-client-ab.sh
# Per binary: MB/s (wall), MB per CPU second of client and server together,
# and the client's CPU seconds (user+sys) — the steadiest of the three: the
# server's CPU per run moves with page-cache writeback as the log grows.
# Medians per configuration at the end, with ratios to the first binary.
set -euo pipefail
: "${BINS:?BINS: the strata binaries to compare, first one the baseline}"
read -r -a bins <<<"$BINS" # bins[0] also runs the server
ROUNDS=${ROUNDS:-3} RECORDS=${RECORDS:-300000} BASE_PORT=${BASE_PORT:-29000}
CONFIGS=${CONFIGS:-1:256KiB 4:256KiB 1:16KiB}
IDEM=${IDEM:-true}
tmp=$(mktemp -d); srv=
cleanup() { [[ -n "$srv" ]] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export STRATA_BOOTSTRAP=127.0.0.1:$((BASE_PORT + 2))
"${bins[0]}" server --node-id 1 --roles controller,broker --data-dir "$tmp/data" --broker-addr "$STRATA_BOOTSTRAP" \
  --controller-addr 127.0.0.1:$((BASE_PORT + 3)) --metrics-addr 127.0.0.1:$((BASE_PORT + 4)) \
  --quorum 1@127.0.0.1:$((BASE_PORT + 3)) >"$tmp/server.log" 2>&1 &
srv=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((BASE_PORT + 4))/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
for p in 1 4; do "${bins[0]}" topics create "bench-p$p" --partitions $p >/dev/null; done
tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
bytes() { case $1 in *KiB) echo $((${1%KiB} * 1024)) ;; *) echo "$1" ;; esac; }
run() { # bin topic batch -> "MB/s MB/cpu-s client-cpu-s"
  sync; local s0 s1; s0=$(cpu "$srv")
  /usr/bin/time -o "$tmp/time" -f "%U %S" "$1" perf produce --topic "$2" --num-records "$RECORDS" --record-size 1024 \
    --batch-size "$(bytes "$3")" --idempotence=$IDEM --output json >"$tmp/out.json" 2>/dev/null
  s1=$(cpu "$srv")
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); u, s = map(float, open(sys.argv[2]).read().split()[-2:])
mb = d["records"] * 1024 / 1e6
print("%.0f %.0f %.2f" % (mb / d["seconds"], mb / (u + s + float(sys.argv[4]) - float(sys.argv[3])), u + s))' "$tmp/out.json" "$tmp/time" "$s0" "$s1"
}
run_config() { # bin partitions:batch
  run "$1" "bench-p${2%%:*}" "${2#*:}"
}
echo "idempotence=$IDEM records=$RECORDS"
. "$(dirname "$0")/ab-rounds.sh"
ab_rounds "$tmp/rows" MB/s MB/cpu-s client-cpu-s
