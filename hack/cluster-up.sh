#!/usr/bin/env bash
# Starts the local control plane on 127.0.0.1: the trace UI (otel-desktop-viewer), Jaeger, etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kwok with simulated nodes, and one real
# node (containerd and a kubelet, hack/node-up.sh). State,
# logs and PIDs go to target/cluster/; the admin kubeconfig to target/cluster/kubeconfig. Running
# it again while the cluster is up changes nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
NODES=${JOBTRACE_NODES:-2}
# The apiserver serves /debug/pprof only with JOBTRACE_APISERVER_PROFILING=1 (the profiles in
# docs/benchmarks.md); by default that endpoint is off.
PROFILING=false
if [ "${JOBTRACE_APISERVER_PROFILING:-0}" = 1 ]; then PROFILING=true; fi
# etcd skips fsync by default (tests need speed, not durability); JOBTRACE_ETCD_FSYNC=1 restores it.
ETCD_FSYNC=()
[ "${JOBTRACE_ETCD_FSYNC:-0}" = 1 ] || ETCD_FSYNC=(--unsafe-no-fsync=true)
# The controller-manager's and the scheduler's clients may send JOBTRACE_CLIENT_QPS requests/s
# (default 500) in bursts of twice that, so that tests are not held up by their rate limits;
# JOBTRACE_CLIENT_QPS=default leaves both at their own defaults, as a cluster that doesn't tune
# them (pod_creation's runs at other limits, docs/benchmarks.md).
QPS=${JOBTRACE_CLIENT_QPS:-500}
CLIENT_LIMITS=()
if [ "$QPS" != default ]; then
  CLIENT_LIMITS=(--kube-api-qps="$QPS" --kube-api-burst=$((2 * QPS)))
fi

"$REPO/hack/build-bins.sh" k8s etcd kwok jaeger viewer

running=0
for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null && running=$((running + 1)); done
if [ "$running" = "${#COMPONENTS[@]}" ] &&
  "$BIN/kubectl" --kubeconfig "$CLUSTER/kubeconfig" get --raw /readyz >/dev/null 2>&1; then
  # jobtrace's own CRDs, as they are in this checkout.
  "$BIN/kubectl" --kubeconfig "$CLUSTER/kubeconfig" apply --server-side --force-conflicts -f "$REPO/crds/" >/dev/null
  [ "${JOBTRACE_REAL_NODE:-1}" = 0 ] || "$REPO/hack/node-up.sh"
  echo "cluster-up: already running; export KUBECONFIG=$CLUSTER/kubeconfig (trace UI: $TRACE_UI/traces)"
  exit 0
fi
if [ "$running" -gt 0 ]; then
  echo "cluster-up: found a partial cluster ($running of ${#COMPONENTS[@]} running); restarting it"
  "$REPO/hack/cluster-down.sh"
fi

for port in 8000 14317 14318 4317 4318 16686 2379 2380 "$APISERVER_PORT" 10257 10259 10247 20248; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "cluster-up: port 127.0.0.1:$port is already in use by a process this script did not start" >&2
    exit 1
  fi
done

mkdir -p "$CLUSTER/logs" "$CLUSTER/pids" "$CLUSTER/etcd"
P=$CLUSTER/pki
[ -f "$P/admin.kubeconfig" ] || "$REPO/hack/gen-pki.sh" "$P" "$APISERVER_PORT"
cp "$P/admin.kubeconfig" "$CLUSTER/kubeconfig"

await() { # await NAME PROBE...: polls PROBE until it succeeds, the process dies, or 120 s pass
  local name=$1 i
  shift
  for i in $(seq 1 240); do
    if "$@" >/dev/null 2>&1; then
      echo "cluster-up: $name ready"
      return 0
    fi
    # Not pid_of: right after the fork the process may not have exec'd its binary yet.
    if ! kill -0 "$(cat "$CLUSTER/pids/$name.pid")" 2>/dev/null; then
      echo "cluster-up: $name exited during start-up; its log is $CLUSTER/logs/$name.log:" >&2
      tail -n 40 "$CLUSTER/logs/$name.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "cluster-up: $name not ready after 120 s; its log is $CLUSTER/logs/$name.log:" >&2
  tail -n 40 "$CLUSTER/logs/$name.log" >&2
  exit 1
}
trap 'undo_on_failure cluster-up "$REPO/hack/cluster-down.sh"' EXIT

# The trace UI first, so that Jaeger's copy of each span finds it from the start.
start otel-desktop-viewer --host=127.0.0.1 --browser-port=8000 --grpc=14317 --http=14318 \
  --open-browser=false
await otel-desktop-viewer curl -sf "$TRACE_UI/traces"

