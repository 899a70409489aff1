// Command job is the report Job's program: it continues the creator's trace from the
// TRACEPARENT, TRACESTATE and BAGGAGE variables that jobtrace set on its container.
package main

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/contrib/propagators/envcar"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"

	"jobtrace.dev/examples/go/internal/tracing"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "job:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	provider, err := tracing.Start(ctx)
	if err != nil {
		return err
	}
	// docs:begin job
	// The propagators read TRACEPARENT, TRACESTATE and BAGGAGE from the environment.
	ctx = otel.GetTextMapPropagator().Extract(ctx, &envcar.Carrier{})
	ctx, span := otel.Tracer("jobtrace.dev/examples/go/job").Start(ctx, "generate-report")
	tenant := baggage.FromContext(ctx).Member("tenant").Value()
	span.SetAttributes(attribute.String("report.tenant", tenant))
	// docs:end job
	// The report's work runs here, passing ctx to whatever it traces.
	span.End()
	// Flush the span before the container exits.
	return provider.Shutdown(ctx)
}
