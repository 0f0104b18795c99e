#!/usr/bin/env bash
# The Go client against the broker (issue 5): `strata perf produce` (1 KiB
# records, acks=all, RF 1, against one combined node) side by side with the
# broker's in-process benchmark (raw batches, RF 1, acks=1, 4 producer
# goroutines), in interleaved rounds, with the idempotent producer (several
# requests per partition in flight) and without (one request per partition,
# the producer before idempotence).
#   scripts/bench-client.sh
#   ROUNDS=5 RECORDS=500000 BASE_PORT=27000 scripts/bench-client.sh
#   CONFIGS="1:256KiB 4:16KiB" scripts/bench-client.sh   # partitions:batch
#   PRODUCERS=4 scripts/bench-client.sh   # 4 perf producers, as the benchmark's 4 goroutines
# MB/s is wall clock; MB/cpu-s divides the bytes by the CPU seconds of every
# process involved (for perf produce: the client and the server), which
# moves less with other load on the machine. Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-300000}
BASE_PORT=${BASE_PORT:-29000}
CONFIGS=${CONFIGS:-1:256KiB 4:256KiB 1:16KiB 4:16KiB}
# perf produce's --producers (each its own connections); 4 matches the
# broker benchmark's 4 producer goroutines, each with its own connection.
PRODUCERS=${PRODUCERS:-1}
tmp=$(mktemp -d)
srv=
cleanup() {
  [[ -n "$srv" ]] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/strata" ./cmd/strata
go test -c -o "$tmp/broker.test" ./broker/

export STRATA_BOOTSTRAP=127.0.0.1:$((BASE_PORT + 2))
"$tmp/strata" server --node-id 1 --roles controller,broker --data-dir "$tmp/data" \
  --broker-addr "$STRATA_BOOTSTRAP" --controller-addr 127.0.0.1:$((BASE_PORT + 3)) \
  --metrics-addr 127.0.0.1:$((BASE_PORT + 4)) --quorum 1@127.0.0.1:$((BASE_PORT + 3)) >"$tmp/server.log" 2>&1 &
srv=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$((BASE_PORT + 4))/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
for p in 1 4; do "$tmp/strata" topics create "bench-p$p" --partitions $p >/dev/null; done

tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
bytes() { case $1 in *KiB) echo $((${1%KiB} * 1024)) ;; *) echo "$1" ;; esac; }

echo "machine: $(nproc) cores, $(go version | awk '{print $3}'), perf produce --producers $PRODUCERS, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-5s %-16s %22s %22s %22s %7s %7s %6s\n" round config "broker MB/s (cpu-s)" "no idempotence" "idempotent" "old/br" "new/br" load
for round in $(seq 1 "$ROUNDS"); do
  for cfg in $CONFIGS; do
    p=${cfg%%:*} batch=${cfg#*:}
    sync
    b=$(cd "$tmp" && ./broker.test -test.run '^$' -test.benchtime 2s \
      -test.bench "^BenchmarkProduce\$/^rf=1\$/^acks=1\$/^p=$p\$/^c=4\$/^batch=$batch\$" |
      awk '/^BenchmarkProduce/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "MB/s") m = $i; if ($(i+1) == "MB/cpu-s") c = $i }; printf "%.0f %.0f", m, c }')
    res=()
    for idem in false true; do
      sync
      s0=$(cpu "$srv")
      /usr/bin/time -o "$tmp/time" -f "%U %S" "$tmp/strata" perf produce --topic "bench-p$p" --num-records "$RECORDS" \
        --record-size 1024 --batch-size "$(bytes "$batch")" --producers "$PRODUCERS" --idempotence=$idem --output json >"$tmp/out.json" 2>/dev/null
      s1=$(cpu "$srv")
      res+=("$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); u, s = map(float, open(sys.argv[2]).read().split()[-2:])
mb = d["records"] * 1024 / 1e6
print("%.0f %.0f" % (mb / d["seconds"], mb / (u + s + float(sys.argv[4]) - float(sys.argv[3]))))' "$tmp/out.json" "$tmp/time" "$s0" "$s1")")
    done
    read -r bm bc <<<"$b"
    read -r om oc <<<"${res[0]}"
    read -r nm nc <<<"${res[1]}"
    printf "%-5s %-16s %22s %22s %22s %7.2f %7.2f %6s\n" "$round" "p=$p batch=$batch" "$bm ($bc)" "$om ($oc)" "$nm ($nc)" \
      "$(echo "$om / $bm" | bc -l)" "$(echo "$nm / $bm" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
