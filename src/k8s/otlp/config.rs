//! Where and how to export, from the standard `OTEL_EXPORTER_OTLP_*` variables, and what an
//! exported span keeps, from the span limits' `OTEL_*_LIMIT` ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::deliver::DEFAULT_MAX_REQUEST_BYTES;
use super::limits::SpanLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// How the request bodies are compressed (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// A PEM file read at startup, with the variable that named it, for the errors about it.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub variable: &'static str,
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for PemFile {
    // A private key stays out of the logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.variable, self.path.display())
    }
}

/// The certificates of a TLS connection to the collector; they matter only for an `https://`
/// endpoint (or a gRPC one without scheme and not insecure).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// The trust roots for the collector's certificate (`OTEL_EXPORTER_OTLP_CERTIFICATE`); they
    /// replace the built-in web PKI roots. None: the web PKI roots.
    pub roots: Option<PemFile>,
    /// The client certificate (chain) and its key, for mutual TLS
    /// (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub client: Option<ClientIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub certificate: PemFile,
    pub key: PemFile,
}

impl TlsFiles {
    /// The same files read again, and checked as at startup: a rotated certificate (a Secret
    /// mounted as files is updated in place) is taken without a restart.
    pub fn reread(&self) -> Result<Self, ConfigError> {
        let read = |p: &Path| std::fs::read(p);
        let again = |file: &PemFile, expected| {
            pem_file(file.variable, &file.path.to_string_lossy(), expected, &read)
        };
        Ok(Self {
            roots: self
                .roots
                .as_ref()
                .map(|f| again(f, Pem::Certificates))
                .transpose()?,
            client: self
                .client
                .as_ref()
                .map(|c| {
                    Ok::<_, ConfigError>(ClientIdentity {
                        certificate: again(&c.certificate, Pem::Certificates)?,
                        key: again(&c.key, Pem::PrivateKey)?,
                    })
                })
                .transpose()?,
        })
    }

    /// Whether any file is configured (else there is nothing to read again).
    pub fn any(&self) -> bool {
        self.roots.is_some() || self.client.is_some()
    }
}

