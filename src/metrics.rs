//! Prometheus metrics, served on the plain-HTTP operations port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `jobs` or `pods`.
    pub endpoint: &'static str,
    /// `injected`, `not_traced`, `skipped` (another kind or operation) or `bad_request`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WarningLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
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
}

impl Default for Metrics {
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
        Self {
            registry,
            admissions,
            admission_warnings,
            admission_duration,
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

    /// The value of the admission counter for `endpoint` and `result`.
    pub fn admission_count(&self, endpoint: &'static str, result: &'static str) -> u64 {
        self.admissions
            .get_or_create(&AdmissionLabels { endpoint, result })
            .get()
    }
}
