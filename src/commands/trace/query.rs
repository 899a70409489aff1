//! Reading a trace from a Jaeger-compatible query API: `GET {base}/api/traces/{trace id}`, over
//! HTTP or HTTPS (verified against the bundled web PKI roots).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::tree::{self, Trace};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// At most this much of an error answer's body is quoted.
const QUOTED: usize = 200;

/// A query API's base URL, and a client for it.
pub struct QueryApi {
    base: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

/// What the query API said about a trace.
#[derive(Debug)]
pub enum Fetched {
    Found(Trace),
    /// 404, or an answer without the trace's spans.
    NotFound,
}

/// Why the query API gave no answer about the trace.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{url}: not an http:// or https:// URL")]
    Url { url: String },
    #[error("{url}")]
    Request {
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{url}: no answer within {TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url}: reading the answer")]
    Body { url: String, source: hyper::Error },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: not the JSON of a Jaeger query API")]
    Json {
        url: String,
        source: serde_json::Error,
    },
}

impl QueryApi {
    /// A client for the query API at `base` (`http://127.0.0.1:16686`, or with a path prefix).
    pub fn new(base: &str) -> Result<Self, QueryError> {
        let base = base.trim_end_matches('/').to_owned();
        let uri: hyper::Uri = base
            .parse()
            .map_err(|_| QueryError::Url { url: base.clone() })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(QueryError::Url { url: base });
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Self { base, client })
    }

    /// The address the trace `trace_id` is read from.
    pub fn trace_url(&self, trace_id: &str) -> String {
        format!("{}/api/traces/{trace_id}", self.base)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Asks for the trace `trace_id` (32 hex digits) once.
    pub async fn fetch(&self, trace_id: &str) -> Result<Fetched, QueryError> {
        let url = self.trace_url(trace_id);
        let request = hyper::Request::get(&url)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|_| QueryError::Url { url: url.clone() })?;
        let answer = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|source| QueryError::Request {
                        url: url.clone(),
                        source,
                    })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|source| QueryError::Body {
                    url: url.clone(),
                    source,
                })?
                .to_bytes();
            Ok::<_, QueryError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, answer)
            .await
            .map_err(|_| QueryError::Timeout { url: url.clone() })??;
        if status == hyper::StatusCode::NOT_FOUND {
            return Ok(Fetched::NotFound);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let mut quoted: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if quoted.len() > QUOTED {
                let end = (0..=QUOTED)
                    .rev()
                    .find(|i| quoted.is_char_boundary(*i))
                    .unwrap_or(0);
                quoted.truncate(end);
                quoted.push('…');
            }
            return Err(QueryError::Status {
                url,
                status: status.as_u16(),
                body: quoted,
            });
        }
        match tree::parse(&body, trace_id) {
            Ok(Some(trace)) => Ok(Fetched::Found(trace)),
            Ok(None) => Ok(Fetched::NotFound),
            Err(source) => Err(QueryError::Json { url, source }),
        }
    }
}
