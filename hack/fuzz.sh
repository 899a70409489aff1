#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS each (default 60), starting from the seeds in
# fuzz/seeds/. Installs cargo-fuzz when it is missing. The stable compiler is used with
# RUSTC_BOOTSTRAP=1 and no sanitizer, since no nightly toolchain can be installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
# A tool, not a product: built unoptimized and without debug info, for a shorter build.
command -v cargo-fuzz >/dev/null ||
  CARGO_PROFILE_DEV_DEBUG=0 cargo install cargo-fuzz --locked --version 0.13.2 --debug
export RUSTC_BOOTSTRAP=1
# FUZZ_DEV=1 (`make test`'s short run) builds the targets unoptimized, with debug assertions: a
# fraction of the build time, fewer runs per second.
build=()
[[ ${FUZZ_DEV:-} == 1 ]] && build=(--dev)
for target in admission annotations; do
  mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
  echo "fuzz: $target for ${seconds}s"
  log=target/fuzz-$target.log
  mkdir -p target
  if ! cargo fuzz run "${build[@]}" "$target" --sanitizer none "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed; the crashing input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log"
done
