//! The HTTPS webhook server and its metrics port, over real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jobtrace::k8s::controller::{self, ControllerSync, Deps};
use jobtrace::k8s::metrics::Metrics;
use jobtrace::k8s::metrics_port::Readiness;
use jobtrace::k8s::otlp::{Exporter, ExporterConfig};
use jobtrace::k8s::serve::{Listeners, TlsSource, WebhookServer, webhook};
use jobtrace::k8s::tls::ServingCertFiles;
use jobtrace_testkit::fixtures::{TP, job, review};
use jobtrace_testkit::pki::TestPki;
use jobtrace_testkit::poll;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Running {
    webhook: SocketAddr,
    admin: SocketAddr,
    shutdown: CancellationToken,
    dir: std::path::PathBuf,
    task: tokio::task::JoinHandle<Result<(), jobtrace::k8s::serve::ServeError>>,
}

fn write_pki(dir: &Path, pki: &TestPki) {
    std::fs::write(dir.join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pki.key_pem).unwrap();
}

fn start(name: &str, pki: &TestPki) -> Running {
    start_with_delay(name, pki, Duration::ZERO)
}

fn start_with_delay(name: &str, pki: &TestPki, shutdown_delay: Duration) -> Running {
    start_serving(name, pki, shutdown_delay, Arc::default(), None)
}

/// The webhook server, with the metrics and, as in `jobtrace run`, the controller's state that
/// its metrics port reports.
fn start_serving(
    name: &str,
    pki: &TestPki,
    shutdown_delay: Duration,
    metrics: Arc<Metrics>,
    controller: Option<Arc<ControllerSync>>,
) -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("jobtrace-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_pki(&dir, pki);
    let listeners = Listeners::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let webhook_addr = listeners.webhook.local_addr().unwrap();
    let admin_addr = listeners.metrics.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let tls = ServingCertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let task = tokio::spawn(webhook(
        WebhookServer {
            listeners,
            tls: TlsSource::Files {
                files: tls,
                reload: Duration::from_millis(200),
            },
            metrics,
            readiness: Arc::new(Readiness::default()),
            controller,
            tracer: None,
            policies: jobtrace::k8s::policy::Policies::defaults_only(
                jobtrace::core::policy::TraceSettings::default(),
            ),
            shutdown_delay,
        },
        shutdown.clone(),
    ));
    Running {
        webhook: webhook_addr,
        admin: admin_addr,
        shutdown,
        dir,
        task,
    }
}

/// One HTTP/1.1 request over TLS, trusting only `ca`; the raw response text.
async fn https(
    addr: SocketAddr,
    ca: &[u8],
    request: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec()))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1")?.to_owned(), tcp)
        .await?;
    tls.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}

/// The review of a Job carrying a traceparent.
fn traced_job_review() -> String {
    review(
        "batch",
        "Job",
        "CREATE",
        &job(&json!({ "traceparent": TP })),
    )
    .to_string()
}

