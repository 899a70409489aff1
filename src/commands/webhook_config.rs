//! `jobtrace webhook-config`: prints the `MutatingWebhookConfiguration` for a webhook reached at a
//! URL (local development).

use std::path::PathBuf;

use crate::k8s::registration::{Registration, WebhookAddress, webhook_configuration};

/// The webhook `jobtrace webhook-config` registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URL of the webhook, e.g. `https://127.0.0.1:8443`.
    pub url: String,
    /// PEM file of the CA that signed the webhook's certificate, written as `caBundle`.
    pub ca_file: Option<PathBuf>,
    /// jobtrace's own namespace, never sent to the webhook (nor is kube-system).
    pub namespace: String,
}

/// Why `jobtrace webhook-config` could not print the configuration.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("reading the CA file {}", path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// `jobtrace webhook-config`: the configuration, as YAML, for a webhook reached at `config.url`,
/// trusting the CA in `config.ca_file` when given.
pub fn webhook_config_yaml(config: &Config) -> Result<String, WebhookConfigError> {
    let mut registration =
        Registration::new(WebhookAddress::Url(config.url.clone()), &config.namespace);
    if let Some(path) = &config.ca_file {
        let ca = std::fs::read(path).map_err(|source| WebhookConfigError::CaFile {
            path: path.clone(),
            source,
        })?;
        registration.ca_bundle = Some(ca);
    }
    Ok(serde_saphyr::to_string(&webhook_configuration(
        &registration,
    ))?)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;

    use super::*;

    #[test]
    fn webhook_config_is_printed_as_yaml_and_a_missing_ca_file_is_named() {
        let asked = |ca_file: Option<&str>| Config {
            url: "https://127.0.0.1:8443".into(),
            ca_file: ca_file.map(PathBuf::from),
            namespace: "jobtrace".into(),
        };
        let yaml = webhook_config_yaml(&asked(None)).unwrap();
        let config: MutatingWebhookConfiguration = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(
            config.webhooks.unwrap()[0].client_config.url.as_deref(),
            Some("https://127.0.0.1:8443/mutate/jobs")
        );
        let missing = webhook_config_yaml(&asked(Some("/nonexistent/ca.crt"))).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "reading the CA file /nonexistent/ca.crt"
        );
    }
}
