#!/usr/bin/env bash
# Release-day sweep (simulator): seeder upload 10 -> 1000 Mbit/s x 10, 100
# and 1000 sites of 10 devices behind 10 Mbit/s uplinks, 100 MiB, with the
# node's 256 KiB chunks and with 1 MiB chunks. Writes sweep.csv and a plot
# per grid into OUT (default simulator/examples/fleet-sweep), as
# chunks-256k.{csv,svg} and chunks-1m.{csv,svg}. About 15 minutes on two
# cores.
#   scripts/sweep-fleet.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-simulator/examples/fleet-sweep}"
mkdir -p "$out"
cargo build --release -p pollen-sim --quiet
bin="${CARGO_TARGET_DIR:-target}/release/pollen-sim"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" example > "$work/ex.toml"
for chunk in 256 1024; do
  name=$([ "$chunk" = 256 ] && echo chunks-256k || echo chunks-1m)
  "$bin" sweep "$work/ex.toml" --jobs 2 --out "$work/$name" \
    --param release_mib=100 --param chunk_kib="$chunk" --param site.0.devices=10 \
    --param time_limit_s=20000 --param seeder.upload_mbit=10,30,100,300,1000 \
    --param site.0.count=10,100,1000 > "$work/$name.log"
  cp "$work/$name/sweep.csv" "$out/$name.csv"
  python3 simulator/examples/plot_sweep.py "$out/$name.csv" "$out/$name.svg"
  echo "$name: $out/$name.csv, $out/$name.svg" >&2
done
