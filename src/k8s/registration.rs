//! The `MutatingWebhookConfiguration` that sends Jobs and their pods to jobtrace
//! (`jobtrace webhook-config` prints it: [`crate::commands::webhook_config`]).

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde_json::{Value, json};

use crate::core::names;

/// How the apiserver reaches the webhook.
#[derive(Debug, Clone)]
pub enum WebhookAddress {
    /// A Service in the cluster (the normal install).
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// A URL such as `https://127.0.0.1:8443`, for a webhook running outside the cluster.
    Url(String),
}

/// What varies between installs.
#[derive(Debug, Clone)]
pub struct Registration {
    pub name: String,
    pub address: WebhookAddress,
    /// PEM of the CA that signed the webhook's serving certificate.
    pub ca_bundle: Option<Vec<u8>>,
    /// Namespaces never sent to the webhook: `kube-system` and jobtrace's own, at least.
    pub excluded_namespaces: Vec<String>,
    /// When set, only these namespaces are sent to the webhook.
    pub only_namespaces: Option<Vec<String>>,
    pub timeout_seconds: i32,
    /// `Ignore` (the default: the webhook never blocks a Job) or `Fail`.
    pub failure_policy: String,
    /// The CEL condition of the Jobs webhook: [`job_match_condition`] unless policies widen it.
    pub jobs_condition: String,
}

impl Registration {
    /// Defaults for a webhook served at `address`, excluding `kube-system` and `own_namespace`.
    pub fn new(address: WebhookAddress, own_namespace: &str) -> Self {
        Self {
            name: "jobtrace".to_owned(),
            address,
            ca_bundle: None,
            excluded_namespaces: vec!["kube-system".to_owned(), own_namespace.to_owned()],
            only_namespaces: None,
            timeout_seconds: 3,
            failure_policy: "Ignore".to_owned(),
            jobs_condition: job_match_condition(),
        }
    }
}

/// A CEL condition true when the Job carries any input annotation, so Jobs without trace context
/// are never sent to the webhook.
pub fn job_match_condition() -> String {
    let keys: Vec<String> = names::TRACEPARENT_KEYS
        .iter()
        .chain(&names::TRACESTATE_KEYS)
        .chain(&names::BAGGAGE_KEYS)
        .map(|k| format!("'{k}'"))
        .collect();
    format!(
        "has(object.metadata.annotations) && [{}].exists(k, k in object.metadata.annotations)",
        keys.join(", ")
    )
}

/// The Jobs webhook's condition when policies trace every Job of some namespaces (root traces):
/// Jobs with context, and every Job of `namespaces`; `None`: every Job at all (the cluster
/// defaults turn root traces on).
pub fn job_match_condition_for(namespaces: Option<&[String]>) -> String {
    match namespaces {
        None => "true".to_owned(),
        Some([]) => job_match_condition(),
        Some(namespaces) => {
            let quoted: Vec<String> = namespaces.iter().map(|n| format!("'{n}'")).collect();
            format!(
                "({}) || request.namespace in [{}]",
                job_match_condition(),
                quoted.join(", ")
            )
        }
    }
}

