// Creates the report Job in the current trace with no propagation code and no SDK setup: run
// under the OpenTelemetry zero-code setup for Node.js,
//   node --require @opentelemetry/auto-instrumentations-node/register creator-auto.mjs \
//     NAMESPACE JOB_PROGRAM [JOB_ARGS...]
// The register module starts the SDK from the OTEL_* variables and instruments the http and
// https modules, which the Kubernetes client's fetch (node-fetch) sends its requests with: the
// create request gets an HTTP client span, a child of this program's span, and carries the
// context and the baggage as traceparent and baggage headers. jobtrace, run with
// --request-context, parents the Job's span on that client span. The Job carries no annotations.
import { BatchV1Api, KubeConfig } from '@kubernetes/client-node';
import { context, propagation, trace } from '@opentelemetry/api';

import { createdLine, endSpanAfter, reportJob } from './report-job.mjs';

const [namespace, ...command] = process.argv.slice(2);
if (command.length === 0) {
  console.error(
    'usage: node --require @opentelemetry/auto-instrumentations-node/register creator-auto.mjs ' +
      'NAMESPACE JOB_PROGRAM [JOB_ARGS...]',
  );
  process.exit(2);
}

const kubeConfig = new KubeConfig();
kubeConfig.loadFromDefault(); // KUBECONFIG, ~/.kube/config or the pod's service account
const batch = kubeConfig.makeApiClient(BatchV1Api);
const tracer = trace.getTracer('report-creator');

// The instrumentation sends the baggage as a header too: the Job's code reads the tenant.
const baggage = propagation.createBaggage({ tenant: { value: 'acme' } });
// docs:begin creator
// The register module set up the SDK and instrumented https: a current span, with the baggage
// in its context, is all it takes.
const ctx = propagation.setBaggage(context.active(), baggage);
const { job, span } = await tracer.startActiveSpan('create-report-job', {}, ctx, async (span) => {
  const body = reportJob(command);
  const job = await endSpanAfter(span, () => batch.createNamespacedJob({ namespace, body }));
  return { job, span };
});
// docs:end creator
// The register module flushes the spans when the process exits (on beforeExit).
console.log(createdLine(namespace, job, span));
