//! The Helm chart, rendered by helm with no cluster: `helm lint`, the defaults, every value of
//! `values.yaml` (one test each, in `value`), and the schema's refusals. helm is the one
//! `hack/build-bins.sh helm` builds (`make test` builds it first). Without it, each test fails
//! under CI (the `CI` variable set) and elsewhere is ignored, saying so on stderr. The chart
//! installed on a control plane is tested in tests/e2e/chart.rs.

use std::collections::BTreeSet;
use std::io::Write as _;

use jobtrace::k8s::registration::{Registration, WebhookAddress, webhook_configuration};
use jobtrace_testkit::helm::{
    self, args, chart_dir, container, defaults, env, env_value, helm, kind, kube_version, one,
    pod_spec, render, webhooks,
};
use serde_json::{Value, json};

/// Whether helm is there. Without it a test fails under CI (the `CI` variable set), which must
/// run every chart test; elsewhere it is ignored, saying so and why on stderr, past the test
/// harness's capture.
fn helm_found() -> bool {
    let helm = helm::helm_binary();
    if helm.is_file() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
        "helm not found at {}, and CI is set: the chart tests must run (hack/build-bins.sh helm \
         builds it; `make test` does first)",
        helm.display()
    );
    let thread = std::thread::current();
    let line = format!(
        "{}: ignored, helm not found at {} (hack/build-bins.sh helm builds it)\n",
        thread.name().unwrap_or("a chart test"),
        helm.display()
    );
    // One write, so that the lines of tests running at once don't mix.
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

