//! jobtrace's exporter (`jobtrace::k8s::otlp`, the controller's) against a Jaeger of the test's own
//! whose OTLP receivers serve TLS with a private CA and mutual TLS, over gRPC and HTTP: the spans
//! sent are read back from Jaeger's query API, gzip is seen to shrink what goes over the wire, and
//! a collector of another CA or a missing client certificate is refused with nothing stored. No
//! cluster needed: `cargo test --features e2e --test e2e exporter_tls`.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jobtrace::core::spans::SpanRecord;
use jobtrace::k8s::otlp::{ExportError, Exporter, ExporterConfig};
use jobtrace_context::SpanId;
use jobtrace_testkit::fixtures::TestJob;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::json;

use crate::jaeger::fetch_trace_from;
use jobtrace_testkit::process::{bin_dir, free_port};
use jobtrace_testkit::{cluster, poll};

/// Whether Jaeger is there. Without it a test fails under CI (the `CI` variable set); elsewhere
/// it is ignored, saying so and why past the test harness's capture.
fn jaeger_found() -> bool {
    let jaeger = bin_dir().join("jaeger");
    if jaeger.is_file() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
        "jaeger not found at {}, and CI is set (hack/build-bins.sh builds it)",
        jaeger.display()
    );
    let thread = std::thread::current();
    let line = format!(
        "{}: ignored, jaeger not found at {} (hack/build-bins.sh builds it)\n",
        thread.name().unwrap_or("an exporter TLS test"),
        jaeger.display()
    );
    // One write, so that the lines of tests running at once don't mix.
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// A throw-away PKI in a directory of its own: the collector's CA and another one, the
/// collector's serving certificate for 127.0.0.1, and a client certificate of the same CA.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn generate(name: &str) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair,
        };
        let dir = std::env::temp_dir().join(format!("jobtrace-{name}-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |file: &str, pem: String| std::fs::write(dir.join(file), pem).unwrap();
        let ca = |file: &str, cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            write(file, params.self_signed(&key).unwrap().pem());
            Issuer::new(params, key)
        };
        let issuer = ca("ca.crt", "collector CA");
        ca("other-ca.crt", "another CA");
        let leaf = |name: &str, names: Vec<String>, usage| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            write(
                &format!("{name}.crt"),
                params.signed_by(&key, &issuer).unwrap().pem(),
            );
            write(&format!("{name}.key"), key.serialize_pem());
        };
        leaf(
            "server",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        leaf("client", vec![], ExtendedKeyUsagePurpose::ClientAuth);
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Jaeger v2 with two OTLP receivers, each over gRPC and HTTP: `tls` (the server certificate)
/// and `mtls` (which also asks for a client certificate of the CA), storing in memory; its query
/// API in plain HTTP. Every port a free one; stopped on drop.
struct TlsJaeger {
    grpc_tls: u16,
    http_tls: u16,
    grpc_mutual: u16,
    http_mutual: u16,
    query: u16,
    child: std::process::Child,
}

impl TlsJaeger {
    async fn start(pki: &Pki) -> Self {
        let [
            grpc_tls,
            http_tls,
            grpc_mutual,
            http_mutual,
            query,
            query_grpc,
        ] = [(); 6].map(|()| free_port());
        let (cert, key, ca) = (
            pki.path("server.crt"),
            pki.path("server.key"),
            pki.path("ca.crt"),
        );
        let tls = format!("tls: {{ cert_file: {cert}, key_file: {key} }}");
        let mtls = format!("tls: {{ cert_file: {cert}, key_file: {key}, client_ca_file: {ca} }}");
        let config = format!(
            "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp/tls, otlp/mtls]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {{ level: none }}
    logs: {{ level: warn }}
extensions:
  jaeger_storage:
    backends:
      memstore: {{ memory: {{ max_traces: 10000 }} }}
  jaeger_query:
    storage: {{ traces: memstore }}
    http: {{ endpoint: 127.0.0.1:{query} }}
    grpc: {{ endpoint: 127.0.0.1:{query_grpc} }}
receivers:
  otlp/tls:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc_tls}, {tls} }}
      http: {{ endpoint: 127.0.0.1:{http_tls}, {tls} }}
  otlp/mtls:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc_mutual}, {mtls} }}
      http: {{ endpoint: 127.0.0.1:{http_mutual}, {mtls} }}
