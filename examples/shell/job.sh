#!/bin/sh
# A Job's step in shell that continues the trace jobtrace injected: otel-cli reads TRACEPARENT
# by itself and records the step as its child; the tenant comes from the creator's BAGGAGE.
set -eu
# The value of the baggage member $1 (as written: W3C baggage values may be percent-encoded).
baggage() { printf '%s' "${BAGGAGE:-}" | tr ',' '\n' | sed -n "s/^[ \t]*$1[ \t]*=[ \t]*\([^;]*\).*/\1/p"; }

# The script sh -c runs is single-quoted on purpose: that shell expands it, with otel-cli's TRACEPARENT.
# shellcheck disable=SC2016
# docs:begin job
otel-cli exec --service "${OTEL_SERVICE_NAME:-report-task}" --name generate-report \
  --attrs "report.tenant=$(baggage tenant)" -- \
  sh -c 'echo "generating the report in trace $(echo "$TRACEPARENT" | cut -d- -f2)"; sleep 1'
# docs:end job
