#!/usr/bin/env bash
# restart-component.sh NAME [SECONDS]: SIGKILLs the component NAME of the local control plane
# (kube-apiserver, etcd, ...: hack/lib.sh's COMPONENTS) by its recorded PID, as a crash would,
# leaves it down SECONDS (default 0), starts it again with the very command line, environment and
# working directory it had (read from /proc before the kill), logging to the end of the same log,
# records the new PID, and waits until it answers as cluster-up.sh waits for it. For the fault
# tests (tests/e2e/faults_serial.rs): every other user of the cluster sees the outage.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
name=${1:?usage: restart-component.sh NAME [SECONDS]}
down=${2:-0}
P=$CLUSTER/pki

probe() { # probe: whether NAME answers, with the probe cluster-up.sh waits on
  case $name in
  otel-desktop-viewer) curl -sf "$TRACE_UI/traces" ;;
  jaeger) curl -sf http://127.0.0.1:16686/api/services ;;
  etcd) curl -sf http://127.0.0.1:2379/health ;;
  kube-apiserver)
    curl -sf --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" \
      "https://127.0.0.1:$APISERVER_PORT/readyz"
    ;;
  kube-controller-manager) curl -skf https://127.0.0.1:10257/healthz ;;
  kube-scheduler) curl -skf https://127.0.0.1:10259/healthz ;;
  kwok) curl -sf http://127.0.0.1:10247/healthz ;;
  esac
}

case " ${COMPONENTS[*]} " in
*" $name "*) ;;
*)
  echo "restart-component: no component $name (one of ${COMPONENTS[*]})" >&2
  exit 2
  ;;
esac
pid=$(pid_of "$name") || {
  echo "restart-component: $name is not running (no live PID in $CLUSTER/pids/$name.pid)" >&2
  exit 1
}
mapfile -d '' argv <"/proc/$pid/cmdline"
mapfile -d '' environment <"/proc/$pid/environ"
cwd=$(readlink "/proc/$pid/cwd")

kill -KILL "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
echo "restart-component: $name (PID $pid) killed; down for ${down}s"
sleep "$down"

cd "$cwd"
echo "restart-component: restarting $name at $(date -u +%FT%T.%3NZ)" >>"$CLUSTER/logs/$name.log"
# A session of its own, as far from this script as cluster-up.sh's nohup puts it.
setsid nohup env -i "${environment[@]}" "${argv[@]}" </dev/null >>"$CLUSTER/logs/$name.log" 2>&1 &
echo $! >"$CLUSTER/pids/$name.pid"
for _ in $(seq 1 240); do
  if probe >/dev/null 2>&1; then
    echo "restart-component: $name ready again (PID $(cat "$CLUSTER/pids/$name.pid"))"
    exit 0
  fi
  if ! kill -0 "$(cat "$CLUSTER/pids/$name.pid")" 2>/dev/null; then
    echo "restart-component: $name exited during start-up; its log is $CLUSTER/logs/$name.log:" >&2
    tail -n 40 "$CLUSTER/logs/$name.log" >&2
    exit 1
  fi
  sleep 0.25
done
echo "restart-component: $name not ready after 60 s; its log is $CLUSTER/logs/$name.log" >&2
exit 1
