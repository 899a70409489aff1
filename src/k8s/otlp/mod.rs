//! OTLP export of finished spans, over gRPC (default) or HTTP/protobuf, configured by the standard
//! `OTEL_EXPORTER_OTLP_*` variables. Each export reports whether the collector accepted the spans,
//! so the controller marks objects only once their spans are stored, and classifies failures as
//! the OTLP specification does: retry the retryable, drop the rest. Spans are held to
//! OpenTelemetry's span limits, and a batch goes in requests sized by their bytes, so that no
//! object's spans get another's refused.
//!
//! Hand-written rather than the OpenTelemetry SDK's exporter, which answers once for a whole
//! batch: the controller marks an object only once the collector took its spans, so each request
//! must tell which objects' spans were taken, which were refused for good, and which to retry
//! (what isolating a refused object costs: docs/benchmarks.md, the exporter's split path).

mod classify;
mod config;
mod deliver;
mod limits;
mod proto;
mod resource;
mod transport;

pub use classify::{ExportError, Outcome, classify_grpc, classify_http};
pub use config::{
    ClientIdentity, CollectorTls, Compression, ConfigError, ConfigWarning, ExporterConfig, PemFile,
    Protocol,
};
pub use deliver::{DEFAULT_MAX_REQUEST_BYTES, Delivery, Fate};
pub use limits::{DEFAULT_VALUE_LENGTH, SpanLimits};
pub use proto::request;
pub use resource::{Resource, ResourceError};
pub use transport::{BuildError, Exporter, PartialSuccess};
