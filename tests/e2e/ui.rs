//! The trace UI of the local setup (otel-desktop-viewer, which Jaeger feeds from the one OTLP
//! endpoint) shows a trace's tree in a real browser: headless Chromium (Debian's, installed by
//! `hack/install-chromium.sh`) renders the trace's page, the test reads the rows of the rendered
//! tree, and saves a screenshot in `target/e2e-ui/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use opentelemetry::Context;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use regex::Regex;

use crate::jaeger::fetch_trace;
use jobtrace_testkit::cluster::DEADLINE;
use jobtrace_testkit::poll;

/// Where `hack/cluster-up.sh` serves the trace UI.
pub const TRACE_UI: &str = "http://127.0.0.1:8000";

/// Debian's Chromium, or `JOBTRACE_CHROMIUM`.
fn chromium() -> PathBuf {
    let path = std::env::var_os("JOBTRACE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: hack/install-chromium.sh installs it (make e2e runs it)",
        path.display()
    );
    path
}

/// Where the test leaves what the browser saw.
fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e-ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium once on `url`, with a fresh profile, and returns what it printed.
/// `--virtual-time-budget` lets the page run its scripts and fetches before the DOM is dumped or
/// the screenshot taken. The background-networking flags keep it from calling out of a machine
/// that has no network.
async fn chromium_run(url: &str, action: &str) -> String {
    let profile = std::env::temp_dir().join(format!(
        "jobtrace-chromium-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&profile).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1920,600",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(action)
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finishes within 60 s")
    .expect("start chromium");
    let _ = std::fs::remove_dir_all(&profile);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "chromium {action} {url}: {}\n{}",
        output.status,
        stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One row of the UI's trace tree: its span id, its depth (1 for the root), its name and service.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    span_id: String,
    level: u32,
    name: String,
    service: String,
}

/// The rows of the trace tree in a dumped DOM, top to bottom: each is a
/// `<tr class="waterfall-row" data-span-id=… aria-level=…>` with the span's name and service.
fn rows(dom: &str) -> Vec<Row> {
    let span_id = Regex::new(r#"data-span-id="([0-9a-f]+)""#).unwrap();
    let level = Regex::new(r#"aria-level="([0-9]+)""#).unwrap();
    let name = Regex::new(r#"class="waterfall-row__title[^"]*" title="([^"]*)""#).unwrap();
    let service = Regex::new(r#"class="waterfall-row__td-service[^"]*" title="([^"]*)""#).unwrap();
    let capture = |re: &Regex, row: &str| {
        re.captures(row)
            .map(|c| c[1].to_owned())
            .unwrap_or_default()
    };
    dom.split(r#"<tr class="waterfall-row"#)
        .skip(1)
        .map(|row| Row {
            span_id: capture(&span_id, row),
            level: capture(&level, row).parse().unwrap_or(0),
            name: capture(&name, row),
            service: capture(&service, row),
        })
        .collect()
}

/// Records one span from `start_ms` to `end_ms` after `base`, as a child of `parent`'s span (or
/// as a root), and returns the context that holds it.
fn record<T>(tracer: &T, name: &str, parent: &Context, base: SystemTime, ms: (u64, u64)) -> Context
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    let span = tracer
        .span_builder(name.to_owned())
        .with_start_time(base + Duration::from_millis(ms.0))
        .start_with_context(tracer, parent);
    let cx = parent.with_span(span);
    cx.span()
        .end_with_timestamp(base + Duration::from_millis(ms.1));
    cx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_ui_shows_the_tree_of_a_trace_sent_to_the_one_otlp_endpoint() {
    reqwest::get(format!("{TRACE_UI}/traces"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("the trace UI is not up at {TRACE_UI} (make cluster-up): {e}"));

    // A Job's shape: a request, the Job, two pod attempts, and the task in each.
    let service = "jobtrace-e2e-ui";
    let provider = crate::jaeger::provider(service);
    let tracer = provider.tracer("jobtrace-e2e-ui");
    let base = SystemTime::now() - Duration::from_secs(10);
    let root = record(&tracer, "ui-request", &Context::new(), base, (0, 9000));
    let job = record(&tracer, "ui-job", &root, base, (100, 8800));
    let pod_1 = record(&tracer, "ui-pod-1", &job, base, (200, 2200));
    let task_1 = record(&tracer, "ui-task-1", &pod_1, base, (300, 2000));
    let pod_2 = record(&tracer, "ui-pod-2", &job, base, (4000, 6000));
    let task_2 = record(&tracer, "ui-task-2", &pod_2, base, (4100, 5800));
    let trace_id = root.span().span_context().trace_id().to_string();
    // A newer trace: the UI shows its newest trace in place of one it doesn't know, so the tree
    // above can't pass for what a wrong link shows.
    record(&tracer, "ui-later", &Context::new(), base, (9500, 9600));
    let expected: Vec<Row> = [
        (&root, 1, "ui-request"),
        (&job, 2, "ui-job"),
        (&pod_1, 3, "ui-pod-1"),
        (&task_1, 4, "ui-task-1"),
        (&pod_2, 3, "ui-pod-2"),
        (&task_2, 4, "ui-task-2"),
    ]
    .into_iter()
    .map(|(cx, level, name)| Row {
        span_id: cx.span().span_context().span_id().to_string(),
        level,
        name: name.to_owned(),
        service: service.to_owned(),
    })
    .collect();
    // The batch processor's shutdown blocks until it has exported: keep it off the async workers.
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("join")
        .expect("the exporter flushes to Jaeger");

    // Jaeger has stored them (its query API is what the other tests read) ...
    fetch_trace(&trace_id, expected.len()).await;

    // ... and passed them on to the UI, whose page for the trace shows the whole tree.
    let url = format!("{TRACE_UI}/traces/{trace_id}");
    let dom_file = out_dir().join("trace-ui.html");
    let what = format!(
        "the trace UI at {url} showing the trace's tree (its DOM: {})",
        dom_file.display()
    );
    poll::until(&what, DEADLINE, Duration::from_secs(1), async || {
        let dom = chromium_run(&url, "--dump-dom").await;
        std::fs::write(&dom_file, &dom).unwrap();
        let found = rows(&dom);
        if found == expected {
            Ok(())
        } else {
            Err(format!(
                "expected rows: {expected:#?}\nrows on the page: {found:#?}"
            ))
        }
    })
    .await;

    let png = out_dir().join("trace-ui.png");
    let _ = std::fs::remove_file(&png);
    chromium_run(&url, &format!("--screenshot={}", png.display())).await;
    let bytes = std::fs::read(&png).expect("chromium saved the screenshot");
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a screenshot ({} bytes)",
        png.display(),
        bytes.len()
    );
    // The IHDR chunk: width and height, big-endian, right after the signature and chunk header.
    let size = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (1920, 600), "{}", png.display());
    println!("trace UI screenshot: {}", png.display());
}
