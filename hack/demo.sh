#!/usr/bin/env bash
# The demo: a local control plane with its real node, Jaeger and the trace UI, and jobtrace (webhook
# and controller); then a client starts a span and creates an annotated Job whose first attempt
# fails and whose retry succeeds, each in a container on the real node, and whose own code records
# a span from TRACEPARENT. Prints the
# trace as a tree and its address in the trace UI with `jobtrace trace`. In a terminal it waits for
# Enter before cleaning up, so the trace can be opened there.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO"

cluster_was_up=0
"$BIN/kubectl" --kubeconfig "$CLUSTER/kubeconfig" get --raw /readyz >/dev/null 2>&1 && cluster_was_up=1
hack/cluster-up.sh
export KUBECONFIG=$CLUSTER/kubeconfig
kubectl=("$BIN/kubectl")
# The client library's creator, and its Job program in an image for the real node.
cargo build --locked --workspace --bins --examples
hack/task-image.sh

P=$CLUSTER/pki
demo_pids=()
cleanup() {
  echo "demo: cleaning up"
  for pid in "${demo_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "${kubectl[@]}" delete mutatingwebhookconfiguration jobtrace --ignore-not-found >/dev/null 2>&1 || true
  [ "$cluster_was_up" = 1 ] || hack/cluster-down.sh >/dev/null
}
trap cleanup EXIT

OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 target/debug/jobtrace run \
  --listen 127.0.0.1:8443 --metrics-listen 127.0.0.1:8080 \
  --tls-cert-file "$P/webhook.crt" --tls-key-file "$P/webhook.key" \
  --lease-namespace default >"$CLUSTER/logs/demo-jobtrace.log" 2>&1 &
demo_pids+=($!)
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8080/readyz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:8080/readyz >/dev/null || { echo "demo: jobtrace did not start; see $CLUSTER/logs/demo-jobtrace.log" >&2; exit 1; }
target/debug/jobtrace webhook-config --url https://127.0.0.1:8443 --ca-file "$P/ca.crt" |
  "${kubectl[@]}" apply -f - >/dev/null
"${kubectl[@]}" create namespace demo --dry-run=client -o yaml | "${kubectl[@]}" apply -f - >/dev/null

# The apiserver picks the webhook configuration up asynchronously: wait until it mutates.
probe='{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"probe","annotations":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"x"}]}}}}'
for _ in $(seq 1 50); do
  echo "$probe" | "${kubectl[@]}" create -n demo --dry-run=server -o jsonpath='{.metadata.labels}' -f - 2>/dev/null |
    grep -q jobtrace.dev/traced && break
  sleep 0.2
done

echo
echo "demo: jobtrace is running (logs: $CLUSTER/logs/demo-jobtrace.log); creating a traced Job"
# The Job's first attempt fails (the marker doesn't exist yet), the retry succeeds. Its pods see
# the host's /tmp, where the marker is.
marker=$(mktemp -u /tmp/jobtrace-demo.XXXXXX)
target/debug/examples/create-job --wait --backoff-limit 2 --image localhost/traced-task:dev demo \
  /traced-task --fail-first "$marker" |
  tee "$CLUSTER/logs/demo-create-job.log"
rm -f "$marker"
job=$(sed -n 's|^created Job demo/\([a-z0-9-]*\) in trace [0-9a-f]\{32\}$|\1|p' "$CLUSTER/logs/demo-create-job.log")
echo
echo "demo: its trace from Jaeger, and its page in the trace UI (jobtrace trace -n demo $job):"
echo
# Right after the Job finished its spans may still be on their way: --wait waits for the Job span.
target/debug/jobtrace trace -n demo "$job" --query-url http://127.0.0.1:16686 --wait 30s \
  --url-template "$TRACE_UI/traces/{trace_id}"
echo
echo "What ran for real: kube-apiserver, controller-manager (job controller: the retry), scheduler,"
echo "etcd, Jaeger, the trace UI, jobtrace, and the Job's two pods, each a container the kubelet of"
echo "the node $NODE_NAME started on containerd. The local setup's other nodes are simulated (kwok)."
echo
if [ -t 0 ]; then
  read -r -p "demo: open the trace's page in a browser, then press Enter to stop and clean up. " _
fi
