//! OTLP export of finished spans, over gRPC (default) or HTTP/protobuf, configured by the standard
//! `OTEL_EXPORTER_OTLP_*` variables. Each export reports whether the collector accepted the spans,
//! so the controller marks objects only once their spans are stored, and classifies failures as
//! the OTLP specification does: retry the retryable, drop the rest.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span, status};
use prost::Message;
use tonic_types::StatusExt;

use crate::spans::{SpanRecord, Status, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Where and how to export, from the `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterConfig {
    pub protocol: Protocol,
    /// For gRPC the collector's address; for HTTP the full URL of the traces endpoint.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0}: protocol {1:?} is not supported (use grpc or http/protobuf)")]
    Protocol(&'static str, String),
    #[error("{0}: {1:?} is not a number of milliseconds")]
    Timeout(&'static str, String),
    #[error("{0}: {1:?} is not a list of key=value pairs")]
    Headers(&'static str, String),
}

impl ExporterConfig {
    /// Reads the configuration with `var` (the process environment in production). Signal-specific
    /// variables (`OTEL_EXPORTER_OTLP_TRACES_*`) win over the general ones.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let pick = |specific: &'static str, general: &'static str| {
            var(specific)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (specific, v, true))
                .or_else(|| {
                    var(general)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (general, v, false))
                })
        };
        let protocol = match pick(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            None => Protocol::Grpc,
            Some((_, v, _)) if v.trim() == "grpc" => Protocol::Grpc,
            Some((_, v, _)) if v.trim() == "http/protobuf" => Protocol::HttpProtobuf,
            Some((name, v, _)) => return Err(ConfigError::Protocol(name, v)),
        };
        let endpoint = match (
            pick(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            protocol,
        ) {
            (None, Protocol::Grpc) => "http://localhost:4317".to_owned(),
            (None, Protocol::HttpProtobuf) => "http://localhost:4318/v1/traces".to_owned(),
            // The general HTTP variable is a base URL that gets the traces path; the others are
            // used as they are.
            (Some((_, v, true)), Protocol::HttpProtobuf) | (Some((_, v, _)), Protocol::Grpc) => {
                v.trim().to_owned()
            }
            (Some((_, v, false)), Protocol::HttpProtobuf) => {
                format!("{}/v1/traces", v.trim().trim_end_matches('/'))
            }
        };
        let timeout = match pick(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            None => Duration::from_secs(10),
            Some((name, v, _)) => Duration::from_millis(
                v.trim()
                    .parse()
                    .map_err(|_| ConfigError::Timeout(name, v.clone()))?,
            ),
        };
        let headers = match pick(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            None => Vec::new(),
            Some((name, v, _)) => parse_headers(&v).ok_or(ConfigError::Headers(name, v))?,
        };
        Ok(Self {
            protocol,
            endpoint,
            headers,
            timeout,
        })
    }
}

/// `key1=value1,key2=value2`, values percent-decoded, as the OpenTelemetry specification has it.
fn parse_headers(value: &str) -> Option<Vec<(String, String)>> {
    value
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then_some(())?;
            Some((k.to_owned(), percent_decode(v.trim())?))
        })
        .collect()
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why an export failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Try again later (collector unreachable, overloaded, or a retryable status).
    #[error("retryable: {message}")]
    Retryable {
        message: String,
        /// The collector's requested delay, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Sending the same data again can't succeed: drop it.
    #[error("rejected: {0}")]
    Permanent(String),
}

/// What the collector said about an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Spans the collector accepted the request for but rejected (partial success).
    pub rejected: i64,
}

/// Converts spans into one OTLP request, under jobtrace's resource and scope.
pub fn request(
    spans: &[SpanRecord],
    resource: &[(&'static str, String)],
) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: resource
            .iter()
            .map(|(k, v)| key_value(k, &Value::String(v.clone())))
            .collect(),
        ..Resource::default()
    };
    let scope = InstrumentationScope {
        name: "jobtrace".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.iter().map(proto_span).collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn key_value(key: &str, value: &Value) -> KeyValue {
    let value = match value {
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Int(i) => any_value::Value::IntValue(*i),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn nanos(t: k8s_openapi::jiff::Timestamp) -> u64 {
    u64::try_from(t.as_nanosecond()).unwrap_or(0)
}

/// OTLP `SpanFlags`: whether the parent (or linked) span is remote is known, and that it is.
const SPAN_FLAGS_HAS_IS_REMOTE: u32 = 0x100;
const SPAN_FLAGS_IS_REMOTE: u32 = 0x200;

fn proto_span(record: &SpanRecord) -> Span {
    let status = match &record.status {
        Status::Unset => None,
        Status::Ok => Some(opentelemetry_proto::tonic::trace::v1::Status {
            code: status::StatusCode::Ok as i32,
            ..Default::default()
        }),
        Status::Error { description } => Some(opentelemetry_proto::tonic::trace::v1::Status {
            code: status::StatusCode::Error as i32,
            message: description.clone(),
        }),
    };
    Span {
        trace_id: record.trace_id.0.to_vec(),
        span_id: record.span_id.0.to_vec(),
        parent_span_id: record
            .parent_span_id
            .map(|p| p.0.to_vec())
            .unwrap_or_default(),
        // The low byte is the context's W3C trace flags; bit 8 says whether the parent is
        // remote is known, bit 9 that it is: a parent is always in another process (the creator,
        // or the Job span's exporter), and a span without one (jobtrace's own) is a root.
        flags: u32::from(record.trace_flags)
            | if record.parent_span_id.is_some() {
                SPAN_FLAGS_HAS_IS_REMOTE | SPAN_FLAGS_IS_REMOTE
            } else {
                SPAN_FLAGS_HAS_IS_REMOTE
            },
        name: record.name.clone(),
        kind: match record.kind {
            crate::spans::Kind::Internal => span::SpanKind::Internal,
            crate::spans::Kind::Server => span::SpanKind::Server,
        } as i32,
        links: record
            .links
            .iter()
            .map(|link| span::Link {
                trace_id: link.trace_id.0.to_vec(),
                span_id: link.span_id.0.to_vec(),
                // The linked span is the Job's, in another process.
                flags: u32::from(link.trace_flags)
                    | SPAN_FLAGS_HAS_IS_REMOTE
                    | SPAN_FLAGS_IS_REMOTE,
                ..span::Link::default()
            })
            .collect(),
        start_time_unix_nano: nanos(record.start),
        end_time_unix_nano: nanos(record.end),
        attributes: record
            .attributes
            .iter()
            .map(|(k, v)| key_value(k, v))
            .chain(
                record
                    .label_attributes
                    .iter()
                    .map(|(k, v)| key_value(k, &Value::String(v.clone()))),
            )
            .collect(),
        events: record
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: nanos(e.time),
                name: e.name.clone(),
                attributes: e.attributes.iter().map(|(k, v)| key_value(k, v)).collect(),
                ..Default::default()
            })
            .collect(),
        status,
        ..Span::default()
    }
}

/// An OTLP exporter.
pub struct Exporter {
    config: ExporterConfig,
    grpc: Option<TraceServiceClient<tonic::transport::Channel>>,
    http: Option<
        hyper_util::client::legacy::Client<
            hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
            Full<Bytes>,
        >,
    >,
}

impl Exporter {
    /// Builds the client; nothing is sent until the first export, so a collector that is down
    /// doesn't stop the controller from starting.
    pub fn new(config: ExporterConfig) -> Result<Self, ExportError> {
        let mut exporter = Self {
            config,
            grpc: None,
            http: None,
        };
        match exporter.config.protocol {
            Protocol::Grpc => {
                let mut endpoint =
                    tonic::transport::Endpoint::from_shared(exporter.config.endpoint.clone())
                        .map_err(|e| {
                            ExportError::Permanent(format!(
                                "endpoint {}: {e}",
                                exporter.config.endpoint
                            ))
                        })?
                        .timeout(exporter.config.timeout)
                        .connect_timeout(exporter.config.timeout);
                if exporter.config.endpoint.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
                        .map_err(|e| ExportError::Permanent(format!("TLS: {e}")))?;
                }
                exporter.grpc = Some(TraceServiceClient::new(endpoint.connect_lazy()));
            }
            Protocol::HttpProtobuf => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_webpki_roots()
                    .https_or_http()
                    .enable_http1()
                    .build();
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build(connector);
                exporter.http = Some(client);
            }
        }
        Ok(exporter)
    }

    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    /// Sends one request.
    pub async fn export(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<Accepted, ExportError> {
        let response = if let Some(grpc) = &self.grpc {
            self.export_grpc(grpc.clone(), request).await?
        } else {
            self.export_http(request).await?
        };
        Ok(Accepted {
            rejected: response.partial_success.map_or(0, |p| p.rejected_spans),
        })
    }

    async fn export_grpc(
        &self,
        mut client: TraceServiceClient<tonic::transport::Channel>,
        request: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, ExportError> {
        let mut request = tonic::Request::new(request);
        for (k, v) in &self.config.headers {
            let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes());
            if let (Ok(key), Ok(value)) = (key, v.parse()) {
                request.metadata_mut().insert(key, value);
            }
        }
        match client.export(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(classify_grpc(&status)),
        }
    }

    async fn export_http(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, ExportError> {
        let client = self
            .http
            .as_ref()
            .expect("an HTTP exporter has an HTTP client");
        let mut builder = hyper::Request::post(&self.config.endpoint)
            .header("content-type", "application/x-protobuf");
        for (k, v) in &self.config.headers {
            builder = builder.header(k, v);
        }
        let body = Full::new(Bytes::from(request.encode_to_vec()));
        let http_request = builder
            .body(body)
            .map_err(|e| ExportError::Permanent(format!("request: {e}")))?;
        let sent = tokio::time::timeout(self.config.timeout, client.request(http_request)).await;
        let response = match sent {
            Err(_) => {
                return Err(ExportError::Retryable {
                    message: "timed out".to_owned(),
                    retry_after: None,
                });
            }
            Ok(Err(e)) => {
                return Err(ExportError::Retryable {
                    message: format!("connection: {e}"),
                    retry_after: None,
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.trim().parse().ok())
            .map(Duration::from_secs);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ExportError::Retryable {
                message: format!("reading the response: {e}"),
                retry_after: None,
            })?
            .to_bytes();
        classify_http(status.as_u16(), retry_after, &body)
    }
}

/// OTLP/gRPC: retry only the codes the specification lists as retryable; `RESOURCE_EXHAUSTED` only
/// when the server says when to retry.
pub fn classify_grpc(status: &tonic::Status) -> ExportError {
    use tonic::Code;
    let message = format!("{:?}: {}", status.code(), status.message());
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable {
            message,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => ExportError::Retryable {
            message,
            retry_after,
        },
        _ => ExportError::Permanent(message),
    }
}

/// OTLP/HTTP: 429, 502, 503 and 504 are retryable, honouring `Retry-After`; any other failure is
/// not.
pub fn classify_http(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<ExportTraceServiceResponse, ExportError> {
    match status {
        200..=299 => Ok(ExportTraceServiceResponse::decode(body).unwrap_or_default()),
        429 | 502 | 503 | 504 => Err(ExportError::Retryable {
            message: format!("HTTP {status}"),
            retry_after,
        }),
        _ => Err(ExportError::Permanent(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<ExporterConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        ExporterConfig::from_env(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_are_grpc_on_localhost() {
        let c = config(&[]).unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.endpoint, "http://localhost:4317");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(c.headers.is_empty());
    }

    #[test]
    fn http_base_endpoint_gets_the_traces_path_and_a_signal_endpoint_does_not() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
        ])
        .unwrap();
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://collector/custom/path",
            ),
        ])
        .unwrap();
        assert_eq!(c.endpoint, "https://collector/custom/path");
    }

    #[test]
    fn signal_specific_variables_win() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
        ])
        .unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn headers_are_percent_decoded() {
        let c = config(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=abc%20def, tenant = acme",
        )])
        .unwrap();
        assert_eq!(
            c.headers,
            [
                ("api-key".to_owned(), "abc def".to_owned()),
                ("tenant".to_owned(), "acme".to_owned())
            ]
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            Err(ConfigError::Protocol(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/json".into()
            ))
        );
        assert_eq!(
            config(&[("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10s")]),
            Err(ConfigError::Timeout(
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "10s".into()
            ))
        );
        assert!(matches!(
            config(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]),
            Err(ConfigError::Headers(..))
        ));
    }

    #[test]
    fn grpc_codes_are_classified_as_the_specification_lists() {
        use tonic::Code;
        let retryable = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        for code in retryable {
            assert!(
                matches!(
                    classify_grpc(&tonic::Status::new(code, "x")),
                    ExportError::Retryable { .. }
                ),
                "{code:?}"
            );
        }
        let permanent = [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ];
        for code in permanent {
            assert!(
                matches!(
                    classify_grpc(&tonic::Status::new(code, "x")),
                    ExportError::Permanent(_)
                ),
                "{code:?}"
            );
        }
    }

    #[test]
    fn resource_exhausted_with_retry_info_is_retried_after_the_delay() {
        use tonic_types::{ErrorDetails, StatusExt};
        let status = tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(5))),
        );
        assert_eq!(
            classify_grpc(&status),
            ExportError::Retryable {
                message: "ResourceExhausted: slow down".into(),
                retry_after: Some(Duration::from_secs(5))
            }
        );
    }

    #[test]
    fn http_statuses_are_classified_as_the_specification_lists() {
        for status in [429, 502, 503, 504] {
            assert!(
                matches!(
                    classify_http(status, None, b""),
                    Err(ExportError::Retryable { .. })
                ),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413, 500, 501] {
            assert!(
                matches!(
                    classify_http(status, None, b""),
                    Err(ExportError::Permanent(_))
                ),
                "{status}"
            );
        }
        assert_eq!(
            classify_http(503, Some(Duration::from_secs(7)), b""),
            Err(ExportError::Retryable {
                message: "HTTP 503".into(),
                retry_after: Some(Duration::from_secs(7))
            })
        );
        let partial = ExportTraceServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                    rejected_spans: 2,
                    error_message: "too old".into(),
                },
            ),
        };
        let decoded = classify_http(200, None, &partial.encode_to_vec()).unwrap();
        assert_eq!(decoded.partial_success.unwrap().rejected_spans, 2);
    }

    #[test]
    fn request_carries_ids_times_status_and_resource() {
        use crate::context::{SpanId, TraceId};
        let record = SpanRecord {
            trace_id: TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId([1; 8]),
            parent_span_id: Some(SpanId([2; 8])),
            name: "job reports/nightly".into(),
            start: "2026-11-23T10:00:00Z".parse().unwrap(),
            end: "2026-11-23T10:00:42Z".parse().unwrap(),
            attributes: vec![
                ("k8s.job.name", "nightly".into()),
                ("jobtrace.job.failed", 2.into()),
            ],
            events: Vec::new(),
            status: Status::Error {
                description: "BackoffLimitExceeded".into(),
            },
            kind: crate::spans::Kind::Internal,
            trace_flags: 0x03,
            label_attributes: vec![("k8s.job.label.team".into(), "data".into())],
            links: Vec::new(),
        };
        let request = request(&[record], &[("service.name", "jobtrace".into())]);
        let resource_spans = &request.resource_spans[0];
        let resource = resource_spans.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        let span = &resource_spans.scope_spans[0].spans[0];
        assert_eq!(
            span.trace_id,
            TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736")
                .unwrap()
                .0
        );
        assert_eq!(span.span_id, vec![1; 8]);
        assert_eq!(span.parent_span_id, vec![2; 8]);
        assert_eq!(
            span.flags, 0x303,
            "the context's trace flags (sampled, random) and a remote parent"
        );
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            42_000_000_000
        );
        let status = span.status.as_ref().unwrap();
        assert_eq!(status.code, status::StatusCode::Error as i32);
        assert_eq!(status.message, "BackoffLimitExceeded");
        assert_eq!(
            span.attributes[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(2))
        );
        assert_eq!(span.attributes[2].key, "k8s.job.label.team");
        assert_eq!(
            span.attributes[2].value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("data".into()))
        );
    }
}
