package dev.jobtrace.examples;

import io.opentelemetry.api.baggage.Baggage;
import io.opentelemetry.api.incubator.propagation.EnvironmentGetter;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapPropagator;
import io.opentelemetry.sdk.OpenTelemetrySdk;

/**
 * The Job's program: continues the creator's trace from the TRACEPARENT, TRACESTATE and BAGGAGE
 * variables that jobtrace sets on the Job's containers.
 */
public final class ReportJob {
  private ReportJob() {}

  public static void main(String[] args) {
    try (OpenTelemetrySdk openTelemetry = Telemetry.start()) {
      Tracer tracer = openTelemetry.getTracer("dev.jobtrace.examples");
      // docs:begin job
      TextMapPropagator propagator = openTelemetry.getPropagators().getTextMapPropagator();
      Context parent =
          propagator.extract(Context.current(), System.getenv(), EnvironmentGetter.getInstance());
      String tenant = Baggage.fromContext(parent).getEntryValue("tenant");
      Span span = tracer.spanBuilder("generate-report").setParent(parent).startSpan();
      span.setAttribute("report.tenant", tenant);
      // docs:end job
      try (Scope scope = span.makeCurrent()) {
        System.out.printf("generating the report of tenant %s%n", tenant);
      } finally {
        span.end();
      }
    } // closing the SDK flushes the span
  }
}