processors:
  batch: {{ timeout: 100ms }}
exporters:
  jaeger_storage_exporter: {{ trace_storage: memstore }}
"
        );
        let path = pki.dir.join("jaeger.yaml");
        std::fs::write(&path, config).unwrap();
        let log = pki.dir.join("jaeger.log");
        let child = std::process::Command::new(bin_dir().join("jaeger"))
            .arg(format!("--config={}", path.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start jaeger");
        let mut jaeger = Self {
            grpc_tls,
            http_tls,
            grpc_mutual,
            http_mutual,
            query,
            child,
        };
        jaeger.wait_listening(&log).await;
        jaeger
    }

    async fn wait_listening(&mut self, log: &std::path::Path) {
        let ports = [
            self.grpc_tls,
            self.http_tls,
            self.grpc_mutual,
            self.http_mutual,
            self.query,
        ];
        let child = &mut self.child;
        let every = Duration::from_millis(100);
        poll::until("Jaeger listening", cluster::DEADLINE, every, async || {
            if let Some(exited) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("Jaeger exited ({exited}) before it listened: {log}");
            }
            for port in ports {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                {
                    return Err(format!("not on {port}"));
                }
            }
            Ok(())
        })
        .await;
    }

    fn query(&self) -> String {
        format!("http://127.0.0.1:{}", self.query)
    }

    /// Whether Jaeger holds trace `trace_id`, a moment after anything sent for it would be stored.
    async fn holds(&self, trace_id: &str) -> bool {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let body: serde_json::Value =
            reqwest::get(format!("{}/api/traces/{trace_id}", self.query()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
        body["data"][0]["spans"]
            .as_array()
            .is_some_and(|spans| !spans.is_empty())
    }
}

impl Drop for TlsJaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The exporter configured by `vars`, its files read from disk, as `jobtrace run` builds it.
fn exporter(vars: &[(&str, String)]) -> Exporter {
    let vars: HashMap<&str, &String> = vars.iter().map(|(k, v)| (*k, v)).collect();
    let config =
        ExporterConfig::from_sources(|k| vars.get(k).map(|v| (*v).clone()), |p| std::fs::read(p))
            .expect("a valid configuration");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    Exporter::new(config).expect("an exporter")
}

/// A finished Job's spans in a trace of their own, plus `extra` copies of its span (other span
/// ids) to make a request of some size; and the trace id.
fn spans(extra: usize) -> (Vec<SpanRecord>, String) {
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let job = TestJob::new()
        .traced_as(&trace_id, &format!("{:016x}", rand::random::<u64>() | 1))
        .created()
        .status(
            &json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True",
            "lastTransitionTime": "2026-11-23T10:00:30Z" }] }),
        )
        .typed();
    let mut spans = jobtrace::core::spans::job_spans(&job, None).expect("a finished Job has spans");
    let job_span = spans[0].clone();
    spans.extend((0..extra).map(|_| SpanRecord {
        span_id: SpanId(rand::random::<[u8; 8]>().map(|b| b | 1)),
        ..job_span.clone()
    }));
    (spans, trace_id)
}

fn request(spans: &[SpanRecord]) -> ExportTraceServiceRequest {
    jobtrace::k8s::otlp::request(
        spans,
        &[(
            "service.name".to_owned(),
            "jobtrace-exporter-tls".to_owned(),
        )],
        &jobtrace::k8s::otlp::SpanLimits::default(),
    )
}