/// Builds the configuration: one webhook for Jobs (CREATE, only with input annotations), one for
/// the pods of traced Jobs (CREATE, label-selected).
pub fn webhook_configuration(registration: &Registration) -> MutatingWebhookConfiguration {
    let client_config = |path: &str| {
        let mut config = match &registration.address {
            WebhookAddress::Service {
                namespace,
                name,
                port,
            } => {
                json!({ "service": { "namespace": namespace, "name": name, "path": path, "port": port } })
            }
            WebhookAddress::Url(url) => {
                json!({ "url": format!("{}{path}", url.trim_end_matches('/')) })
            }
        };
        if let Some(ca) = &registration.ca_bundle {
            config["caBundle"] = Value::String(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                ca,
            ));
        }
        config
    };
    // The exclusions always hold; a list of namespaces narrows further (as the Helm chart does).
    let mut expressions = Vec::new();
    if let Some(only) = &registration.only_namespaces {
        expressions.push(
            json!({ "key": "kubernetes.io/metadata.name", "operator": "In", "values": only }),
        );
    }
    expressions.push(json!({
        "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": registration.excluded_namespaces
    }));
    let namespace_selector = json!({ "matchExpressions": expressions });
    let common = |name: &str, path: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": registration.failure_policy,
            "timeoutSeconds": registration.timeout_seconds,
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
            "clientConfig": client_config(path),
            "namespaceSelector": namespace_selector,
        })
    };
    let mut jobs = common("jobs.jobtrace.dev", "/mutate/jobs");
    jobs["rules"] = json!([{
        "apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"],
        "resources": ["jobs"], "scope": "Namespaced"
    }]);
    jobs["matchConditions"] = json!([{
        "name": "has-trace-context",
        "expression": registration.jobs_condition,
    }]);
    let mut pods = common("pods.jobtrace.dev", "/mutate/pods");
    pods["rules"] = json!([{
        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
        "resources": ["pods"], "scope": "Namespaced"
    }]);
    pods["objectSelector"] = json!({ "matchLabels": { names::TRACED_LABEL: "true" } });
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": registration.name,
            "labels": { "app.kubernetes.io/name": "jobtrace" }
        },
        "webhooks": [jobs, pods],
    }))
    .expect("a valid MutatingWebhookConfiguration")
}

#[cfg(test)]
mod match_condition_tests {
    use super::*;

    #[test]
    fn the_condition_lets_through_jobs_of_namespaces_with_root_traces() {
        assert_eq!(job_match_condition_for(Some(&[])), job_match_condition());
        assert_eq!(job_match_condition_for(None), "true");
        let some = job_match_condition_for(Some(&["batch".into(), "etl".into()]));
        assert!(some.starts_with(&format!("({})", job_match_condition())));
        assert!(
            some.ends_with(" || request.namespace in ['batch', 'etl']"),
            "{some}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_blocks_and_selects_narrowly() {
        let config = webhook_configuration(&Registration::new(
            WebhookAddress::Url("https://127.0.0.1:8443/".into()),
            "jobtrace-system",
        ));
        let webhooks = config.webhooks.unwrap();
        assert_eq!(webhooks.len(), 2);
        for webhook in &webhooks {
            assert_eq!(webhook.failure_policy.as_deref(), Some("Ignore"));
            assert_eq!(webhook.side_effects, "None");
            assert!(webhook.timeout_seconds.unwrap() <= 5);
            let excluded = &webhook
                .namespace_selector
                .as_ref()
                .unwrap()
                .match_expressions
                .as_ref()
                .unwrap()[0];
            assert_eq!(excluded.operator, "NotIn");
            assert_eq!(
                excluded.values.as_deref().unwrap(),
                ["kube-system", "jobtrace-system"]
            );
        }
        let jobs = &webhooks[0];
        assert_eq!(
            jobs.client_config.url.as_deref(),
            Some("https://127.0.0.1:8443/mutate/jobs")
        );
        let condition = &jobs.match_conditions.as_ref().unwrap()[0].expression;
        assert!(
            condition.contains(
                "'jobtrace.dev/traceparent', 'tracing.k8s.io/traceparent', 'traceparent'"
            )
        );
        let pods = &webhooks[1];
        assert_eq!(
            pods.object_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["jobtrace.dev/traced"],
            "true"
        );
        assert!(pods.match_conditions.is_none());
    }

    #[test]
    fn service_endpoint_and_ca_bundle() {
        let mut registration = Registration::new(
            WebhookAddress::Service {
                namespace: "jobtrace".into(),
                name: "jobtrace-webhook".into(),
                port: 443,
            },
            "jobtrace",
        );
        registration.ca_bundle = Some(b"PEM".to_vec());
        let config = webhook_configuration(&registration);
        let client = &config.webhooks.unwrap()[1].client_config;
        let service = client.service.as_ref().unwrap();
        assert_eq!(service.path.as_deref(), Some("/mutate/pods"));
        assert_eq!(client.ca_bundle.as_ref().unwrap().0, b"PEM");
    }
}
