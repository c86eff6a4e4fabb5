#!/usr/bin/env bash
# A release-day flash crowd in 1 MiB chunks passed on in 64 KiB pieces, in
# network namespaces (tests/fleet.rs, bench_flash_crowd_in_1_mib_chunks):
# a seeder behind 2 Mbit/s, 5 sites of 3 devices behind 20 Mbit/s
# uplinks, 16 MiB cut with `publish --chunk-kib 1024`, against the
# simulator on the same chunk list. Its time spreads widely between runs
# (the seeder's first round of 16 chunks for 5 sites), so it is measured
# over RUNS runs (3) rather than checked once. Each run asserts one copy
# across each site's uplink and prints the time against the bound, the
# seeder's and the uplinks' bytes (veth counters) and the model's error.
# Needs root (namespaces).
#
#   scripts/bench-pieces.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[[ $(id -u) -eq 0 ]] || { echo "bench-pieces: needs root (network namespaces)" >&2; exit 1; }

runs=${1:-3}
cargo build --quiet -p pollen-node -p pollen-seeder --bins
cargo test --quiet -p pollen-e2e --test fleet --no-run
for i in $(seq 1 "$runs"); do
  echo "== run $i of $runs"
  cargo test --quiet -p pollen-e2e --test fleet -- --ignored --nocapture bench_flash_crowd_in_1_mib_chunks 2>&1 |
    grep -E '^  (real|simulated):|panicked|site[0-9]+ fetched|FAILED' || true
done
