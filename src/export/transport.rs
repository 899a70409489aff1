//! Sending requests to the collector, over gRPC (tonic) or HTTP/protobuf (hyper).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::classify::{ExportError, classify_grpc, classify_http};
use super::config::{ExporterConfig, Protocol};

/// What the collector said about an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Spans the collector accepted the request for but rejected (partial success).
    pub rejected: i64,
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

/// Why an exporter could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("TLS for {endpoint}: {source}")]
    Tls {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

impl Exporter {
    /// Builds the client; nothing is sent until the first export, so a collector that is down
    /// doesn't stop the controller from starting.
    pub fn new(config: ExporterConfig) -> Result<Self, BuildError> {
        let mut exporter = Self {
            config,
            grpc: None,
            http: None,
        };
        match exporter.config.protocol {
            Protocol::Grpc => {
                let mut endpoint =
                    tonic::transport::Endpoint::from_shared(exporter.config.endpoint.clone())
                        .map_err(|source| BuildError::Endpoint {
                            endpoint: exporter.config.endpoint.clone(),
                            source,
                        })?
                        .timeout(exporter.config.timeout)
                        .connect_timeout(exporter.config.timeout);
                if exporter.config.endpoint.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
                        .map_err(|source| BuildError::Tls {
                            endpoint: exporter.config.endpoint.clone(),
                            source,
                        })?;
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
