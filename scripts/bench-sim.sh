#!/usr/bin/env bash
# Simulator scale benchmark: simulator/examples/scale-1k.toml and
# scale-10k.toml (pollen strategy, 1 GiB in 1 MiB chunks; 1 000 and 10 000
# devices in sites of 100), each run N times one after the other in this
# one invocation. Prints per scenario the median wall time, the largest
# peak RSS, events, and events per second at the median.
#   scripts/bench-sim.sh [runs]      (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
runs="${1:-3}"
cargo build --release -p pollen-sim --quiet
bin="${CARGO_TARGET_DIR:-target}/release/pollen-sim"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for sc in scale-1k scale-10k; do
  for i in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/$sc.$i.time" \
      "$bin" run "simulator/examples/$sc.toml" --out "$work/$sc.$i" > "$work/$sc.$i.log" 2>&1
    echo "$sc run $i: $(cat "$work/$sc.$i.time") (s, KiB)" >&2
  done
done
python3 - "$work" "$runs" <<'PY'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
print("| scenario | devices | runs | median wall | walls | peak RSS | events | events/s (median) | devices done | last done (simulated) | x bound | max uplink x F |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for sc in ("scale-1k", "scale-10k"):
    walls, rss = [], []
    for i in range(1, runs + 1):
        w, m = open(f"{work}/{sc}.{i}.time").read().split()
        walls.append(float(w)); rss.append(int(m))
    s = json.load(open(f"{work}/{sc}.1/summary.json"))
    med = statistics.median(walls)
    print(f"| {sc} | {s['devices']} | {runs} | {med:.1f} s | {', '.join(f'{w:.1f}' for w in walls)} | "
          f"{max(rss) / 1024:.0f} MiB | {s['events']:,} | {s['events'] / med:,.0f} | {s['devices_done']} | "
          f"{s['completion_max_s']:.1f} s | {s['completion_max_s'] / s['bound_s']:.2f} | {s['uplink_multiple_max']:.2f} |")
PY
