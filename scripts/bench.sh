#!/usr/bin/env bash
# Runs Pollen's benchmarks and prints medians and ratios from the same run.
#   scripts/bench.sh            criterion benches (publish, store, console) + publish memory check
# Results: target/criterion (HTML off), summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
target="${CARGO_TARGET_DIR:-target}"
# The dev profile (dependencies at opt-level 3, RocksDB at -O1) shares the
# test build; a release build of RocksDB costs ~40 min on 2 cores.
cargo bench --profile dev -p pollen-seeder -p pollen-node --bench publish --bench store --bench console -- --noplot

python3 - "$target/criterion" <<'PY'
import json, os, sys
root = sys.argv[1]
def median(group, bench):
    with open(os.path.join(root, group, bench, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"] / 1e9  # seconds
def mbps(group, bench, mib=64):
    return mib * 1.048576 / median(group, bench)
g = "publish_64MiB"
plain = mbps(g, "blake3_plain")
print(f"\n{'benchmark':34} {'median MB/s':>12} {'ratio to blake3':>16}")
for b in ["blake3_plain", "chunk_and_hash", "publish_mem_store", "publish_rocks_store"]:
    v = mbps(g, b)
    print(f"{g + '/' + b:34} {v:12.0f} {v / plain:16.2f}")
for b in ["rocks_put_chunks", "rocks_reassemble"]:
    print(f"{'store_64MiB/' + b:34} {mbps('store_64MiB', b):12.0f}")
PY

echo
echo "peak RSS publishing a 1 GiB artifact (/usr/bin/time -v):"
cargo build -p pollen-seeder --quiet
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
"$target/debug/pollen-seeder" keygen --out "$work/k" >/dev/null
head -c $((1 << 30)) /dev/urandom > "$work/a.img"
/usr/bin/time -v "$target/debug/pollen-seeder" publish --key "$work/k" --store "$work/s" \
  --artifact "$work/a.img" --channel bench --version 1.0.0 --json 2> "$work/time" >/dev/null
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$work/time"
