"""Service A of the queue example: asks for a report with a message on a Redis list.

Usage: producer.py REPORT, with REDIS_URL (redis://HOST:PORT) and the OTEL_* variables.

The message carries the trace context next to its payload, so that the worker (worker.py)
that takes it continues this trace, whenever it runs.
"""

import json
import os
import sys

import redis
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.trace import SpanKind

import telemetry

QUEUE = "report-requests"


def main() -> None:
    (report,) = sys.argv[1:]
    provider = telemetry.start()
    tracer = trace.get_tracer("report-producer")
    queue = redis.Redis.from_url(os.environ["REDIS_URL"])

    context.attach(baggage.set_baggage("tenant", "acme"))
    with tracer.start_as_current_span("publish-report-request", kind=SpanKind.PRODUCER) as span:
        span.set_attribute("report.name", report)
        # docs:begin producer
        carrier: dict[str, str] = {}
        propagate.inject(carrier=carrier)  # traceparent, tracestate, baggage
        message = {"report": report, "context": carrier}
        queue.rpush(QUEUE, json.dumps(message))
        # docs:end producer
    provider.shutdown()
    trace_id = trace.format_trace_id(span.get_span_context().trace_id)
    print(f"published report request {report} in trace {trace_id}")


if __name__ == "__main__":
    main()
