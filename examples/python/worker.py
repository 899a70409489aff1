"""Service B of the queue example: takes a report request off the Redis list and creates its Job.

Usage: worker.py NAMESPACE JOB_PROGRAM [JOB_ARGS...], with REDIS_URL and the OTEL_* variables.

It waits up to a minute for one request, continues the request's trace from the message and
creates the Job as creator.py does, so the Job's span is the child of this worker's span.
"""

import json
import os
import sys

import redis
from kubernetes import config
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind

import telemetry
from creator import create_report_job, created_line
from producer import QUEUE


def main() -> None:
    namespace, *command = sys.argv[1:]
    config.load_kube_config()
    provider = telemetry.start()
    tracer = trace.get_tracer("report-worker")
    queue = redis.Redis.from_url(os.environ["REDIS_URL"])

    popped = queue.blpop([QUEUE], timeout=60)
    if popped is None:
        sys.exit(f"no report request on {QUEUE} within a minute")
    message = json.loads(popped[1])
    # docs:begin worker
    # Attached, the message's context makes the producer's span the parent and its baggage (the
    # tenant) current, so that the Job's annotations carry both on.
    context.attach(propagate.extract(carrier=message["context"]))
    with tracer.start_as_current_span("create-report-job", kind=SpanKind.CONSUMER) as span:
        span.set_attribute("report.name", message["report"])
        job = create_report_job(namespace, command)
    # docs:end worker
    provider.shutdown()
    print(created_line(job, span))


if __name__ == "__main__":
    main()
