"""Creates a Job in the current trace with no propagation code, under opentelemetry-instrument.

Usage: opentelemetry-instrument python creator_auto.py NAMESPACE JOB_PROGRAM [JOB_ARGS...]

The urllib3 instrumentation sends the context as `traceparent` and `baggage` headers of the
Kubernetes client's create request, under an HTTP client span; jobtrace, run with
--request-context, parents the Job's span on that span. The Job carries no annotations.
"""

import sys

from kubernetes import client, config
from opentelemetry import baggage, context, trace

from creator import created_line, report_job


def main() -> None:
    namespace, *command = sys.argv[1:]
    config.load_kube_config()
    tracer = trace.get_tracer("report-creator")

    # The instrumentation sends the baggage as a header too: the Job's code reads the tenant.
    context.attach(baggage.set_baggage("tenant", "acme"))
    # docs:begin creator
    # opentelemetry-instrument set up the SDK and instrumented urllib3: a span is all it takes.
    with tracer.start_as_current_span("create-report-job") as span:
        job = client.BatchV1Api().create_namespaced_job(namespace, report_job(command))
    # docs:end creator
    trace.get_tracer_provider().force_flush()
    print(created_line(job, span))


if __name__ == "__main__":
    main()
