//! The PEM files the variables name (`OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE`,
//! `_CLIENT_KEY`), read at startup and checked.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{ConfigError, Setting, pick};

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
pub struct CollectorTls {
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

impl CollectorTls {
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

/// The certificate files the variables name, read and checked.
pub(super) fn tls_files(
    var: &impl Fn(&str) -> Option<String>,
    read: &impl Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<CollectorTls, ConfigError> {
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
    Ok(CollectorTls { roots, client })
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

#[cfg(test)]
mod tests {
    use super::super::tests::{TLS, config, read};
    use super::*;

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
