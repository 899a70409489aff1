//! Where and how to export, from the standard `OTEL_EXPORTER_OTLP_*` variables.

use std::time::Duration;

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
}
