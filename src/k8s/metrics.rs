//! Prometheus metrics, served on the plain-HTTP metrics port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// [`crate::k8s::webhook::AdmissionEndpoint::label`]: `jobs` or `pods`.
    pub endpoint: &'static str,
    /// [`crate::k8s::webhook::AdmissionResult::label`].
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WarningLabels {
    /// [`crate::core::context::WarningReason::label`].
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// [`crate::k8s::otlp::Outcome::label`].
    pub outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~0.8 s: admission should stay in the first buckets.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 15,
    ))
}

/// Every metric jobtrace exports.
pub struct Metrics {
    pub registry: Registry,
    pub admissions: Family<AdmissionLabels, Counter>,
    pub admission_warnings: Family<WarningLabels, Counter>,
    pub admission_duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    pub spans_exported: Counter,
    pub spans_dropped: Counter,
    /// Held Jobs released at the hold timeout, exported or not.
    pub holds_expired: Counter,
    /// Held pods (`--hold-pods`) released once their spans were exported: one write each.
    pub pods_released: Counter,
    pub export_retries: Counter,
    /// OTLP requests sent, by what they came to (accepted, failed, unauthorized, refused).
    pub export_requests: Family<OutcomeLabels, Counter>,
    /// Seconds from an object's terminal state to its spans being accepted by the collector.
    pub export_lag: Histogram,
    /// Finished objects whose spans are queued or being exported.
    pub controller_pending: Gauge,
    /// Spans in exports that failed and will be retried.
    pub spans_retried: Counter,
    /// Traced Jobs seen and not finished yet (on the replica that exports).
    pub jobs_in_flight: Gauge,
    /// 1 on the replica that holds the Lease and exports, 0 elsewhere.
    pub leader: Gauge,
    /// 1 while the exporting replica's watches list the traced Jobs and pods (the first list
    /// after taking the lead, or a relist); kept by [`crate::k8s::controller::ControllerSync`].
    pub controller_listing: Gauge,
    /// Expiry of the serving certificate being served, in unix seconds.
    pub certificate_expiry: Gauge,
    /// Changes to the certificate Secret (created, renewed, CA rolled over), and `caBundle`
    /// restorations.
    pub certificate_writes: Family<ReasonLabels, Counter>,
    /// jobtrace's own spans dropped because the export queue was full.
    pub self_spans_dropped: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub what: &'static str,
}

