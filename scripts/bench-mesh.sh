#!/usr/bin/env bash
# Mesh benchmark: two processes on loopback moving a release (seeder serve →
# node fetch), beside the same libp2p transport moving the same number of
# bytes over one bare stream, in the same run. Each run also times the
# publish into the seeder's store beside `dd ... conv=fdatasync` of the same
# size (the disk's sequential write rate), and the seeder's CPU time per GiB
# served (utime + stime of the serve process across the fetch). With more
# than one run it prints the medians. Then an idle node's RSS and CPU with
# the release held.
# Beside the bare stream runs the floor (`transport_baseline MiB --floor`):
# the same stream plus the per-byte work no chunk-verifying store can skip
# (the sender reads each piece from this disk, uncached, and checks its
# BLAKE3; the receiver checks it and writes it here, synced), none of
# Pollen's protocol: what this machine allows at best.
#   scripts/bench-mesh.sh [MiB] [runs]     (defaults 1024, 1)
# The binaries are the dev profile's (dependencies at opt-level 3, Pollen's
# own crates at 1); BENCH_RELEASE=1 builds and measures the release
# profile that ships to devices (LTO; the baseline is built the same way).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mib="${1:-1024}"
runs="${2:-1}"
if [ "${BENCH_RELEASE:-0}" = 1 ]; then profile=(--release); dir=release; else profile=(); dir=debug; fi
cargo build "${profile[@]}" -p pollen-node -p pollen-seeder --bins --quiet
cargo build "${profile[@]}" -p pollen-node --example transport_baseline --quiet
target="${CARGO_TARGET_DIR:-target}/$dir"
work="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

"$target/pollen-seeder" keygen --out "$work/k" >/dev/null
head -c $((mib << 20)) /dev/urandom > "$work/a.img"

for run in $(seq 1 "$runs"); do
  echo "== run $run of $runs: $mib MiB, same run"
  rm -rf "$work/s" "$work/n"
  # The disk's sequential write rate, then the publish (chunk, hash, store;
  # the publish makes its chunks durable before it writes the manifest).
  dd if=/dev/zero of="$work/dd.bin" bs=1M count="$mib" conv=fdatasync 2> "$work/dd.txt"
  rm -f "$work/dd.bin"
  p0=$(date +%s.%N)
  "$target/pollen-seeder" publish --key "$work/k" --store "$work/s" --artifact "$work/a.img" \
    --channel bench --version 1.0.0 --json > /dev/null 2>&1
  p1=$(date +%s.%N)

  rm -f "$work/seeder.out"
  "$target/pollen-seeder" serve --store "$work/s" --channel bench --listen /ip4/127.0.0.1/tcp/0 --no-mdns \
    > "$work/seeder.out" 2>/dev/null &
  seeder=$!; pids+=($seeder)
  deadline=$((SECONDS + 30))
  until grep -qs '^listening' "$work/seeder.out"; do ((SECONDS < deadline)) || exit 1; sleep 0.1; done
  addr=$(grep -m1 '^listening' "$work/seeder.out" | cut -d' ' -f2)

  "$target/examples/transport_baseline" "$mib" > "$work/bare.txt"
  mkdir -p "$work/floor"
  "$target/examples/transport_baseline" "$mib" --floor "$work/floor" > "$work/floor.txt"
  rm -rf "$work/floor"
  c0=$(cpu "$seeder")
  start=$(date +%s.%N)
  "$target/pollen-node" fetch --data "$work/n" --trust "$work/k.pub" --channel bench --no-mdns \
    --listen /ip4/127.0.0.1/tcp/0 --peer "$addr" --out "$work/out.img" --json > "$work/fetch.json" 2>/dev/null
  end=$(date +%s.%N)
  c1=$(cpu "$seeder")
  rm -f "$work/out.img"
  python3 - "$mib" "$start" "$end" "$work/bare.txt" "$work/fetch.json" "$work/dd.txt" "$p0" "$p1" \
    "$c0" "$c1" "$tck" "$work/floor.txt" <<'PY' | tee -a "$work/runs.jsonl"
