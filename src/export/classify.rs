//! Failures classified as the OTLP specification does: retry the retryable, drop the rest.

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
    /// Sending the same data again can't succeed: drop it.
    #[error("rejected: {0}")]
    Permanent(String),
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
        let config = crate::export::ExporterConfig::from_sources(
            |k| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| endpoint.clone()),
            |p| std::fs::read(p),
        )
        .unwrap();
        let exporter = crate::export::Exporter::new(config).unwrap();
        let request = crate::export::request(&[], &[]);
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
}
