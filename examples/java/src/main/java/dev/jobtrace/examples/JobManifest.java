package dev.jobtrace.examples;

import io.kubernetes.client.openapi.models.V1Container;
import io.kubernetes.client.openapi.models.V1EnvVar;
import io.kubernetes.client.openapi.models.V1Job;
import io.kubernetes.client.openapi.models.V1JobSpec;
import io.kubernetes.client.openapi.models.V1ObjectMeta;
import io.kubernetes.client.openapi.models.V1PodSpec;
import io.kubernetes.client.openapi.models.V1PodTemplateSpec;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** The Job the creators submit. */
final class JobManifest {
  private JobManifest() {}

  /**
   * A Job running {@code command} once, which sends its spans where this process sends its own,
   * as the service report-task.
   */
  static V1Job report(List<String> command) {
    List<V1EnvVar> env = new ArrayList<>();
    for (String name : List.of("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL")) {
      String value = System.getenv(name);
      if (value != null) {
        env.add(new V1EnvVar().name(name).value(value));
      }
    }
    env.add(new V1EnvVar().name("OTEL_SERVICE_NAME").value("report-task"));
    V1Container container =
        new V1Container()
            .name("report")
            .image("example.invalid/report")
            .command(command)
            .env(env);
    V1PodTemplateSpec template =
        new V1PodTemplateSpec()
            // What the local pod runner of jobtrace's tests selects; a cluster ignores it.
            .metadata(new V1ObjectMeta().labels(Map.of("sim.jobtrace.dev/runner", "true")))
            .spec(new V1PodSpec().restartPolicy("Never").containers(List.of(container)));
    return new V1Job()
        .metadata(new V1ObjectMeta().generateName("report-"))
        .spec(new V1JobSpec().backoffLimit(0).template(template));
  }
}