/// Exports a Job's spans with `exporter` and reads them back from `jaeger`.
async fn exported_and_found(jaeger: &TlsJaeger, exporter: &Exporter) {
    let (spans, trace_id) = spans(0);
    exporter
        .export(request(&spans))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", exporter.endpoint()));
    let trace = fetch_trace_from(&jaeger.query(), &trace_id, spans.len()).await;
    let process = &trace["processes"][trace["spans"][0]["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "jobtrace-exporter-tls");
}

fn trusting(pki: &Pki) -> (&'static str, String) {
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.crt"))
}

fn http() -> (&'static str, String) {
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned())
}

fn with_client_certificate(pki: &Pki) -> [(&'static str, String); 2] {
    [
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            pki.path("client.crt"),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.path("client.key")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_collector_of_a_private_ca_over_tls_and_mutual_tls() {
    if !jaeger_found() {
        return;
    }
    let pki = Pki::generate("exporter-tls");
    let jaeger = TlsJaeger::start(&pki).await;
    let endpoint = |port: u16| {
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://127.0.0.1:{port}"),
        )
    };
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("gRPC, TLS", vec![endpoint(jaeger.grpc_tls), trusting(&pki)]),
        (
            // No scheme: TLS, OTEL_EXPORTER_OTLP_INSECURE being false by default.
            "gRPC, TLS, endpoint without scheme",
            vec![
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    format!("127.0.0.1:{}", jaeger.grpc_tls),
                ),
                trusting(&pki),
            ],
        ),
        (
            "HTTP, TLS",
            vec![http(), endpoint(jaeger.http_tls), trusting(&pki)],
        ),
        ("gRPC, mutual TLS", {
            let mut vars = vec![endpoint(jaeger.grpc_mutual), trusting(&pki)];
            vars.extend(with_client_certificate(&pki));
            vars
        }),
        ("HTTP, mutual TLS", {
            let mut vars = vec![http(), endpoint(jaeger.http_mutual), trusting(&pki)];
            vars.extend(with_client_certificate(&pki));
            vars
        }),
    ];
    for (case, vars) in cases {
        eprintln!("{case}");
        exported_and_found(&jaeger, &exporter(&vars)).await;
    }
}

/// A TCP relay to `to` that counts the bytes the client sends.
async fn counting_relay(to: SocketAddr) -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::default());
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = async {
                    let mut buffer = vec![0; 16 * 1024];
                    while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                let _ = tokio::join!(upstream, downstream);
            });
        }
    });
    (port, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_shrinks_the_requests_and_the_collector_reads_them() {
    if !jaeger_found() {
        return;
    }
    let pki = Pki::generate("exporter-gzip");
    let jaeger = TlsJaeger::start(&pki).await;
    for (protocol, port) in [
        ("grpc", jaeger.grpc_tls),
        ("http/protobuf", jaeger.http_tls),
    ] {
        let mut sent = HashMap::new();
        for compression in ["none", "gzip"] {
            let (relay, counted) = counting_relay(([127, 0, 0, 1], port).into()).await;
            let exporter = exporter(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("https://127.0.0.1:{relay}"),
                ),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                    compression.to_owned(),
                ),
                trusting(&pki),
            ]);
            let (spans, trace_id) = spans(300);
            let request = request(&spans);
            exporter
                .export(request)
                .await
                .unwrap_or_else(|e| panic!("{protocol}, {compression}: {e}"));
            fetch_trace_from(&jaeger.query(), &trace_id, spans.len()).await;
            sent.insert(compression, counted.load(Ordering::Relaxed));
        }
        // Repeated attributes and names: gzip takes most of it away.
        assert!(
            sent["gzip"] * 3 < sent["none"],
            "{protocol}: bytes sent {sent:?}"
        );
    }
}

