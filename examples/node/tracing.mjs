// The OpenTelemetry SDK as both programs set it up: W3C trace context and baggage as the
// propagators, spans batched to OTLP/HTTP at OTEL_EXPORTER_OTLP_ENDPOINT, the service named by
// OTEL_SERVICE_NAME.
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, detectResources, envDetector } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

// Registers the provider globally; call its shutdown() before exiting to flush the spans.
export function startTracing() {
  const provider = new NodeTracerProvider({
    // The default resource names no service: envDetector reads OTEL_SERVICE_NAME.
    resource: defaultResource().merge(detectResources({ detectors: [envDetector] })),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register({
    propagator: new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
  });
  return provider;
}
