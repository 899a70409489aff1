//! Failures classified as the OTLP specification does: retry the retryable, drop the rest. A
//! refusal of jobtrace's credentials is retried too: it says the pipeline is broken, not the data.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic_types::StatusExt;

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
    /// The collector refused jobtrace's credentials (HTTP 401 or 403, gRPC `UNAUTHENTICATED` or
    /// `PERMISSION_DENIED`). The specification has it non-retryable, but nothing is wrong with
    /// the spans: it is an outage of the pipeline (an expired token, a rotated key), retried like
    /// one until the credentials are put right.
    #[error("credentials refused: {0}")]
    Unauthorized(String),
    /// Sending the same data again can't succeed: drop it.
    #[error("rejected: {0}")]
    Permanent(String),
}

impl ExportError {
    /// Whether the same spans are to be sent again.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Permanent(_))
    }

    /// The collector's requested delay, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Retryable { retry_after, .. } => *retry_after,
            Self::Unauthorized(_) | Self::Permanent(_) => None,
        }
    }

    /// What the request this failed came to.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Retryable { .. } => Outcome::Failed,
            Self::Unauthorized(_) => Outcome::Unauthorized,
            Self::Permanent(_) => Outcome::Refused,
        }
    }
}

/// What became of one export request: `jobtrace_export_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The collector took it (perhaps rejecting some spans: a partial success).
    Accepted,
    /// It failed in a way worth retrying: unreachable, timed out, a retryable status.
    Failed,
    /// The collector refused jobtrace's credentials; retried.
    Unauthorized,
    /// The collector refused it for good.
    Refused,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Failed => "failed",
            Self::Unauthorized => "unauthorized",
            Self::Refused => "refused",
        }
    }
}

/// OTLP/gRPC: retry only the codes the specification lists as retryable; `RESOURCE_EXHAUSTED` only
/// when the server says when to retry. A call whose connection broke before the collector answered
/// (a collector killed mid-request) is retried too: gRPC's status codes make it `UNAVAILABLE`
/// ("some data transmitted before connection breaks"), though tonic reports it as `UNKNOWN`.
pub fn classify_grpc(status: &tonic::Status) -> ExportError {
    use tonic::Code;
    let mut message = format!("{:?}: {}", status.code(), status.message());
    // A connection's failure, such as a refused certificate, is in the status's source.
    if let Some(source) = std::error::Error::source(status) {
        message = format!("{message}: {}", chain(source));
    }
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let code = match status.code() {
        Code::Unknown if broken_connection(status) => Code::Unavailable,
        code => code,
    };
    match code {
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
        Code::Unauthenticated | Code::PermissionDenied => ExportError::Unauthorized(message),
        _ => ExportError::Permanent(message),
    }
}

/// Whether the status is tonic's own for a call whose connection failed, a transport error among
/// its sources, rather than one the collector sent.
fn broken_connection(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// An error and its sources, as one line.
pub(super) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Wrappers often repeat their source's text.
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

/// OTLP/HTTP: 429, 502, 503 and 504 are retryable, honouring `Retry-After`; 401 and 403 refuse
/// the credentials, retried too; any other failure is not.
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
        401 | 403 => Err(ExportError::Unauthorized(format!(
            "HTTP {status}: {}",
            excerpt(body)
        ))),
        _ => Err(ExportError::Permanent(format!(
            "HTTP {status}: {}",
            excerpt(body)
        ))),
    }
}

/// The beginning of a response body, for a log line.
fn excerpt(body: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&body[..body.len().min(200)])
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A collector that takes the call and dies before it answers (a SIGKILL, the OOM killer): it
    /// completes HTTP/2's handshake, reads the request, and closes the connection.
    #[tokio::test]
    async fn a_call_whose_connection_breaks_before_the_answer_is_retried() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let collector = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            // The server's preface: an empty SETTINGS frame.
            socket.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let (mut buffer, mut read) = ([0; 4096], 0);
            while let Ok(n @ 1..) = socket.read(&mut buffer) {
                read += n;
            }
            read
        });
        let config = crate::k8s::otlp::ExporterConfig::from_sources(
            |k| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| endpoint.clone()),
            |p| std::fs::read(p),
        )
        .unwrap();
        let exporter = crate::k8s::otlp::Exporter::new(config).unwrap();
        let request = crate::k8s::otlp::request(&[], &[], &crate::k8s::otlp::SpanLimits::default());
        let outcome = exporter.export(request).await;
        assert!(
            collector.join().unwrap() > 24,
            "the collector read the call"
        );
        match outcome {
            Err(ExportError::Retryable { message, .. }) => {
                assert!(message.contains("transport error"), "{message}");
            }
            other => panic!("a broken call is retried: {other:?}"),
        }
    }

    #[test]
    fn a_refusal_of_the_credentials_is_an_outage_retried_not_bad_data() {
        use tonic::Code;
        for code in [Code::Unauthenticated, Code::PermissionDenied] {
            let error = classify_grpc(&tonic::Status::new(code, "token expired"));
            assert!(
                matches!(&error, ExportError::Unauthorized(m) if m.contains("token expired")),
                "{code:?}: {error:?}"
            );
            assert!(error.retryable(), "{code:?}");
            assert_eq!(error.outcome(), Outcome::Unauthorized);
        }
        for status in [401, 403] {
            let error = classify_http(status, None, b"invalid api key").unwrap_err();
            assert_eq!(
                error,
                ExportError::Unauthorized(format!("HTTP {status}: invalid api key"))
            );
            assert!(error.retryable(), "{status}");
            assert_eq!(error.outcome().label(), "unauthorized");
        }
        assert!(!ExportError::Permanent("x".into()).retryable());
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
        for status in [400, 404, 413, 500, 501] {
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
}
