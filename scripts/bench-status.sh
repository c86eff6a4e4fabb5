#!/usr/bin/env bash
# Status traffic over a factory site's uplink while the fleet is idle
# (tests/status_traffic.rs): six devices in network namespaces behind an
# 8 Mbit/s uplink, bytes per minute both ways once all have installed.
# Needs root (namespaces).
#
#   scripts/bench-status.sh [BEFORE_REV]
#
# With BEFORE_REV (a git revision), that revision's binaries are built in a
# scratch worktree (target dir $CARGO_TARGET_DIR-before, or target-before)
# and measured first, then this checkout's: side by side in one run. Each
# build is measured with its default status interval and with 30 s.
# POLLEN_BENCH_WINDOW sets the window in seconds (60).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[[ $(id -u) -eq 0 ]] || { echo "bench-status: needs root (network namespaces)" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-$PWD/target}
run() { # label, bin dir, [status interval]
  echo "== $1${3:+, --status-interval $3}"
  POLLEN_BIN_DIR=$2 POLLEN_STATUS_INTERVAL=${3:-} \
    cargo test --quiet -p pollen-e2e --test status_traffic -- --ignored --nocapture bench_ 2>&1 |
    grep -E '^idle factory site|panicked|FAILED' || true
}

cargo build --quiet -p pollen-node -p pollen-seeder --bins
cargo test --quiet -p pollen-e2e --test status_traffic --no-run

if [[ $# -ge 1 ]]; then
  before=$(mktemp -d)
  trap 'git worktree remove --force "$before" >/dev/null 2>&1 || true' EXIT
  git worktree add --detach --force "$before" "$1" >/dev/null
  (cd "$before" && CARGO_TARGET_DIR=$target-before cargo build --quiet -p pollen-node -p pollen-seeder --bins)
  run "before ($1)" "$target-before/debug"
  run "before ($1)" "$target-before/debug" 30s
fi
run "this checkout" "$target/debug"
run "this checkout" "$target/debug" 30s
