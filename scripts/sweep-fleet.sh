#!/usr/bin/env bash
# Release-day sweep (simulator): seeder upload 10 -> 1000 Mbit/s x 10, 100
# and 1000 sites of 10 devices behind 10 Mbit/s uplinks, 100 MiB, with
# 256 KiB chunks whole and in the node's 64 KiB pieces (`piece_kib`), and
# with 1 MiB chunks whole, in 256 KiB pieces and in the node's 64 KiB
# pieces. Writes a sweep.csv and a plot per grid into OUT (default
# simulator/examples/fleet-sweep) as chunks-256k, chunks-256k-pieces-64k,
# chunks-1m, chunks-1m-pieces-256k and chunks-1m-pieces-64k (.csv, .svg).
# About 35 minutes a grid on two shared cores (those in 64 KiB pieces
# longer).
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
# name chunk_kib piece_kib
for grid in "chunks-256k 256 0" "chunks-256k-pieces-64k 256 64" "chunks-1m 1024 0" \
  "chunks-1m-pieces-256k 1024 256" "chunks-1m-pieces-64k 1024 64"; do
  read -r name chunk piece <<< "$grid"
  "$bin" sweep "$work/ex.toml" --jobs 2 --out "$work/$name" \
    --param release_mib=100 --param chunk_kib="$chunk" --param piece_kib="$piece" \
    --param site.0.devices=10 --param time_limit_s=20000 \
    --param seeder.upload_mbit=10,30,100,300,1000 \
    --param site.0.count=10,100,1000 > "$work/$name.log"
  cp "$work/$name/sweep.csv" "$out/$name.csv"
  python3 simulator/examples/plot_sweep.py "$out/$name.csv" "$out/$name.svg"
  echo "$name: $out/$name.csv, $out/$name.svg" >&2
done
