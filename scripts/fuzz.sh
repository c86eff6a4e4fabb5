#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/) with libFuzzer and sanitizer coverage on
# the stable toolchain (no cargo-fuzz needed), then runs each for SECONDS
# (default 3) from its seeds, fuzz/seeds/<target>/, copied to a scratch
# corpus so the seeds stay as they are. Fails if any target fails (a panic,
# a failed assertion, a timeout or running out of memory).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    # default: every target
#
# POLLEN_FUZZ_WORK=DIR keeps corpora, logs and crashing inputs in DIR (and
# grows the corpora there run after run); by default they go to a temporary
# directory, removed unless a target failed. The build goes to
# $CARGO_TARGET_DIR/fuzz when CARGO_TARGET_DIR is set, else fuzz/target.
# To replay a crash: the target's binary with the crashing file as argument.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-3}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || {
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
}
shift $(($# > 0 ? 1 : 0))

all=()
for f in fuzz/fuzz_targets/*.rs; do
  all+=("$(basename "$f" .rs)")
done
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || {
    echo "fuzz: no target $t (there are: ${all[*]})" >&2
    exit 2
  }
done

bash scripts/setup.sh # libFuzzer itself is C++, built by libfuzzer-sys with the cc crate

# What `cargo fuzz build` passes, less AddressSanitizer (nightly only; the
# code under test forbids unsafe). The explicit --target keeps these flags off
# build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}
target_dir=${target_dir:-$PWD/fuzz/target}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "fuzz: building ${targets[*]}" >&2
CARGO_TARGET_DIR=$target_dir cargo build --quiet --manifest-path fuzz/Cargo.toml \
  --release --target "$host" "${bins[@]}"
unset RUSTFLAGS

if [[ -n ${POLLEN_FUZZ_WORK:-} ]]; then
  work=$POLLEN_FUZZ_WORK
  keep=1
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/pollen-fuzz.XXXXXX")
  keep=0
fi
mkdir -p "$work"

failed=()
printf '%-16s %12s %9s %10s %8s  %s\n' target runs exec/s corpus cov result >&2
for t in "${targets[@]}"; do
  corpus=$work/$t/corpus
  crashes=$work/$t/crashes
  log=$work/$t/log
  mkdir -p "$corpus" "$crashes"
  if [[ -d fuzz/seeds/$t ]]; then
    cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  fi
  result=ok
  "$target_dir/$host/release/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$corpus" >"$log" 2>&1 || result=FAILED
  # libFuzzer's last status line: "#N ... cov: C ft: F corp: UNITS/BYTES ...".
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
  runs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: //p' "$log")
  printf '%-16s %12s %9s %10s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "${corp:-?}" \
    "${cov:-?}" "$result" >&2
  if [[ $result != ok ]]; then
    failed+=("$t")
    grep -E -A25 '==[0-9]+==|panicked at|deadly signal|timeout' "$log" | head -n 40 >&2 || true
    ls "$crashes"/* 2>/dev/null | sed 's/^/fuzz:   crashing input: /' >&2 || true
    echo "fuzz:   log: $log" >&2
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (inputs and logs kept in $work)" >&2
  exit 1
fi
((keep)) || rm -rf "$work"
echo "fuzz: ${#targets[@]} target(s), ${secs}s each, no failures" >&2
