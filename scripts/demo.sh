#!/usr/bin/env bash
# Pollen demo: a publisher signs a 64 MiB "firmware" release and serves it;
# five devices on one site (all on 127.0.0.1, mDNS off) are each given one
# known peer, find the rest by peer exchange, and swarm the release. Then a
# table of who got how many bytes from whom, and the offline (USB) path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/debug"
seeder="$bin/pollen-seeder"
node="$bin/pollen-node"

work="$(mktemp -d "${TMPDIR:-/tmp}/pollen-demo.XXXXXX")"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Polls (with a deadline) until FILE has a line matching PATTERN.
wait_line() {
  local file=$1 pattern=$2 deadline=$((SECONDS + ${3:-60}))
  until grep -q "$pattern" "$file" 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "demo: timed out waiting for '$pattern' in $file" >&2; cat "$file" >&2; exit 1; }
    sleep 0.1
  done
}

echo "== publisher: key, a 64 MiB image, a signed release"
"$seeder" keygen --out "$work/publisher.key" >/dev/null
head -c $((64 << 20)) /dev/urandom > "$work/firmware.img"
"$seeder" publish --key "$work/publisher.key" --store "$work/seeder-store" \
  --artifact "$work/firmware.img" --channel stable --version 1.0.0 --out "$work/release.pollen" 2>/dev/null

echo "== publisher: serve it"
"$seeder" serve --store "$work/seeder-store" --channel stable --listen /ip4/127.0.0.1/tcp/0 --no-mdns \
  > "$work/seeder.out" 2> "$work/seeder.err" &
pids+=($!)
wait_line "$work/seeder.out" "^listening /ip4/127.0.0.1/"
prev=$(grep -m1 "^listening /ip4/127.0.0.1/" "$work/seeder.out" | cut -d' ' -f2)
echo "seeder  ${prev}"

echo "== five devices, each told about one peer only"
for n in 1 2 3 4 5; do
  "$node" run --data "$work/dev$n" --trust "$work/publisher.key.pub" --channel stable \
    --site factory --listen /ip4/127.0.0.1/tcp/0 --no-mdns --peer "$prev" --out "$work/dev$n.img" \
    > "$work/dev$n.out" 2> "$work/dev$n.err" &
  pids+=($!)
  wait_line "$work/dev$n.out" "^listening /ip4/127.0.0.1/"
  echo "dev$n    told about ${prev##*/p2p/}"
  prev=$(grep -m1 "^listening /ip4/127.0.0.1/" "$work/dev$n.out" | cut -d' ' -f2)
done
for n in 1 2 3 4 5; do wait_line "$work/dev$n.out" "^complete " 180; done
for n in 1 2 3 4 5; do until [[ -f "$work/dev$n.img" ]]; do sleep 0.1; done; done

echo "== who got how many bytes from whom (MiB)"
python3 - "$work" <<'PY'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
names = {}
for f in ["seeder"] + [f"dev{n}" for n in range(1, 6)]:
    line = next(l for l in (work / f"{f}.out").read_text().splitlines() if l.startswith("listening "))
    names[line.rsplit("/p2p/", 1)[1]] = f
cols = list(names.values())
head = "to / from"
print(f"{head:10}" + "".join(f"{c:>8}" for c in cols) + f"{'total':>8}")
seeder_total = 0
for n in range(1, 6):
    rep = json.loads(next(l for l in (work / f"dev{n}.out").read_text().splitlines() if l.startswith("complete "))[9:])
    by = {names.get(p, p[:8]): b for p, b in rep["bytes_from"].items()}
    seeder_total += by.get("seeder", 0)
    print(f"{'dev' + str(n):10}" + "".join(f"{by.get(c, 0) / 2**20:8.1f}" for c in cols) + f"{sum(by.values()) / 2**20:8.1f}")
print(f"\nthe seeder sent {seeder_total / 2**20:.1f} MiB for 5 x 64 MiB delivered: "
      f"{seeder_total / 2**26:.2f} copies of the release crossed the 'uplink'")
PY

echo "== every device's image verifies against the signed manifest"
for n in 1 2 3 4 5; do
  printf 'dev%s  ' "$n"
  "$seeder" verify --trust "$work/publisher.key.pub" "$work/release.pollen" --artifact "$work/dev$n.img"
done

echo "== offline path: the same release on a USB stick"
"$seeder" export --store "$work/seeder-store" --manifest "$work/release.pollen" --out "$work/usb" >/dev/null
"$node" import --data "$work/usb-device" --trust "$work/publisher.key.pub" \
  --manifest "$work/usb/manifest.pollen" --chunks "$work/usb/chunks" --out "$work/usb-device.img" 2>/dev/null | head -3
echo "== demo done"
