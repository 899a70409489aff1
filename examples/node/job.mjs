// The Job's program: continues the creator's trace from the TRACEPARENT, TRACESTATE and BAGGAGE
// variables jobtrace set on its container, and reads the creator's baggage.
import { context, propagation, trace } from '@opentelemetry/api';
import { EnvironmentGetter } from '@opentelemetry/propagator-env-carrier';

import { startTracing } from './tracing.mjs';

const provider = startTracing();
// docs:begin job
// EnvironmentGetter reads process.env itself: no carrier is passed.
const parent = propagation.extract(context.active(), undefined, new EnvironmentGetter());
const tenant = propagation.getBaggage(parent)?.getEntry('tenant')?.value;
const attributes = { 'report.tenant': tenant };
const span = trace.getTracer('report-task').startSpan('generate-report', { attributes }, parent);
// docs:end job
try {
  // The work runs in the span's context: spans it starts are the span's children.
  await context.with(trace.setSpan(parent, span), generateReport, undefined, tenant);
} finally {
  span.end();
  await provider.shutdown();
}

async function generateReport(tenant) {
  console.log(`generating the report of tenant ${tenant}`);
}
