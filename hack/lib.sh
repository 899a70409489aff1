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

# apt_lock: waits for the lock that keeps this project's apt-get runs one at a time (`make test`
# installs from two lanes at once), then holds it until the calling script exits.
apt_lock() {
  exec {APT_LOCK_FD}>"${TMPDIR:-/tmp}/jobtrace-apt.lock"
  flock "$APT_LOCK_FD"
}

# debian_install WHO PACKAGE...: installs Debian's packages that are not installed yet (as root,
# with apt-get), or fails saying which ones WHO needs.
debian_install() {
  local who=$1 missing=() p
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "$who: installing Debian's ${missing[*]}" >&2
    apt_lock
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "$who: needs Debian's ${missing[*]} (apt-get install ${missing[*]}, as root)" >&2
    return 1
  fi
}

# The real node (hack/node-up.sh): its name, its state directory, and its containerd's socket.
# shellcheck disable=SC2034 # used by the scripts that source this file
NODE_NAME=real-node
NODE_DIR=$CLUSTER/node
# shellcheck disable=SC2034
NODE_SOCK=$NODE_DIR/run/containerd.sock

# node_import NAME LAYOUT_TAR: imports an image's OCI layout into the real node's containerd as
# NAME:<the layout's tag>. ctr's output (a warning about cgroup v1 on every call) is shown only
# when the import fails.
node_import() {
  local out
  if ! out=$("$BIN/ctr" --address "$NODE_SOCK" --namespace k8s.io image import --base-name "$1" "$2" 2>&1); then
    echo "$out" >&2
    return 1
  fi
}

# start NAME ARGS...: runs $BIN/NAME in the background, logging to logs/NAME.log, its PID in pids/.
start() {
  local name=$1
  shift
  nohup "$BIN/$name" "$@" >"$CLUSTER/logs/$name.log" 2>&1 &
  echo $! >"$CLUSTER/pids/$name.pid"
}

# undo_on_failure WHO SCRIPT: for `trap ... EXIT`: when the script fails, runs SCRIPT to stop what
# it started, saying so (the logs stay).
undo_on_failure() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    echo "$1: failed; stopping what was started (logs stay in $CLUSTER/logs)" >&2
    "$2" >/dev/null
  fi
}
