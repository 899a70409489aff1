#!/usr/bin/env bash
# `make test`: everything CI runs, in two lanes so that a fresh machine's downloads and Go builds
# overlap the Rust builds instead of waiting for them.
#
#   the Rust lane (here):  helm, the fast tier (`make check`), the declared Rust version, hadolint,
#                          a short fuzz run, the static binary, the examples, the e2e test build;
#   the tools lane (in the background, its output in target/test-tools.log): the rest of the
#                          control plane's binaries (hack/build-bins.sh), Chromium, the clients'
#                          toolchains (hack/clients.sh).
#
# Then the end-to-end tests on a fresh local control plane, which is stopped again whatever the
# outcome (and, after tests that passed, must leave nothing of its real node behind:
# hack/node-down.sh checks). With every cache warm the tools lane has nothing to do.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO"
mkdir -p target
make=(make --no-print-directory)
log=target/test-tools.log
started=$SECONDS

# A session of its own, so that a failure here stops the whole lane, go and mvn included.
setsid bash -c '
  set -euo pipefail
  hack/build-bins.sh etcd kwok jaeger viewer crds k8s runtime
  hack/install-chromium.sh >/dev/null
  hack/clients.sh
' >"$log" 2>&1 </dev/null &
tools=$!
trap 'kill -- -"$tools" 2>/dev/null || true' EXIT

hack/build-bins.sh helm
"${make[@]}" check
echo "test: fast tier passed after $((SECONDS - started)) s"
"${make[@]}" msrv lint-dockerfile
FUZZ_SECONDS=10 FUZZ_DEV=1 hack/fuzz.sh
"${make[@]}" static examples
cargo test --locked --features e2e --test e2e --no-run

echo "test: waiting for the tools lane ($log)"
if ! wait "$tools"; then
  tail -n 60 "$log" >&2
  echo "test: the tools lane failed; its whole output is in $log" >&2
  exit 1
fi
trap - EXIT
grep -E '^(build-bins|clients): .*(ready|built)' "$log" || true
echo "test: everything built after $((SECONDS - started)) s"

hack/cluster-up.sh
trap 'hack/cluster-down.sh' EXIT
"${make[@]}" e2e
trap - EXIT
hack/cluster-down.sh
echo "test: passed in $((SECONDS - started)) s"
