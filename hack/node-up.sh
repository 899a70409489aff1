#!/usr/bin/env bash
# Starts the local control plane's real node beside the kwok nodes: containerd 2 with Debian's
# runc, a CNI bridge for the pods, and a kubelet of the control plane's version, registered as the
# Node real-node. The Node carries the label type=real and the taint type=real:NoSchedule, so only
# pods that select and tolerate it run there, and the simulated nodes go on serving the load tests.
# The images the node runs are built here, without a registry (hack/node-image.sh): the sandbox's
# pause and a busybox. Run by hack/cluster-up.sh; hack/node-down.sh undoes all of it.
#
# What this machine needs, and why (docs/development.md, "The real node"): the host has cgroup v1
# (failCgroupV1: false); the process may not lower an OOM score (restrict_oom_score_adj, oomScoreAdj
# 0); there is no iptables (no kube-proxy: pods reach the host's services through the host's own
# addresses, or run on the host network); the node's address is this machine's interface address,
# as the kubelet refuses a loopback one.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
P=$CLUSTER/pki
kubectl=("$BIN/kubectl" --kubeconfig "$CLUSTER/kubeconfig")
# The pods' network: a bridge on the host, outside kwok's pod range (10.244.0.0/16) and the
# Service range (10.0.0.0/24).
BRIDGE=jobtrace0
POD_SUBNET=10.88.0.0/24
KUBELET_PORT=20250

if pid_of containerd >/dev/null && pid_of kubelet >/dev/null &&
  "${kubectl[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s >/dev/null 2>&1; then
  echo "node-up: $NODE_NAME already running"
  exit 0
fi
if pid_of containerd >/dev/null || pid_of kubelet >/dev/null; then
  echo "node-up: found a partial node; stopping it first"
  "$REPO/hack/node-down.sh"
fi

"$REPO/hack/build-bins.sh" k8s runtime
debian_install node-up runc containernetworking-plugins umoci busybox-static iproute2 gcc libc6-dev
# The node's address: this machine's own (first global IPv4 of an interface that is up).
NODE_IP=$(ip -4 -o addr show scope global up | awk -v b="$BRIDGE" '$2 != b {sub("/.*", "", $4); print $4; exit}')
if [ -z "$NODE_IP" ]; then
  echo "node-up: this machine has no global IPv4 address for the node (the kubelet refuses loopback)" >&2
  exit 1
fi

rm -rf "$NODE_DIR"
mkdir -p "$NODE_DIR"/{run,root,cni/net.d,cni/ipam,kubelet,images} "$CLUSTER/logs" "$CLUSTER/pids"
# What node-down.sh restores: the kernel settings the kubelet and the CNI bridge change
# (the kubelet sets kernel.panic, kernel.panic_on_oops and vm.overcommit_memory at start; the
# bridge turns forwarding on), and whether /run/netns and /run/containerd existed before.
for key in kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward; do
  echo "$key=$(sysctl -n "$key")"
done >"$NODE_DIR/sysctls"
{
  mountpoint -q /run/netns && echo "run-netns-mounted"
  [ -e /run/containerd ] && echo "run-containerd-existed"
  [ -e /var/lib/cni ] && echo "var-lib-cni-existed"
} >"$NODE_DIR/before" || true

trap 'undo_on_failure node-up "$REPO/hack/node-down.sh"' EXIT


# containerd: its state under the node's directory; the runc shim it starts is the one built with
# it (PATH), runc is Debian's.
cat >"$NODE_DIR/containerd.toml" <<TOML
version = 3
root = "$NODE_DIR/root"
state = "$NODE_DIR/run"
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'localhost/pause:jobtrace'
  [plugins.'io.containerd.cri.v1.runtime']
    # This process may not lower an OOM score (no CAP_SYS_RESOURCE): containers keep containerd's.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$(command -v runc)'
          Root = '$NODE_DIR/run/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '$NODE_DIR/cni/net.d'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
  [plugins.'io.containerd.internal.v1.opt']
    path = '$NODE_DIR/opt'