/// Exports with `vars` a Job's spans the collector must refuse at the handshake; returns why.
async fn refused(jaeger: &TlsJaeger, vars: &[(&str, String)]) -> String {
    let (spans, trace_id) = spans(0);
    let error = exporter(vars)
        .export(request(&spans))
        .await
        .expect_err("the handshake fails");
    assert!(
        matches!(error, ExportError::Retryable { .. }),
        "a connection that fails is retried (the spans are kept): {error}"
    );
    assert!(!jaeger.holds(&trace_id).await, "{vars:?}: exported");
    error.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_whose_certificate_another_ca_signed_is_refused() {
    if !jaeger_found() {
        return;
    }
    let pki = Pki::generate("exporter-other-ca");
    let jaeger = TlsJaeger::start(&pki).await;
    let other = ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("other-ca.crt"));
    let endpoint = |port: u16| {
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://127.0.0.1:{port}"),
        )
    };
    for vars in [
        vec![endpoint(jaeger.grpc_tls), other.clone()],
        vec![http(), endpoint(jaeger.http_tls), other.clone()],
        // Nor do the web PKI roots trust a private CA.
        vec![endpoint(jaeger.grpc_tls)],
        vec![http(), endpoint(jaeger.http_tls)],
    ] {
        let why = refused(&jaeger, &vars).await;
        assert!(
            why.contains("UnknownIssuer") || why.contains("unknown issuer"),
            "{vars:?}: {why}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_without_a_client_certificate_is_refused() {
    if !jaeger_found() {
        return;
    }
    let pki = Pki::generate("exporter-no-client-cert");
    let jaeger = TlsJaeger::start(&pki).await;
    let endpoint = |port: u16| {
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://127.0.0.1:{port}"),
        )
    };
    for vars in [
        vec![endpoint(jaeger.grpc_mutual), trusting(&pki)],
        vec![http(), endpoint(jaeger.http_mutual), trusting(&pki)],
    ] {
        let why = refused(&jaeger, &vars).await;
        eprintln!("{vars:?}: {why}");
    }
}

#[test]
fn a_client_key_of_another_certificate_stops_the_exporter_from_being_built() {
    let pki = Pki::generate("exporter-bad-files");
    // The client key is not the client certificate's.
    let vars = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://127.0.0.1:4".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            pki.path("client.crt"),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.path("server.key")),
    ];
    let vars: HashMap<&str, &String> = vars.iter().map(|(k, v)| (*k, v)).collect();
    let config =
        ExporterConfig::from_sources(|k| vars.get(k).map(|v| (*v).clone()), |p| std::fs::read(p))
            .unwrap();
    let error = Exporter::new(config)
        .err()
        .expect("a key of another certificate");
    let message = error.to_string();
    assert!(
        message.contains(&pki.path("client.crt")) && message.contains(&pki.path("server.key")),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_files_are_used_without_a_restart() {
    if !jaeger_found() {
        return;
    }
    let pki = Pki::generate("exporter-rotation");
    let jaeger = TlsJaeger::start(&pki).await;
    let copy = |from: &str, to: &str| std::fs::copy(pki.path(from), pki.path(to)).unwrap();
    for (protocol, port) in [
        ("grpc", jaeger.grpc_mutual),
        ("http/protobuf", jaeger.http_mutual),
    ] {
        // Files mounted from Secrets, at first the wrong ones: another CA, and for an identity
        // the server's certificate (not one for a client).
        copy("other-ca.crt", "trust.crt");
        copy("server.crt", "identity.crt");
        copy("server.key", "identity.key");
        let exporter = exporter(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("https://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("trust.crt")),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                pki.path("identity.crt"),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.path("identity.key")),
        ])
        .reload_every(Duration::ZERO);
        let (spans, _) = spans(0);
        let untrusted = exporter
            .export(request(&spans))
            .await
            .expect_err("the collector's CA is not trusted yet")
            .to_string();
        assert!(
            untrusted.contains("UnknownIssuer") || untrusted.contains("unknown issuer"),
            "{protocol}: {untrusted}"
        );

        // The CA is rotated in: the collector is trusted, but refuses the identity.
        copy("ca.crt", "trust.crt");
        let refused = exporter
            .export(request(&spans))
            .await
            .expect_err("the identity is not a client's yet")
            .to_string();
        assert!(
            !refused.contains("UnknownIssuer") && !refused.contains("unknown issuer"),
            "{protocol}: the new CA is in use: {refused}"
        );

        // And the client certificate: the same exporter now gets through.
        copy("client.crt", "identity.crt");
        copy("client.key", "identity.key");
        exported_and_found(&jaeger, &exporter).await;
    }
}
