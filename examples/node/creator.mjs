// Creates a Job that continues this program's trace: jobtrace reads the trace context and baggage
// written on the Job's annotations. Usage: node creator.mjs NAMESPACE JOB_PROGRAM [JOB_ARGS...]
import { BatchV1Api, KubeConfig } from '@kubernetes/client-node';
import { context, propagation, trace } from '@opentelemetry/api';

import { createdLine, endSpanAfter, reportJob } from './report-job.mjs';
import { startTracing } from './tracing.mjs';

const [namespace, ...command] = process.argv.slice(2);
if (command.length === 0) {
  console.error('usage: node creator.mjs NAMESPACE JOB_PROGRAM [JOB_ARGS...]');
  process.exit(2);
}

const provider = startTracing();
const kubeConfig = new KubeConfig();
kubeConfig.loadFromDefault(); // KUBECONFIG, ~/.kube/config or the pod's service account
const batch = kubeConfig.makeApiClient(BatchV1Api);

const span = trace.getTracer('report-creator').startSpan('create-report-job');
// docs:begin creator
const baggage = propagation.createBaggage({ tenant: { value: 'acme' } });
const ctx = propagation.setBaggage(trace.setSpan(context.active(), span), baggage);
const annotations = {};
propagation.inject(ctx, annotations); // traceparent, baggage (and tracestate when there is one)
const body = reportJob(command, annotations); // the annotations go on the Job's metadata
// docs:end creator
let job;
try {
  job = await endSpanAfter(span, () => batch.createNamespacedJob({ namespace, body }));
} finally {
  await provider.shutdown();
}
console.log(createdLine(namespace, job, span));
