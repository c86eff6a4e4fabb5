#!/usr/bin/env bash
# Pollen demo: a fleet policy (root, release, operator and enroll keys)
# and a closed mesh: the seeder and five devices are enrolled (credentials
# bound to their peer ids); a publisher signs a 64 MiB "firmware" release
# and serves it; the devices on one site (all on 127.0.0.1, mDNS off) are
# each given one known peer, find the rest by peer exchange, swarm the
# release and install it into their A/B slots; a node that is not enrolled
# gets nothing. Then a table of who got how many bytes from whom,
# the fleet status the seeder collected, release 2 (a small delta) whose
# health check fails on one device (it rolls back), and the offline path.
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

echo "== fleet policy: one key per role (root and release stay offline)"
for k in root release operator enroll; do "$seeder" keygen --out "$work/$k.key" >/dev/null; done
"$seeder" policy create --root "$work/root.key.pub" --release "$work/release.key.pub" \
  --operator "$work/operator.key.pub" --enroll "$work/enroll.key.pub" --key "$work/root.key" \
  --out "$work/fleet.policy" >/dev/null
"$seeder" policy show "$work/fleet.policy" | sed -n 1,6p
# Enrolls the node with peer id $1 as device $2 (site $3, if given).
enroll() {
  "$seeder" enroll --key "$work/enroll.key" --policy "$work/fleet.policy" --peer-id "$1" \
    --device-id "$2" ${3:+--site "$3"} --out "$work/$2.cred" >/dev/null
}

echo "== publisher: a 64 MiB image, a release signed with the release key"
head -c $((64 << 20)) /dev/urandom > "$work/firmware.img"
"$seeder" publish --key "$work/release.key" --policy "$work/fleet.policy" --store "$work/seeder-store" \
  --artifact "$work/firmware.img" --channel stable --version 1.0.0 --out "$work/release.pollen" 2>/dev/null
enroll "$("$seeder" id --store "$work/seeder-store" 2>/dev/null)" seeder

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
serve() {
  "$seeder" serve --store "$work/seeder-store" --channel stable --listen "/ip4/127.0.0.1/tcp/$port" \
    --no-mdns --policy "$work/fleet.policy" --credential "$work/seeder.cred" --key "$work/operator.key" \
    > "$work/seeder.out" 2> "$work/seeder.err" &
  seeder_pid=$!
  pids+=("$seeder_pid")
  wait_line "$work/seeder.out" "^listening /ip4/127.0.0.1/"
}
echo "== publisher: serve it (with its credential and the operator key only)"
serve
prev=$(grep -m1 "^listening /ip4/127.0.0.1/" "$work/seeder.out" | cut -d' ' -f2)
echo "seeder  ${prev}"

# Polls `pollen-node status` of device N until it is in PHASE for release REL.
wait_phase() {
  local n=$1 phase=$2 rel=$3 deadline=$((SECONDS + 180))
  until "$node" status --data "$work/dev$n" --json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["phase"] == sys.argv[1] and (s["target"] or {}).get("release") == int(sys.argv[2]) else 1)' "$phase" "$rel"; do
    ((SECONDS < deadline)) || { echo "demo: dev$n never reached $phase for release $rel" >&2; "$node" status --data "$work/dev$n" >&2; exit 1; }
    sleep 0.2
  done
}

echo "== five devices, enrolled (pollen-node id, then a credential), each told about one peer only"
for n in 1 2 3 4 5; do
  enroll "$("$node" id --data "$work/dev$n" 2>/dev/null)" "dev$n" factory
  "$node" run --data "$work/dev$n" --policy "$work/fleet.policy" --credential "$work/dev$n.cred" --channel stable \
    --site factory --listen /ip4/127.0.0.1/tcp/0 --no-mdns --peer "$prev" --out "$work/dev$n.img" \
    --device-id "dev$n" --status-interval 2s \
    --install-hook 'echo "flash $POLLEN_ARTIFACT ($POLLEN_VERSION) to the boot partition" > "$POLLEN_SLOT/flashed"' \
    --health-hook "$([[ $n == 5 ]] && echo 'test "$POLLEN_VERSION" != 2.0.0' || echo 'test -e "$POLLEN_SLOT/flashed"')" \
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
  "$seeder" verify --trust "$work/release.key.pub" "$work/release.pollen" --artifact "$work/dev$n.img"
