"""The Job's program: continues the creator's trace from TRACEPARENT, TRACESTATE and BAGGAGE.

jobtrace sets those variables on the Job's containers; the OpenTelemetry propagators read them
through EnvironmentGetter, the carrier of the "environment variables as context propagation
carriers" specification (opentelemetry-api 1.40 and later).
"""

import os

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.propagators._envcarrier import EnvironmentGetter

import telemetry


def main() -> None:
    provider = telemetry.start()
    tracer = trace.get_tracer("report-task")

    # docs:begin job
    # TRACEPARENT, TRACESTATE and BAGGAGE become the current context: the parent and the baggage.
    context.attach(propagate.extract(carrier=os.environ, getter=EnvironmentGetter()))
    with tracer.start_as_current_span("generate-report") as span:
        tenant = baggage.get_baggage("tenant") or "unknown"
        span.set_attribute("report.tenant", tenant)
        print(f"report generated for tenant {tenant}")
    # docs:end job
    provider.shutdown()


if __name__ == "__main__":
    main()
