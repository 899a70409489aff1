# Shared paths for hack/*.sh (sourced, not run).
# shellcheck shell=bash
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.env
. "$REPO/hack/versions.env"
CACHE=${JOBTRACE_CACHE:-$HOME/.cache/jobtrace}
BIN=$CACHE/bin
CLUSTER=${JOBTRACE_CLUSTER_DIR:-$REPO/target/cluster}
APISERVER_PORT=${APISERVER_PORT:-6443}
# The components, in start order; cluster-down stops them in reverse. otel-desktop-viewer is the
# trace UI, fed by Jaeger (hack/cluster/jaeger.yaml).
# shellcheck disable=SC2034 # used by the scripts that source this file
COMPONENTS=(otel-desktop-viewer jaeger etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
# The trace UI (its own OTLP ports, 14317 and 14318, are for Jaeger's copy of each span).
# shellcheck disable=SC2034 # likewise
TRACE_UI=http://127.0.0.1:8000
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

# pid_of NAME: the recorded PID of a component when that process is still the one we started.
pid_of() {
  local f=$CLUSTER/pids/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$BIN/$1" || return 1
  echo "$pid"
}