impl Default for Metrics {
    // One registration after another: longer than a screen, and clearer in one piece.
    #[allow(clippy::too_many_lines)]
    fn default() -> Self {
        let mut registry = Registry::with_prefix("jobtrace");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests handled, by endpoint and result",
            admissions.clone(),
        );
        let admission_warnings = Family::<WarningLabels, Counter>::default();
        registry.register(
            "admission_warnings",
            "Warnings returned to clients, by reason",
            admission_warnings.clone(),
        );
        let admission_duration =
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "admission_duration_seconds",
            "Time to handle an admission request, from body read to response",
            admission_duration.clone(),
        );
        let spans_exported = Counter::default();
        registry.register(
            "spans_exported",
            "Spans the collector accepted",
            spans_exported.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "spans_dropped",
            "Spans dropped unexported: refused for good by the collector (non-retryable error or partial success)",
            spans_dropped.clone(),
        );
        let holds_expired = Counter::default();
        registry.register(
            "export_holds_expired",
            "Jobs (and pods, with --hold-pods) held for export whose deletion waited the whole hold timeout, released whether exported or not (their spans stay queued)",
            holds_expired.clone(),
        );
        let pods_released = Counter::default();
        registry.register(
            "export_pods_released",
            "Pods held for export (--hold-pods) released once their spans were exported: one write each",
            pods_released.clone(),
        );
        let export_retries = Counter::default();
        registry.register(
            "export_retries",
            "Exports that failed and will be retried",
            export_retries.clone(),
        );
        let export_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "export_requests",
            "OTLP requests sent to the collector, by outcome: accepted, failed (retried), unauthorized (credentials refused; retried), refused (dropped)",
            export_requests.clone(),
        );
        let export_lag = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.05, 2.0, 14),
        );
        registry.register(
            "export_lag_seconds",
            "Time from an object's terminal state to its spans' acceptance by the collector",
            export_lag.clone(),
        );
        let controller_pending = Gauge::default();
        registry.register(
            "spans_pending_objects",
            "Finished objects whose spans are waiting to be exported",
            controller_pending.clone(),
        );
        let spans_retried = Counter::default();
        registry.register(
            "spans_retried",
            "Spans in exports that failed and will be retried",
            spans_retried.clone(),
        );
        let jobs_in_flight = Gauge::default();
        registry.register(
            "jobs_in_flight",
            "Traced Jobs seen and not finished yet (on the exporting replica)",
            jobs_in_flight.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 on the replica that holds the Lease and exports spans",
            leader.clone(),
        );
        let controller_listing = Gauge::default();
        registry.register(
            "controller_listing",
            "1 while the exporting replica lists the traced Jobs and pods (after taking the lead, or relisting)",
            controller_listing.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Expiry of the webhook's serving certificate, in unix seconds",
            certificate_expiry.clone(),
        );
        let certificate_writes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "certificate_writes",
            "Writes of the certificate Secret and of the webhook configuration's caBundle, by what was written",
            certificate_writes.clone(),
        );
        let self_spans_dropped = Counter::default();
        registry.register(
            "self_spans_dropped",
            "jobtrace's own spans dropped because the export queue was full",
            self_spans_dropped.clone(),
        );
        Self {
            registry,
            admissions,
            admission_warnings,
            admission_duration,
            spans_exported,
            spans_dropped,
            holds_expired,
            pods_released,
            export_retries,
            export_requests,
            export_lag,
            controller_pending,
            spans_retried,
            jobs_in_flight,
            leader,
            controller_listing,
            certificate_expiry,
            certificate_writes,
            self_spans_dropped,
        }
    }
}

impl Metrics {
    /// The metrics in the `OpenMetrics` text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String can't fail");
        out
    }

    /// The number of export requests that came to `outcome`.
    pub fn export_request_count(&self, outcome: crate::k8s::otlp::Outcome) -> u64 {
        self.export_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .get()
    }

    /// The value of the admission counter for `endpoint` and `result`.
    pub fn admission_count(&self, endpoint: &'static str, result: &'static str) -> u64 {
        self.admissions
            .get_or_create(&AdmissionLabels { endpoint, result })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of docs/operations.md's metrics table, without `jobtrace_` and labels.
    fn documented() -> Vec<String> {
        let doc = include_str!("../../docs/operations.md");
        let table = doc
            .split("\n## Metrics\n")
            .nth(1)
            .and_then(|rest| rest.split("\n###").next())
            .expect("docs/operations.md has a Metrics section");
        let mut names: Vec<String> = table
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .map(|name| name.split('{').next().unwrap_or(name).to_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_documentation_lists_exactly_the_metrics() {
        let metrics = Metrics::default();
        // A family is written once it has a sample.
        metrics
            .admissions
            .get_or_create(&AdmissionLabels {
                endpoint: "jobs",
                result: "injected",
            })
            .inc();
        metrics
            .admission_warnings
            .get_or_create(&WarningLabels { reason: "conflict" })
            .inc();
        metrics
            .admission_duration
            .get_or_create(&EndpointLabels { endpoint: "jobs" })
            .observe(0.001);
        metrics
            .certificate_writes
            .get_or_create(&ReasonLabels { what: "secret" })
            .inc();
        metrics
            .export_requests
            .get_or_create(&OutcomeLabels {
                outcome: "accepted",
            })
            .inc();
        let encoded = metrics.encode();
        let mut names: Vec<String> = encoded
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE jobtrace_"))
            .map(|rest| {
                let (name, kind) = rest.split_once(' ').expect("a name and a type");
                // A counter's samples, and so its documented name, end in `_total`.
                if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                }
            })
            .collect();
        names.sort();
        assert!(!names.is_empty());
        assert_eq!(names, documented(), "docs/operations.md's metrics table");
    }
}
