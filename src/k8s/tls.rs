//! The webhook's serving certificate, read from PEM files and reloaded when they change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;

/// Where the serving certificate and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("can't load the TLS certificate {cert} with key {key}: {source}")]
pub struct TlsError {
    cert: String,
    key: String,
    source: std::io::Error,
}

impl ServingCertFiles {
    fn error(&self, source: std::io::Error) -> TlsError {
        TlsError {
            cert: self.cert.display().to_string(),
            key: self.key.display().to_string(),
            source,
        }
    }

    async fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |path: &Path| tokio::fs::read(path.to_owned());
        let cert = read(&self.cert).await.map_err(|e| self.error(e))?;
        let key = read(&self.key).await.map_err(|e| self.error(e))?;
        Ok((cert, key))
    }

    /// Loads the certificate; fails when the files are missing or not a matching PEM pair.
    /// Returns the certificate's PEM too. From then on admissions are tagged with the key derived
    /// from its private key ([`crate::core::mutate::tag`]).
    pub async fn load(&self) -> Result<(RustlsConfig, Vec<u8>), TlsError> {
        let (cert, key) = self.read().await?;
        let config = RustlsConfig::from_pem(cert.clone(), key.clone())
            .await
            .map_err(|e| self.error(e))?;
        crate::k8s::webhook::keys::use_serving_key(&key);
        Ok((config, cert))
    }

    /// Rereads the files every `interval` and swaps the certificate in when they changed. A pair
    /// that doesn't load is logged and the current certificate stays. New connections get the new
    /// certificate; open ones keep theirs. Admissions are then tagged with the key derived from the
    /// new private key.
    /// `expiry` is set to the loaded certificate's expiry (unix seconds).
    pub async fn watch(
        self,
        config: RustlsConfig,
        interval: Duration,
        expiry: prometheus_client::metrics::gauge::Gauge,
    ) {
        let mut current = self.read().await.ok();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Ok(files) = self.read().await else {
                continue;
            };
            if current.as_ref() == Some(&files) {
                continue;
            }
            match config
                .reload_from_pem(files.0.clone(), files.1.clone())
                .await
            {
                Ok(()) => {
                    tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    crate::k8s::webhook::keys::use_serving_key(&files.1);
                    if let Some(at) = crate::k8s::certs::expiry(&files.0) {
                        expiry.set(at);
                    }
                    current = Some(files);
                }
                // Mid-rotation the cert and key may not match yet: keep trying.
                Err(e) => tracing::warn!(error = %e, "new serving certificate not loaded yet"),
            }
        }
    }
}
