//! The Helm chart: `helm lint` and rendering (the defaults, every value of `values.yaml`, the
//! schema's refusals) with the helm binary built by `hack/build-bins.sh`; then the rendered chart
//! installed on the local control plane and jobtrace run against it as the chart's
//! `ServiceAccount`, with the chart's own arguments.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use jobtrace::registration::{Endpoint, Registration, webhook_configuration};
use serde_json::{Value, json};

use crate::webhook_process::bin_dir;

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/jobtrace")
}

/// The Kubernetes version of the local control plane, from `hack/versions.env`.
fn kube_version() -> String {
    let versions =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/versions.env")).unwrap();
    versions
        .lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION=v"))
        .expect("K8S_VERSION in versions.env")
        .to_owned()
}

fn helm(args: &[&str]) -> std::process::Output {
    Command::new(bin_dir().join("helm"))
        .args(args)
        .output()
        .expect("run helm (hack/build-bins.sh builds it)")
}

/// `helm template` of the chart as release `release` in `namespace`, with extra flags; the
/// documents, or helm's error.
pub fn render(release: &str, namespace: &str, flags: &[&str]) -> Result<Vec<Value>, String> {
    let chart = chart_dir();
    let version = kube_version();
    let mut args = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
        "--kube-version",
        &version,
    ];
    args.extend_from_slice(flags);
    let output = helm(&args);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("helm renders YAML");
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn defaults() -> Vec<Value> {
    render("jt", "tracing", &[]).unwrap()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], wanted: &str) -> &'a Value {
    let found = kind(docs, wanted);
    assert_eq!(found.len(), 1, "one {wanted} expected");
    found[0]
}

fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn pod_spec(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]
}

fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

