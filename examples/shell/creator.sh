#!/bin/sh
# Creating a traced Job from a shell step (a CI job, a cron script): `otel-cli exec` runs the step
# in a span of its own and hands its context to it as TRACEPARENT; `jobtrace stamp` writes that
# context (and BAGGAGE) on the Job's manifest; kubectl creates it.
#
# Usage: creator.sh NAMESPACE JOB_PROGRAM [JOB_ARGS...]   (the Job runs JOB_PROGRAM JOB_ARGS...)
# Needs otel-cli, jobtrace and kubectl on PATH; the collector from OTEL_EXPORTER_OTLP_ENDPOINT.
set -eu
if [ $# -lt 2 ]; then
  echo "usage: creator.sh NAMESPACE JOB_PROGRAM [JOB_ARGS...]" >&2
  exit 2
fi
namespace=$1
shift

# A JSON string of $1 (enough for paths and plain arguments).
json() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
command=""
for arg in "$@"; do command="$command${command:+, }$(json "$arg")"; done

manifest=$(mktemp)
trap 'rm -f "$manifest"' EXIT
cat >"$manifest" <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  generateName: report-
spec:
  backoffLimit: 0
  template:
    metadata:
      # The local setup's pod runner (crates/jobtrace-testkit/src/bin/pod-runner.rs) runs these pods' commands.
      labels: { sim.jobtrace.dev/runner: "true" }
    spec:
      restartPolicy: Never
      containers:
        - name: report
          image: example.invalid/report:1
          command: [$command]
          env:
            - { name: OTEL_SERVICE_NAME, value: report-task }
            - { name: OTEL_EXPORTER_OTLP_ENDPOINT, value: "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" }
            - { name: PATH, value: "$PATH" }
YAML

export BAGGAGE=tenant=acme
# The script sh -c runs is single-quoted on purpose: that shell expands it, with otel-cli's TRACEPARENT.
# shellcheck disable=SC2016
# docs:begin creator
otel-cli exec --service "${OTEL_SERVICE_NAME:-report-api}" --name create-report-job --kind internal -- \
  sh -c 'job=$(jobtrace stamp --require "$1" | kubectl create -n "$2" -o name -f -) &&
    echo "created Job $2/${job#job.batch/} in trace $(echo "$TRACEPARENT" | cut -d- -f2)"' \
  sh "$manifest" "$namespace"
# docs:end creator
