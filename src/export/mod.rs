//! OTLP export of finished spans, over gRPC (default) or HTTP/protobuf, configured by the standard
//! `OTEL_EXPORTER_OTLP_*` variables. Each export reports whether the collector accepted the spans,
//! so the controller marks objects only once their spans are stored, and classifies failures as
//! the OTLP specification does: retry the retryable, drop the rest.

mod classify;
mod config;
mod proto;
mod resource;
mod transport;

pub use classify::{ExportError, classify_grpc, classify_http};
pub use config::{
    ClientIdentity, Compression, ConfigError, ConfigWarning, ExporterConfig, PemFile, Protocol,
    TlsFiles,
};
pub use proto::request;
pub use resource::{Resource, ResourceError};
pub use transport::{Accepted, BuildError, Exporter};