start jaeger --config="$REPO/hack/cluster/jaeger.yaml"
await jaeger curl -sf http://127.0.0.1:16686/api/services

# etcd keeps in memory every raft entry since its last snapshot, and 5,000 before it: with the
# default of a snapshot every 10,000 entries, Jobs and pods of 1 MiB (each of their versions an
# entry) took it to 3 GB at 100 Jobs, and 400 of them exhausted the machine's 24 GiB. A snapshot
# every 1,000 entries, keeping 100 (a single member has no follower to catch up), bounds it to
# about 1.1 GB of such entries (1.35 GB measured after 2,000 puts of 1 MB).
start etcd --name=jobtrace --data-dir="$CLUSTER/etcd" \
  --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
  --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
  --initial-cluster=jobtrace=http://127.0.0.1:2380 --initial-cluster-state=new \
  "${ETCD_FSYNC[@]}" --quota-backend-bytes=4294967296 --log-level=warn \
  --snapshot-count=1000 --snapshot-catchup-entries=100
await etcd curl -sf http://127.0.0.1:2379/health

# TaintNodesByCondition is off: without a node-lifecycle controller, new nodes would keep their
# not-ready taint and pods would stay Pending. The apiserver listens on every address, so that
# the real node's pods reach it at 10.88.0.1 (there is no kube-proxy for the kubernetes
# Service's address); it calls webhooks and aggregated APIs at their Services' endpoints for the
# same reason (--enable-aggregator-routing).
start kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port="$APISERVER_PORT" --enable-aggregator-routing=true \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=Node,RBAC \
  --disable-admission-plugins=TaintNodesByCondition \
  --kubelet-client-certificate="$P/admin.crt" --kubelet-client-key="$P/admin.key" \
  --kubelet-preferred-address-types=InternalIP \
  --endpoint-reconciler-type=none --allow-privileged=true --profiling="$PROFILING" --v=1
await kube-apiserver curl -sf --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" \
  "https://127.0.0.1:$APISERVER_PORT/readyz"

start kube-controller-manager --kubeconfig="$CLUSTER/kubeconfig" \
  --controllers=job-controller,cronjob-controller,ttl-after-finished-controller,garbage-collector-controller,namespace-controller,deployment-controller,replicaset-controller,disruption-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,endpointslice-controller \
  --root-ca-file="$P/ca.crt" --leader-elect=false --bind-address=127.0.0.1 --secure-port=10257 \
  "${CLIENT_LIMITS[@]}" --concurrent-job-syncs=20 \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics --v=1
await kube-controller-manager curl -skf https://127.0.0.1:10257/healthz

start kube-scheduler --kubeconfig="$CLUSTER/kubeconfig" --leader-elect=false \
  "${CLIENT_LIMITS[@]}" \
  --bind-address=127.0.0.1 --secure-port=10259 \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics --v=1
await kube-scheduler curl -skf https://127.0.0.1:10259/healthz

start kwok --kubeconfig="$CLUSTER/kubeconfig" --config="$REPO/hack/cluster/kwok-stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-label-selector=type=kwok --node-ip=127.0.0.1 --cidr=10.244.0.0/16 \
  --node-lease-duration-seconds=40 --server-address=127.0.0.1:10247
await kwok curl -sf http://127.0.0.1:10247/healthz

kubectl=("$BIN/kubectl" --kubeconfig "$CLUSTER/kubeconfig")
for i in $(seq 0 $((NODES - 1))); do
  cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "10000"}
  capacity: {cpu: "64", memory: 256Gi, pods: "10000"}
---
NODE
done | "${kubectl[@]}" apply -f - >/dev/null
"${kubectl[@]}" wait --for=condition=Ready node --all --timeout=60s >/dev/null
echo "cluster-up: $NODES kwok nodes Ready"
"${kubectl[@]}" apply --server-side --force-conflicts -f "$REPO/crds/" >/dev/null
"${kubectl[@]}" wait --for=condition=Established crd --all --timeout=60s >/dev/null
echo "cluster-up: jobtrace's CRDs installed (crds/)"
# The real node (containerd and a kubelet), unless JOBTRACE_REAL_NODE=0: then the tests that need
# it fail.
[ "${JOBTRACE_REAL_NODE:-1}" = 0 ] || "$REPO/hack/node-up.sh"
echo "cluster-up: export KUBECONFIG=$CLUSTER/kubeconfig"
echo "cluster-up: traces: OTLP to 127.0.0.1:4317 (gRPC) or :4318 (HTTP); UI $TRACE_UI/traces," \
  "Jaeger's query API http://127.0.0.1:16686/api"