fn post(body: &str) -> String {
    format!(
        "POST /mutate/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_admission_over_https_and_reports_metrics() {
    let pki = TestPki::generate();
    let server = start("serve", &pki);
    let body = traced_job_review();
    let response = https(server.webhook, &pki.ca_der, &post(&body))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("\"patchType\":\"JSONPatch\""),
        "{response}"
    );

    assert!(
        http_get(server.admin, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(server.admin, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let metrics = http_get(server.admin, "/metrics").await;
    assert!(
        metrics
            .contains(r#"jobtrace_admission_requests_total{endpoint="jobs",result="injected"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("jobtrace_admission_duration_seconds_bucket"));

    server.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server.task)
        .await
        .expect("the server drains and stops")
        .unwrap()
        .unwrap();
    std::fs::remove_dir_all(server.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_reloaded_when_the_files_change() {
    let first = TestPki::generate();
    let server = start("reload", &first);
    let hello = "GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    https(server.webhook, &first.ca_der, hello)
        .await
        .expect("the first certificate is served");

    let second = TestPki::generate();
    write_pki(&server.dir, &second);
    let (within, every) = (Duration::from_secs(10), Duration::from_millis(100));
    poll::until("the new certificate served", within, every, async || {
        https(server.webhook, &second.ca_der, hello).await.ok()
    })
    .await;
    assert!(
        https(server.webhook, &first.ca_der, hello).await.is_err(),
        "the old certificate is no longer served"
    );

    // A half-written rotation (key of another pair) keeps the current certificate.
    std::fs::write(server.dir.join("tls.key"), &first.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    https(server.webhook, &second.ca_der, hello)
        .await
        .expect("a mismatched pair is not loaded");
    server.shutdown.cancel();
    std::fs::remove_dir_all(server.dir).ok();
}

#[tokio::test]
async fn missing_certificate_fails_at_start_with_the_paths() {
    let listeners = Listeners::bind(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let tls = ServingCertFiles {
        cert: "/nonexistent/tls.crt".into(),
        key: "/nonexistent/tls.key".into(),
    };
    let error = webhook(
        WebhookServer {
            listeners,
            tls: TlsSource::Files {
                files: tls,
                reload: Duration::from_secs(1),
            },
            metrics: Arc::default(),
            readiness: Arc::default(),
            controller: None,
            tracer: None,
            policies: jobtrace::k8s::policy::Policies::defaults_only(
                jobtrace::core::policy::TraceSettings::default(),
            ),
            shutdown_delay: Duration::ZERO,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/tls.crt"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_not_ready_keeps_serving_then_drains() {
    let pki = TestPki::generate();
    let server = start_with_delay("drain", &pki, Duration::from_secs(2));
    let body = traced_job_review();
    until_ok(server.admin, "/readyz").await;
    server.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Not ready, so the Service stops sending admissions here; those still arriving are served.
    let readyz = http_get(server.admin, "/readyz").await;
    assert!(
        readyz.starts_with("HTTP/1.1 503") && readyz.contains("shutting down"),
        "{readyz}"
    );
    let response = https(server.webhook, &pki.ca_der, &post(&body))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    tokio::time::timeout(Duration::from_secs(15), server.task)
        .await
        .expect("the server drains and stops")
        .unwrap()
        .unwrap();
    assert!(
        https(server.webhook, &pki.ca_der, &post(&body))
            .await
            .is_err(),
        "nothing is served after the drain"
    );
    std::fs::remove_dir_all(server.dir).ok();
}

/// Waits until `GET path` on `addr` answers 200, for up to 10 s.
async fn until_ok(addr: SocketAddr, path: &str) {
    let (within, every) = (Duration::from_secs(10), Duration::from_millis(50));
    poll::until(
        &format!("{path} answering 200"),
        within,
        every,
        async || {
            let response = http_get(addr, path).await;
            if response.starts_with("HTTP/1.1 200") {
                Ok(())
            } else {
                Err(response)
            }
        },
    )
    .await;
}

type MockApiserver = tower_test::mock::Handle<
    hyper::http::Request<kube::client::Body>,
    hyper::http::Response<kube::client::Body>,
>;

/// A list of no objects, as the apiserver answers one: the end of the list.
fn empty_list(path: &str) -> hyper::http::Response<kube::client::Body> {
    let (api_version, kind) = if path.starts_with("/apis/batch/v1/") {
        ("batch/v1", "JobList")
    } else {
        ("v1", "PodList")
    };
    let list = json!({
        "apiVersion": api_version, "kind": kind, "metadata": { "resourceVersion": "1" }, "items": []
    });
    hyper::http::Response::new(kube::client::Body::from(list.to_string().into_bytes()))
}

/// Three times: an admission answered with a patch, `/readyz` ready, and `/syncz` and
/// `jobtrace_controller_listing` saying the controller lists.
async fn answers_while_listing(server: &Running, pki: &TestPki, body: &str) {
    for _ in 0..3 {
        let response = https(server.webhook, &pki.ca_der, &post(body))
            .await
            .unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200")
                && response.contains("\"patchType\":\"JSONPatch\""),
            "{response}"
        );
        let readyz = http_get(server.admin, "/readyz").await;
        assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
        let syncz = http_get(server.admin, "/syncz").await;
        assert!(
            syncz.starts_with("HTTP/1.1 503") && syncz.contains("listing the traced Jobs and pods"),
            "{syncz}"
        );
        let scraped = http_get(server.admin, "/metrics").await;
        assert!(
            scraped.contains("jobtrace_controller_listing 1"),
            "{scraped}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `jobtrace run`'s halves in one process, the controller leading against an apiserver that holds
/// its lists of the traced Jobs and pods unanswered: all the while the webhook is ready and
/// answers admissions, and only `/syncz` and `jobtrace_controller_listing` say the controller
/// lists. Once the lists come back, `/syncz` says synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_controller_leaves_the_webhook_ready_and_answering() {
    let metrics = Arc::new(Metrics::default());
    let sync = Arc::new(ControllerSync::new(metrics.controller_listing.clone()));
    let (service, mut apiserver): (_, MockApiserver) = tower_test::mock::pair();
    // Never used: the controller has nothing to export.
    let nowhere = |key: &str| {
        (key == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").then(|| "http://127.0.0.1:9".to_owned())
    };
    let deps = Arc::new(Deps {
        client: kube::Client::new(service, "default"),
        exporter: Exporter::new(
            ExporterConfig::from_sources(nowhere, |path: &std::path::Path| std::fs::read(path))
                .unwrap(),
        )
        .unwrap(),
        metrics: metrics.clone(),
        resource: vec![("service.name".to_owned(), "jobtrace".to_owned())],
        instance: "test".to_owned(),
        namespace: None,
        sync: sync.clone(),
        tracer: None,
        policy_status: false,
        hold_timeout: Duration::from_secs(60),
        hold_pods: false,
        record_events: false,
    });
    let stop_controller = CancellationToken::new();
    let controller = tokio::spawn(controller::run(deps, stop_controller.clone()));
    // The Jobs are listed first; the pods once the Jobs are (a pod's span waits for its Job's
    // unless the Job is known to run). Each list is held unanswered while the webhook is checked.
    // The hold keeper's reads of the Jobs' metadata are held for good: this test is about the
    // controller's lists.
    let mut keeper = Vec::new();
    let mut next = async || {
        loop {
            let (request, respond) =
                tokio::time::timeout(Duration::from_secs(10), apiserver.next_request())
                    .await
                    .expect("the controller lists the traced Jobs, then the pods")
                    .unwrap();
            let accept = request
                .headers()
                .get(hyper::http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if accept.contains("PartialObjectMetadata") {
                keeper.push(respond);
                continue;
            }
            let query = request.uri().query().unwrap_or_default().to_owned();
            return (request.uri().path().to_owned(), query, respond);
        }
    };
    let (path, query, jobs_list) = next().await;
    assert_eq!(path, "/apis/batch/v1/jobs");
    assert!(
        query.contains("labelSelector=jobtrace.dev%2Ftraced%3Dtrue") && !query.contains("watch"),
        "a list of the traced Jobs: {query}"
    );

    let pki = TestPki::generate();
    let server = start_serving("listing", &pki, Duration::ZERO, metrics, Some(sync.clone()));
    until_ok(server.admin, "/readyz").await;
    let body = traced_job_review();
    answers_while_listing(&server, &pki, &body).await;
    jobs_list.send_response(empty_list("/apis/batch/v1/jobs"));

    // The Jobs' watch (held for good) and the pods' list, in either order.
    let mut watches = Vec::new();
    let pods_list = loop {
        let (path, query, respond) = next().await;
        if query.contains("watch") {
            watches.push(respond);
            continue;
        }
        assert_eq!(path, "/api/v1/pods", "{query}");
        assert!(
            query.contains("labelSelector=jobtrace.dev%2Ftraced%3Dtrue"),
            "a list of the traced pods: {query}"
        );
        break respond;
    };
    answers_while_listing(&server, &pki, &body).await;
    pods_list.send_response(empty_list("/api/v1/pods"));
    // The watches that follow are held for good.
    let watches = tokio::spawn(async move {
        let _jobs_watch = watches;
        let mut held = Vec::new();
        while let Some(request) = apiserver.next_request().await {
            held.push(request);
        }
    });
    until_ok(server.admin, "/syncz").await;
    assert!(
        http_get(server.admin, "/metrics")
            .await
            .contains("jobtrace_controller_listing 0")
    );
    let readyz = http_get(server.admin, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");

    stop_controller.cancel();
    tokio::time::timeout(Duration::from_secs(5), controller)
        .await
        .expect("the controller stops")
        .unwrap();
    watches.abort();
    server.shutdown.cancel();
    std::fs::remove_dir_all(server.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line() {
    use tokio::io::AsyncBufReadExt;
    let pki = TestPki::generate();
    let dir = std::env::temp_dir().join(format!("jobtrace-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_pki(&dir, &pki);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobtrace"))
        .args([
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .args(["--policies", "false"])
        .env("JOBTRACE_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a log line")
        .unwrap()
        .expect("a log line");
    let entry: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(entry["level"], "INFO", "{line}");
    assert_eq!(entry["message"], "webhook serving", "{line}");
    assert!(
        entry["timestamp"].is_string() && entry["listen"].is_string(),
        "{line}"
    );
    child.kill().await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}
