//! Fixtures shared by the in-process tests.
#![allow(dead_code)]

use serde_json::{Value, json};

pub const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// An `AdmissionReview` v1 request for `object` of `kind` (`group`/`kind`), as the apiserver sends.
pub fn review(group: &str, kind: &str, operation: &str, object: &Value) -> Value {
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": group, "version": "v1", "kind": kind },
            "resource": { "group": group, "version": "v1", "resource": resource },
            "requestKind": { "group": group, "version": "v1", "kind": kind },
            "requestResource": { "group": group, "version": "v1", "resource": resource },
            "namespace": "reports",
            "operation": operation,
            "userInfo": { "username": "ci", "groups": ["system:authenticated"] },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" }
        }
    })
}

/// A typical Job: three containers and one init container.
pub fn job(annotations: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "nightly", "namespace": "reports", "annotations": annotations },
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "initContainers": [{ "name": "fetch", "image": "busybox" }],
                    "containers": [
                        { "name": "a", "image": "app" },
                        { "name": "b", "image": "app" },
                        { "name": "c", "image": "app" }
                    ]
                }
            }
        }
    })
}

/// Generates a CA and a serving certificate for 127.0.0.1 and localhost, as PEM, plus the CA's
/// DER for a client's trust store.
pub struct TestPki {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_der: Vec<u8>,
}

impl TestPki {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_der: ca.der().to_vec(),
        }
    }
}
