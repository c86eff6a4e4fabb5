#!/usr/bin/env bash
# Runs Pollen's checks and tests: formatting, clippy, unit, property and
# end-to-end tests (the latter drive the real binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "test: rustfmt not installed, skipping the format check" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --quiet -- -D warnings
else
  echo "test: clippy not installed, skipping lints" >&2
fi
cargo build --workspace --bins --quiet
cargo test --workspace
