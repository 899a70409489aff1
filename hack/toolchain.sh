#!/usr/bin/env bash
# Makes the compiler rust-toolchain.toml pins available before any cargo runs in the checkout:
# when rustup's `stable` is that very version (as on a machine set up with the current stable),
# it is registered under the pinned name, so that rustup doesn't download the same compiler
# again; otherwise rustup installs the pinned one. Quiet and quick when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rustup >/dev/null || exit 0
pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
[[ -n $pinned ]] || exit 0
installed=$(rustup toolchain list | awk '{print $1}')
grep -q "^$pinned-" <<<"$installed" && exit 0
stable=$(rustup run stable rustc --version 2>/dev/null | awk '{print $2}' || true)
if [[ $stable == "$pinned" ]]; then
  # rustup links no custom toolchain under an official name; an official toolchain is a folder of
  # its toolchains directory, named for the version and the host.
  sysroot=$(rustup run stable rustc --print sysroot)
  host=$(rustup run stable rustc -vV | sed -n 's/^host: //p')
  ln -s "$sysroot" "$(dirname "$sysroot")/$pinned-$host"
  echo "toolchain: Rust $pinned is rustup's stable, registered as $pinned" >&2
else
  echo "toolchain: installing Rust $pinned (rust-toolchain.toml)" >&2
  rustup toolchain install "$pinned" --profile minimal --component rustfmt,clippy --no-self-update >&2
fi
