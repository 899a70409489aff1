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
use super::config::{Compression, ExporterConfig, Protocol, TlsFiles};

/// What the collector said about an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Spans the collector accepted the request for but rejected (partial success).
    pub rejected: i64,
}

/// An OTLP exporter. Its certificate files are read again every [`RELOAD_EVERY`] while it
/// exports, and a changed (valid) set replaces the clients, so a rotated certificate is used
/// without a restart.
pub struct Exporter {
    config: ExporterConfig,
    current: std::sync::Mutex<Current>,
    reload_every: Duration,
}

/// How often the exporter reads its certificate files again, at most.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The clients in use, the certificate files they were built from, and when those were read.
struct Current {
    clients: Arc<Clients>,
    files: TlsFiles,
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

    /// Reads the certificate files again every `every` instead of [`RELOAD_EVERY`].
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

    /// Sends one request.
    pub async fn export(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<Accepted, ExportError> {
        let response = match &*self.clients().await {
            Clients::Grpc(grpc) => self.export_grpc(grpc.clone(), request).await?,
            Clients::Http(http) => self.export_http(http, request).await?,
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
                    message: format!("connection: {}", chain(&e)),
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
fn client_tls(files: &TlsFiles) -> Result<rustls::ClientConfig, BuildError> {
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
fn grpc_tls(files: &TlsFiles) -> tonic::transport::ClientTlsConfig {
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