done

echo "== a node that is not enrolled asks the seeder and dev1: it gets nothing"
dev1=$(grep -m1 "^listening /ip4/127.0.0.1/" "$work/dev1.out" | cut -d' ' -f2)
if timeout 8 "$node" fetch --data "$work/stranger" --trust "$work/release.key.pub" --channel stable \
  --listen /ip4/127.0.0.1/tcp/0 --no-mdns --peer "$(grep -m1 "^listening /ip4/127.0.0.1/" "$work/seeder.out" | cut -d' ' -f2)" \
  --peer "$dev1" --out "$work/stranger.img" > /dev/null 2>&1; then
  echo "demo: an unenrolled node was served" >&2; exit 1
fi
[[ ! -e "$work/stranger.img" ]] || { echo "demo: the stranger got the release" >&2; exit 1; }
echo "stranger  no manifest, no chunk in 8 s; the seeder says:"
grep -m1 "peer refused" "$work/seeder.err" | sed -E 's/\x1b\[[0-9;]*m//g; s/.*(peer refused[^=]*) peer=([^ ]{12})[^ ]* error=(.*)/  \1: \2…: \3/'

echo "== every device installed release 1 (A/B slots, install and health hooks)"
for n in 1 2 3 4 5; do wait_phase "$n" committed 1; done
"$node" status --data "$work/dev1"
echo
echo "== fleet status as the seeder sees it (records relayed through the chain of devices)"
deadline=$((SECONDS + 60))
until "$seeder" status --store "$work/seeder-store" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if sum(x["installed"] for x in s["releases"][0]["stages"]) == 5 else 1)'; do
  ((SECONDS < deadline)) || { echo "demo: the seeder never saw 5 installs" >&2; exit 1; }
  sleep 0.5
done
"$seeder" status --store "$work/seeder-store"

echo "== release 2: 1 MiB changed; dev5's health check rejects it"
kill "$seeder_pid"; wait "$seeder_pid" 2>/dev/null || true
cp "$work/firmware.img" "$work/firmware-2.img"
head -c $((1 << 20)) /dev/urandom | dd of="$work/firmware-2.img" bs=1M seek=20 conv=notrunc status=none
"$seeder" publish --key "$work/release.key" --policy "$work/fleet.policy" --store "$work/seeder-store" --artifact "$work/firmware-2.img" \
  --channel stable --version 2.0.0 2>/dev/null | grep -E "^(published|chunks)"
serve
for n in 1 2 3 4; do wait_phase "$n" committed 2; done
wait_phase 5 rolled-back 2
"$node" status --data "$work/dev5"
echo
deadline=$((SECONDS + 60))
until "$seeder" status --store "$work/seeder-store" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
st = s["releases"][0]["stages"]
sys.exit(0 if (sum(x["installed"] for x in st), sum(x["rolled_back"] for x in st)) == (4, 1) else 1)'; do
  ((SECONDS < deadline)) || { echo "demo: the seeder never saw 4 installs and 1 rollback" >&2; exit 1; }
  sleep 0.5
done
"$seeder" status --store "$work/seeder-store" | sed -n 1,3p

echo "== offline path: the same release on a USB stick"
"$seeder" export --store "$work/seeder-store" --manifest "$work/release.pollen" --out "$work/usb" >/dev/null
"$node" import --data "$work/usb-device" --trust "$work/fleet.policy" \
  --manifest "$work/usb/manifest.pollen" --chunks "$work/usb/chunks" --out "$work/usb-device.img" 2>/dev/null \
  | grep -E "^(imported|chunks|install)"
echo "== demo done"