fn env<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    container(docs)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn env_value(docs: &[Value], name: &str) -> String {
    env(docs, name).unwrap_or_else(|| panic!("no {name}"))["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn webhooks(docs: &[Value]) -> &Vec<Value> {
    one(docs, "MutatingWebhookConfiguration")["webhooks"]
        .as_array()
        .unwrap()
}

#[test]
fn chart_lints_with_the_cluster_version() {
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
    // Probes on the operations port.
    assert_eq!(
        container(&docs)["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
    assert_eq!(
        container(&docs)["livenessProbe"]["httpGet"]["path"],
        "/healthz"
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
        Endpoint::Service {
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

#[test]
fn rbac_is_least_privilege_and_every_rule_says_why() {
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
                assert!(
                    ["get", "list", "watch", "patch", "create", "update"]
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

/// One documented value set to something else, and what must change in the rendering.
struct Case {
    /// The values.yaml paths this case covers.
    paths: &'static [&'static str],
    flags: &'static [&'static str],
    check: fn(&[Value]),
}

// A table, one case a value: long, and clearer in one piece.
#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    vec![
        Case {
            paths: &["replicaCount"],
            flags: &["--set", "replicaCount=3"],
            check: |d| {
                assert_eq!(one(d, "Deployment")["spec"]["replicas"], 3);
            },
        },
        Case {
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
        Case {
            paths: &["image.tag"],
            flags: &["--set", "image.tag=20261123"],
            check: |d| {
                assert_eq!(container(d)["image"], "jobtrace/jobtrace:20261123");
            },
        },
        Case {
            paths: &["imagePullSecrets"],
            flags: &["--set", "imagePullSecrets[0].name=regcred"],
            check: |d| {
                assert_eq!(
                    pod_spec(d)["imagePullSecrets"],
                    json!([{ "name": "regcred" }])
                );
            },
        },
        Case {
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
        Case {
            paths: &["fullnameOverride"],
            flags: &["--set", "fullnameOverride=jobtracer"],
            check: |d| {
                assert_eq!(
                    one(d, "MutatingWebhookConfiguration")["metadata"]["name"],
                    "jobtracer"
                );
                assert!(args(d).contains(&"--webhook-configuration=jobtracer".to_owned()));
                assert!(args(d).contains(&"--lease-name=jobtracer".to_owned()));
            },
        },
        Case {
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
        Case {
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
        Case {
            paths: &["logLevel", "logFormat"],
            flags: &["--set", "logLevel=jobtrace=debug,logFormat=text"],
            check: |d| {
                assert_eq!(env_value(d, "JOBTRACE_LOG_LEVEL"), "jobtrace=debug");
                assert_eq!(env_value(d, "JOBTRACE_LOG_FORMAT"), "text");
            },
        },
        Case {
            paths: &["selfTracing.ratio"],
            flags: &["--set", "selfTracing.ratio=0.25"],
            check: |d| {
                assert_eq!(env_value(d, "JOBTRACE_SELF_TRACING_RATIO"), "0.25");
            },
        },
        Case {
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
        Case {
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
        Case {
            paths: &["webhook.port"],
            flags: &["--set", "webhook.port=9443"],
            check: |d| {
                assert!(args(d).contains(&"--listen=0.0.0.0:9443".to_owned()));
                assert_eq!(container(d)["ports"][0]["containerPort"], 9443);
            },
        },
        Case {
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
        Case {
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
                // jobtrace touches neither Secrets nor the webhook configuration then.
                let rules = json!(
                    d.iter()
                        .filter(|x| x["kind"] == "Role" || x["kind"] == "ClusterRole")
                        .collect::<Vec<_>>()
                )
                .to_string();
                assert!(
                    !rules.contains("secrets") && !rules.contains("mutatingwebhookconfigurations")
                );
            },
        },
        Case {
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
        Case {
            paths: &["controller.watchNamespace"],
            flags: &["--set", "controller.watchNamespace=batch"],
            check: |d| {
                assert!(args(d).contains(&"--watch-namespace=batch".to_owned()));
            },
        },
        Case {
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
        Case {
            paths: &["metrics.scrapeAnnotations"],
            flags: &["--set", "metrics.scrapeAnnotations=false"],
            check: |d| {
                assert!(
                    one(d, "Deployment")["spec"]["template"]["metadata"]["annotations"].is_null()
                );
            },
        },
        Case {
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
        Case {
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
                // The alerts docs/operations.md lists, each one.
                let documented = std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/docs/operations.md"
                ))
                .unwrap();
                for alert in &alerts {
                    assert!(
                        documented.contains(&format!("alert: {alert}")),
                        "{alert} not in docs/operations.md"
                    );
                }
                assert_eq!(alerts.len(), documented.matches("- alert: ").count());
                // Scoped to the release's namespace.
                assert!(
                    rule["spec"]["groups"][0]["rules"][0]["expr"]
                        .as_str()
                        .unwrap()
                        .contains(r#"namespace="tracing""#)
                );
            },
        },
        Case {
            paths: &["service.port"],
            flags: &["--set", "service.port=8443"],
            check: |d| {
                assert_eq!(one(d, "Service")["spec"]["ports"][0]["port"], 8443);
                for w in webhooks(d) {
                    assert_eq!(w["clientConfig"]["service"]["port"], 8443);
                }
            },
        },
        Case {
            paths: &["resources"],
            flags: &["--set", "resources.limits.memory=512Mi"],
            check: |d| {
                assert_eq!(container(d)["resources"]["limits"]["memory"], "512Mi");
            },
        },
        Case {
            paths: &["podDisruptionBudget.enabled"],
            flags: &["--set", "podDisruptionBudget.enabled=false"],
            check: |d| {
                assert!(kind(d, "PodDisruptionBudget").is_empty());
            },
        },
        Case {
            paths: &["podDisruptionBudget.minAvailable"],
            flags: &["--set", "podDisruptionBudget.minAvailable=50%"],
            check: |d| {
                assert_eq!(one(d, "PodDisruptionBudget")["spec"]["minAvailable"], "50%");
            },
        },
        Case {
            paths: &["topologySpreadConstraints"],
            flags: &["--set-json", "topologySpreadConstraints=[]"],
            check: |d| {
                assert!(pod_spec(d)["topologySpreadConstraints"].is_null());
            },
        },
        Case {
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
        Case {
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
        Case {
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
        Case {
            paths: &["serviceAccount.annotations"],
            flags: &["--set", "serviceAccount.annotations.team=platform"],
            check: |d| {
                assert_eq!(
                    one(d, "ServiceAccount")["metadata"]["annotations"]["team"],
                    "platform"
                );
            },
        },
        Case {
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
            },
        },
        Case {
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
        Case {
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
    ]
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
fn every_documented_value_changes_the_rendering() {
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
    let mut covered = BTreeSet::new();
    for case in cases() {
        let docs =
            render("jt", "tracing", case.flags).unwrap_or_else(|e| panic!("{:?}: {e}", case.flags));
        (case.check)(&docs);
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
    for (flag, field) in [
        ("replicaCount=two", "/replicaCount"),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("webhook.failurePolicy=Never", "/webhook/failurePolicy"),
        ("logFormat=xml", "/logFormat"),
        ("otlp.endpoint=collector:4317", "/otlp/endpoint"),
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

// ---- Installed on the local control plane ----

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::support::TestNamespace;
use crate::webhook_process::{TP, free_port, kubectl};

fn run_kubectl(args: &[&str]) -> String {
    let output = kubectl().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A kubeconfig for the same cluster that authenticates as a `ServiceAccount`, so jobtrace runs
/// with the chart's RBAC and nothing more.
fn service_account_kubeconfig(namespace: &str, account: &str, dir: &std::path::Path) -> PathBuf {
    let token = run_kubectl(&["create", "token", account, "-n", namespace, "--duration=1h"]);
    let admin = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let admin: Value = serde_saphyr::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "local", "cluster": cluster }],
        "users": [{ "name": account, "user": { "token": token.trim() } }],
        "contexts": [{ "name": "sa", "context": { "cluster": "local", "user": account } }],
        "current-context": "sa",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

/// `JOBTRACE_E2E_BINARY` (`make e2e` sets it to the static binary the image ships), else the
/// test build.
pub fn jobtrace_binary() -> PathBuf {
    std::env::var_os("JOBTRACE_E2E_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_jobtrace")),
        PathBuf::from,
    )
}

pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get_ok(url: String) -> Option<String> {
    let response = reqwest::get(url).await.ok()?;
    if response.status().is_success() {
        response.text().await.ok()
    } else {
        None
    }
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Points the webhook configuration's two webhooks at a local jobtrace on `port`, or back at the
/// chart's Service (`None`), keeping the `caBundle`.
async fn redirect(
    configs: &Api<MutatingWebhookConfiguration>,
    name: &str,
    namespace: &str,
    port: Option<u16>,
) {
    let mut ops = Vec::new();
    for (i, path) in ["/mutate/jobs", "/mutate/pods"].iter().enumerate() {
        let service = json!({
            "namespace": namespace, "name": name, "path": path, "port": 443
        });
        let (remove, add, value) = match port {
            Some(port) => (
                "service",
                "url",
                json!(format!("https://127.0.0.1:{port}{path}")),
            ),
            None => ("url", "service", service),
        };
        ops.push(json!({ "op": "remove", "path": format!("/webhooks/{i}/clientConfig/{remove}") }));
        ops.push(json!({ "op": "add", "path": format!("/webhooks/{i}/clientConfig/{add}"), "value": value }));
    }
    configs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(json!(ops)).unwrap()),
        )
        .await
        .unwrap();
}

/// `TRACEPARENT` of a pod's first container.
fn traceparent_of(pod: &k8s_openapi::api::core::v1::PodSpec) -> String {
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TRACEPARENT")
        .and_then(|e| e.value.clone())
        .expect("TRACEPARENT injected")
}

fn ca_bundles(config: &MutatingWebhookConfiguration) -> Vec<Vec<u8>> {
    config
        .webhooks
        .iter()
        .flatten()
        .map(|w| {
            w.client_config
                .ca_bundle
                .clone()
                .map(|b| b.0)
                .unwrap_or_default()
        })
        .collect()
}

// One install, step by step, from apply to uninstall.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn installed_chart_runs_jobtrace_with_its_certificates_and_rbac() {
    let install = TestNamespace::create("chart").await;
    let traced = TestNamespace::create("chart-jobs").await;
    let release = install.name.clone();
    let fullname = format!("{release}-jobtrace");
    let dir = std::env::temp_dir().join(format!("jobtrace-chart-{release}"));
    std::fs::create_dir_all(&dir).unwrap();

    // Rendered for this cluster: only the test's namespace is traced (other tests run
    // alongside), spans go to the local Jaeger.
    let traced_only = format!("webhook.namespaces={{{}}}", traced.name);
    let watch = format!("controller.watchNamespace={}", traced.name);
    let values = [
        "--set",
        &traced_only,
        "--set",
        &watch,
        "--set",
        "otlp.endpoint=http://127.0.0.1:4317",
    ];
    let docs = render(&release, &install.name, &values).unwrap();
    let manifest = dir.join("chart.yaml");
    let text: String = docs
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .fold(String::new(), |all, d| all + "---\n" + &d + "\n");
    std::fs::write(&manifest, text).unwrap();
    let path = manifest.to_str().unwrap();
    // The restricted Pod Security profile is enforced on jobtrace's namespace.
    run_kubectl(&[
        "label",
        "namespace",
        &install.name,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    run_kubectl(&["apply", "--server-side", "--dry-run=server", "-f", path]);
    // Then for real, as users install it.
    let chart = chart_dir();
    let helm_release = |verb: &str, extra: &[&str]| {
        let mut args = vec![verb, release.as_str()];
        if verb != "uninstall" {
            args.push(chart.to_str().unwrap());
        }
        args.extend_from_slice(&["--namespace", &install.name]);
        args.extend_from_slice(extra);
        let output = helm(&args);
        assert!(
            output.status.success(),
            "helm {verb}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let notes = helm_release("install", &values);
    assert!(
        notes.contains("traceparent:"),
        "NOTES tell how to annotate a Job: {notes}"
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = install.api();
    let selector = format!("app.kubernetes.io/instance={release}");
    eventually("the Deployment's two pods, admitted as restricted", || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .ok()?;
            (list.items.len() == 2).then_some(())
        }
    })
    .await;

    // kwok runs no containers: the webhook configuration is pointed at a local jobtrace,
    // started with the Deployment's own arguments and environment, as its ServiceAccount.
    let (port, metrics_port) = (free_port(), free_port());
    let configs: Api<MutatingWebhookConfiguration> = Api::all(install.client.clone());
    redirect(&configs, &fullname, &install.name, Some(port)).await;
    let kubeconfig = service_account_kubeconfig(&install.name, &fullname, &dir);
    let mut command = Command::new(jobtrace_binary());
    for arg in args(&docs) {
        if arg.starts_with("--listen=") || arg.starts_with("--metrics-listen=") {
            continue;
        }
        if let Some(names) = arg.strip_prefix("--cert-name=") {
            command.arg(format!("--cert-name={names},127.0.0.1"));
        } else {
            command.arg(arg);
        }
    }
    command
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen=127.0.0.1:{metrics_port}"));
    for entry in container(&docs)["env"].as_array().unwrap() {
        if let Some(value) = entry["value"].as_str() {
            command.env(entry["name"].as_str().unwrap(), value);
        }
    }
    let process = Process(
        command
            .env("POD_NAMESPACE", &install.name)
            .env("POD_NAME", "local-0")
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    eventually("readiness", || get_ok(format!("{metrics}/readyz"))).await;

    // The Secret it created, owned by the webhook configuration, and the caBundle it set.
    let secrets: Api<Secret> = install.api();
    let secret = secrets.get(&format!("{fullname}-tls")).await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.clone().unwrap();
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(data.contains_key(key), "{key}");
    }
    let owner = &secret
        .metadata
        .owner_references
        .clone()
        .unwrap_or_else(|| panic!("no owner: {:?}", secret.metadata))[0];
    assert_eq!(owner.kind, "MutatingWebhookConfiguration");
    assert_eq!(owner.name, fullname);
    let ca = data["ca.crt"].0.clone();
    let config = configs.get(&fullname).await.unwrap();
    assert_eq!(ca_bundles(&config), vec![ca.clone(), ca.clone()]);

    // An annotated Job is injected through the installed configuration, its pod too.
    let jobs: Api<Job> = traced.api();
    let mut job = crate::support::sim_job("hello", "1s", None);
    job.metadata.annotations = Some([("traceparent".to_owned(), TP.to_owned())].into());
    eventually("the webhook to take effect", || {
        let jobs = jobs.clone();
        let job = job.clone();
        async move {
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let created = jobs.create(&dry, &job).await.ok()?;
            created
                .metadata
                .labels
                .as_ref()?
                .contains_key("jobtrace.dev/traced")
                .then_some(())
        }
    })
    .await;
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    let traceparent = traceparent_of(&created.spec.unwrap().template.spec.unwrap());
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    let pods = eventually("the Job's pod", || async {
        let pods = traced.pods_of("hello").await;
        (!pods.is_empty()).then_some(pods)
    })
    .await;
    let pod_traceparent = traceparent_of(pods[0].spec.as_ref().unwrap());
    assert_ne!(
        pod_traceparent, traceparent,
        "each pod attempt has a span of its own"
    );

    // Something overwrites the caBundle (an apply, an upgrade): jobtrace puts it back.
    let stranger =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cluster/pki/ca.crt"))
            .unwrap();
    let mut ops = Vec::new();
    for i in 0..2 {
        ops.push(json!({ "op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"),
            "value": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &stranger) }));
    }
    configs
        .patch(
            &fullname,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(json!(ops)).unwrap()),
        )
        .await
        .unwrap();
    eventually("the caBundle to be restored", || {
        let configs = configs.clone();
        let (fullname, ca) = (fullname.clone(), ca.clone());
        async move {
            let config = configs.get(&fullname).await.ok()?;
            (ca_bundles(&config) == vec![ca.clone(), ca]).then_some(())
        }
    })
    .await;

    // An upgrade renders the configuration with the current bundle, read from the Secret
    // (helm's `lookup`, which only a render against the cluster can do)...
    let upgrade = render(
        &release,
        &install.name,
        &["--set", &traced_only, "--set", &watch, "--dry-run=server"],
    )
    .unwrap();
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca);
    for webhook in webhooks(&upgrade) {
        assert_eq!(webhook["clientConfig"]["caBundle"], encoded.as_str());
    }
    // ... and a real upgrade leaves the caBundle in place (nothing for jobtrace to restore).
    let writes = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("jobtrace_certificate_writes_total{what=\"ca_bundle\"} "))
            .map(str::to_owned)
    };
    let before = writes(&get_ok(format!("{metrics}/metrics")).await.unwrap());
    // (The chart's clientConfig back first: helm merges, and would add the Service next to the
    // test's URL.)
    redirect(&configs, &fullname, &install.name, None).await;
    helm_release("upgrade", &["--reuse-values", "--set", "logLevel=debug"]);
    let config = configs.get(&fullname).await.unwrap();
    assert_eq!(ca_bundles(&config), vec![ca.clone(), ca.clone()]);
    let deployment: Api<k8s_openapi::api::apps::v1::Deployment> = install.api();
    let upgraded = deployment.get(&fullname).await.unwrap();
    assert!(
        serde_json::to_string(&upgraded.spec)
            .unwrap()
            .contains("\"debug\"")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        writes(&get_ok(format!("{metrics}/metrics")).await.unwrap()),
        before
    );

    let text = get_ok(format!("{metrics}/metrics")).await.unwrap();
    let expiry: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("jobtrace_certificate_expiry_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(expiry > now + 80 * 86_400, "a 90-day certificate: {expiry}");
    assert!(
        text.contains("jobtrace_certificate_writes_total{what=\"ca_bundle\"} 2"),
        "{text}"
    );

    // Uninstall: nothing is left behind, the Secret jobtrace made included.
    drop(process);
    helm_release("uninstall", &["--wait"]);
    assert!(configs.get_opt(&fullname).await.unwrap().is_none());
    eventually("the certificate Secret to be collected", || {
        let secrets = secrets.clone();
        let name = format!("{fullname}-tls");
        async move { secrets.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
    std::fs::remove_dir_all(dir).ok();
}

/// Applies the rendered documents with a server-side dry-run; the error text when refused.
fn dry_run(docs: &[&Value], dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join("dry-run.json");
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": docs });
    std::fs::write(&path, list.to_string()).unwrap();
    let output = kubectl()
        .args(["apply", "--server-side", "--dry-run=server", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn objects_for_cert_manager_and_prometheus_operator_pass_their_schemas() {
    // Their CRDs, from their modules (hack/build-bins.sh crds).
    for project in ["cert-manager", "prometheus-operator"] {
        let crds = bin_dir().parent().unwrap().join("crds").join(project);
        run_kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    }
    run_kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/certificates.cert-manager.io",
        "crd/issuers.cert-manager.io",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ]);
    let ns = TestNamespace::create("cert-manager").await;
    let dir = std::env::temp_dir().join(format!("jobtrace-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    for flags in [
        &["--set", "certificates.certManager.enabled=true"][..],
        &[
            "--set",
            "certificates.certManager.enabled=true,certificates.certManager.issuerRef.name=corporate,certificates.certManager.issuerRef.kind=ClusterIssuer",
        ][..],
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true",
        ][..],
    ] {
        let docs = render("jt", &ns.name, flags).unwrap();
        let ours: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                d["apiVersion"] == "cert-manager.io/v1"
                    || d["apiVersion"] == "monitoring.coreos.com/v1"
            })
            .collect();
        assert!(!ours.is_empty());
        dry_run(&ours, &dir).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
    }
    // The dry-run does check: a Certificate cert-manager's schema refuses is refused.
    let docs = render(
        "jt",
        &ns.name,
        &["--set", "certificates.certManager.enabled=true"],
    )
    .unwrap();
    let mut wrong = (*kind(&docs, "Certificate")
        .iter()
        .find(|c| c["metadata"]["name"] == "jt-jobtrace-tls")
        .unwrap())
    .clone();
    wrong["spec"]["privateKey"]["algorithm"] = json!("DSA");
    let error = dry_run(&[&wrong], &dir).expect_err("an unknown key algorithm");
    assert!(error.contains("privateKey.algorithm"), "{error}");
    std::fs::remove_dir_all(dir).ok();
}
