#!/usr/bin/env bash
# Stops the real node that hack/node-up.sh started and leaves nothing of it behind: its pods'
# sandboxes and containers, the kubelet, containerd and its shims, the mounts under the node's
# directory, the pods' cgroups, the CNI bridge, and the kernel settings the kubelet and the bridge
# changed. Logs stay in target/cluster/logs. Safe to run when no node is up.
set -uo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

stop() { # stop NAME: SIGTERM, then SIGKILL after 10 s
  local pid
  pid=$(pid_of "$1") || { rm -f "$CLUSTER/pids/$1.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null && echo "node-down: $1 did not stop on SIGTERM; killed"
  rm -f "$CLUSTER/pids/$1.pid"
  echo "node-down: stopped $1"
}

# The kubelet first, so that it starts nothing again; then every pod through the runtime.
stop kubelet
if pid_of containerd >/dev/null; then
  crictl=("$BIN/crictl" --config "$NODE_DIR/crictl.yaml")
  mapfile -t sandboxes < <("${crictl[@]}" pods -q 2>/dev/null)
  if [ ${#sandboxes[@]} -gt 0 ]; then
    "${crictl[@]}" stopp "${sandboxes[@]}" >/dev/null 2>&1
    "${crictl[@]}" rmp -f "${sandboxes[@]}" >/dev/null 2>&1
    echo "node-down: removed ${#sandboxes[@]} pod sandboxes"
  fi
fi
stop containerd
# The shims of containers that outlived containerd (they hold the node's socket path).
for pid in $(pgrep -f "containerd-shim-runc-v2 .*$NODE_DIR" 2>/dev/null); do
  kill -KILL "$pid" 2>/dev/null && echo "node-down: killed a leftover shim ($pid)"
done
runc --root "$NODE_DIR/run/runc" list -q 2>/dev/null | while read -r id; do
  runc --root "$NODE_DIR/run/runc" delete --force "$id" 2>/dev/null
done

# Mounts under the node's directory, deepest first (overlay roots, netns, projected volumes, the
# kubelet's own bind of its root directory).
if [ -d "$NODE_DIR" ]; then
  awk -v d="$NODE_DIR" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts |
    sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
fi
if [ -f "$NODE_DIR/before" ]; then
  if ! grep -q run-netns-mounted "$NODE_DIR/before" && mountpoint -q /run/netns &&
    [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null && rmdir /run/netns 2>/dev/null
  fi
  if ! grep -q run-containerd-existed "$NODE_DIR/before"; then
    find /run/containerd -depth -type d -empty -delete 2>/dev/null
  fi
  # The CNI plugins' result cache (empty once every sandbox is gone).
  if ! grep -q var-lib-cni-existed "$NODE_DIR/before"; then
    find /var/lib/cni -depth -type d -empty -delete 2>/dev/null
  fi
fi

# The pods' cgroups (the kubelet's cgroupfs driver puts them under /kubepods), deepest first.
for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} + 2>/dev/null
done

ip link show jobtrace0 >/dev/null 2>&1 && ip link del jobtrace0 && echo "node-down: removed the bridge jobtrace0"

if [ -f "$NODE_DIR/sysctls" ]; then
  while IFS='=' read -r key value; do
    [ "$(sysctl -n "$key")" = "$value" ] || sysctl -qw "$key=$value"
  done <"$NODE_DIR/sysctls"
fi

# Nothing may be left: say what is, and fail.
left=()
for name in kubelet containerd; do pid_of "$name" >/dev/null && left+=("the $name process"); done
pgrep -f "$NODE_DIR" >/dev/null && left+=("processes: $(pgrep -af "$NODE_DIR" | head -3 | tr '\n' ';')")
grep -q " $NODE_DIR" /proc/self/mounts && left+=("mounts under $NODE_DIR")
compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null && left+=("cgroups: $(compgen -G "/sys/fs/cgroup/*/kubepods" | head -3 | tr '\n' ' ')")
ip link show jobtrace0 >/dev/null 2>&1 && left+=("the bridge jobtrace0")
if [ -f "$NODE_DIR/sysctls" ]; then
  while IFS='=' read -r key value; do
    [ "$(sysctl -n "$key")" = "$value" ] || left+=("$key=$(sysctl -n "$key") (was $value)")
  done <"$NODE_DIR/sysctls"
fi
rm -rf "$NODE_DIR"
if [ ${#left[@]} -gt 0 ]; then
  printf 'node-down: left behind: %s\n' "${left[@]}" >&2
  exit 1
fi
