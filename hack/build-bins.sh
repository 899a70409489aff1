#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy into
# ~/.cache/jobtrace/bin (or $JOBTRACE_CACHE/bin). Each binary is skipped when it was already built
# at the pinned version.
# Usage: hack/build-bins.sh [k8s] [etcd] [kwok] [helm] [jaeger] [viewer] [crds] [runtime]
set -euo pipefail
trap 'echo "build-bins: failed; see the output above" >&2' ERR
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.env
. "$HERE/versions.env"
CACHE=${JOBTRACE_CACHE:-$HOME/.cache/jobtrace}
BIN=$CACHE/bin
SRC=$CACHE/src
export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-buildvcs=false
mkdir -p "$BIN" "$SRC"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

built() { # built NAME VERSION: true when NAME exists and was built at VERSION
  [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ]
}
mark() { echo "$2" >"$BIN/.$1.version"; }
wrapper_module() { # wrapper_module DIR NAME: an empty module to hang requires and replaces on
  rm -rf "$1" && mkdir -p "$1" && printf 'module %s\n\ngo 1.26.0\n' "$2" >"$1/go.mod"
}

build_k8s() {
  local names="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet" n all=1
  for n in $names; do built "$n" "$K8S_VERSION" || all=0; done
  [ "$all" = 1 ] && return 0
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging,
  # which a dependent module ignores: map each one to its published version instead.
  local gomod staging godebug dir=$SRC/k8s-$K8S_VERSION
  gomod=$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  staging=$(go mod edit -json "$gomod" | python3 -c '
import json, sys
m = json.load(sys.stdin)
names = {r["Old"]["Path"] for r in m.get("Replace") or [] if r["New"]["Path"].startswith("./staging/")}
names |= {r["Path"] for r in m.get("Require") or [] if r["Path"].startswith("k8s.io/") and r["Version"] == "v0.0.0"}
print("\n".join(sorted(names)))')
  godebug=$(go mod edit -json "$gomod" | python3 -c '
import json, sys
print(" ".join("-godebug=%s=%s" % (g["Key"], g["Value"]) for g in json.load(sys.stdin).get("Godebug") or []))')
  echo "k8s: $(echo "$staging" | wc -l) staging modules at $STAGING_VERSION"
  wrapper_module "$dir" jobtrace.local/k8sbins
  cd "$dir"
  local args=() m
  for m in $staging; do args+=("-replace=$m=$m@$STAGING_VERSION"); done
  for n in $names; do args+=("-tool=k8s.io/kubernetes/cmd/$n"); done
  # shellcheck disable=SC2086
  go mod edit "-require=k8s.io/kubernetes@$K8S_VERSION" $godebug "${args[@]}"
  go mod tidy
  local v=k8s.io/component-base/version c=k8s.io/client-go/pkg/version
  go build -trimpath -ldflags "-s -w \
    -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$MINOR \
    -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z \
    -X $c.gitVersion=$K8S_VERSION -X $c.gitMajor=1 -X $c.gitMinor=$MINOR" -o "$BIN/" tool
  for n in $names; do mark "$n" "$K8S_VERSION"; done
}

build_etcd() {
  built etcd "$ETCD_VERSION" && return 0
  # `go install` refuses etcd's server module (its go.mod has replace directives).
  local dir=$SRC/etcd-$ETCD_VERSION
  wrapper_module "$dir" jobtrace.local/etcdbin
  cd "$dir"
  go mod edit "-require=go.etcd.io/etcd/server/v3@$ETCD_VERSION" -tool=go.etcd.io/etcd/server/v3
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  mark etcd "$ETCD_VERSION"
}

build_kwok() {
  built kwok "$KWOK_VERSION" && return 0
  (cd /tmp && GOBIN=$BIN go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  mark kwok "$KWOK_VERSION"
}

build_helm() {
  built helm "$HELM_VERSION" && return 0
  # Without these -X flags helm template/lint assume Kubernetes 1.20.
  local h=helm.sh/helm/v3
  (cd /tmp && GOBIN=$BIN go install -trimpath -ldflags "-s -w \
    -X $h/internal/version.version=$HELM_VERSION \
    -X $h/pkg/chartutil.k8sVersionMajor=1 -X $h/pkg/chartutil.k8sVersionMinor=$MINOR \
    -X $h/pkg/lint/rules.k8sVersionMajor=1 -X $h/pkg/lint/rules.k8sVersionMinor=$MINOR" \
    "$h/cmd/helm@$HELM_VERSION")
  mark helm "$HELM_VERSION"
}

build_jaeger() {
  built jaeger "$JAEGER_VERSION" && return 0
  local dir=$SRC/jaeger-$JAEGER_VERSION
  wrapper_module "$dir" jobtrace.local/jaegerbin
  cd "$dir"
  go mod edit "-require=github.com/jaegertracing/jaeger@$JAEGER_VERSION" \
    -tool=github.com/jaegertracing/jaeger/cmd/jaeger
  # The checksum database has no entry for some of Jaeger's collector dependencies, although the
  # module proxy serves them: start from the checksums Jaeger itself records in its go.sum.
  local jaeger_dir
  jaeger_dir=$(cd /tmp && go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$jaeger_dir/go.sum" go.sum
  chmod u+w go.sum
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$BIN/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
  mark jaeger "$JAEGER_VERSION"
}

# The trace UI: otel-desktop-viewer, an OpenTelemetry Collector build with DuckDB as its store
# and its built web frontend embedded. `go install pkg@version` needs the module's version list,
# which the proxy does not serve for it; a tools module takes the pinned version directly. DuckDB
# comes as a static C++ library in a module of its own (about 570 MB of module cache), hence cgo.
build_viewer() {
  built otel-desktop-viewer "$OTEL_DESKTOP_VIEWER_VERSION" && return 0
  local dir=$SRC/otel-desktop-viewer-$OTEL_DESKTOP_VIEWER_VERSION
  wrapper_module "$dir" jobtrace.local/viewerbin
  cd "$dir"
  go get -tool "github.com/CtrlSpice/otel-desktop-viewer@$OTEL_DESKTOP_VIEWER_VERSION"
  CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${OTEL_DESKTOP_VIEWER_VERSION#v}" \
    -o "$BIN/otel-desktop-viewer" github.com/CtrlSpice/otel-desktop-viewer
  mark otel-desktop-viewer "$OTEL_DESKTOP_VIEWER_VERSION"
}

# The real node's container runtime: containerd 2 with its runc shim and its client (Debian's
# containerd 1.6 is older than Kubernetes 1.37 supports), and crictl to look at the node's pods
# when debugging. runc itself is Debian's (hack/node-up.sh installs it).
build_runtime() {
  built containerd "$CONTAINERD_VERSION" && built crictl "$CRICTL_VERSION" && return 0
  local c=github.com/containerd/containerd/v2
  (cd /tmp && GOBIN=$BIN go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $c/version.Version=$CONTAINERD_VERSION" \
    "$c/cmd/containerd@$CONTAINERD_VERSION" "$c/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "$c/cmd/ctr@$CONTAINERD_VERSION")
  (cd /tmp && GOBIN=$BIN go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION")
  mark containerd "$CONTAINERD_VERSION"
  mark crictl "$CRICTL_VERSION"
}

# Not binaries: the CRDs of projects the chart can create objects for, taken from their modules,
# so that the end-to-end tests dry-run those objects against the real schemas.
crds_from_module() { # crds_from_module NAME MODULE VERSION FILE...
  local name=$1 module=$2 version=$3 out=$CACHE/crds/$1 module_dir file
  shift 3
  [ "$(cat "$out/.version" 2>/dev/null)" = "$version" ] && return 0
  module_dir=$(cd /tmp && go mod download -json "$module@$version" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$out" && mkdir -p "$out"
  for file in "$@"; do cp "$module_dir/$file" "$out/"; done
  echo "$version" >"$out/.version"
  echo "crds: $name $version"
}

build_crds() {
  crds_from_module cert-manager github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION" \
    deploy/crds/cert-manager.io_certificates.yaml deploy/crds/cert-manager.io_issuers.yaml \
    deploy/crds/cert-manager.io_clusterissuers.yaml deploy/crds/cert-manager.io_certificaterequests.yaml
  crds_from_module prometheus-operator github.com/prometheus-operator/prometheus-operator \
    "$PROMETHEUS_OPERATOR_VERSION" \
    example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
    example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(etcd kwok helm jaeger viewer crds k8s runtime)
for t in "${targets[@]}"; do
  start=$(date +%s)
  # A subshell keeps each build's `cd` to itself; `set -e` still applies inside it because its
  # status is not tested here.
  ( "build_$t" )
  echo "build-bins: $t ready ($(( $(date +%s) - start ))s)"
done
