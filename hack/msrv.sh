#!/usr/bin/env bash
# Checks that the workspace builds with the oldest compiler it declares (`rust-version` in
# Cargo.toml's [workspace.package]): `cargo check` of every crate's library and binaries, all
# features on, with that toolchain installed by rustup when missing, in a target directory of its
# own (target/msrv). What users build; the tests, examples and benchmarks build with the pinned
# toolchain (rust-toolchain.toml), and their dev-dependencies say nothing of the crates' MSRV.
# Without rustup it says so and skips, except under CI (the CI variable set), where that is a
# failure; when rustup can't download the toolchain (no route to its server), it says loudly that
# the check did not run, and skips.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO"
msrv=$(sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[[ -n $msrv ]] || { echo "msrv: no rust-version in [workspace.package] of Cargo.toml" >&2; exit 1; }
skip() {
  if [[ -n ${CI:-} ]]; then
    echo "msrv: $1; under CI the declared Rust $msrv must be checked" >&2
    exit 1
  fi
  echo "msrv: SKIPPED, Rust $msrv not checked: $1" >&2
  exit 0
}
command -v rustup >/dev/null || skip "no rustup to install Rust $msrv with"
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  echo "msrv: installing Rust $msrv (rustup, minimal profile)" >&2
  if ! rustup toolchain install "$msrv" --profile minimal --no-self-update >&2; then
    echo "msrv: SKIPPED, Rust $msrv NOT checked: rustup could not download it" >&2
    exit 0
  fi
fi
echo "msrv: cargo +$msrv check (target/msrv)"
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --locked --workspace --lib --bins --all-features
echo "msrv: the workspace builds with Rust $msrv"
