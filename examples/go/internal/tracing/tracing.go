// Package tracing sets up the OpenTelemetry SDK the same way in every example program.
package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Start installs the global tracer provider and propagator: spans go over OTLP/HTTP where
// OTEL_EXPORTER_OTLP_ENDPOINT says, under the service of OTEL_SERVICE_NAME, and contexts travel
// as W3C traceparent, tracestate and baggage. Shut the provider down before exiting: that
// flushes the spans still batched.
func Start(ctx context.Context) (*sdktrace.TracerProvider, error) {
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("create the OTLP exporter: %w", err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter))
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{},
	))
	return provider, nil
}
