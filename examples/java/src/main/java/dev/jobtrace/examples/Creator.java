package dev.jobtrace.examples;

import io.kubernetes.client.openapi.ApiException;
import io.kubernetes.client.openapi.apis.BatchV1Api;
import io.kubernetes.client.openapi.models.V1Job;
import io.kubernetes.client.util.Config;
import io.opentelemetry.api.baggage.Baggage;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapPropagator;
import io.opentelemetry.sdk.OpenTelemetrySdk;
import java.io.IOException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Creates a Job that continues this program's trace: jobtrace reads the trace context and baggage
 * written on the Job's annotations. Usage: {@code Creator NAMESPACE JOB_PROGRAM [JOB_ARGS...]}
 */
public final class Creator {
  private Creator() {}

  public static void main(String[] args) throws IOException, ApiException {
    if (args.length < 2) {
      System.err.println("usage: Creator NAMESPACE JOB_PROGRAM [JOB_ARGS...]");
      System.exit(2);
    }
    String namespace = args[0];
    List<String> command = Arrays.asList(args).subList(1, args.length);
    // KUBECONFIG, ~/.kube/config or the pod's service account.
    BatchV1Api batch = new BatchV1Api(Config.defaultClient());

    V1Job job = JobManifest.report(command);
    String traceId;
    try (OpenTelemetrySdk openTelemetry = Telemetry.start()) {
      Tracer tracer = openTelemetry.getTracer("dev.jobtrace.examples");
      Span span = tracer.spanBuilder("create-report-job").startSpan();
      traceId = span.getSpanContext().getTraceId();
      Baggage baggage = Baggage.builder().put("tenant", "acme").build();
      try (Scope scope = Context.current().with(span).with(baggage).makeCurrent()) {
        // docs:begin creator
        Map<String, String> annotations = new HashMap<>();
        TextMapPropagator propagator = openTelemetry.getPropagators().getTextMapPropagator();
        propagator.inject(Context.current(), annotations, Map::put); // traceparent, baggage
        job.getMetadata().setAnnotations(annotations);
        // docs:end creator
        job = batch.createNamespacedJob(namespace, job).execute();
      } catch (ApiException e) {
        span.recordException(e);
        span.setStatus(StatusCode.ERROR, e.getMessage());
        throw e;
      } finally {
        span.end();
      }
    } // closing the SDK flushes the span
    System.out.printf(
        "created Job %s/%s in trace %s%n", namespace, job.getMetadata().getName(), traceId);
  }
}
