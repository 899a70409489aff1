//! Sending requests to the collector, over gRPC (tonic) or HTTP/protobuf (hyper), in plain text
//! or TLS (rustls, with the configured trust roots and client certificate), gzip-compressed when
//! configured.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::classify::{ExportError, chain, classify_grpc, classify_http};
use super::config::{CollectorTls, Compression, ExporterConfig, Protocol};

/// What the collector said about a request it accepted: its partial success (OTLP's
/// `partial_success`), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartialSuccess {
    /// Spans the collector accepted the request for but rejected (partial success).
    pub rejected: i64,
}

/// An OTLP exporter. Its certificate files are read again every `RELOAD_EVERY` while it
/// exports, and a changed (valid) set replaces the clients, so a rotated certificate is used
/// without a restart.
pub struct Exporter {
    config: ExporterConfig,
    current: std::sync::Mutex<Current>,
    reload_every: Duration,
}

/// How often the exporter reads its certificate files again, at most.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The longest OTLP/HTTP answer read, as gRPC's default limit of a received message: an answer is
/// a partial success at most, a few bytes.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The clients in use, the certificate files they were built from, and when those were read.
struct Current {
    clients: Arc<Clients>,
    files: CollectorTls,
    read: std::time::Instant,
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The client of the configured protocol.
enum Clients {
    Grpc(TraceServiceClient<tonic::transport::Channel>),
    Http(HttpClient),
}

/// Why an exporter could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("TLS for {endpoint}: {}", chain(source))]
    Tls {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("{variable}: the certificate in {path} can't be a trust root: {source}")]
    Roots {
        variable: &'static str,
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client certificate {certificate} with key {key}: {source}")]
    ClientIdentity {
        certificate: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

impl Exporter {
    /// Builds the client; nothing is sent until the first export, so a collector that is down
    /// doesn't stop the controller from starting. The certificates are checked here.
    pub fn new(config: ExporterConfig) -> Result<Self, BuildError> {
        let clients = clients(&config)?;
        Ok(Self {
            current: std::sync::Mutex::new(Current {
                clients: Arc::new(clients),
                files: config.tls.clone(),
                read: std::time::Instant::now(),
            }),
            config,
            reload_every: RELOAD_EVERY,
        })
    }

    /// Reads the certificate files again every `every` instead of `RELOAD_EVERY`.
    #[must_use]
    pub fn reload_every(mut self, every: Duration) -> Self {
        self.reload_every = every;
        self
    }

    /// The clients to export with: those of the certificate files as they are now, when they
    /// changed since last read and are valid; else those in use. The files are read on tokio's
    /// blocking pool, never on the runtime's workers; exports meanwhile use the clients in use.
    async fn clients(&self) -> Arc<Clients> {
        let files = {
            let mut current = self.current.lock().expect("not poisoned");
            if !self.config.tls.any() || current.read.elapsed() < self.reload_every {
                return current.clients.clone();
            }
            current.read = std::time::Instant::now();
            current.files.clone()
        };
        let reread = tokio::task::spawn_blocking(move || files.reread()).await;
        let mut current = self.current.lock().expect("not poisoned");
        match reread {
            Ok(Ok(files)) if files == current.files => {}
            Ok(Ok(files)) => {
                let config = ExporterConfig {
                    tls: files,
                    ..self.config.clone()
                };
                match clients(&config) {
                    Ok(clients) => {
                        tracing::info!(files = ?config.tls, "the exporter's certificates changed; using them");
                        current.clients = Arc::new(clients);
                        current.files = config.tls;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the exporter's certificates changed but can't be used; keeping those in use");
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not read the exporter's certificates again; keeping those in use");
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the exporter's certificates again failed; keeping those in use");
            }
        }
        current.clients.clone()
    }

    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    /// The limits every exported span is held to.
    pub fn limits(&self) -> &super::limits::SpanLimits {
        &self.config.limits
    }

    /// The largest request sent, in bytes of encoded protobuf.
    pub fn max_request_bytes(&self) -> usize {
        self.config.max_request_bytes
    }

    /// Sends one request. The whole exchange, from connecting to the last byte of the answer, is
    /// bounded by the configured timeout: a collector that answers its headers and then trickles
    /// (or never ends) its body fails the export like one that doesn't answer.
    pub async fn export(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<PartialSuccess, ExportError> {
        let clients = self.clients().await;
        let exchange = async {
            match &*clients {
                Clients::Grpc(grpc) => self.export_grpc(grpc.clone(), request).await,
                Clients::Http(http) => self.export_http(http, request).await,
            }
        };
        let response = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| ExportError::Retryable {
                message: format!("no whole answer within {:?}", self.config.timeout),
                retry_after: None,
            })??;
        Ok(PartialSuccess {
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
        client: &HttpClient,
        request: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, ExportError> {
        let mut builder = hyper::Request::post(&self.config.endpoint)
            .header("content-type", "application/x-protobuf");
        for (k, v) in &self.config.headers {
            builder = builder.header(k, v);
        }
        let mut body = request.encode_to_vec();
        if self.config.compression == Compression::Gzip {
            builder = builder.header("content-encoding", "gzip");
            body = gzip(&body);
        }
        let body = Full::new(Bytes::from(body));
        let http_request = builder
            .body(body)
            .map_err(|e| ExportError::Permanent(format!("request: {e}")))?;
        let response = client
            .request(http_request)
            .await
            .map_err(|e| ExportError::Retryable {
                message: format!("connection: {}", chain(&e)),
                retry_after: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.trim().parse().ok())
            .map(Duration::from_secs);
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
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

/// The clients for `config`: a gRPC channel (connected lazily) or an HTTP client.
fn clients(config: &ExporterConfig) -> Result<Clients, BuildError> {
    // Built for both protocols: for gRPC it checks what tonic is given, with clearer errors.
    let tls = client_tls(&config.tls)?;
    Ok(match config.protocol {
        Protocol::Grpc => {
            let mut endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
                .map_err(|source| BuildError::Endpoint {
                    endpoint: config.endpoint.clone(),
                    source,
                })?
                .timeout(config.timeout)
                .connect_timeout(config.timeout);
            if config.endpoint.starts_with("https://") {
                endpoint = endpoint
                    .tls_config(grpc_tls(&config.tls))
                    .map_err(|source| BuildError::Tls {
                        endpoint: config.endpoint.clone(),
                        source,
                    })?;
            }
            let mut client = TraceServiceClient::new(endpoint.connect_lazy());
            if config.compression == Compression::Gzip {
                // A gRPC server answers in the encoding of the request: the response is
                // gzip too.
                client = client
                    .send_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
            }
            Clients::Grpc(client)
        }
        Protocol::HttpProtobuf => {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build();
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(connector);
            Clients::Http(client)
        }
    })
}

/// The rustls configuration of a TLS connection to the collector: the configured trust roots, or
/// else the web PKI's, and the client certificate when there is one.
fn client_tls(files: &CollectorTls) -> Result<rustls::ClientConfig, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.roots {
        Some(file) => {
            // The configuration checked that the file holds PEM certificates.
            for certificate in CertificateDer::pem_slice_iter(&file.pem).flatten() {
                roots.add(certificate).map_err(|source| BuildError::Roots {
                    variable: file.variable,
                    path: file.path.clone(),
                    source,
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots);
    match &files.client {
        None => Ok(builder.with_no_client_auth()),
        Some(client) => {
            let failed = |source| BuildError::ClientIdentity {
                certificate: client.certificate.path.clone(),
                key: client.key.path.clone(),
                source,
            };
            let chain: Vec<_> = CertificateDer::pem_slice_iter(&client.certificate.pem)
                .flatten()
                .collect();
            let key = PrivateKeyDer::from_pem_slice(&client.key.pem)
                .map_err(|e| failed(rustls::Error::General(e.to_string())))?;
            builder.with_client_auth_cert(chain, key).map_err(failed)
        }
    }
}

/// The same for tonic, which builds its rustls configuration itself.
fn grpc_tls(files: &CollectorTls) -> tonic::transport::ClientTlsConfig {
    let mut tls = tonic::transport::ClientTlsConfig::new();
    tls = match &files.roots {
        Some(file) => tls.ca_certificate(tonic::transport::Certificate::from_pem(&file.pem)),
        None => tls.with_webpki_roots(),
    };
    if let Some(client) = &files.client {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            &client.certificate.pem,
            &client.key.pem,
        ));
    }
    tls
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder
        .write_all(body)
        .expect("writing to memory doesn't fail");
    encoder.finish().expect("writing to memory doesn't fail")
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Instant;

    use axum::body::Body;
    use axum::http::{StatusCode, header};

    use super::*;
    use crate::k8s::otlp::SpanLimits;

    /// Serves `router` in-process, over HTTP/1.1 and HTTP/2 without TLS; its address.
    async fn serve(router: axum::Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }

    /// A body that sends a byte every 50 ms and never ends.
    fn trickle() -> Body {
        Body::from_stream(futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok::<_, Infallible>(Bytes::from_static(b"\0")), ()))
        }))
    }

    const TIMEOUT: Duration = Duration::from_millis(500);

    /// Exports one empty request to `endpoint` over `protocol`, with [`TIMEOUT`]; what it came
    /// to and how long it took. Fails the test if it doesn't end by itself.
    async fn export_to(
        protocol: &str,
        endpoint: String,
    ) -> (Result<PartialSuccess, ExportError>, Duration) {
        let vars = [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            (
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                TIMEOUT.as_millis().to_string(),
            ),
        ];
        let config = ExporterConfig::from_sources(
            |k| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.clone())
            },
            |p| std::fs::read(p),
        )
        .unwrap();
        let exporter = Exporter::new(config).unwrap();
        let request = crate::k8s::otlp::request(&[], &[], &SpanLimits::default());
        let started = Instant::now();
        let outcome = tokio::time::timeout(10 * TIMEOUT, exporter.export(request))
            .await
            .expect("the export ends by itself");
        (outcome, started.elapsed())
    }

    fn assert_timed_out(outcome: &Result<PartialSuccess, ExportError>, elapsed: Duration) {
        assert!(
            matches!(outcome, Err(ExportError::Retryable { message, .. }) if message.contains("no whole answer")),
            "{outcome:?}"
        );
        assert!(
            elapsed >= TIMEOUT && elapsed < TIMEOUT * 2,
            "ended after {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn a_collector_trickling_its_http_answer_times_out_within_the_timeout() {
        let router = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(|| async { (StatusCode::OK, trickle()) }),
        );
        let address = serve(router).await;
        let (outcome, elapsed) =
            export_to("http/protobuf", format!("http://{address}/v1/traces")).await;
        assert_timed_out(&outcome, elapsed);
    }

    #[tokio::test]
    async fn a_collector_stalling_its_grpc_answer_after_the_headers_times_out_within_the_timeout() {
        let router = axum::Router::new().route(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            axum::routing::post(|| async {
                let never = futures::stream::pending::<Result<Bytes, Infallible>>();
                (
                    [(header::CONTENT_TYPE, "application/grpc")],
                    Body::from_stream(never),
                )
            }),
        );
        let address = serve(router).await;
        let (outcome, elapsed) = export_to("grpc", format!("http://{address}")).await;
        assert_timed_out(&outcome, elapsed);
    }
}
