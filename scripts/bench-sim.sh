#!/usr/bin/env bash
# Simulator scale benchmark: simulator/examples/scale-1k.toml and
# scale-10k.toml (pollen strategy, 1 GiB in 1 MiB chunks; 1 000 and 10 000
# devices in sites of 100), each run N times one after the other in this
# one invocation; scale-100k.toml (100 000 devices, 1 000 sites) when
# named. Prints per scenario the median wall time, the largest peak RSS
# and that per device, events, and events per second at the median.
#   scripts/bench-sim.sh [runs] [scale...]   (default: 3 runs of 1k and 10k)
#   scripts/bench-sim.sh 1 100k              (one run of scale-100k only)
#   scripts/bench-sim.sh 3 1k 10k 100k
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
runs="${1:-3}"
shift || true
scales=("$@")
if [ "${#scales[@]}" -eq 0 ]; then scales=(1k 10k); fi
for s in "${scales[@]}"; do
  case "$s" in
    1k|10k|100k) ;;
    *) echo "unknown scale $s (1k, 10k or 100k)" >&2; exit 2 ;;
  esac
done
cargo build --release -p pollen-sim --quiet
bin="${CARGO_TARGET_DIR:-target}/release/pollen-sim"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for s in "${scales[@]}"; do
  sc="scale-$s"
  for i in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/$sc.$i.time" \
      "$bin" run "simulator/examples/$sc.toml" --out "$work/$sc.$i" > "$work/$sc.$i.log" 2>&1
    echo "$sc run $i: $(cat "$work/$sc.$i.time") (s, KiB)" >&2
  done
done
python3 - "$work" "$runs" "${scales[@]}" <<'PY'
import json, statistics, sys
work, runs, scales = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| scenario | devices | runs | median wall | walls | peak RSS | per device | events | events/s (median) | devices done | last done (simulated) | x bound | max uplink x F |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for sc in (f"scale-{s}" for s in scales):
    walls, rss = [], []
    for i in range(1, runs + 1):
        w, m = open(f"{work}/{sc}.{i}.time").read().split()
        walls.append(float(w)); rss.append(int(m))
    s = json.load(open(f"{work}/{sc}.1/summary.json"))
    med = statistics.median(walls)
    last = s['completion_max_s']
    ratio = f"{last / s['bound_s']:.2f}" if last is not None else "-"
    last = f"{last:.1f} s" if last is not None else "-"
    print(f"| {sc} | {s['devices']} | {runs} | {med:.1f} s | {', '.join(f'{w:.1f}' for w in walls)} | "
          f"{max(rss) / 1024:.0f} MiB | {max(rss) / s['devices']:.1f} KiB | {s['events']:,} | {s['events'] / med:,.0f} | "
          f"{s['devices_done']} | {last} | {ratio} | {s['uplink_multiple_max']:.2f} |")
PY
