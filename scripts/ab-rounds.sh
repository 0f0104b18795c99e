# Sourced by the scripts/*-ab.sh scripts: interleaved rounds of every binary
# in BINS over CONFIGS, the order rotating each round so that load from
# elsewhere on the machine falls on every binary alike, then the medians per
# configuration with their ratios to the first binary.
#   ab_rounds ROWS_FILE COLUMN_NAMES...
# The sourcing script defines run_config BIN CONFIG, which prints one
# measurement as numbers, one per column name ("MB/s" "MB/cpu-s" ...).
ab_rounds() {
  local rows=$1 n round cfg k i line
  shift
  read -r -a bins <<<"$BINS"
  n=${#bins[@]}
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for i in "${!bins[@]}"; do echo "bin $i: ${bins[$i]}"; done
  echo "columns per bin: $*"
  for round in $(seq 1 "$ROUNDS"); do
    for cfg in $CONFIGS; do
      declare -A res=()
      for k in $(seq 0 $((n - 1))); do
        i=$(( (k + round) % n ))
        res[$i]=$(run_config "${bins[$i]}" "$cfg")
        [[ -n "${res[$i]}" ]] || { echo "FAILED: ${bins[$i]} $cfg"; return 1; }
      done
      line=$(printf "%-3s %-34s" "$round" "$cfg")
      for i in $(seq 0 $((n - 1))); do line+=$(printf " | %s" "${res[$i]}"); done
      echo "$line | load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$rows"
    done
  done
  echo "medians (ratio to bin 0):"
  python3 - "$rows" "$@" <<'PY'
import sys, statistics as st, collections
names = sys.argv[2:]
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    parts = [p.strip() for p in line.split("|")]
    cfg = parts[0].split()[1]
    for i, p in enumerate(parts[1:-1]):
        rows[cfg][i].append(tuple(map(float, p.split())))
for cfg, bins in rows.items():
    base = None
    for i in sorted(bins):
        m = [st.median(x[k] for x in bins[i]) for k in range(len(names))]
        base = base or m
        cols = "  ".join("%s %s (x%.2f)" % (("%.0f" if abs(v) >= 10 else "%.2f") % v, name, v / b if b else float("nan"))
                         for v, b, name in zip(m, base, names))
        print("%-34s bin %d: %s" % (cfg, i, cols))
PY
}
