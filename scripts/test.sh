#!/usr/bin/env bash
# Runs Pollen's checks and tests: formatting, clippy, unit, property and
# end-to-end tests (the latter drive the real binaries), the namespace tests
# (root only), and every fuzz target for a few seconds. Benchmarks in
# tests/ (named bench_*, ignored) are left to the scripts BENCHMARKS.md names.
#
# The namespace tests (tests/netns.rs, tests/fleet.rs) are
# #[ignore = "needs root"]; run as root, this runs them, and then
# scripts/package-check.sh (packages the dev binaries just built, installs,
# checks and purges the .debs on this machine). Not as root, it
# fails once everything else has run, unless POLLEN_NO_ROOT_TESTS=1 says
# to leave them out. POLLEN_FUZZ_SECONDS sets the seconds per fuzz target (3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

root_tests=run
if [[ $(id -u) -ne 0 ]]; then
  if [[ ${POLLEN_NO_ROOT_TESTS:-} == 1 ]]; then
    root_tests=skip
  else
    root_tests=fail
    echo "test: not root: the namespace tests cannot run, so this run will FAIL" \
      "(POLLEN_NO_ROOT_TESTS=1 leaves them out)" >&2
  fi
fi

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
  cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
else
  echo "test: rustfmt not installed, skipping the format check" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  # The fuzz crate (outside the workspace); no libFuzzer C++ build for lints.
  cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --no-default-features --quiet -- -D warnings
else
  echo "test: clippy not installed, skipping lints" >&2
fi
cargo build --workspace --bins --quiet
cargo test --workspace

case $root_tests in
  run)
    cargo test -p pollen-e2e -- --ignored --skip bench_
    bash scripts/package-check.sh
    ;;
  skip) echo "test: POLLEN_NO_ROOT_TESTS=1: namespace tests (tests/netns.rs, tests/fleet.rs) NOT run" >&2 ;;
esac

bash scripts/fuzz.sh "${POLLEN_FUZZ_SECONDS:-3}"

if [[ $root_tests == fail ]]; then
  echo "test: FAILED: the namespace tests (tests/netns.rs, tests/fleet.rs) need root and did not run." \
    "Run scripts/test.sh as root, or set POLLEN_NO_ROOT_TESTS=1 to leave them out knowingly." >&2
  exit 1
fi
