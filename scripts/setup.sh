#!/usr/bin/env bash
# Installs what building Pollen needs on a fresh Debian machine with Rust:
# libclang (rocksdb's bindgen) and a C++ compiler (rocksdb itself, and
# libFuzzer for scripts/fuzz.sh); for the Debian packages (scripts/package.sh,
# scripts/package-check.sh) dpkg-dev (cargo-deb's dependency scan) and
# systemd (systemd-analyze, systemd-sysusers; it need not run as PID 1);
# python3 for scripts/demo.sh and the benchmark scripts; nginx for the
# origin tests (tests/common/origin.rs runs its own nginx with a config of
# its own on a free loopback port; the packaged service is not wanted, so
# when this script installs nginx it stops and disables that service);
# squid and openssl for the origin tests in namespaces (tests/origin_netns.rs
# runs squid as the site's forward proxy with a config of its own and makes
# a test CA with openssl; the packaged squid service is stopped and
# disabled the same way); aria2 and opentracker (with curl) for the
# BitTorrent cross-check in namespaces (tests/bittorrent_crosscheck.rs runs
# its own tracker and clients; the packaged opentracker service is stopped
# and disabled the same way); chromium for the operator console's browser
# test (tests/console_browser.rs runs it headless, driven over the DevTools
# protocol).
# Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
for pkg in libclang-dev clang g++ pkg-config time iproute2 dpkg-dev systemd python3 nginx squid openssl aria2 opentracker curl chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  if [[ " ${need[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null &&
    systemctl is-active --quiet nginx 2>/dev/null; then
    $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
  if [[ " ${need[*]} " == *" opentracker "* ]] && command -v systemctl >/dev/null &&
    systemctl is-active --quiet opentracker 2>/dev/null; then
    $sudo systemctl disable --now opentracker >/dev/null 2>&1 || true
  fi
  if [[ " ${need[*]} " == *" squid "* ]] && command -v systemctl >/dev/null &&
    systemctl is-active --quiet squid 2>/dev/null; then
    $sudo systemctl disable --now squid >/dev/null 2>&1 || true
  fi
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
