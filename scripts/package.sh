#!/usr/bin/env bash
# Builds the Debian packages pollen-node and pollen-seeder (binary, systemd
# unit, pollen user, /etc/pollen/*.toml; see packaging/) with cargo-deb and
# prints their paths. Installs what it needs first: the build's Debian
# packages (scripts/setup.sh) and cargo-deb (pinned, `cargo install
# --locked`) when missing.
#
#   scripts/package.sh                     release build (fat LTO: ~40 min on 2 cores), then both .debs
#   scripts/package.sh --profile dev       package dev binaries (builds them if needed; quick when built)
#   scripts/package.sh --no-build          package what the profile's folder holds, build nothing
#   scripts/package.sh --out DIR           write the .debs to DIR
#
# The .debs go to $CARGO_TARGET_DIR/debian (target/debian) unless --out.
# Dev packages are for tests (scripts/package-check.sh): large, unoptimised
# for size, and cargo-deb warns that it does not support the dev profile.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
profile=release
build=1
out=""
while (($#)); do
  case $1 in
    --profile) profile=${2:?--profile needs release or dev}; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --no-build) build=0; shift ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $profile in
  release | dev) ;;
  *) echo "package: --profile must be release or dev, not $profile" >&2; exit 2 ;;
esac

bash scripts/setup.sh
if [[ $(cargo deb --version 2>/dev/null) != *" $CARGO_DEB_VERSION" ]]; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION" >&2
  # Its own temporary build folder, not Pollen's target dir.
  env -u CARGO_TARGET_DIR cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi

target=${CARGO_TARGET_DIR:-target}
out=${out:-$target/debian}
mkdir -p "$out"

if ((build)); then
  if [[ $profile == release ]]; then
    cargo build --locked --release -p pollen-node -p pollen-seeder
  else
    cargo build --locked -p pollen-node -p pollen-seeder
  fi
fi

dir=$target/release
deb_args=()
if [[ $profile == dev ]]; then
  dir=$target/debug
  # Quick: light compression, no strip; quiet: cargo-deb warns that the dev
  # profile is unsupported (it packages the binaries all the same).
  deb_args=(--profile dev --fast --no-strip --quiet)
fi
for bin in pollen-node pollen-seeder; do
  [[ -x $dir/$bin ]] || { echo "package: $dir/$bin missing: build it, or drop --no-build" >&2; exit 1; }
done

# cargo-deb prints the path of the package it wrote.
for pkg in pollen-node pollen-seeder; do
  deb=$(cargo deb --locked -p "$pkg" --no-build "${deb_args[@]}" --output "$out" | tail -n1)
  [[ -f $deb ]] || { echo "package: cargo deb wrote no $pkg package (got: $deb)" >&2; exit 1; }
  echo "$deb"
done
