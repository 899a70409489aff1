#!/usr/bin/env bash
# The demo, as far as it goes today: a local control plane with Jaeger, ready for kubectl.
# The traced-Job story arrives with the webhook and the reconciler.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
"$REPO/hack/cluster-up.sh"
cat <<TEXT

The local control plane is up (real kube-apiserver, controller-manager, scheduler and etcd;
kwok plays the nodes). Try it:

  export KUBECONFIG=$CLUSTER/kubeconfig
  $BIN/kubectl get nodes
  $BIN/kubectl create job hello --image=example.invalid/hello
  $BIN/kubectl wait --for=condition=Complete job/hello

Jaeger's UI is at http://127.0.0.1:16686. Stop everything with: make cluster-down
TEXT
