// What both creators share: the report Job they create (the pod template the local pod runner of
// jobtrace's tests picks up, the OTLP exporter's variables passed on to the Job's program), the
// create request ending their span, and the line they print.
import { SpanStatusCode } from '@opentelemetry/api';

// The Job running `command`, with `annotations` (when given) on its metadata.
export function reportJob(command, annotations) {
  const env = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_PROTOCOL']
    .filter((name) => process.env[name] !== undefined)
    .map((name) => ({ name, value: process.env[name] }));
  return {
    metadata: { generateName: 'report-', annotations },
    spec: {
      backoffLimit: 0,
      template: {
        // The label hands the pod to the local pod runner of jobtrace's tests.
        metadata: { labels: { 'sim.jobtrace.dev/runner': 'true' } },
        spec: {
          restartPolicy: 'Never',
          containers: [
            {
              name: 'report',
              image: 'example.invalid/report:1',
              command,
              env: [...env, { name: 'OTEL_SERVICE_NAME', value: 'report-task' }],
            },
          ],
        },
      },
    },
  };
}

// Awaits `request()` and then ends `span`; a failure is recorded on the span, which is marked as
// an error, and thrown again.
export async function endSpanAfter(span, request) {
  try {
    return await request();
  } catch (error) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    throw error;
  } finally {
    span.end();
  }
}

// The line a creator prints once the Job exists: its name and its trace.
export function createdLine(namespace, job, span) {
  return `created Job ${namespace}/${job.metadata.name} in trace ${span.spanContext().traceId}`;
}
