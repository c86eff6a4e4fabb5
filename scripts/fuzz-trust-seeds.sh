#!/usr/bin/env bash
# Writes the seed corpora of the fleet trust fuzz targets, fuzz/seeds/policy/
# and fuzz/seeds/credential/, with the real CLI: policies made by
# `pollen-seeder policy create` and `policy rotate`, credentials by
# `pollen-seeder enroll` for identities `pollen-node id` and
# `pollen-seeder id` created, all signed with key files holding the fixture
# keys of fuzz/src/lib.rs (written by its example fleet_keys), so the
# targets' fixed held policies verify them. Seeds of the same name are
# overwritten; the bytes differ run to run (times, fresh identities).
#
#   scripts/fuzz-trust-seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p pollen-seeder -p pollen-node --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/debug
seeder=$bin/pollen-seeder
node=$bin/pollen-node
work=$(mktemp -d "${TMPDIR:-/tmp}/pollen-trust-seeds.XXXXXX")
trap 'rm -rf "$work"' EXIT
keys=$work/keys
cargo run --quiet --manifest-path fuzz/Cargo.toml --no-default-features \
  --example fleet_keys -- "$keys" >/dev/null
k() { echo "$keys/$1.key"; }

policies=fuzz/seeds/policy
credentials=fuzz/seeds/credential
mkdir -p "$policies" "$credentials"
rm -f "$policies"/* "$credentials"/*

# Two releases in a publisher's store, for a floor reset and a recall.
head -c 70000 /dev/zero >"$work/image.bin"
id_of() { sed -n 's/.*"manifest_id": "\([0-9a-f]*\)".*/\1/p'; }
r1=$("$seeder" publish --key "$(k release)" --store "$work/store" --artifact "$work/image.bin" \
  --channel stable --version 1.0.0 --json 2>/dev/null | id_of)
r2=$("$seeder" publish --key "$(k release)" --store "$work/store" --artifact "$work/image.bin" \
  --channel stable --version 1.1.0 --json 2>/dev/null | id_of)

# Credentials: one device, a CSV batch, the seeder.
p1=$("$node" id --data "$work/press-0042" 2>/dev/null)
p2=$("$node" id --data "$work/press-0043" 2>/dev/null)
p3=$("$node" id --data "$work/lathe-3" 2>/dev/null)
ps=$("$seeder" id --store "$work/store" 2>/dev/null)
"$seeder" enroll --key "$(k enroll)" --peer-id "$p1" --device-id press-0042 --site hall-a \
  --hardware press-v2 --serial SN-0042 --out "$credentials/press-0042.cred" >/dev/null
printf 'peer_id,device_id,site,hardware,serial\n%s,press-0043,hall-a,press-v2,\n%s,lathe-3,hall-b,,\n' \
  "$p2" "$p3" >"$work/fleet.csv"
"$seeder" enroll --key "$(k enroll)" --csv "$work/fleet.csv" --out-dir "$credentials" >/dev/null
"$seeder" enroll --key "$(k enroll)" --peer-id "$ps" --device-id seeder --expires-in 365 \
  --out "$credentials/seeder.cred" >/dev/null

# Policies: the first (version 1), one not signed yet, the first after a
# trust file, and version 2 with every list filled.
roles=(--root "$(k root).pub" --release "$(k release).pub" --operator "$(k operator).pub")
"$seeder" policy create "${roles[@]}" --enroll "$(k enroll).pub" --expires-in 3650 \
  --key "$(k root)" --out "$policies/v1.policy" >/dev/null
"$seeder" policy create --root "$(k root).pub" "$(k new-root).pub" --root-threshold 2 \
  --release "$(k release).pub" --operator "$(k operator).pub" --expires-in 3650 \
  --out "$policies/unsigned.policy" >/dev/null
"$seeder" policy rotate --from-trust "$(k root).pub" --set-enroll "$(k enroll).pub" \
  --expires-in 3650 --key "$(k root)" --out "$policies/from-trust.policy" >/dev/null
"$seeder" policy rotate --from "$policies/v1.policy" --set-root "$(k new-root).pub" \
  --revoke-device "$credentials/lathe-3.cred" --recall "$r2" \
  --reset-floor stable --to "$r1" --store "$work/store" --expires-in 3650 \
  --key "$(k root)" "$(k new-root)" --out "$policies/v2-rotated.policy" >/dev/null
"$seeder" policy rotate --from "$policies/v1.policy" --no-enroll --expires-in 3650 \
  --key "$(k root)" --out "$policies/v2-open.policy" >/dev/null

ls "$policies" "$credentials"
