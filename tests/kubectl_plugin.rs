//! The binary run as the kubectl plugin, through a `kubectl-jobtrace` symlink, against an
//! in-process apiserver and query API that answer for a few Jobs and traces: no cluster needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

const NAMESPACE: &str = "e2e-tree-nd5q8";
const RECORDED: &str = include_str!("data/recorded/jaeger-trace-retried.json");
/// The recorded trace and its Job span.
const TRACE: &str = "06bf102ada89d54ad92632045f417f65";
const JOB_SPAN: &str = "1c44cba95fed4086";
/// A trace whose Job span the query API has only from its third answer on.
const SLOW_TRACE: &str = "11111111111111111111111111111111";
/// A trace the query API doesn't have.
const LOST_TRACE: &str = "22222222222222222222222222222222";

/// A directory of this test's own with `kubectl-jobtrace`, a symlink to the binary.
fn plugin_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jobtrace-plugin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_jobtrace"), dir.join("kubectl-jobtrace"))
        .unwrap();
    dir
}

fn kubectl_jobtrace(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(dir.join("kubectl-jobtrace"));
    command
        .args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env_remove("RUST_LOG")
        .env_remove("JOBTRACE_QUERY_URL")
        .env_remove("JOBTRACE_URL_TEMPLATE");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn help_reads_as_kubectl_jobtrace() {
    let dir = plugin_dir("help");
    let out = kubectl_jobtrace(&dir, &["trace", "--help"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    assert!(
        help.contains("Usage: kubectl jobtrace trace [OPTIONS] <JOB>"),
        "{help}"
    );
    assert!(help.contains("--url-template") && help.contains("--wait"));
    let out = kubectl_jobtrace(&dir, &["trace"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(text(&out.stderr).contains("kubectl jobtrace trace"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Default)]
struct Fake {
    /// Answers of the query API so far, by trace.
    asked: Mutex<HashMap<String, usize>>,
}

fn job(name: &str, annotations: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "namespace": NAMESPACE, "annotations": annotations },
        "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "x" }] } } },
        "status": { "conditions": [{ "type": "Complete", "status": "True" }] },
    })
}

async fn get_job(UrlPath((namespace, name)): UrlPath<(String, String)>) -> impl IntoResponse {
    let traced = |trace: &str| json!({ "jobtrace.dev/trace-id": trace, "jobtrace.dev/span-id": JOB_SPAN, "jobtrace.dev/trace-flags": "01" });
    let found = match (namespace == NAMESPACE).then_some(name.as_str()) {
        Some("report") => Some(job("report", &traced(TRACE))),
        Some("slow") => Some(job("slow", &traced(SLOW_TRACE))),
        Some("lost") => Some(job("lost", &traced(LOST_TRACE))),
        Some("untraced") => Some(job("untraced", &json!({}))),
        _ => None,
    };
    match found {
        Some(job) => (StatusCode::OK, axum::Json(job)),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("jobs.batch \"{name}\" not found"), "reason": "NotFound",
                "details": { "name": name, "group": "batch", "kind": "jobs" }, "code": 404,
            })),
        ),
    }
}

async fn get_trace(
    State(fake): State<Arc<Fake>>,
    UrlPath(trace): UrlPath<String>,
) -> impl IntoResponse {
    let asked = {
        let mut asked = fake.asked.lock().unwrap();
        let count = asked.entry(trace.clone()).or_default();
        *count += 1;
        *count
    };
    let mut recorded: Value = serde_json::from_str(RECORDED).unwrap();
    match trace.as_str() {
        TRACE => (StatusCode::OK, axum::Json(recorded)),
        SLOW_TRACE => {
            if asked < 3 {
                recorded["data"][0]["spans"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|s| s["spanID"] != JOB_SPAN);
            }
            (StatusCode::OK, axum::Json(recorded))
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({ "data": null, "errors": [{ "code": 404, "msg": "trace not found" }] }),
            ),
        ),
    }
}

/// Serves the Jobs at `/apis/batch/v1/...` and the traces at `/api/traces/...`; writes a
/// kubeconfig for it, whose context's namespace is [`NAMESPACE`]. Returns its address.
async fn serve(dir: &Path) -> String {
    let app = axum::Router::new()
        .route(
            "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            get(get_job),
        )
        .route("/api/traces/{trace}", get(get_trace))
        .with_state(Arc::new(Fake::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    std::fs::write(
        dir.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"{url}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: {NAMESPACE}}}}}]\n"
        ),
    )
    .unwrap();
    url
}

/// The one line a failure writes on stderr.
fn failure(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {}",
        text(&out.stdout)
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_the_tree_and_fails_in_one_line_with_exit_codes() {
    let dir = plugin_dir("trace");
    let url = serve(&dir).await;
    let run = |args: &[&str]| {
        let mut command = kubectl_jobtrace(&dir, args);
        command.args(["--query-url", &url]);
        async move { command.output().await.unwrap() }
    };

    // The namespace is the kubeconfig context's.
    let out = run(&[
        "trace",
        "report",
        "--url-template",
        "http://127.0.0.1:16686/trace/{trace_id}",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "\
POST /reports [e2e-creator] 12637 ms
└── job e2e-tree-nd5q8/report [jobtrace] 12607 ms
    ├── pod report-hhfkm [jobtrace] 599 ms ERROR error.type=\"Error\" jobtrace.container.exit_code=1 k8s.container.status.reason=\"Error\"
    │   └── generate-report [report-task] 1202 ms ERROR
    └── pod report-96kz5 [jobtrace] 997 ms
        └── generate-report [report-task] 1202 ms

http://127.0.0.1:16686/trace/{TRACE}
"
        )
    );

    let out = run(&["trace", "-n", NAMESPACE, "untraced"]).await;
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        failure(&out),
        format!(
            "error: Job {NAMESPACE}/untraced is not traced: it has no jobtrace.dev/trace-id annotation\n"
        )
    );

    let out = run(&["trace", "-n", "elsewhere", "report"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(failure(&out), "error: Job elsewhere/report not found\n");

    let out = run(&["trace", "lost"]).await;
    assert_eq!(out.status.code(), Some(5));
    let lost = failure(&out);
    assert!(
        lost.starts_with(&format!(
            "error: trace {LOST_TRACE} of Job {NAMESPACE}/lost not found at {url}: "
        )),
        "{lost}"
    );

    // Without --wait the first answer is printed, with a note that the Job span isn't in it.
    let out = run(&["trace", "slow"]).await;
    assert!(out.status.success());
    assert!(!text(&out.stdout).contains("job "), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).starts_with("note: the trace has no span of Job"),
        "{}",
        text(&out.stderr)
    );
    // With it, the query API is asked again until the Job span is there.
    let out = run(&["trace", "slow", "--wait", "20s"]).await;
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("└── job e2e-tree-nd5q8/report [jobtrace] 12607 ms"),
        "{}",
        text(&out.stdout)
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    // The query API down: exit code 1, one line.
    let out = kubectl_jobtrace(
        &dir,
        &["trace", "report", "--query-url", "http://127.0.0.1:9"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        failure(&out).starts_with("error: query API: http://127.0.0.1:9/api/traces/"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
