package dev.jobtrace.examples;

import io.kubernetes.client.openapi.ApiException;
import io.kubernetes.client.openapi.apis.BatchV1Api;
import io.kubernetes.client.openapi.models.V1Job;
import io.kubernetes.client.util.Config;
import io.opentelemetry.api.GlobalOpenTelemetry;
import io.opentelemetry.api.baggage.Baggage;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import java.io.IOException;
import java.util.Arrays;
import java.util.List;

/**
 * Creates a Job without touching it for tracing: run with the OpenTelemetry Java agent, whose
 * instrumentation of the Kubernetes client gives the create request a client span ({@code create
 * batch/v1 jobs}), a child of this program's span, and sends its context and the baggage
 * tenant=acme as traceparent and baggage headers, which jobtrace (run with --request-context)
 * reads. Usage: {@code java
 * -javaagent:opentelemetry-javaagent.jar -Dotel.metrics.exporter=none -Dotel.logs.exporter=none
 * -cp CLASSPATH dev.jobtrace.examples.AgentCreator NAMESPACE JOB_PROGRAM [JOB_ARGS...]}
 */
public final class AgentCreator {
  private AgentCreator() {}

  public static void main(String[] args) throws IOException, ApiException {
    if (args.length < 2) {
      System.err.println("usage: AgentCreator NAMESPACE JOB_PROGRAM [JOB_ARGS...]");
      System.exit(2);
    }
    String namespace = args[0];
    List<String> command = Arrays.asList(args).subList(1, args.length);
    // KUBECONFIG, ~/.kube/config or the pod's service account.
    BatchV1Api batch = new BatchV1Api(Config.defaultClient());

    // The agent's OpenTelemetry, configured from the OTEL_* environment.
    Tracer tracer = GlobalOpenTelemetry.getTracer("dev.jobtrace.examples");
    Span span = tracer.spanBuilder("create-report-job").startSpan();
    V1Job job;
    // docs:begin creator
    Baggage baggage = Baggage.builder().put("tenant", "acme").build();
    // The current context: the agent's instrumentation sends it with every request.
    try (Scope scope = Context.current().with(span).with(baggage).makeCurrent()) {
      job = batch.createNamespacedJob(namespace, JobManifest.report(command)).execute();
      // docs:end creator
    } catch (ApiException e) {
      span.recordException(e);
      span.setStatus(StatusCode.ERROR, e.getMessage());
      throw e;
    } finally {
      span.end();
    }
    // The agent flushes the spans when the JVM exits.
    System.out.printf(
        "created Job %s/%s in trace %s%n",
        namespace, job.getMetadata().getName(), span.getSpanContext().getTraceId());
  }
}