TOML
cat >"$NODE_DIR/cni/net.d/10-jobtrace.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "jobtrace",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
JSON
PATH=$BIN:$PATH start containerd --config "$NODE_DIR/containerd.toml" --log-level warn
for _ in $(seq 1 120); do
  "$BIN/ctr" --address "$NODE_SOCK" version >/dev/null 2>&1 && break
  pid_of containerd >/dev/null || break
  sleep 0.25
done
if ! "$BIN/ctr" --address "$NODE_SOCK" version >/dev/null 2>&1; then
  echo "node-up: containerd did not start; its log is $CLUSTER/logs/containerd.log:" >&2
  tail -n 40 "$CLUSTER/logs/containerd.log" >&2
  exit 1
fi
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$NODE_SOCK" "$NODE_SOCK" \
  >"$NODE_DIR/crictl.yaml"
echo "node-up: containerd $CONTAINERD_VERSION ready (crictl --config $NODE_DIR/crictl.yaml ps)"

"$REPO/hack/node-images.sh"
# The images of the checkout built before (hack/jobtrace-image.sh, hack/task-image.sh), as they
# were: the containerd of a previous run is gone, and they are rebuilt only by `make e2e`.
for layout in "$REPO"/target/image/*.oci.tar; do
  [ -f "$layout" ] || continue
  node_import "localhost/$(basename "$layout" .oci.tar)" "$layout"
  echo "node-up: $(basename "$layout" .oci.tar) imported again from $layout"
done

# The kubelet's identity: a client certificate of the group system:nodes, as the Node authorizer
# expects. The apiserver reaches the kubelet (logs, exec) with its own client certificate, which
# the kubelet checks against the cluster's CA, then asks the apiserver whether it may (webhook).
if [ ! -f "$P/node.crt" ]; then
  openssl req -newkey rsa:2048 -nodes -keyout "$P/node.key" -out "$P/node.csr" \
    -subj "/O=system:nodes/CN=system:node:$NODE_NAME" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$P/node.ext"
  openssl x509 -req -in "$P/node.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$P/node.ext" -out "$P/node.crt" 2>/dev/null
  rm -f "$P/node.csr" "$P/node.ext"
  chmod 600 "$P/node.key"
fi
sed -e "s|client-certificate-data: .*|client-certificate: $P/node.crt|" \
  -e "s|client-key-data: .*|client-key: $P/node.key|" "$P/admin.kubeconfig" >"$NODE_DIR/kubeconfig"

cat >"$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The host has cgroup v1, which the kubelet refuses unless told otherwise; there is no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$NODE_SOCK
imageServiceEndpoint: unix://$NODE_SOCK
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 20248
# Lowering its own OOM score needs CAP_SYS_RESOURCE, which this process lacks.
oomScoreAdj: 0
protectKernelDefaults: false
makeIPTablesUtilChains: false
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
registerNode: true
registerWithTaints: [{key: type, value: real, effect: NoSchedule}]
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# The node's images were built here and can't be pulled again: never collect them, and don't
# evict pods over a shared machine's disk or memory.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
nodeStatusReportFrequency: 10s
YAML
start kubelet --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$NODE_DIR/kubeconfig" \
  --root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/kubelet/pki" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --node-labels=type=real --v=1
for _ in $(seq 1 240); do
  "${kubectl[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s >/dev/null 2>&1 && break
  if ! pid_of kubelet >/dev/null; then
    echo "node-up: the kubelet exited during start-up; its log is $CLUSTER/logs/kubelet.log:" >&2
    tail -n 40 "$CLUSTER/logs/kubelet.log" >&2
    exit 1
  fi
  sleep 0.5
done
if ! "${kubectl[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s >/dev/null 2>&1; then
  echo "node-up: node $NODE_NAME not Ready after 120 s; the kubelet's log is $CLUSTER/logs/kubelet.log:" >&2
  tail -n 40 "$CLUSTER/logs/kubelet.log" >&2
  exit 1
fi
echo "node-up: node $NODE_NAME Ready at $NODE_IP (kubelet $K8S_VERSION; pods select type=real and tolerate its taint)"
