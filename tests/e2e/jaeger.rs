//! Jaeger receives OTLP spans and answers for them through its query API.

use std::time::{Duration, Instant};

use jobtrace_testkit::{cluster, poll};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

pub const JAEGER_QUERY: &str = "http://127.0.0.1:16686";
pub const OTLP_GRPC: &str = "http://127.0.0.1:4317";

/// A Jaeger of a test's own, on ports of its own, started when the test says so.
pub struct Collector {
    otlp: u16,
    otlp_http: u16,
    query: u16,
    query_grpc: u16,
    health: u16,
    child: Option<std::process::Child>,
}

impl Collector {
    /// Chooses the ports; nothing listens on them yet.
    pub fn reserve() -> Self {
        let port = jobtrace_testkit::process::free_port;
        Self {
            otlp: port(),
            otlp_http: port(),
            query: port(),
            query_grpc: port(),
            health: port(),
            child: None,
        }
    }

    pub fn otlp(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp)
    }

    pub fn query(&self) -> String {
        format!("http://127.0.0.1:{}", self.query)
    }

    /// Starts Jaeger with the cluster's configuration moved to this collector's ports.
    pub fn start(mut self) -> Self {
        let config = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/hack/cluster/jaeger.yaml"
        ))
        .unwrap()
        .replace("0.0.0.0:4317", &format!("127.0.0.1:{}", self.otlp))
        .replace("0.0.0.0:4318", &format!("127.0.0.1:{}", self.otlp_http))
        .replace("127.0.0.1:16686", &format!("127.0.0.1:{}", self.query))
        .replace("127.0.0.1:16685", &format!("127.0.0.1:{}", self.query_grpc))
        .replace("127.0.0.1:13133", &format!("127.0.0.1:{}", self.health));
        let path = std::env::temp_dir().join(format!("jobtrace-jaeger-{}.yaml", self.otlp));
        std::fs::write(&path, config).unwrap();
        let log_path = path.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child =
            std::process::Command::new(jobtrace_testkit::process::bin_dir().join("jaeger"))
                .arg(format!("--config={}", path.display()))
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start jaeger");
        // Ready when both the receiver and the query API accept connections; a Jaeger that
        // exits (a port taken after all) fails the test here, with its log, not minutes later.
        let deadline = Instant::now() + Duration::from_secs(60);
        let listening = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        while !(listening(self.otlp) && listening(self.query)) {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("jaeger exited ({status}) before it listened:\n{log}");
            }
            assert!(Instant::now() < deadline, "jaeger not listening in time");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = Some(child);
        self
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let config = std::env::temp_dir().join(format!("jobtrace-jaeger-{}.yaml", self.otlp));
            let _ = std::fs::remove_file(config.with_extension("log"));
            let _ = std::fs::remove_file(config);
        }
    }
}

/// A tracer provider of the OpenTelemetry SDK exporting `service`'s spans in batches over
/// OTLP/gRPC to the local setup's one endpoint, as a real service would.
pub fn provider(service: &str) -> SdkTracerProvider {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(OTLP_GRPC)
        .build()
        .expect("an OTLP/gRPC exporter");
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build()
}

/// Polls Jaeger for a trace until it holds at least `spans` spans or the deadline passes.
pub async fn fetch_trace(trace_id: &str, spans: usize) -> serde_json::Value {
    fetch_trace_from(JAEGER_QUERY, trace_id, spans).await
}

/// The same, from the Jaeger whose query API is at `base`.
pub async fn fetch_trace_from(base: &str, trace_id: &str, spans: usize) -> serde_json::Value {
    let http = reqwest::Client::new();
    let what = format!("trace {trace_id} with {spans} spans in Jaeger");
    let every = Duration::from_millis(250);
    poll::until(&what, cluster::DEADLINE, every, async || {
        let response = http
            .get(format!("{base}/api/traces/{trace_id}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let found = body["data"][0]["spans"].as_array().map_or(0, Vec::len);
        if status.is_success() && found >= spans {
            Ok(body["data"][0].clone())
        } else {
            Err(format!("HTTP {status}, {found} spans"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_sent_over_otlp_is_found_in_jaeger() {
    let provider = provider("jobtrace-e2e");
    let tracer = provider.tracer("jobtrace-e2e");
    let trace_id = tracer.in_span("smoke-parent", |cx| {
        let mut child = tracer.start("smoke-child");
        child.set_attribute(KeyValue::new("k8s.job.name", "smoke"));
        child.end();
        cx.span().span_context().trace_id().to_string()
    });
    // The batch processor's shutdown blocks until it has exported: keep it off the async workers.
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("join")
        .expect("the exporter flushes to Jaeger");

    let trace = fetch_trace(&trace_id, 2).await;
    let spans = trace["spans"].as_array().unwrap();
    let names: Vec<&str> = spans
        .iter()
        .filter_map(|s| s["operationName"].as_str())
        .collect();
    assert!(
        names.contains(&"smoke-parent") && names.contains(&"smoke-child"),
        "{names:?}"
    );
    let child = spans
        .iter()
        .find(|s| s["operationName"] == "smoke-child")
        .unwrap();
    let parent = spans
        .iter()
        .find(|s| s["operationName"] == "smoke-parent")
        .unwrap();
    assert_eq!(child["references"][0]["refType"], "CHILD_OF");
    assert_eq!(child["references"][0]["spanID"], parent["spanID"]);
    let tag = child["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "k8s.job.name")
        .expect("the attribute reaches Jaeger");
    assert_eq!(tag["value"], "smoke");
    let process = &trace["processes"][child["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "jobtrace-e2e");
}