#[test]
fn chart_lints_with_the_cluster_version() {
    if !helm_found() {
        return;
    }
    let version = kube_version();
    let chart = chart_dir();
    for extra in [
        &[][..],
        &["--set", "certificates.certManager.enabled=true"][..],
    ] {
        let mut args = vec![
            "lint",
            "--strict",
            chart.to_str().unwrap(),
            "--kube-version",
            &version,
        ];
        args.extend_from_slice(extra);
        let output = helm(&args);
        assert!(
            output.status.success(),
            "helm lint {extra:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn defaults_are_highly_available_restricted_and_match_the_design() {
    if !helm_found() {
        return;
    }
    let docs = defaults();
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    // The restricted Pod Security profile.
    let pod = pod_spec(&docs);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container(&docs)["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    let resources = &container(&docs)["resources"];
    for part in ["requests", "limits"] {
        assert!(resources[part]["cpu"].is_string() && resources[part]["memory"].is_string());
    }
    // Spread over nodes, selecting this release's pods.
    let spread = pod["topologySpreadConstraints"].as_array().unwrap();
    assert_eq!(spread[0]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        spread[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "jt"
    );
    assert_eq!(one(&docs, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
    // Probes on the metrics port: readiness on admissions alone, none on the controller's
    // `/syncz` (a listing leader must stay in the endpoints, and alive).
    assert_eq!(
        probe_paths(&docs),
        [
            ("livenessProbe", "/healthz".to_owned()),
            ("readinessProbe", "/readyz".to_owned()),
            ("startupProbe", "/healthz".to_owned()),
        ]
    );
    // Self-managed certificates for the Service's names.
    let args = args(&docs);
    assert!(args.contains(&"--cert-secret=jt-jobtrace-tls".to_owned()));
    assert!(args.contains(
        &"--cert-name=jt-jobtrace.tracing.svc,jt-jobtrace.tracing.svc.cluster.local".to_owned()
    ));
    assert_eq!(env_value(&docs, "JOBTRACE_LOG_FORMAT"), "json");
    // The webhook configuration is the one jobtrace itself builds, release
    // namespace excluded.
    let expected = webhook_configuration(&Registration::new(
        WebhookAddress::Service {
            namespace: "tracing".into(),
            name: "jt-jobtrace".into(),
            port: 443,
        },
        "tracing",
    ));
    let expected = serde_json::to_value(expected).unwrap();
    assert_eq!(webhooks(&docs), expected["webhooks"].as_array().unwrap());
    assert_eq!(kind(&docs, "Certificate").len(), 0);
}

/// Each probe of the jobtrace container and the path it gets, on the metrics port.
fn probe_paths(docs: &[Value]) -> Vec<(&'static str, String)> {
    let container = container(docs);
    ["livenessProbe", "readinessProbe", "startupProbe"]
        .into_iter()
        .map(|probe| {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["port"], "metrics", "{probe}");
            (probe, get["path"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The chart's probes against jobtrace's own metrics port, its controller leading and listing:
/// every probe succeeds, so the replica stays in the Service's endpoints and is not restarted;
/// and once it is asked to stop, readiness fails first.
#[tokio::test]
async fn the_probes_pass_while_the_controller_lists() {
    use axum::body::Body;
    use hyper::http::{Request, StatusCode};
    use jobtrace::k8s::controller::ControllerSync;
    use jobtrace::k8s::metrics_port::{PortState, Readiness, router};
    use tower::ServiceExt as _;
    if !helm_found() {
        return;
    }
    let docs = defaults();
    let controller = std::sync::Arc::new(ControllerSync::default());
    controller.leading();
    let port_state = PortState {
        metrics: std::sync::Arc::default(),
        readiness: std::sync::Arc::new(Readiness::default()),
        controller: Some(controller),
    };
    // The webhook has its certificate.
    port_state.readiness.set_serving();
    let status = |path: String| {
        let port_state = port_state.clone();
        async move {
            router(port_state)
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    for (probe, path) in probe_paths(&docs) {
        assert_eq!(status(path.clone()).await, StatusCode::OK, "{probe} {path}");
    }
    assert_eq!(
        status("/syncz".to_owned()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "the controller lists"
    );
    port_state.readiness.set_stopping();
    for (probe, path) in probe_paths(&docs) {
        let expected = if probe == "readinessProbe" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        assert_eq!(
            status(path.clone()).await,
            expected,
            "{probe} {path} stopping"
        );
    }
}

#[test]
fn rbac_is_least_privilege_and_every_rule_says_why() {
    if !helm_found() {
        return;
    }
    let docs = defaults();
    for role in kind(&docs, "ClusterRole")
        .into_iter()
        .chain(kind(&docs, "Role"))
    {
        for rule in role["rules"].as_array().unwrap() {
            let text = rule.to_string();
            assert!(!text.contains("\"*\""), "no wildcard: {text}");
            let verbs = rule["verbs"].as_array().unwrap();
            for verb in verbs {
                // delete: the uninstall hook's, of jobtrace's own webhook configuration only.
                let delete = verb == "delete"
                    && rule["resources"] == json!(["mutatingwebhookconfigurations"])
                    && rule["resourceNames"].is_array();
                assert!(
                    delete
                        || ["get", "list", "watch", "patch", "create", "update"]
                            .contains(&verb.as_str().unwrap()),
                    "{text}"
                );
            }
            // Whatever can be limited to one object is.
            if rule["resources"] == json!(["secrets"])
                || rule["resources"] == json!(["mutatingwebhookconfigurations"])
            {
                assert!(
                    verbs == &vec![json!("create")] || rule["resourceNames"].is_array(),
                    "{text}"
                );
            }
            if rule["resources"] == json!(["secrets"]) {
                assert_eq!(
                    role["kind"], "Role",
                    "Secrets only in the release's namespace"
                );
            }
        }
    }
    // Each rule in the template is preceded by a comment saying why.
    let template = std::fs::read_to_string(chart_dir().join("templates/rbac.yaml")).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            let previous = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim())
                .find(|l| !l.is_empty() && !l.starts_with("{{"))
                .unwrap();
            assert!(
                previous.starts_with('#') || previous.starts_with("verbs:"),
                "rule at line {} has no comment: {previous}",
                i + 1
            );
        }
    }
}

/// The rules of the chart's `Role`s and `ClusterRole`s that grant access to `resource`.
fn grants<'a>(docs: &'a [Value], resource: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .flat_map(|role| role["rules"].as_array().into_iter().flatten())
        .filter(|rule| {
            rule["resources"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == resource))
        })
        .collect()
}

/// The pod's volume `name`.
fn volume<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    pod_spec(docs)["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The container's mount of volume `name`.
fn mount<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    container(docs)["volumeMounts"]
        .as_array()
        .and_then(|v| v.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no mount of {name}"))
}

#[test]
fn the_exporter_environment_rendered_is_what_jobtrace_reads() {
    if !helm_found() {
        return;
    }
    let tls = [
        "--set",
        "otlp.endpoint=https://collector:4317,otlp.compression=gzip,otlp.tls.ca.secretName=ca,otlp.tls.client.secretName=client",
        "--set-json",
        r#"otlp.resourceAttributes={"k8s.cluster.name":"prod"}"#,
    ];
    for flags in [&[][..], &tls[..]] {
        let docs = render("jt", "tracing", flags).unwrap();
        let vars: std::collections::HashMap<String, String> = container(&docs)["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect();
        // The files at the paths the chart mounts, with what a Secret of PEM would hold.
        let mounted: Vec<&str> = container(&docs)["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        let read = |path: &std::path::Path| {
            let dir = path.parent().unwrap().to_str().unwrap();
            assert!(mounted.contains(&dir), "{} is not mounted", path.display());
            let label = if path.extension().is_some_and(|e| e == "key") {
                "PRIVATE KEY"
            } else {
                "CERTIFICATE"
            };
            Ok(format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n").into_bytes())
        };
        let config =
            jobtrace::k8s::otlp::ExporterConfig::from_sources(|k| vars.get(k).cloned(), read)
                .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert!(
            config.warnings.is_empty(),
            "{flags:?}: {:?}",
            config.warnings
        );
        jobtrace::k8s::otlp::Resource::from_vars(|k| vars.get(k).cloned(), "replica").unwrap();
        assert_eq!(
            config.limits.attribute_value_length,
            jobtrace::k8s::otlp::DEFAULT_VALUE_LENGTH,
            "the chart's default is the binary's"
        );
        if !flags.is_empty() {
            assert_eq!(config.compression, jobtrace::k8s::otlp::Compression::Gzip);
            assert!(config.tls.roots.is_some() && config.tls.client.is_some());
        }
    }
}

/// One documented value set to something else, and what must change in the rendering.
struct Case {
    /// The values.yaml paths this case covers.
    paths: &'static [&'static str],
    flags: &'static [&'static str],
    check: fn(&[Value]),
}

/// One test per case, each rendering the chart with its flags (so one failure hides no other),
/// and `cases()`, every case, for the coverage of values.yaml.
macro_rules! value_cases {
    ($($name:ident: $case:expr,)*) => {
        fn cases() -> Vec<Case> {
            vec![$($case),*]
        }

        /// Each documented value set to something else changes the rendering as it should.
        mod value {
            use super::*;
            $(
                #[test]
                fn $name() {
                    check_case(&$case);
                }
            )*
        }
    };
}

/// Renders the chart with the case's flags and checks what must have changed.
fn check_case(case: &Case) {
    if !helm_found() {
        return;
    }
    let docs =
        render("jt", "tracing", case.flags).unwrap_or_else(|e| panic!("{:?}: {e}", case.flags));
    (case.check)(&docs);
}

// A table, one case a value: long, and clearer in one piece.
value_cases! {
    replica_count: Case {
        paths: &["replicaCount"],
        flags: &["--set", "replicaCount=3"],
        check: |d| {
            assert_eq!(one(d, "Deployment")["spec"]["replicas"], 3);
        },
    },
    image: Case {
        paths: &["image.repository", "image.tag", "image.pullPolicy"],
        flags: &[
            "--set",
            "image.repository=mirror/jobtrace,image.tag=1.2.3,image.pullPolicy=Always",
        ],
        check: |d| {
            assert_eq!(container(d)["image"], "mirror/jobtrace:1.2.3");
            assert_eq!(container(d)["imagePullPolicy"], "Always");
        },
    },
    image_tag_alone: Case {
        paths: &["image.tag"],
        flags: &["--set", "image.tag=20261123"],
        check: |d| {
            assert_eq!(container(d)["image"], "jobtrace/jobtrace:20261123");
        },
    },
    image_pull_secrets: Case {
        paths: &["imagePullSecrets"],
        flags: &["--set", "imagePullSecrets[0].name=regcred"],
        check: |d| {
            assert_eq!(
                pod_spec(d)["imagePullSecrets"],
                json!([{ "name": "regcred" }])
            );
        },
    },
    name_override: Case {
        paths: &["nameOverride"],
        flags: &["--set", "nameOverride=tracer"],
        check: |d| {
            assert_eq!(one(d, "Deployment")["metadata"]["name"], "jt-tracer");
            assert_eq!(
                one(d, "Deployment")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
                "tracer"
            );
        },
    },
    fullname_override: Case {
        paths: &["fullnameOverride"],
        flags: &["--set", "fullnameOverride=jobtracer"],
        check: |d| {
            assert_eq!(
                one(d, "MutatingWebhookConfiguration")["metadata"]["name"],
                "jobtracer"
            );
            assert!(args(d).contains(&"--webhook-configuration=jobtracer".to_owned()));
            assert!(args(d).contains(&"--lease-name=jobtracer".to_owned()));
            assert!(args(d).contains(&"--lease-owner=jobtracer".to_owned()), "the Deployment, which owns the Lease");
        },
    },
    otlp_endpoint_protocol_timeout_and_service: Case {
        paths: &[
            "otlp.endpoint",
            "otlp.protocol",
            "otlp.timeoutMillis",
            "otlp.serviceName",
        ],
        flags: &[
            "--set",
            "otlp.endpoint=https://collector.example:4318,otlp.protocol=http/protobuf,otlp.timeoutMillis=2500,otlp.serviceName=batch-tracer",
        ],
        check: |d| {
            assert_eq!(
                env_value(d, "OTEL_EXPORTER_OTLP_ENDPOINT"),
                "https://collector.example:4318"
            );
            assert_eq!(env_value(d, "OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf");
            assert_eq!(env_value(d, "OTEL_EXPORTER_OTLP_TIMEOUT"), "2500");
            assert_eq!(env_value(d, "OTEL_SERVICE_NAME"), "batch-tracer");
        },
    },
    otlp_headers_from_a_secret: Case {
        paths: &["otlp.headers.secretName", "otlp.headers.secretKey"],
        flags: &[
            "--set",
            "otlp.headers.secretName=vendor-key,otlp.headers.secretKey=otlp",
        ],
        check: |d| {
            assert_eq!(
                env(d, "OTEL_EXPORTER_OTLP_HEADERS").unwrap()["valueFrom"]["secretKeyRef"],
                json!({ "name": "vendor-key", "key": "otlp" })
            );
        },
    },
    otlp_compression_and_insecure: Case {
        paths: &["otlp.compression", "otlp.insecure"],
        flags: &[
            "--set",
            "otlp.endpoint=collector.observability:4317,otlp.compression=gzip,otlp.insecure=true",
        ],
        check: |d| {
            assert_eq!(
                env_value(d, "OTEL_EXPORTER_OTLP_ENDPOINT"),
                "collector.observability:4317"
            );
            assert_eq!(env_value(d, "OTEL_EXPORTER_OTLP_COMPRESSION"), "gzip");
            assert_eq!(env_value(d, "OTEL_EXPORTER_OTLP_INSECURE"), "true");
        },
    },
    otlp_tls_ca: Case {
        paths: &["otlp.tls.ca.secretName", "otlp.tls.ca.key"],
        flags: &[
            "--set",
            "otlp.tls.ca.secretName=collector-ca,otlp.tls.ca.key=root.pem",
        ],
        check: |d| {
            assert_eq!(
                env_value(d, "OTEL_EXPORTER_OTLP_CERTIFICATE"),
                "/etc/jobtrace/otlp/ca/ca.crt"
            );
            assert!(env(d, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE").is_none());
            assert_eq!(
                volume(d, "otlp-ca")["secret"],
                json!({ "secretName": "collector-ca",
                    "items": [{ "key": "root.pem", "path": "ca.crt" }] })
            );
            assert_eq!(
                mount(d, "otlp-ca"),
                &json!({ "name": "otlp-ca", "mountPath": "/etc/jobtrace/otlp/ca", "readOnly": true })
            );
        },
    },
    otlp_tls_client_certificate: Case {
        paths: &[
            "otlp.tls.client.secretName",
            "otlp.tls.client.certKey",
            "otlp.tls.client.keyKey",
        ],
        flags: &[
            "--set",
            "otlp.tls.client.secretName=jobtrace-client,otlp.tls.client.certKey=chain.pem,otlp.tls.client.keyKey=key.pem",
        ],
        check: |d| {
            assert_eq!(
                env_value(d, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
                "/etc/jobtrace/otlp/client/tls.crt"
            );
            assert_eq!(
                env_value(d, "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
                "/etc/jobtrace/otlp/client/tls.key"
            );
            assert!(env(d, "OTEL_EXPORTER_OTLP_CERTIFICATE").is_none());
            assert_eq!(
                volume(d, "otlp-client")["secret"],
                json!({ "secretName": "jobtrace-client", "items": [
                    { "key": "chain.pem", "path": "tls.crt" },
                    { "key": "key.pem", "path": "tls.key" }
                ] })
            );
            assert_eq!(
                mount(d, "otlp-client")["mountPath"],
                "/etc/jobtrace/otlp/client"
            );
        },
    },
    otlp_resource_attributes: Case {
        paths: &["otlp.resourceAttributes"],
        flags: &[
            "--set-json",
            r#"otlp.resourceAttributes={"k8s.cluster.name":"prod-eu","team":"a,b=c 100%"}"#,
        ],
        check: |d| {
            let value = env_value(d, "OTEL_RESOURCE_ATTRIBUTES");
            assert_eq!(value, "k8s.cluster.name=prod-eu,team=a%2Cb%3Dc%20100%25");
            // What jobtrace reads back.
            let resource = jobtrace::k8s::otlp::Resource::from_vars(
                |k| (k == "OTEL_RESOURCE_ATTRIBUTES").then(|| value.clone()),
                "replica",
            )
            .unwrap();
            assert_eq!(
                resource.attributes[3..],
                [
                    ("k8s.cluster.name".to_owned(), "prod-eu".to_owned()),
                    ("team".to_owned(), "a,b=c 100%".to_owned())
                ]
            );
        },
    },
    log_level_and_format: Case {
        paths: &["logLevel", "logFormat"],
        flags: &["--set", "logLevel=jobtrace=debug,logFormat=text"],
        check: |d| {
            assert_eq!(env_value(d, "JOBTRACE_LOG_LEVEL"), "jobtrace=debug");
            assert_eq!(env_value(d, "JOBTRACE_LOG_FORMAT"), "text");
        },
    },
    self_tracing_ratio: Case {
        paths: &["selfTracing.ratio"],
        flags: &["--set", "selfTracing.ratio=0.25"],
        check: |d| {
            assert_eq!(env_value(d, "JOBTRACE_SELF_TRACING_RATIO"), "0.25");
        },
    },
    webhook_failure_policy_and_timeout: Case {
        paths: &["webhook.failurePolicy", "webhook.timeoutSeconds"],
        flags: &[
            "--set",
            "webhook.failurePolicy=Fail,webhook.timeoutSeconds=7",
        ],
        check: |d| {
            for w in webhooks(d) {
                assert_eq!(w["failurePolicy"], "Fail");
                assert_eq!(w["timeoutSeconds"], 7);
            }
        },
    },
    webhook_namespaces: Case {
        paths: &["webhook.namespaces", "webhook.excludedNamespaces"],
        flags: &[
            "--set",
            "webhook.namespaces={batch,reports},webhook.excludedNamespaces={legacy}",
        ],
        check: |d| {
            for w in webhooks(d) {
                assert_eq!(
                    w["namespaceSelector"]["matchExpressions"],
                    json!([
                        { "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["batch", "reports"] },
                        { "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["legacy", "tracing"] },
                    ])
                );
            }
        },
    },
    webhook_port: Case {
        paths: &["webhook.port"],
        flags: &["--set", "webhook.port=9443"],
        check: |d| {
            assert!(args(d).contains(&"--listen=0.0.0.0:9443".to_owned()));
            assert_eq!(container(d)["ports"][0]["containerPort"], 9443);
        },
    },
    certificate_validity: Case {
        paths: &["certificates.validity", "certificates.caValidity"],
        flags: &[
            "--set",
            "certificates.validity=30d,certificates.caValidity=365d",
        ],
        check: |d| {
            assert!(args(d).contains(&"--cert-validity=30d".to_owned()));
            assert!(args(d).contains(&"--ca-validity=365d".to_owned()));
        },
    },
    cert_manager: Case {
        paths: &[
            "certificates.certManager.enabled",
            "certificates.certManager.duration",
            "certificates.certManager.renewBefore",
        ],
        flags: &[
            "--set",
            "certificates.certManager.enabled=true,certificates.certManager.duration=720h,certificates.certManager.renewBefore=240h",
        ],
        check: |d| {
            let certificates = kind(d, "Certificate");
            assert_eq!(certificates.len(), 2, "a CA and the serving certificate");
            let serving = certificates
                .iter()
                .find(|c| c["metadata"]["name"] == "jt-jobtrace-tls")
                .unwrap();
            assert_eq!(serving["spec"]["duration"], "720h");
            assert_eq!(serving["spec"]["renewBefore"], "240h");
            assert_eq!(
                serving["spec"]["dnsNames"],
                json!([
                    "jt-jobtrace.tracing.svc",
                    "jt-jobtrace.tracing.svc.cluster.local"
                ])
            );
            assert_eq!(serving["spec"]["issuerRef"]["name"], "jt-jobtrace-ca");
            assert_eq!(kind(d, "Issuer").len(), 2);
            assert_eq!(
                one(d, "MutatingWebhookConfiguration")["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                "tracing/jt-jobtrace-tls"
            );
            assert!(args(d).contains(&"--tls-cert-file=/etc/jobtrace/tls/tls.crt".to_owned()));
            assert!(!args(d).iter().any(|a| a.starts_with("--cert-secret")));
            assert_eq!(
                pod_spec(d)["volumes"][0]["secret"]["secretName"],
                "jt-jobtrace-tls"
            );
            // jobtrace touches no Secret then, and its webhook configuration only to keep the
            // matchConditions in step with the policies (policy.syncMatchConditions, on by
            // default; without it, not at all).
            assert!(grants(d, "secrets").is_empty());
            let webhook_configuration: Vec<_> = grants(d, "mutatingwebhookconfigurations")
                .into_iter()
                .filter(|rule| rule["verbs"] != json!(["delete"]))
                .collect();
            assert_eq!(webhook_configuration.len(), 1);
            assert_eq!(
                webhook_configuration[0]["resourceNames"],
                json!(["jt-jobtrace"])
            );
            assert!(args(d).contains(&"--sync-match-conditions".to_owned()));
        },
    },
    cert_manager_issuer_ref: Case {
        paths: &["certificates.certManager.issuerRef"],
        flags: &[
            "--set",
            "certificates.certManager.enabled=true,certificates.certManager.issuerRef.name=corporate,certificates.certManager.issuerRef.kind=ClusterIssuer",
        ],
        check: |d| {
            assert_eq!(kind(d, "Issuer").len(), 0);
            assert_eq!(
                one(d, "Certificate")["spec"]["issuerRef"],
                json!({ "name": "corporate", "kind": "ClusterIssuer" })
            );
        },
    },
    controller_watch_namespace: Case {
        paths: &["controller.watchNamespace"],
        flags: &["--set", "controller.watchNamespace=batch"],
        check: |d| {
            assert!(args(d).contains(&"--watch-namespace=batch".to_owned()));
        },
    },
    admission_policies_protect_keys: Case {
        paths: &["admissionPolicies.protectKeys"],
        flags: &["--set", "admissionPolicies.protectKeys=false"],
        check: |d| {
            let names = |k: &str| -> Vec<Value> {
                kind(d, k)
                    .iter()
                    .map(|p| p["metadata"]["name"].clone())
                    .collect()
            };
            assert_eq!(
                names("ValidatingAdmissionPolicy"),
                [json!("jt-jobtrace-writes")]
            );
            assert_eq!(
                names("ValidatingAdmissionPolicyBinding"),
                [json!("jt-jobtrace-writes")]
            );
        },
    },
    admission_policies_limit_service_account: Case {
        paths: &["admissionPolicies.limitServiceAccount"],
        flags: &["--set", "admissionPolicies.limitServiceAccount=false"],
        check: |d| {
            let names = |k: &str| -> Vec<Value> {
                kind(d, k)
                    .iter()
                    .map(|p| p["metadata"]["name"].clone())
                    .collect()
            };
            assert_eq!(
                names("ValidatingAdmissionPolicy"),
                [json!("jt-jobtrace-keys")]
            );
            assert_eq!(
                names("ValidatingAdmissionPolicyBinding"),
                [json!("jt-jobtrace-keys")]
            );
        },
    },
    network_policy_enabled: Case {
        paths: &["networkPolicy.enabled"],
        flags: &["--set", "networkPolicy.enabled=false"],
        check: |d| assert!(kind(d, "NetworkPolicy").is_empty()),
    },
    network_policy_apiserver: Case {
        paths: &[
            "networkPolicy.apiserver.cidrs",
            "networkPolicy.apiserver.namespaceSelector",
            "networkPolicy.apiserver.podSelector",
        ],
        flags: &[
            "--set",
            "networkPolicy.apiserver.cidrs={10.0.0.0/24,fd00::/64}",
            "--set-json",
            r#"networkPolicy.apiserver.namespaceSelector={"matchLabels":{"kubernetes.io/metadata.name":"kube-system"}}"#,
            "--set-json",
            r#"networkPolicy.apiserver.podSelector={"matchLabels":{"k8s-app":"konnectivity-agent"}}"#,
        ],
        check: |d| {
            let ingress = &one(d, "NetworkPolicy")["spec"]["ingress"];
            assert_eq!(
                ingress,
                &json!([{
                    "ports": [{ "port": "webhook", "protocol": "TCP" }],
                    "from": [
                        { "ipBlock": { "cidr": "10.0.0.0/24" } },
                        { "ipBlock": { "cidr": "fd00::/64" } },
                        {
                            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } },
                            "podSelector": { "matchLabels": { "k8s-app": "konnectivity-agent" } }
                        }
                    ]
                }])
            );
        },
    },
    network_policy_prometheus_cidrs_and_namespaces: Case {
        paths: &[
            "networkPolicy.prometheus.cidrs",
            "networkPolicy.prometheus.namespaceSelector",
        ],
        flags: &[
            "--set",
            "networkPolicy.prometheus.cidrs={192.168.10.0/24}",
            "--set-json",
            r#"networkPolicy.prometheus.namespaceSelector={"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}"#,
        ],
        check: |d| {
            let ingress = &one(d, "NetworkPolicy")["spec"]["ingress"];
            assert_eq!(
                ingress[0],
                json!({ "ports": [{ "port": "webhook", "protocol": "TCP" }] })
            );
            assert_eq!(
                ingress[1],
                json!({
                    "ports": [{ "port": "metrics", "protocol": "TCP" }],
                    "from": [
                        { "ipBlock": { "cidr": "192.168.10.0/24" } },
                        { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "monitoring" } } }
                    ]
                })
            );
        },
    },
    network_policy_prometheus_pods: Case {
        paths: &["networkPolicy.prometheus.podSelector"],
        flags: &[
            "--set-json",
            r#"networkPolicy.prometheus.podSelector={"matchLabels":{"app.kubernetes.io/name":"prometheus"}}"#,
        ],
        check: |d| {
            // A pod selector alone: Prometheus's pods in the release's namespace.
            assert_eq!(
                one(d, "NetworkPolicy")["spec"]["ingress"][1]["from"],
                json!([{ "podSelector": { "matchLabels": { "app.kubernetes.io/name": "prometheus" } } }])
            );
        },
    },
    policy_watch_policies: Case {
        paths: &["policy.watchPolicies"],
        flags: &["--set", "policy.watchPolicies=false"],
        check: |d| {
            assert!(args(d).contains(&"--policies=false".to_owned()));
            assert!(!args(d).contains(&"--sync-match-conditions".to_owned()));
            assert!(grants(d, "jobtracepolicies").is_empty());
            assert!(grants(d, "jobtracepolicies/status").is_empty());
        },
    },
    policy_sync_match_conditions: Case {
        paths: &["policy.syncMatchConditions"],
        flags: &[
            "--set",
            "policy.syncMatchConditions=false,certificates.certManager.enabled=true",
        ],
        check: |d| {
            assert!(args(d).contains(&"--policies=true".to_owned()));
            assert!(!args(d).contains(&"--sync-match-conditions".to_owned()));
            // With cert-manager, nothing left for jobtrace to do with its webhook configuration
            // but the uninstall hook's deletion.
            assert!(
                grants(d, "mutatingwebhookconfigurations")
                    .iter()
                    .all(|rule| rule["verbs"] == json!(["delete"]))
            );
            assert!(
                !args(d)
                    .iter()
                    .any(|a| a.starts_with("--webhook-configuration"))
            );
        },
    },
    policy_root_traces: Case {
        paths: &["policy.rootTraces"],
        flags: &["--set", "policy.rootTraces=0.25"],
        check: |d| {
            assert!(args(d).contains(&"--root-traces=0.25".to_owned()));
            // Every Job may get a root trace: every Job calls the webhook.
            assert_eq!(webhooks(d)[0]["matchConditions"][0]["expression"], "true");
        },
    },
    policy_request_context: Case {
        paths: &["policy.requestContext"],
        flags: &["--set", "policy.requestContext=true"],
        check: |d| {
            assert!(args(d).contains(&"--request-context".to_owned()));
            // A Job's context may be in its create request's headers: every Job calls.
            assert_eq!(webhooks(d)[0]["matchConditions"][0]["expression"], "true");
        },
    },
    policy_hold_for_export: Case {
        paths: &["policy.holdForExport"],
        flags: &["--set", "policy.holdForExport=false"],
        check: |d| {
            assert!(args(d).contains(&"--hold-for-export=false".to_owned()));
            // A JobTracePolicy may still hold its namespace's Jobs: the hook stays.
            assert_eq!(kind(d, "Job").len(), 1, "the uninstall hook");
            assert!(
                grants(d, "mutatingwebhookconfigurations")
                    .iter()
                    .any(|rule| rule["verbs"] == json!(["delete"]))
            );
        },
    },
    policy_hold_pods: Case {
        paths: &["policy.holdPods"],
        flags: &["--set", "policy.holdPods=true"],
        check: |d| {
            assert!(args(d).contains(&"--hold-pods".to_owned()));
            // The release of a held pod, and nothing else of a pod, for jobtrace.
            assert!(
                grants(d, "pods")
                    .iter()
                    .any(|rule| rule["verbs"] == json!(["get", "patch"]))
            );
            let (policy, _) = admission_policy(d, "jt-jobtrace-writes");
            assert!(writes_resources(policy).contains("pods"));
            let pod = expressions(policy)
                .into_iter()
                .find(|e| e.starts_with("!variables.pod"))
                .expect("a rule for pods");
            for held in [
                "variables.newFinalizers != variables.oldFinalizers",
                "size(variables.oldFinalizers) <= 256",
                "variables.oldFinalizers.filter(f, f != 'jobtrace.dev/export')",
                "object.spec == oldObject.spec",
                "object.?status == oldObject.?status",
                "object.metadata.?labels == oldObject.metadata.?labels",
                "variables.newAnnotations == variables.oldAnnotations",
                "object.metadata.?ownerReferences == oldObject.metadata.?ownerReferences",
            ] {
                assert!(pod.contains(held), "{held} in {pod}");
            }
        },
    },
    no_hold_no_uninstall_hook: Case {
        paths: &[],
        flags: &[
            "--set",
            "policy.holdForExport=false,policy.watchPolicies=false",
        ],
        check: |d| {
            assert!(
                d.iter().all(|o| o["kind"] != "Job"),
                "no Job can be held: no uninstall hook"
            );
            assert!(
                grants(d, "mutatingwebhookconfigurations")
                    .iter()
                    .all(|rule| rule["verbs"] != json!(["delete"]))
            );
        },
    },
    controller_max_request_bytes: Case {
        paths: &["controller.maxRequestBytes"],
        flags: &["--set", "controller.maxRequestBytes=1048576"],
        check: |d| assert!(args(d).contains(&"--max-request-bytes=1048576".to_owned())),
    },
    otlp_attribute_value_length_limit: Case {
        paths: &["otlp.attributeValueLengthLimit"],
        flags: &["--set", "otlp.attributeValueLengthLimit=512"],
        check: |d| assert_eq!(env_value(d, "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"), "512"),
    },
    controller_hold_timeout: Case {
        paths: &["controller.holdTimeout"],
        flags: &["--set", "controller.holdTimeout=1h"],
        check: |d| assert!(args(d).contains(&"--hold-timeout=1h".to_owned())),
    },
    controller_record_events: Case {
        paths: &["controller.recordEvents"],
        flags: &["--set", "controller.recordEvents=true"],
        check: |d| {
            assert!(args(d).contains(&"--record-events=true".to_owned()));
            let events = grants(d, "events");
            assert_eq!(events.len(), 1, "Events may be recorded: {events:?}");
            assert_eq!(events[0]["verbs"], json!(["create", "patch"]));
            assert!(
                grants(&defaults(), "events").is_empty(),
                "no Event, no right to record one"
            );
        },
    },
    policy_relationship: Case {
        paths: &["policy.relationship"],
        flags: &["--set", "policy.relationship=link"],
        check: |d| assert!(args(d).contains(&"--relationship=link".to_owned())),
    },
    policy_cron_jobs: Case {
        paths: &["policy.cronJobs"],
        flags: &["--set", "policy.cronJobs=child"],
        check: |d| assert!(args(d).contains(&"--cronjobs=child".to_owned())),
    },
    policy_baggage_exclude: Case {
        paths: &["policy.baggageExclude"],
        flags: &["--set", "policy.baggageExclude={user.email,session}"],
        check: |d| {
            assert!(args(d).contains(&"--baggage-exclude=user.email,session".to_owned()));
        },
    },
    policy_pod_spans: Case {
        paths: &["policy.podSpans"],
        flags: &["--set", "policy.podSpans=false"],
        check: |d| assert!(args(d).contains(&"--pod-spans=false".to_owned())),
    },
    policy_resource_attributes: Case {
        paths: &["policy.resourceAttributes"],
        flags: &["--set", "policy.resourceAttributes=false"],
        check: |d| assert!(args(d).contains(&"--resource-attributes=false".to_owned())),
    },
    policy_job_labels: Case {
        paths: &["policy.jobLabels"],
        flags: &["--set", "policy.jobLabels={team,app}"],
        check: |d| assert!(args(d).contains(&"--job-labels=team,app".to_owned())),
    },
    metrics_port: Case {
        paths: &["metrics.port"],
        flags: &["--set", "metrics.port=9090"],
        check: |d| {
            assert!(args(d).contains(&"--metrics-listen=0.0.0.0:9090".to_owned()));
            assert_eq!(
                one(d, "Deployment")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
                "9090"
            );
            assert_eq!(one(d, "Service")["spec"]["ports"][1]["port"], 9090);
        },
    },
    metrics_scrape_annotations: Case {
        paths: &["metrics.scrapeAnnotations"],
        flags: &["--set", "metrics.scrapeAnnotations=false"],
        check: |d| {
            assert!(
                one(d, "Deployment")["spec"]["template"]["metadata"]["annotations"].is_null()
            );
        },
    },
    metrics_service_monitor: Case {
        paths: &[
            "metrics.serviceMonitor.enabled",
            "metrics.serviceMonitor.interval",
            "metrics.serviceMonitor.labels",
        ],
        flags: &[
            "--set",
            "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.interval=15s,metrics.serviceMonitor.labels.release=kube-prometheus",
        ],
        check: |d| {
            let monitor = one(d, "ServiceMonitor");
            assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
            assert_eq!(
                monitor["spec"]["endpoints"][0],
                json!({ "port": "metrics", "path": "/metrics", "interval": "15s" })
            );
            assert_eq!(
                monitor["spec"]["selector"]["matchLabels"],
                one(d, "Service")["spec"]["selector"]
            );
        },
    },
    metrics_prometheus_rule: Case {
        paths: &[
            "metrics.prometheusRule.enabled",
            "metrics.prometheusRule.labels",
        ],
        flags: &[
            "--set",
            "metrics.prometheusRule.enabled=true,metrics.prometheusRule.labels.release=kube-prometheus",
        ],
        check: |d| {
            let rule = one(d, "PrometheusRule");
            assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
            let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["alert"].as_str().unwrap())
                .collect();
            // Every alert docs/operations.md lists (its expressions are compared in
            // the_documented_alerts_are_the_rules_the_chart_renders).
            let documented = documented_alerts();
            let documented: Vec<&str> = documented["groups"][0]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["alert"].as_str().unwrap())
                .collect();
            assert_eq!(alerts, documented, "docs/operations.md's alerts");
            // Scoped to the release's namespace.
            assert!(
                rule["spec"]["groups"][0]["rules"][0]["expr"]
                    .as_str()
                    .unwrap()
                    .contains(r#"namespace="tracing""#)
            );
        },
    },
    service_port: Case {
        paths: &["service.port"],
        flags: &["--set", "service.port=8443"],
        check: |d| {
            assert_eq!(one(d, "Service")["spec"]["ports"][0]["port"], 8443);
            for w in webhooks(d) {
                assert_eq!(w["clientConfig"]["service"]["port"], 8443);
            }
        },
    },
    resources: Case {
        paths: &["resources"],
        flags: &["--set", "resources.limits.memory=512Mi"],
        check: |d| {
            assert_eq!(container(d)["resources"]["limits"]["memory"], "512Mi");
        },
    },
    pod_disruption_budget_enabled: Case {
        paths: &["podDisruptionBudget.enabled"],
        flags: &["--set", "podDisruptionBudget.enabled=false"],
        check: |d| {
            assert!(kind(d, "PodDisruptionBudget").is_empty());
        },
    },
    pod_disruption_budget_min_available: Case {
        paths: &["podDisruptionBudget.minAvailable"],
        flags: &["--set", "podDisruptionBudget.minAvailable=50%"],
        check: |d| {
            assert_eq!(one(d, "PodDisruptionBudget")["spec"]["minAvailable"], "50%");
        },
    },
    topology_spread_constraints: Case {
        paths: &["topologySpreadConstraints"],
        flags: &["--set-json", "topologySpreadConstraints=[]"],
        check: |d| {
            assert!(pod_spec(d)["topologySpreadConstraints"].is_null());
        },
    },
    security_contexts: Case {
        paths: &["podSecurityContext", "securityContext"],
        flags: &[
            "--set",
            "podSecurityContext.runAsUser=10001,securityContext.readOnlyRootFilesystem=true",
        ],
        check: |d| {
            assert_eq!(pod_spec(d)["securityContext"]["runAsUser"], 10001);
            assert_eq!(
                container(d)["securityContext"]["readOnlyRootFilesystem"],
                true
            );
        },
    },
    shutdown_delay_and_grace_period: Case {
        paths: &["shutdownDelay", "terminationGracePeriodSeconds"],
        flags: &[
            "--set",
            "shutdownDelay=12s,terminationGracePeriodSeconds=60",
        ],
        check: |d| {
            assert!(args(d).contains(&"--shutdown-delay=12s".to_owned()));
            assert_eq!(pod_spec(d)["terminationGracePeriodSeconds"], 60);
        },
    },
    service_account: Case {
        paths: &["serviceAccount.create", "serviceAccount.name"],
        flags: &[
            "--set",
            "serviceAccount.create=false,serviceAccount.name=platform-jobtrace",
        ],
        check: |d| {
            assert!(kind(d, "ServiceAccount").is_empty());
            assert_eq!(pod_spec(d)["serviceAccountName"], "platform-jobtrace");
            assert_eq!(
                one(d, "ClusterRoleBinding")["subjects"][0]["name"],
                "platform-jobtrace"
            );
        },
    },
    service_account_annotations: Case {
        paths: &["serviceAccount.annotations"],
        flags: &["--set", "serviceAccount.annotations.team=platform"],
        check: |d| {
            assert_eq!(
                one(d, "ServiceAccount")["metadata"]["annotations"]["team"],
                "platform"
            );
        },
    },
    extra_env_and_volumes: Case {
        paths: &["extraEnv", "extraVolumes", "extraVolumeMounts"],
        flags: &[
            "--set-json",
            r#"extraEnv=[{"name":"OTEL_EXPORTER_OTLP_CERTIFICATE","value":"/etc/otlp/ca.crt"}]"#,
            "--set-json",
            r#"extraVolumes=[{"name":"otlp-ca","configMap":{"name":"otlp-ca"}}]"#,
            "--set-json",
            r#"extraVolumeMounts=[{"name":"otlp-ca","mountPath":"/etc/otlp"}]"#,
        ],
        check: |d| {
            assert_eq!(
                env_value(d, "OTEL_EXPORTER_OTLP_CERTIFICATE"),
                "/etc/otlp/ca.crt"
            );
            assert_eq!(pod_spec(d)["volumes"][0]["name"], "otlp-ca");
            assert_eq!(container(d)["volumeMounts"][0]["mountPath"], "/etc/otlp");
            // The uninstall hook runs jobtrace too: the same environment (a proxy's or the
            // apiserver's address reaches it as well).
            let hook = &kind(d, "Job")[0]["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(hook["env"], container(d)["env"].as_array().unwrap().iter().filter(|e| e["name"] == "OTEL_EXPORTER_OTLP_CERTIFICATE").cloned().collect::<Value>());
        },
    },
    pod_annotations_and_labels: Case {
        paths: &["podAnnotations", "podLabels"],
        flags: &[
            "--set",
            "podAnnotations.owner=platform,podLabels.tier=infra",
        ],
        check: |d| {
            let meta = &one(d, "Deployment")["spec"]["template"]["metadata"];
            assert_eq!(meta["annotations"]["owner"], "platform");
            assert_eq!(meta["labels"]["tier"], "infra");
        },
    },
    scheduling: Case {
        paths: &[
            "nodeSelector",
            "tolerations",
            "affinity",
            "priorityClassName",
        ],
        flags: &[
            "--set",
            "nodeSelector.pool=system,tolerations[0].key=dedicated,tolerations[0].operator=Exists,affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=arch,affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists,priorityClassName=system-cluster-critical",
        ],
        check: |d| {
            let pod = pod_spec(d);
            assert_eq!(pod["nodeSelector"]["pool"], "system");
            assert_eq!(pod["tolerations"][0]["key"], "dedicated");
            assert!(pod["affinity"]["nodeAffinity"].is_object());
            assert_eq!(pod["priorityClassName"], "system-cluster-critical");
        },
    },
}

/// The leaf paths of values.yaml: scalars, lists, empty maps, and the Kubernetes objects passed
/// through whole.
/// Values that are Kubernetes objects, passed through whole.
const WHOLE: [&str; 5] = [
    "resources",
    "podSecurityContext",
    "securityContext",
    "affinity",
    "certificates.certManager.issuerRef",
];

fn value_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() && !WHOLE.contains(&prefix) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                value_paths(v, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn every_documented_value_has_a_rendering_case() {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let values: Value = serde_saphyr::from_str(&text).unwrap();
    let mut documented = BTreeSet::new();
    value_paths(&values, "", &mut documented);
    // Documented line by line: every key has a comment above it, or shares one with the
    // siblings right above it. Inside the Kubernetes objects passed through whole, the
    // Kubernetes API documents the fields.
    let lines: Vec<&str> = text.lines().collect();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        if trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        while stack.last().is_some_and(|(level, _)| *level >= indent) {
            stack.pop();
        }
        if trimmed.starts_with('-') {
            // A list item: documented with its list.
            stack.push((indent, "[]".to_owned()));
            continue;
        }
        if stack.iter().any(|(_, k)| k == "[]") {
            continue;
        }
        let inside_whole = stack.iter().enumerate().any(|(depth, _)| {
            let path: Vec<&str> = stack[..=depth].iter().map(|(_, k)| k.as_str()).collect();
            WHOLE.contains(&path.join(".").as_str())
        });
        stack.push((indent, key.to_owned()));
        if inside_whole {
            continue;
        }
        let above = lines[..i].iter().rev().take_while(|l| {
            let t = l.trim_start();
            !t.is_empty() && (t.starts_with('#') || l.len() - t.len() == indent)
        });
        assert!(
            above.into_iter().any(|l| l.trim_start().starts_with('#')),
            "values.yaml line {} has no comment: {line}",
            i + 1
        );
    }
    // Each case renders in a test of its own (mod value); here, that they cover every value.
    let mut covered = BTreeSet::new();
    for case in cases() {
        covered.extend(case.paths.iter().map(|p| (*p).to_owned()));
    }
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "values without a rendering test: {missing:?}"
    );
    let unknown: Vec<_> = covered.difference(&documented).collect();
    assert!(
        unknown.is_empty(),
        "tests of values that don't exist: {unknown:?}"
    );
}

#[test]
fn wrong_values_are_refused_naming_the_field() {
    if !helm_found() {
        return;
    }
    for (flag, field) in [
        ("replicaCount=two", "/replicaCount"),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("webhook.failurePolicy=Never", "/webhook/failurePolicy"),
        ("logFormat=xml", "/logFormat"),
        ("otlp.endpoint=collector", "/otlp/endpoint"),
        (
            "otlp.protocol=http/protobuf,otlp.endpoint=collector:4318",
            "/otlp/endpoint",
        ),
        ("otlp.compression=zstd", "/otlp/compression"),
        ("otlp.insecure=yes", "/otlp/insecure"),
        (
            "otlp.attributeValueLengthLimit=-1",
            "/otlp/attributeValueLengthLimit",
        ),
        (
            "controller.maxRequestBytes=100",
            "/controller/maxRequestBytes",
        ),
        ("otlp.tls.client.keyKey=", "/otlp/tls/client/keyKey"),
        (
            "networkPolicy.apiserver.cidrs[0]=10.0.0.0",
            "/networkPolicy/apiserver/cidrs/0",
        ),
        // helm's validator names the key, if not where it is.
        (
            "otlp.resourceAttributes.service\\.name=batch",
            "'service.name'",
        ),
        ("selfTracing.ratio=2", "/selfTracing/ratio"),
        ("certificates.validity=ninety", "/certificates/validity"),
        (
            "webhook.namespaces[0]=Not_A_Namespace",
            "/webhook/namespaces/0",
        ),
        ("webhok.port=8443", "webhok"),
    ] {
        let error = render("jt", "tracing", &["--set", flag]).expect_err(flag);
        assert!(error.contains(field), "{flag}: {error}");
    }
}

#[test]
fn the_uninstall_hook_releases_the_held_jobs_before_anything_goes() {
    if !helm_found() {
        return;
    }
    let docs = defaults();
    let hooks = kind(&docs, "Job");
    assert_eq!(hooks.len(), 1);
    let hook = hooks[0];
    assert_eq!(
        hook["metadata"]["annotations"]["helm.sh/hook"],
        "pre-delete"
    );
    let pod = &hook["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        one(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    );
    let webhook = one(&docs, "MutatingWebhookConfiguration")["metadata"]["name"].clone();
    assert_eq!(
        pod["containers"][0]["args"],
        json!([
            "release",
            format!("--webhook-configuration={}", webhook.as_str().unwrap())
        ])
    );
    assert!(args(&docs).contains(&"--hold-for-export=true".to_owned()));
}

/// The `PrometheusRule` `spec` that docs/operations.md shows under "Alerts worth setting": the
/// first `yaml` block of that section.
fn documented_alerts() -> Value {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let section = doc
        .split("\n## Alerts worth setting\n")
        .nth(1)
        .expect("docs/operations.md has a section \"## Alerts worth setting\"");
    let block = section
        .split("\n```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a yaml block in \"## Alerts worth setting\"");
    serde_saphyr::from_str(block).expect("the documented rules are YAML")
}

#[test]
fn the_documented_alerts_are_the_rules_the_chart_renders() {
    if !helm_found() {
        return;
    }
    // The release the section says it shows: `helm install jobtrace charts/jobtrace --namespace
    // jobtrace-system`, with the rules turned on.
    let docs = render(
        "jobtrace",
        "jobtrace-system",
        &["--set", "metrics.prometheusRule.enabled=true"],
    )
    .unwrap();
    let rendered = &one(&docs, "PrometheusRule")["spec"];
    let documented = documented_alerts();
    let rules = |spec: &Value| -> Vec<(String, Value)> {
        spec["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|group| group["rules"].as_array().unwrap().iter())
            .map(|rule| (rule["alert"].as_str().unwrap().to_owned(), rule.clone()))
            .collect()
    };
    let (rendered_rules, documented_rules) = (rules(rendered), rules(&documented));
    let names = |rules: &[(String, Value)]| -> Vec<String> {
        rules.iter().map(|(name, _)| name.clone()).collect()
    };
    assert_eq!(
        names(&rendered_rules),
        names(&documented_rules),
        "the alerts of docs/operations.md and of the chart, in order"
    );
    for ((alert, chart), (_, doc)) in rendered_rules.iter().zip(&documented_rules) {
        assert_eq!(
            doc["expr"].as_str(),
            chart["expr"].as_str(),
            "{alert}: the expression in docs/operations.md (left) is not the chart's (right)"
        );
        assert_eq!(
            doc, chart,
            "{alert}: docs/operations.md's rule (left) is not the chart's (right)"
        );
    }
    assert_eq!(
        &documented, rendered,
        "docs/operations.md's spec (left) and the chart's (right)"
    );
}

/// The `ValidatingAdmissionPolicy` named `name` and its binding.
fn admission_policy<'a>(docs: &'a [Value], name: &str) -> (&'a Value, &'a Value) {
    let find = |kind_name: &str| {
        kind(docs, kind_name)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind_name} {name}"))
    };
    (
        find("ValidatingAdmissionPolicy"),
        find("ValidatingAdmissionPolicyBinding"),
    )
}

/// The strings of a policy variable holding a CEL list literal of quoted strings.
fn cel_list(policy: &Value, variable: &str) -> BTreeSet<String> {
    let expression = policy["spec"]["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == variable)
        .unwrap_or_else(|| panic!("no variable {variable}"))["expression"]
        .as_str()
        .unwrap();
    let inner = expression
        .trim()
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or_else(|| panic!("{variable} is a list literal: {expression}"));
    inner
        .split(',')
        .map(|item| item.trim().trim_matches('\'').to_owned())
        .collect()
}

/// The CEL expressions of a policy: its conditions, variables and validations.
fn expressions(policy: &Value) -> Vec<&str> {
    ["matchConditions", "variables", "validations"]
        .iter()
        .flat_map(|part| policy["spec"][part].as_array().into_iter().flatten())
        .filter_map(|e| e["expression"].as_str())
        .collect()
}

#[test]
fn the_keys_policy_holds_what_jobtrace_writes() {
    use jobtrace::core::names::{
        BAGGAGE_KEYS, TRACEPARENT_KEYS, TRACESTATE_KEYS, WRITTEN_ANNOTATIONS, WRITTEN_LABELS,
    };
    if !helm_found() {
        return;
    }
    let code = |keys: &[&str]| -> BTreeSet<String> { keys.iter().map(|&k| k.to_owned()).collect() };
    let docs = defaults();
    let (policy, binding) = admission_policy(&docs, "jt-jobtrace-keys");
    assert_eq!(cel_list(policy, "labels"), code(&WRITTEN_LABELS));
    assert_eq!(cel_list(policy, "annotations"), code(&WRITTEN_ANNOTATIONS));
    let inputs = TRACEPARENT_KEYS
        .iter()
        .chain(&TRACESTATE_KEYS)
        .chain(&BAGGAGE_KEYS);
    for input in inputs {
        assert!(
            !expressions(policy)
                .iter()
                .any(|e| e.contains(&format!("'{input}'"))),
            "the creator's {input} stays free"
        );
    }
    // Updates of Jobs and pods, their status included, by anyone but jobtrace's ServiceAccount.
    let rules = policy["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap();
    let resources: BTreeSet<&str> = rules
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        resources,
        BTreeSet::from(["jobs", "jobs/status", "pods", "pods/status"])
    );
    assert!(rules.iter().all(|r| r["operations"] == json!(["UPDATE"])));
    let account = one(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        format!("request.userInfo.username != 'system:serviceaccount:tracing:{account}'")
    );
    assert_eq!(policy["spec"]["failurePolicy"], "Ignore");
    // Each key looked up, never a map walked: the same cost for every object.
    for expression in expressions(policy) {
        assert!(
            !expression.contains("annotations.all(")
                && !expression.contains("labels.all(")
                && !expression.contains("annotations.orValue({}).all("),
            "{expression}"
        );
    }
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert!(
        binding["spec"]["matchResources"].is_null(),
        "every namespace"
    );
    // Where the controller reads them.
    let docs = render(
        "jt",
        "tracing",
        &["--set", "controller.watchNamespace=batch"],
    )
    .unwrap();
    let (_, binding) = admission_policy(&docs, "jt-jobtrace-keys");
    assert_eq!(
        binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"],
        json!([{ "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["batch"] }])
    );
}

/// The resources the `<fullname>-writes` policy matches.
fn writes_resources(policy: &Value) -> BTreeSet<&str> {
    policy["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn the_writes_policy_holds_jobtraces_service_account_only() {
    if !helm_found() {
        return;
    }
    let docs = defaults();
    let (policy, binding) = admission_policy(&docs, "jt-jobtrace-writes");
    let account = one(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        format!("request.userInfo.username == 'system:serviceaccount:tracing:{account}'")
    );
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(
        writes_resources(policy),
        BTreeSet::from(["jobs", "mutatingwebhookconfigurations", "secrets"]),
        "no pod unless policy.holdPods"
    );
    // On a large Job, jobtrace's own annotations are compared: the code's list.
    let code: BTreeSet<String> = jobtrace::core::names::WRITTEN_ANNOTATIONS
        .iter()
        .map(|&k| k.to_owned())
        .collect();
    assert_eq!(cel_list(policy, "written"), code);
    let all = expressions(policy).join("\n");
    for name in [
        "'jt-jobtrace'",
        "'jt-jobtrace-tls'",
        "'jt-jobtrace-tls-ca'",
        "'tracing'",
    ] {
        assert!(all.contains(name), "{name}");
    }
    // Walks of a Job's maps and lists are bounded; everything else compared whole.
    assert!(all.contains("size(variables.oldAnnotations) <= 256"));
    assert!(all.contains("size(variables.oldFinalizers) <= 256"));
    assert!(all.contains("object.spec == oldObject.spec"));
}

#[test]
fn rbac_follows_the_watched_namespace_and_writes_no_pod() {
    if !helm_found() {
        return;
    }
    for flags in [
        &[][..],
        &[
            "--set",
            "controller.watchNamespace=batch,controller.recordEvents=true",
        ][..],
    ] {
        let docs = render("jt", "tracing", flags).unwrap();
        for rule in grants(&docs, "pods") {
            assert_eq!(
                rule["verbs"],
                json!(["list", "watch"]),
                "{flags:?}: no pod write unless policy.holdPods"
            );
        }
        assert!(
            grants(&docs, "secrets")
                .iter()
                .all(|r| !r["verbs"].as_array().unwrap().contains(&json!("update"))),
            "an older jobtrace's replace of its Secret is refused"
        );
    }
    let watched = |docs: &[Value], kind_name: &str| -> BTreeSet<String> {
        kind(docs, kind_name)
            .iter()
            .flat_map(|role| role["rules"].as_array().into_iter().flatten())
            .flat_map(|r| r["resources"].as_array().unwrap().clone())
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    };
    let defaults = defaults();
    let cluster = watched(&defaults, "ClusterRole");
    for resource in [
        "jobs",
        "pods",
        "jobtracepolicies",
        "jobtracepolicies/status",
    ] {
        assert!(
            cluster.contains(resource),
            "{resource} cluster-wide by default"
        );
    }
    let docs = render(
        "jt",
        "tracing",
        &[
            "--set",
            "controller.watchNamespace=batch,controller.recordEvents=true",
        ],
    )
    .unwrap();
    let cluster = watched(&docs, "ClusterRole");
    for resource in ["jobs", "pods", "events", "jobtracepolicies/status"] {
        assert!(!cluster.contains(resource), "{resource} only in batch");
    }
    assert!(
        cluster.contains("jobtracepolicies"),
        "the webhook's copy of the policies: every namespace"
    );
    let role = kind(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "batch")
        .expect("a Role in the watched namespace");
    assert_eq!(role["metadata"]["name"], "jt-jobtrace-watch");
    let binding = kind(&docs, "RoleBinding")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "batch")
        .expect("its binding");
    assert_eq!(binding["roleRef"]["name"], "jt-jobtrace-watch");
    assert_eq!(
        binding["subjects"][0],
        json!({ "kind": "ServiceAccount", "name": "jt-jobtrace", "namespace": "tracing" })
    );
    let in_batch: BTreeSet<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        in_batch,
        BTreeSet::from(["events", "jobs", "jobtracepolicies/status", "pods"])
    );
}

/// One RBAC rule for one resource (and name), as docs/security.md's table lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    group: String,
    resource: String,
    name: String,
    verbs: Vec<String>,
    scope: &'static str,
}

const CLUSTER: &str = "cluster";
const RELEASE_NAMESPACE: &str = "release namespace";
const WATCHED: &str = "watched namespaces";

/// The rows of the table in docs/security.md's `## Permissions`.
fn documented_permissions() -> BTreeSet<Grant> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md")).unwrap();
    let section = doc
        .split("\n## Permissions\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/security.md has a section \"## Permissions\"");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    section
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| (core)"))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let scope = [CLUSTER, RELEASE_NAMESPACE, WATCHED]
                .into_iter()
                .find(|s| *s == cells[5])
                .unwrap_or_else(|| panic!("unknown scope in {row}"));
            let mut verbs = ticked(cells[4]);
            verbs.sort();
            Grant {
                group: ticked(cells[1]).pop().unwrap_or_default(),
                resource: ticked(cells[2]).pop().expect("a resource"),
                name: ticked(cells[3]).pop().unwrap_or_default(),
                verbs,
                scope,
            }
        })
        .collect()
}

/// The rules the chart renders for release `jt` in `tracing`, one per resource and name, with
/// their scope. Rendered without `controller.watchNamespace` (`every_namespace`), a rule of the
/// `ClusterRole` that the table lists for the watched namespaces is taken as such: the rendering
/// with it tells the two apart.
fn rendered_permissions(
    docs: &[Value],
    every_namespace: bool,
    documented: &BTreeSet<Grant>,
) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            let strings = |field: &str| -> Vec<String> {
                rule[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            let mut verbs = strings("verbs");
            verbs.sort();
            let mut names: Vec<String> = strings("resourceNames")
                .iter()
                .map(|n| n.replacen("jt-jobtrace", "<fullname>", 1))
                .collect();
            if names.is_empty() {
                names.push(String::new());
            }
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for name in &names {
                        let mut grant = Grant {
                            group: group.clone(),
                            resource: resource.clone(),
                            name: name.clone(),
                            verbs: verbs.clone(),
                            scope: match (
                                role["kind"].as_str(),
                                role["metadata"]["namespace"].as_str(),
                            ) {
                                (Some("ClusterRole"), _) => CLUSTER,
                                (_, Some("tracing")) => RELEASE_NAMESPACE,
                                _ => WATCHED,
                            },
                        };
                        let as_watched = Grant {
                            scope: WATCHED,
                            ..grant.clone()
                        };
                        if every_namespace
                            && grant.scope == CLUSTER
                            && documented.contains(&as_watched)
                        {
                            grant = as_watched;
                        }
                        out.insert(grant);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_permissions_table_is_the_rbac_the_chart_renders() {
    if !helm_found() {
        return;
    }
    let documented = documented_permissions();
    assert!(documented.len() > 10, "the table read: {documented:?}");
    let mut rendered = BTreeSet::new();
    for flags in [
        &[][..],
        &[
            "--set",
            "controller.watchNamespace=batch,controller.recordEvents=true,policy.holdPods=true",
        ][..],
    ] {
        let docs = render("jt", "tracing", flags).unwrap();
        rendered.extend(rendered_permissions(&docs, flags.is_empty(), &documented));
    }
    let undocumented: Vec<_> = rendered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "rules the chart grants that docs/security.md's table lacks: {undocumented:#?}"
    );
    let ungranted: Vec<_> = documented.difference(&rendered).collect();
    assert!(
        ungranted.is_empty(),
        "rows of docs/security.md's table the chart doesn't grant: {ungranted:#?}"
    );
}

#[test]
fn the_network_policy_opens_the_webhook_port_and_the_metrics_port_to_whom_it_is_told() {
    if !helm_found() {
        return;
    }
    let docs = defaults();
    let policy = one(&docs, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        json!(["Ingress"]),
        "no egress rule"
    );
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        one(&docs, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    // The apiserver's address is not a pod's: the webhook port from anywhere; the metrics port
    // from no pod.
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{ "ports": [{ "port": "webhook", "protocol": "TCP" }] }])
    );
    let ports: BTreeSet<&str> = container(&docs)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(ports.contains("webhook") && ports.contains("metrics"));
}
