#!/usr/bin/env bash
# Pollen demo: a publisher makes a key, publishes a generated 64 MiB
# "firmware" image, ships it offline (a USB-style folder), and two device
# stores import it — one straight from the publisher's store, one from the
# folder. Each device verifies signatures, every chunk and the whole image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/debug"
seeder="$bin/pollen-seeder"
node="$bin/pollen-node"

work="$(mktemp -d "${TMPDIR:-/tmp}/pollen-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "== working in $work"

echo "== publisher: generate a signing key"
"$seeder" keygen --out "$work/publisher.key"

echo "== publisher: build a 64 MiB image and publish it as release 1.0.0"
head -c $((64 << 20)) /dev/urandom > "$work/firmware.img"
"$seeder" publish --key "$work/publisher.key" --store "$work/seeder-store" \
  --artifact "$work/firmware.img" --channel stable --version 1.0.0 \
  --hardware press-v2 --out "$work/release.pollen"

echo "== publisher: inspect the signed manifest"
"$seeder" inspect "$work/release.pollen" --trust "$work/publisher.key.pub" | grep -v '^chunks' || true

echo "== publisher: copy the release to a USB-style folder"
"$seeder" export --store "$work/seeder-store" --manifest "$work/release.pollen" --out "$work/usb"

for n in 1 2; do
  src="$work/seeder-store"; [[ $n == 2 ]] && src="$work/usb/chunks"
  echo "== device $n: import from $(basename "$src")"
  "$node" import --data "$work/device$n" --trust "$work/publisher.key.pub" \
    --manifest "$work/release.pollen" --chunks "$src" --channel stable \
    --hardware press-v2 --out "$work/device$n.img"
done

echo "== result: every copy verifies against the signed manifest"
for f in firmware device1 device2; do
  printf '%-9s ' "$f"
  "$seeder" verify --trust "$work/publisher.key.pub" "$work/release.pollen" --artifact "$work/$f.img"
done
"$node" check --data "$work/device1"

echo "== a tampered manifest is refused, and the device store is left as it was"
python3 - "$work/release.pollen" "$work/tampered.pollen" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
b[40] ^= 1
open(sys.argv[2], 'wb').write(b)
PY
if "$node" import --data "$work/device1" --trust "$work/publisher.key.pub" \
    --manifest "$work/tampered.pollen" --chunks "$work/usb/chunks"; then
  echo "demo: the tampered manifest was accepted!" >&2; exit 1
fi
echo "== demo done"
