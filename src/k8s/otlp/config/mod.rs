//! Where and how to export, from the standard `OTEL_EXPORTER_OTLP_*` variables, and what an
//! exported span keeps, from the span limits' `OTEL_*_LIMIT` ones. The certificate files they
//! name are read in [`pem`], the headers' and attributes' values decoded in [`headers`].

pub mod headers;
pub mod pem;

use std::path::{Path, PathBuf};
use std::time::Duration;

use headers::parse_headers;
pub(super) use headers::percent_decode;
use pem::tls_files;
pub use pem::{ClientIdentity, CollectorTls, PemFile};

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
    pub tls: CollectorTls,
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

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;

    use super::*;

    pub(super) fn config(vars: &[(&str, &str)]) -> Result<ExporterConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        ExporterConfig::from_sources(|k| vars.get(k).cloned(), read)
    }

    /// The files the tests name: a CA, a client certificate and key, and one that isn't PEM.
    pub(super) fn read(path: &Path) -> std::io::Result<Vec<u8>> {
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
        assert_eq!(c.tls, CollectorTls::default());
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

    pub(super) const TLS: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317");

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
}
