#!/usr/bin/env bash
# Stops the local control plane that cluster-up.sh started, by recorded PID only, newest first,
# then removes its state. Logs stay in target/cluster/logs for a post-mortem.
set -uo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

node=0
"$REPO/hack/node-down.sh" || node=$?
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
  name=${COMPONENTS[i]}
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null && echo "cluster-down: $name did not stop on SIGTERM; killed"
    echo "cluster-down: stopped $name"
  fi
  rm -f "$CLUSTER/pids/$name.pid"
done
rm -rf "$CLUSTER/etcd" "$CLUSTER/pki" "$CLUSTER/kubeconfig"
# A real node that left something behind fails the run (hack/node-down.sh said what).
exit "$node"
