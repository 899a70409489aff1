#!/usr/bin/env bash
# Every benchmark, in one run: the pure mutation (criterion), the webhook over HTTPS, the
# exporter's split path (criterion), and the webhook's cost to Job creates through the real
# apiserver (on a local control plane, started and stopped here unless one is already up). The
# summary is also written to target/bench.txt.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO"
out=target/bench.txt
mkdir -p target
: >"$out"
run() { "$@" 2>&1 | grep -vE '^\s+(Compiling|Finished|Running|Downloaded|Downloading)' | tee -a "$out"; }

echo "## cargo bench --bench mutation" | tee -a "$out"
run cargo bench --locked --bench mutation -- --noplot
echo "## cargo bench --bench webhook_load (BENCH_SECONDS=${BENCH_SECONDS:-5})" | tee -a "$out"
run cargo bench --locked --bench webhook_load
echo "## cargo bench --bench hostile_admission (BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-20})" | tee -a "$out"
run cargo bench --locked --bench hostile_admission
echo "## cargo bench --bench export_split" | tee -a "$out"
run cargo bench --locked --bench export_split -- --noplot

started=0
if ! "$BIN/kubectl" --kubeconfig "$CLUSTER/kubeconfig" get --raw /readyz >/dev/null 2>&1; then
  "$REPO/hack/cluster-up.sh"
  started=1
fi
trap '[ "$started" = 1 ] && "$REPO/hack/cluster-down.sh" >/dev/null' EXIT
export KUBECONFIG=$CLUSTER/kubeconfig JOBTRACE_BIN=$BIN
echo "## cargo bench --features e2e --bench apiserver_overhead (BENCH_CREATES=${BENCH_CREATES:-300})" | tee -a "$out"
run cargo bench --locked --features e2e --bench apiserver_overhead
echo "## cargo bench --features e2e --bench pod_creation (BENCH_COMPLETIONS=${BENCH_COMPLETIONS:-200,1000}, BENCH_ROUNDS=${BENCH_ROUNDS:-5})" | tee -a "$out"
run cargo bench --locked --features e2e --bench pod_creation
echo "## cargo bench --features e2e --bench apiserver_writes (BENCH_JOBS=${BENCH_JOBS_WRITES:-40}, BENCH_ROUNDS=${BENCH_ROUNDS_WRITES:-2})" | tee -a "$out"
BENCH_JOBS=${BENCH_JOBS_WRITES:-40} BENCH_ROUNDS=${BENCH_ROUNDS_WRITES:-2} run cargo bench --locked --features e2e --bench apiserver_writes
echo "## cargo bench --features e2e --bench controller_load (BENCH_JOBS=${BENCH_JOBS:-1000,10000})" | tee -a "$out"
run cargo bench --locked --features e2e --bench controller_load
echo "bench: summary in $out"
