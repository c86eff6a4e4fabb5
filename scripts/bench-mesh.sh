#!/usr/bin/env bash
# Mesh benchmark: two processes on loopback moving a release (seeder serve →
# node fetch), beside the same libp2p transport moving the same number of
# bytes over one bare stream, in the same run. Then an idle node's RSS and
# CPU with the release held.
#   scripts/bench-mesh.sh [MiB]     (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mib="${1:-1024}"
cargo build --workspace --bins --quiet
cargo build -p pollen-node --example transport_baseline --quiet
target="${CARGO_TARGET_DIR:-target}/debug"
work="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$target/pollen-seeder" keygen --out "$work/k" >/dev/null
head -c $((mib << 20)) /dev/urandom > "$work/a.img"
"$target/pollen-seeder" publish --key "$work/k" --store "$work/s" --artifact "$work/a.img" \
  --channel bench --version 1.0.0 --json > /dev/null 2>&1
rm "$work/a.img"
"$target/pollen-seeder" serve --store "$work/s" --channel bench --listen /ip4/127.0.0.1/tcp/0 --no-mdns \
  > "$work/seeder.out" 2>/dev/null &
pids+=($!)
deadline=$((SECONDS + 30))
until grep -q '^listening' "$work/seeder.out"; do ((SECONDS < deadline)) || exit 1; sleep 0.1; done
addr=$(grep -m1 '^listening' "$work/seeder.out" | cut -d' ' -f2)

echo "== $mib MiB, same run"
"$target/examples/transport_baseline" "$mib" | tee "$work/bare.txt"
start=$(date +%s.%N)
"$target/pollen-node" fetch --data "$work/n" --trust "$work/k.pub" --channel bench --no-mdns \
  --listen /ip4/127.0.0.1/tcp/0 --peer "$addr" --out "$work/out.img" --json > "$work/fetch.json" 2>/dev/null
end=$(date +%s.%N)
python3 - "$mib" "$start" "$end" "$work/bare.txt" "$work/fetch.json" <<'PY'
import json, re, sys
mib, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
bare = float(re.search(r"= ([0-9.]+) MB/s", open(sys.argv[4]).read()).group(1))
stored = json.load(open(sys.argv[5]))["seconds_to_complete"]
total = end - start
mb = mib * 1048576 / 1e6
print(f"pollen, release complete in the store (transfer + verify + store): {stored:.2f} s = {mb / stored:.1f} MB/s, ratio to bare stream {mb / stored / bare:.2f}")
print(f"pollen, whole command (start-up + the above + reassembling the artifact): {total:.2f} s = {mb / total:.1f} MB/s, ratio {mb / total / bare:.2f}")
PY
rm -f "$work/out.img"

echo "== idle node holding the release"
"$target/pollen-node" run --data "$work/n" --trust "$work/k.pub" --channel bench --no-mdns \
  --listen /ip4/127.0.0.1/tcp/0 --peer "$addr" > /dev/null 2>&1 &
pid=$!; pids+=($pid)
sleep 5   # let it settle before sampling (this is a measurement window, not a wait for an event)
t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
sleep 10
t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
tck=$(getconf CLK_TCK)
python3 -c "print(f'idle RSS {$rss / 1024:.1f} MiB, CPU {100 * ($t1 - $t0) / $tck / 10:.2f}% of one core over 10 s')"