/// Where and how to export, from the `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterConfig {
    pub protocol: Protocol,
    /// For gRPC the collector's address, always with its scheme (`http://` for plain text,
    /// `https://` for TLS); for HTTP the full URL of the traces endpoint.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub compression: Compression,
    pub tls: TlsFiles,
    /// What an exported span keeps (the `OTEL_*_LIMIT` variables).
    pub limits: SpanLimits,
    /// The largest request sent, in bytes of encoded protobuf (before compression): a batch
    /// larger is sent in several. [`DEFAULT_MAX_REQUEST_BYTES`] unless the controller's
    /// `--max-request-bytes` says otherwise.
    pub max_request_bytes: usize,
    /// Settings given that have no effect, to be logged.
    pub warnings: Vec<ConfigWarning>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0}: protocol {1:?} is not supported (use grpc or http/protobuf)")]
    Protocol(&'static str, String),
    #[error("{0}: {1:?} is not a number of milliseconds")]
    Timeout(&'static str, String),
    #[error("{0}: {1:?} is not a list of key=value pairs")]
    Headers(&'static str, String),
    #[error("{variable}: {value:?} is not an endpoint: {reason}")]
    Endpoint {
        variable: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{0}: compression {1:?} is not supported (use gzip or none)")]
    Compression(&'static str, String),
    #[error("{0}: {1:?} is neither true nor false")]
    Insecure(&'static str, String),
    #[error("{0}: {1:?} is not a whole number")]
    Limit(&'static str, String),
    #[error("{variable}: can't read {path}: {reason}")]
    File {
        variable: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{variable}: {path} is not a PEM {expected}")]
    Pem {
        variable: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error(
        "{given} is set but not {missing}: mutual TLS needs the client certificate and its key"
    )]
    ClientIdentity {
        given: &'static str,
        missing: &'static str,
    },
}

/// A setting that was read but changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    #[error("{variable} has no effect: {why}")]
    NoEffect {
        variable: &'static str,
        why: &'static str,
    },
}

/// One setting as read: the variable it came from, its value, and whether that variable was the
/// signal-specific one.
pub(super) struct Setting {
    pub(super) name: &'static str,
    pub(super) value: String,
    specific: bool,
}

impl ExporterConfig {
    /// Reads the configuration from the process environment and the files it names.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_sources(|k| std::env::var(k).ok(), |path| std::fs::read(path))
    }

    /// Reads the configuration with `var` for the variables and `read` for the certificate files
    /// they name. Signal-specific variables (`OTEL_EXPORTER_OTLP_TRACES_*`) win over the general
    /// ones; an empty variable is an unset one.
    pub fn from_sources(
        var: impl Fn(&str) -> Option<String>,
        read: impl Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<Self, ConfigError> {
        let pick = |specific, general| pick(&var, specific, general);
        let protocol = match pick(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            None => Protocol::Grpc,
            Some(s) if s.value.trim() == "grpc" => Protocol::Grpc,
            Some(s) if s.value.trim() == "http/protobuf" => Protocol::HttpProtobuf,
            Some(s) => return Err(ConfigError::Protocol(s.name, s.value)),
        };
        let insecure = match pick(
            "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
            "OTEL_EXPORTER_OTLP_INSECURE",
        ) {
            None => None,
            Some(s) if s.value.trim().eq_ignore_ascii_case("true") => Some((s.name, true)),
            Some(s) if s.value.trim().eq_ignore_ascii_case("false") => Some((s.name, false)),
            Some(s) => return Err(ConfigError::Insecure(s.name, s.value)),
        };
        let mut warnings = Vec::new();
        let endpoint = endpoint(
            pick(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            protocol,
            insecure,
            &mut warnings,
        )?;
        let timeout = match pick(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            None => Duration::from_secs(10),
            Some(s) => Duration::from_millis(
                s.value
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::Timeout(s.name, s.value.clone()))?,
            ),
        };
        let headers = match pick(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            None => Vec::new(),
            Some(s) => parse_headers(&s.value).ok_or(ConfigError::Headers(s.name, s.value))?,
        };
        let compression = match pick(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ) {
            None => Compression::None,
            Some(s) if s.value.trim().eq_ignore_ascii_case("gzip") => Compression::Gzip,
            Some(s) if s.value.trim().eq_ignore_ascii_case("none") => Compression::None,
            Some(s) => return Err(ConfigError::Compression(s.name, s.value)),
        };
        let tls = tls_files(&var, &read)?;
        if !endpoint.starts_with("https://") {
            let files = tls
                .roots
                .iter()
                .chain(tls.client.iter().flat_map(|c| [&c.certificate, &c.key]));
            warnings.extend(files.map(|file| ConfigWarning::NoEffect {
                variable: file.variable,
                why: "the endpoint is plain text, without TLS",
            }));
        }
        Ok(Self {
            protocol,
            endpoint,
            headers,
            timeout,
            compression,
            tls,
            limits: SpanLimits::from_vars(&var)?,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            warnings,
        })
    }
}

/// The signal-specific variable's setting, else the general one's; an empty variable is unset.
pub(super) fn pick(
    var: &impl Fn(&str) -> Option<String>,
    specific: &'static str,
    general: &'static str,
) -> Option<Setting> {
    let read = |name: &'static str, specific| {
        var(name)
            .filter(|v| !v.trim().is_empty())
            .map(|value| Setting {
                name,
                value,
                specific,
            })
    };
    read(specific, true).or_else(|| read(general, false))
}

/// The certificate files the variables name, read and checked.
fn tls_files(
    var: &impl Fn(&str) -> Option<String>,
    read: &impl Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<TlsFiles, ConfigError> {
    let pem = |setting: Option<Setting>, expected| {
        setting
            .map(|s| pem_file(s.name, s.value.trim(), expected, read))
            .transpose()
    };
    let roots = pem(
        pick(
            var,
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ),
        Pem::Certificates,
    )?;
    let certificate = pem(
        pick(
            var,
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
        Pem::Certificates,
    )?;
    let key = pem(
        pick(
            var,
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ),
        Pem::PrivateKey,
    )?;
    let client = match (certificate, key) {
        (None, None) => None,
        (Some(certificate), Some(key)) => Some(ClientIdentity { certificate, key }),
        (Some(certificate), None) => {
            return Err(ConfigError::ClientIdentity {
                given: certificate.variable,
                missing: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY or OTEL_EXPORTER_OTLP_CLIENT_KEY",
            });
        }
        (None, Some(key)) => {
            return Err(ConfigError::ClientIdentity {
                given: key.variable,
                missing: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE or OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            });
        }
    };
    Ok(TlsFiles { roots, client })
}

/// The endpoint, with its scheme: for gRPC, `http://` or `https://` as given, else as `insecure`
/// says (TLS by default); for HTTP, the traces URL.
fn endpoint(
    setting: Option<Setting>,
    protocol: Protocol,
    insecure: Option<(&'static str, bool)>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<String, ConfigError> {
    let scheme = setting.as_ref().map(|s| {
        let value = s.value.trim();
        if value.starts_with("http://") || value.starts_with("https://") {
            Ok(true)
        } else if value.contains("://") {
            Err(ConfigError::Endpoint {
                variable: s.name,
                value: s.value.clone(),
                reason: "the scheme must be http or https",
            })
        } else if protocol == Protocol::HttpProtobuf {
            Err(ConfigError::Endpoint {
                variable: s.name,
                value: s.value.clone(),
                reason: "an OTLP/HTTP endpoint is a URL, http:// or https://",
            })
        } else {
            Ok(false)
        }
    });
    let has_scheme = scheme.transpose()?.unwrap_or(true);
    // Plain text asked for and not had is worth a warning; TLS asked for and not had is the
    // `http://` written on purpose.
    if let Some((variable, _)) =
        insecure.filter(|&(_, on)| on && (has_scheme || protocol == Protocol::HttpProtobuf))
    {
        warnings.push(ConfigWarning::NoEffect {
            variable,
            why: "it applies only to a gRPC endpoint without scheme; http:// or https:// decides",
        });
    }
    Ok(match (setting, protocol) {
        (None, Protocol::Grpc) => "http://localhost:4317".to_owned(),
        (None, Protocol::HttpProtobuf) => "http://localhost:4318/v1/traces".to_owned(),
        (Some(s), Protocol::Grpc) if !has_scheme => {
            let scheme = if insecure.is_some_and(|(_, on)| on) {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{}", s.value.trim())
        }
        // The general HTTP variable is a base URL that gets the traces path; the others are used
        // as they are.
        (Some(s), Protocol::Grpc) => s.value.trim().to_owned(),
        (Some(s), Protocol::HttpProtobuf) if s.specific => s.value.trim().to_owned(),
        (Some(s), Protocol::HttpProtobuf) => {
            format!("{}/v1/traces", s.value.trim().trim_end_matches('/'))
        }
    })
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum Pem {
    Certificates,
    PrivateKey,
}

fn pem_file(
    variable: &'static str,
    path: &str,
    expected: Pem,
    read: &impl Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<PemFile, ConfigError> {
    let path = PathBuf::from(path);
    let pem = read(&path).map_err(|e| ConfigError::File {
        variable,
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let valid = match expected {
        Pem::Certificates => {
            let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
            certificates.is_ok_and(|c| !c.is_empty())
        }
        Pem::PrivateKey => PrivateKeyDer::from_pem_slice(&pem).is_ok(),
    };
    if !valid {
        return Err(ConfigError::Pem {
            variable,
            path,
            expected: match expected {
                Pem::Certificates => "certificate",
                Pem::PrivateKey => "private key",
            },
        });
    }
    Ok(PemFile {
        variable,
        path,
        pem,
    })
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

pub(super) fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Two hex digits: `from_str_radix` alone would take a sign too.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
        ExporterConfig::from_sources(|k| vars.get(k).cloned(), read)
    }

    /// The files the tests name: a CA, a client certificate and key, and one that isn't PEM.
    fn read(path: &Path) -> std::io::Result<Vec<u8>> {
        let pem = |der: &[u8], label: &str| {
            use base64::Engine as _;
            let body = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n").into_bytes()
        };
        match path.to_str().unwrap() {
            "/etc/otlp/ca.crt" | "/etc/otlp/tls.crt" => Ok(pem(b"not parsed here", "CERTIFICATE")),
            "/etc/otlp/tls.key" => Ok(pem(b"not parsed here", "PRIVATE KEY")),
            "/etc/otlp/empty" => Ok(b"no PEM here".to_vec()),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        }
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
    fn defaults_send_plain_uncompressed_and_warn_of_nothing() {
        let c = config(&[]).unwrap();
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.tls, TlsFiles::default());
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn grpc_endpoint_without_scheme_is_tls_unless_insecure() {
        let endpoint = |vars: &[(&str, &str)]| config(vars).unwrap().endpoint;
        let address = ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317");
        assert_eq!(endpoint(&[address]), "https://collector:4317");
        assert_eq!(
            endpoint(&[address, ("OTEL_EXPORTER_OTLP_INSECURE", "false")]),
            "https://collector:4317"
        );
        assert_eq!(
            endpoint(&[address, ("OTEL_EXPORTER_OTLP_INSECURE", "TRUE")]),
            "http://collector:4317"
        );
        assert_eq!(
            endpoint(&[
                address,
                ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
                ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "False"),
            ]),
            "https://collector:4317"
        );
        assert!(
            config(&[address, ("OTEL_EXPORTER_OTLP_INSECURE", "true")])
                .unwrap()
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn the_scheme_decides_over_insecure_and_a_plain_text_not_had_is_warned_of() {
        for (endpoint, protocol) in [
            ("https://collector:4317", "grpc"),
            ("http://collector:4317", "grpc"),
            ("http://collector:4318", "http/protobuf"),
        ] {
            let c = config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true"),
            ])
            .unwrap();
            assert!(c.endpoint.starts_with(endpoint), "{endpoint}");
            let explicit_default = config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_INSECURE", "false"),
            ]);
            assert_eq!(explicit_default.unwrap().warnings, [], "{endpoint}");
            assert!(
                matches!(
                    c.warnings[..],
                    [ConfigWarning::NoEffect {
                        variable: "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
                        ..
                    }]
                ),
                "{endpoint}: {:?}",
                c.warnings
            );
        }
    }

    #[test]
    fn endpoints_that_cant_be_used_name_the_variable() {
        for (vars, variable) in [
            (
                &[
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
                ][..],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "unix:///run/otlp.sock",
                )][..],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
        ] {
            match config(vars) {
                Err(ConfigError::Endpoint { variable: v, .. }) => assert_eq!(v, variable),
                other => panic!("{vars:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn insecure_is_true_or_false_only() {
        assert_eq!(
            config(&[("OTEL_EXPORTER_OTLP_INSECURE", "yes")]),
            Err(ConfigError::Insecure(
                "OTEL_EXPORTER_OTLP_INSECURE",
                "yes".into()
            ))
        );
    }

    #[test]
    fn compression_is_gzip_or_none_the_signal_specific_winning() {
        let compression = |vars: &[(&str, &str)]| config(vars).map(|c| c.compression);
        assert_eq!(
            compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]),
            Ok(Compression::Gzip)
        );
        assert_eq!(
            compression(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", " GZIP ")]),
            Ok(Compression::Gzip)
        );
        assert_eq!(
            compression(&[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ]),
            Ok(Compression::None)
        );
        // Empty is unset: the general variable applies.
        assert_eq!(
            compression(&[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", ""),
            ]),
            Ok(Compression::Gzip)
        );
        assert_eq!(
            compression(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd")]),
            Err(ConfigError::Compression(
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                "zstd".into()
            ))
        );
    }

    const TLS: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317");

    #[test]
    fn certificate_and_client_identity_are_read_from_their_files() {
        let c = config(&[
            TLS,
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otlp/ignored.crt"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/etc/otlp/ca.crt"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/otlp/tls.crt"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/etc/otlp/tls.key"),
        ])
        .unwrap();
        let roots = c.tls.roots.unwrap();
        assert_eq!(roots.variable, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE");
        assert_eq!(roots.path, Path::new("/etc/otlp/ca.crt"));
        assert_eq!(roots.pem, read(Path::new("/etc/otlp/ca.crt")).unwrap());
        let client = c.tls.client.unwrap();
        assert_eq!(client.certificate.path, Path::new("/etc/otlp/tls.crt"));
        assert_eq!(client.key.variable, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY");
        assert!(c.warnings.is_empty());
        assert!(!format!("{client:?}").contains("PRIVATE"), "{client:?}");
    }

    #[test]
    fn certificates_for_a_plain_text_endpoint_are_warned_of() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otlp/ca.crt"),
        ])
        .unwrap();
        assert_eq!(
            c.warnings,
            [ConfigWarning::NoEffect {
                variable: "OTEL_EXPORTER_OTLP_CERTIFICATE",
                why: "the endpoint is plain text, without TLS"
            }]
        );
    }

    #[test]
    fn unreadable_or_wrong_files_name_the_variable_and_the_path() {
        match config(&[
            TLS,
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otlp/missing.crt"),
        ]) {
            Err(e @ ConfigError::File { variable, .. }) => {
                assert_eq!(variable, "OTEL_EXPORTER_OTLP_CERTIFICATE");
                assert!(e.to_string().contains("/etc/otlp/missing.crt"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        for (variable, expected) in [
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "certificate"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "certificate"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "private key"),
        ] {
            assert_eq!(
                config(&[TLS, (variable, "/etc/otlp/empty")]),
                Err(ConfigError::Pem {
                    variable,
                    path: "/etc/otlp/empty".into(),
                    expected
                })
            );
        }
        // A certificate is not a key.
        assert!(matches!(
            config(&[
                TLS,
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/otlp/tls.crt"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/otlp/tls.crt"),
            ]),
            Err(ConfigError::Pem {
                expected: "private key",
                ..
            })
        ));
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_the_key_its_certificate() {
        match config(&[
            TLS,
            (
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                "/etc/otlp/tls.crt",
            ),
        ]) {
            Err(ConfigError::ClientIdentity { given, missing }) => {
                assert_eq!(given, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE");
                assert!(
                    missing.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY"),
                    "{missing}"
                );
            }
            other => panic!("{other:?}"),
        }
        match config(&[TLS, ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/otlp/tls.key")]) {
            Err(ConfigError::ClientIdentity { given, missing }) => {
                assert_eq!(given, "OTEL_EXPORTER_OTLP_CLIENT_KEY");
                assert!(
                    missing.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
                    "{missing}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
