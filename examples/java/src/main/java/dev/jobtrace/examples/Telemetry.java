package dev.jobtrace.examples;

import io.opentelemetry.sdk.OpenTelemetrySdk;
import io.opentelemetry.sdk.autoconfigure.AutoConfiguredOpenTelemetrySdk;
import java.util.Map;

/** The OpenTelemetry SDK both programs use, configured from the OTEL_* environment. */
final class Telemetry {
  private Telemetry() {}

  /**
   * Traces only, exported over OTLP; the propagators are the default W3C trace context and
   * baggage. The caller closes the SDK, which flushes the spans, before it exits.
   */
  static OpenTelemetrySdk start() {
    return AutoConfiguredOpenTelemetrySdk.builder()
        // Defaults: OTEL_METRICS_EXPORTER and OTEL_LOGS_EXPORTER still override them.
        .addPropertiesSupplier(
            () -> Map.of("otel.metrics.exporter", "none", "otel.logs.exporter", "none"))
        .disableShutdownHook()
        .build()
        .getOpenTelemetrySdk();
  }
}
