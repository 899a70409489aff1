#!/usr/bin/env bash
# cargo deny over the workspace (deny.toml): licenses, banned and duplicate crates, and sources
# always; the RustSec advisories when their database can be fetched. cargo-deny is built once,
# at the pinned version, into the tools cache.
# Usage: hack/deny.sh [install]
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
root=$CACHE/cargo-deny-$CARGO_DENY_VERSION
deny=$root/bin/cargo-deny
if [[ ! -x $deny ]]; then
  echo "deny: building cargo-deny $CARGO_DENY_VERSION into $root" >&2
  start=$(date +%s)
  rm -rf "$root"
  # A target directory of its own: the project's builds never see cargo-deny's dependencies.
  # Unoptimized and without debug info, for a shorter build: it reads a workspace's metadata and
  # licenses, no hot loop.
  CARGO_TARGET_DIR=$CACHE/cargo-deny-build CARGO_PROFILE_DEV_DEBUG=0 cargo install --locked \
    --quiet --debug --root "$root" cargo-deny --version "$CARGO_DENY_VERSION"
  rm -rf "$CACHE/cargo-deny-build"
  echo "deny: cargo-deny built in $(($(date +%s) - start))s" >&2
fi
[[ ${1:-} == install ]] && exit 0
cd "$REPO"
mkdir -p target
"$deny" --version
# Every member is a root of the graph (the client library's examples included).
check=("$deny" --locked --workspace check)
# The advisory database is a git repository on GitHub, cloned into cargo's home. Where it can't
# be fetched (a machine that reaches only the package registries), the advisories are not
# checked, and this says so; every other check still runs and must pass.
log=target/deny-advisories.log
if "${check[@]}" advisories >"$log" 2>&1; then
  echo "deny: advisories ok"
elif grep -q 'failed to fetch advisory database' "$log"; then
  # A copy fetched earlier is still checked against, offline, and said to be one.
  dbs=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs
  if compgen -G "$dbs/advisory-db-*/.git" >/dev/null &&
    "$deny" --offline --locked --workspace check advisories >"$log" 2>&1; then
    echo "deny: advisories ok, against the copy of the RustSec database fetched before ($dbs):" \
      "it could not be updated" >&2
  elif compgen -G "$dbs/advisory-db-*/.git" >/dev/null; then
    cat "$log" >&2
    exit 1
  else
    echo "deny: advisories NOT checked: the RustSec database could not be fetched ($log)" >&2
  fi
else
  cat "$log" >&2
  exit 1
fi
"${check[@]}" licenses bans sources
