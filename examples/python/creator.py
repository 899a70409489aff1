"""Creates a Job in the current trace: the context goes on the Job's annotations.

Usage: creator.py NAMESPACE JOB_PROGRAM [JOB_ARGS...]

jobtrace reads the annotations `traceparent`, `tracestate` and `baggage` that the OpenTelemetry
propagators write, parents the Job's span on this program's span and hands the context to the
Job's containers as TRACEPARENT, TRACESTATE and BAGGAGE.
"""

import os
import sys

from kubernetes import client, config
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.trace import Span

import telemetry


def report_job(command: list[str], annotations: dict[str, str] | None = None) -> client.V1Job:
    """The report Job: one attempt of `command`, exporting its spans where this program does."""
    env = [
        client.V1EnvVar(name=name, value=os.environ[name])
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL")
    ]
    env.append(client.V1EnvVar(name="OTEL_SERVICE_NAME", value="report-task"))
    container = client.V1Container(
        name="report", image="example.invalid/report", command=command, env=env
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(generate_name="report-", annotations=annotations),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                # what the local pod runner of the tests executes
                metadata=client.V1ObjectMeta(labels={"sim.jobtrace.dev/runner": "true"}),
                spec=client.V1PodSpec(restart_policy="Never", containers=[container]),
            ),
        ),
    )


def create_report_job(namespace: str, command: list[str]) -> client.V1Job:
    """Creates the report Job as a child of the current span, with the current baggage."""
    # docs:begin creator
    annotations: dict[str, str] = {}
    # traceparent, tracestate and baggage of the current context, as the W3C headers spell them
    propagate.inject(carrier=annotations)
    job = report_job(command, annotations)
    return client.BatchV1Api().create_namespaced_job(namespace, job)
    # docs:end creator


def created_line(job: client.V1Job, span: Span) -> str:
    """The line a creator prints once the Job exists: its name and its trace."""
    trace_id = trace.format_trace_id(span.get_span_context().trace_id)
    return f"created Job {job.metadata.namespace}/{job.metadata.name} in trace {trace_id}"


def main() -> None:
    namespace, *command = sys.argv[1:]
    config.load_kube_config()
    provider = telemetry.start()
    tracer = trace.get_tracer("report-creator")

    # Baggage travels with the context: the Job's code reads the tenant from it.
    context.attach(baggage.set_baggage("tenant", "acme"))
    with tracer.start_as_current_span("create-report-job") as span:
        job = create_report_job(namespace, command)
    provider.shutdown()
    print(created_line(job, span))


if __name__ == "__main__":
    main()