import json, re, sys
a = sys.argv
mib, start, end = int(a[1]), float(a[2]), float(a[3])
mb = mib * 1048576 / 1e6
rate = lambda path: float(re.search(r"= ([0-9.]+) MB/s", open(path).read()).group(1))
bare, floor = rate(a[4]), rate(a[12])
stored = json.load(open(a[5]))["seconds_to_complete"]
total = end - start
dd = open(a[6]).read()
m = re.search(r"copied, ([0-9.]+) s", dd)
dd_rate = mb / float(m.group(1))
publish = mb / (float(a[8]) - float(a[7]))
cpu_s = (float(a[10]) - float(a[9])) / float(a[11])
print(json.dumps({
    "bare_mbs": bare, "floor_mbs": floor, "floor_ratio": round(floor / bare, 3),
    "stored_mbs": round(mb / stored, 1), "stored_ratio": round(mb / stored / bare, 3),
    "stored_of_floor": round(mb / stored / floor, 3),
    "fetch_mbs": round(mb / total, 1), "fetch_ratio": round(mb / total / bare, 3),
    "fetch_of_floor": round(mb / total / floor, 3),
    "dd_mbs": round(dd_rate, 1), "publish_mbs": round(publish, 1), "publish_ratio": round(publish / dd_rate, 3),
    "seeder_cpu_s_per_gib": round(cpu_s / (mib / 1024), 3),
}))
PY
  kill "$seeder" 2>/dev/null || true; wait "$seeder" 2>/dev/null || true
done

python3 - "$work/runs.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
n = len(rows)
print(f"== medians of {n} run(s)")
print(f"bare libp2p stream: {med['bare_mbs']:.1f} MB/s")
print(f"floor (bare stream + disk read, BLAKE3 at both ends, synced write): {med['floor_mbs']:.1f} MB/s, ratio to bare stream {med['floor_ratio']:.2f}")
print(f"pollen, release complete in the store (transfer + verify + store): {med['stored_mbs']:.1f} MB/s, ratio to bare stream {med['stored_ratio']:.2f}, to the floor {med['stored_of_floor']:.2f}")
print(f"pollen, whole fetch command (start-up + the above + reassembling the artifact): {med['fetch_mbs']:.1f} MB/s, ratio {med['fetch_ratio']:.2f}, to the floor {med['fetch_of_floor']:.2f}")
print(f"dd conv=fdatasync: {med['dd_mbs']:.1f} MB/s; publish: {med['publish_mbs']:.1f} MB/s, ratio {med['publish_ratio']:.2f}")
print(f"seeder CPU per served GiB: {med['seeder_cpu_s_per_gib']:.2f} s")
PY

echo "== idle node holding the release"
rm -f "$work/seeder.out"
"$target/pollen-seeder" serve --store "$work/s" --channel bench --listen /ip4/127.0.0.1/tcp/0 --no-mdns \
  > "$work/seeder.out" 2>/dev/null &
pids+=($!)
deadline=$((SECONDS + 30))
until grep -qs '^listening' "$work/seeder.out"; do ((SECONDS < deadline)) || exit 1; sleep 0.1; done
addr=$(grep -m1 '^listening' "$work/seeder.out" | cut -d' ' -f2)
node_run() {
  "$target/pollen-node" run --data "$work/n" --trust "$work/k.pub" --channel bench --no-mdns \
    --listen /ip4/127.0.0.1/tcp/0 --peer "$addr" > /dev/null 2>&1 &
  pid=$!; pids+=($pid)
}
installed() {
  "$target/pollen-node" status --data "$work/n" --json 2>/dev/null \
    | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("installed") else 1)' 2>/dev/null
}
# The fetch kept nothing (it streamed into its output): the daemon fetches
# the release into slot A and installs it first.
node_run
deadline=$((SECONDS + 600))
until installed; do
  ((SECONDS < deadline)) || { echo "the node did not install the release" >&2; exit 1; }
  sleep 0.5
done
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
python3 -c "print(f'RSS right after fetching and installing it: {$rss / 1024:.1f} MiB')"
# Then a node that holds it: restarted, sampled once it is back up.
kill "$pid"; wait "$pid" 2>/dev/null || true
node_run
deadline=$((SECONDS + 60))
until installed && grep -qs '"running": *true' <("$target/pollen-node" status --data "$work/n" --json 2>/dev/null); do
  ((SECONDS < deadline)) || { echo "the node did not come back" >&2; exit 1; }
  sleep 0.5
done
sleep 5   # let it settle before sampling (this is a measurement window, not a wait for an event)
t0=$(cpu "$pid")
sleep 10
t1=$(cpu "$pid")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
python3 -c "print(f'idle RSS {$rss / 1024:.1f} MiB, CPU {100 * ($t1 - $t0) / $tck / 10:.2f}% of one core over 10 s')"
