//! Faults that leave the shared control plane alone, each exporting to a Jaeger of its own and
//! counting what arrived there (docs/reliability.md quotes the figures they print): the leader
//! killed by SIGKILL with two replicas, the collector flapping, the controller killed by SIGKILL
//! with 500 Jobs in flight. No span may be lost; a span may arrive more than once only as the very same span (same
//! ids, same content), and each test says how many did. The faults that stop the apiserver or
//! compact etcd are in `faults_serial.rs`, run alone (`make test-faults`), on the helpers here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jobtrace::core::names;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::Value;

use crate::jaeger::Collector;
use crate::spans::{kwok_job, random_trace_id};
use jobtrace_testkit::cluster::{TestNamespace, finished_condition};
use jobtrace_testkit::poll;
use jobtrace_testkit::process::{Webhook, bin_dir, free_port};

/// Spans in one OTLP request at most (the controller's batch): what a crash between an export
/// and its marks can repeat.
pub const BATCH: usize = 512;

const EXPORTED: &str = "jobtrace_spans_exported_total";

/// [`poll::until`] at the fault tests' pace, a look every 100 ms, for a condition alone.
pub async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let every = Duration::from_millis(100);
    poll::until(what, within, every, async || check().await.then_some(())).await;
}

/// A `jobtrace controller` process of a test's own, logging to a file, which the test can SIGKILL
/// and start again on the same metrics port.
pub struct Controller {
    child: Option<Child>,
    args: Vec<String>,
    otlp: String,
    pub metrics: SocketAddr,
    log: PathBuf,
}

impl Controller {
    /// `jobtrace controller --watch-namespace NS --instance INSTANCE ARGS`, exporting to `otlp`,
    /// once it answers `/syncz` with 200 (listed, or standing by).
    pub async fn start(ns: &TestNamespace, instance: &str, args: &[&str], otlp: &str) -> Self {
        let controller = Self::spawn(ns, instance, args, otlp);
        controller.wait_until_synced().await;
        controller
    }

    /// The same, without waiting for anything.
    pub fn spawn(ns: &TestNamespace, instance: &str, args: &[&str], otlp: &str) -> Self {
        let port = free_port();
        let mut all = vec![
            "controller".to_owned(),
            "--watch-namespace".to_owned(),
            ns.name.clone(),
            "--instance".to_owned(),
            instance.to_owned(),
            "--metrics-listen".to_owned(),
            format!("127.0.0.1:{port}"),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let log = std::env::temp_dir().join(format!("jobtrace-{}-{instance}.log", ns.name));
        File::create(&log).expect("create the controller's log");
        let mut controller = Self {
            child: None,
            args: all,
            otlp: otlp.to_owned(),
            metrics: format!("127.0.0.1:{port}").parse().unwrap(),
            log,
        };
        controller.launch();
        controller
    }

    fn launch(&mut self) {
        let log = OpenOptions::new().append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_jobtrace"))
            .args(&self.args)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.otlp)
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start jobtrace controller");
        self.child = Some(child);
    }

    /// SIGKILL, as a crash or an OOM kill would stop it: nothing flushed, the Lease kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The same process again, on the same port, with the same log.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a killed controller only");
        self.launch();
    }

    pub async fn wait_until_synced(&self) {
        until(
            "the controller answers /syncz",
            Duration::from_secs(60),
            async || self.ok("/syncz").await,
        )
        .await;
    }

    /// Whether `path` answers 200.
    pub async fn ok(&self, path: &str) -> bool {
        reqwest::get(format!("http://{}{path}", self.metrics))
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The value of the unlabelled sample `name` (a counter with its `_total`, or a gauge); 0
    /// while the process doesn't answer (killed, starting) or has no such sample.
    pub async fn count(&self, name: &str) -> u64 {
        sample(self.metrics, name).await.unwrap_or(0)
    }

    pub async fn leads(&self) -> bool {
        self.count("jobtrace_leader").await == 1
    }

    /// Lines of its log (every start's) that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("the controller's log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The value of the unlabelled sample `name` of the process's metrics, if it answers and has it.
async fn sample(metrics: SocketAddr, name: &str) -> Option<u64> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

/// Readings of one sample of a process every 100 ms, each with its time, until dropped.
pub struct Recording {
    readings: Arc<Mutex<Vec<(Instant, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recording {
    pub fn of(metrics: SocketAddr, name: &'static str) -> Self {
        let readings = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let readings = readings.clone();
            async move {
                loop {
                    if let Some(value) = sample(metrics, name).await {
                        readings.lock().unwrap().push((Instant::now(), value));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self { readings, task }
    }

    /// The last value read before `at` (0 before the first).
    pub fn at(&self, at: Instant) -> u64 {
        let readings = self.readings.lock().unwrap();
        readings
            .iter()
            .take_while(|(t, _)| *t < at)
            .last()
            .map_or(0, |(_, v)| *v)
    }

    /// How long after `since` the value first rose above the one it had then; `None` when it
    /// didn't (or didn't yet).
    pub fn rise_after(&self, since: Instant) -> Option<Duration> {
        let before = self.at(since);
        let readings = self.readings.lock().unwrap();
        readings
            .iter()
            .find(|(at, v)| *at >= since && *v > before)
            .map(|(at, _)| *at - since)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `count` kwok Jobs in the trace `trace_id`, Job `i` running for `run_for(i)`.
pub fn jobs(count: usize, trace_id: &str, run_for: impl Fn(usize) -> String) -> Vec<Job> {
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    (0..count)
        .map(|i| kwok_job(&format!("job-{i}"), &traceparent, &run_for(i)))
        .collect()
}

/// Creates the Jobs, 16 requests at a time.
pub async fn create_jobs(ns: &TestNamespace, jobs: Vec<Job>) {
    let api: Api<Job> = ns.api();
    futures::stream::iter(jobs)
        .map(|job| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &job).await.map(drop) }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("create the Jobs");
}

/// The namespace's Jobs that have no terminal condition yet.
pub async fn unfinished(ns: &TestNamespace) -> usize {
    let jobs: Api<Job> = ns.api();
    jobs.list(&ListParams::default())
        .await
        .expect("list the Jobs")
        .items
        .iter()
        .filter(|j| finished_condition(j).is_none())
        .count()
}

/// Whether the object carries `jobtrace.dev/exported`.
pub fn marked<K: kube::Resource>(object: &K) -> bool {
    object
        .meta()
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(names::EXPORTED))
}

/// Waits until the namespace holds `jobs` traced Jobs, every one marked exported (which stands
/// for its pods' spans too), and `pods` traced pods; tolerates failing requests meanwhile (an
/// apiserver coming back).
pub async fn all_marked(ns: &TestNamespace, jobs: usize, pods: usize, within: Duration) {
    let traced = ListParams::default().labels(&format!("{}=true", names::TRACED_LABEL));
    let job_api: Api<Job> = ns.api();
    let pod_api: Api<Pod> = ns.api();
    let mut last = String::new();
    let what = format!("{jobs} Jobs all marked exported (and {pods} pods there)");
    poll::until(&what, within, Duration::from_millis(500), async || {
        if let (Ok(j), Ok(p)) = (job_api.list(&traced).await, pod_api.list(&traced).await) {
            let j_marked = j.items.iter().filter(|o| marked(*o)).count();
            if (j.items.len(), j_marked, p.items.len()) == (jobs, jobs, pods) {
                return Ok(());
            }
            last = format!(
                "{j_marked} of {} Jobs marked, {} pods",
                j.items.len(),
                p.items.len()
            );
        }
        // A failed list (an apiserver coming back) says what the last one that answered did.
        Err(last.clone())
    })
    .await;
}

/// The names of the spans the namespace's traced Jobs and pods stand for.
pub async fn expected_spans(ns: &TestNamespace) -> BTreeSet<String> {
    let traced = ListParams::default().labels(&format!("{}=true", names::TRACED_LABEL));
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();
    let job_names = jobs.list(&traced).await.unwrap().items.into_iter();
    let pod_names = pods.list(&traced).await.unwrap().items.into_iter();
    job_names
        .map(|j| format!("job {}/{}", ns.name, j.metadata.name.unwrap()))
        .chain(pod_names.map(|p| format!("pod {}", p.metadata.name.unwrap())))
        .collect()
}

/// What arrived in a Jaeger of the spans of one trace a test expects.
#[derive(Debug)]
pub struct SpanCount {
    pub expected: usize,
    /// Expected spans found, each once or more.
    pub arrived: usize,
    /// Spans the Jaeger stored, every copy counted.
    pub stored: usize,
    /// Copies beyond the first: `stored` less the distinct span ids.
    pub duplicated: usize,
}

impl fmt::Display for SpanCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spans expected {}, arrived {}, stored {}, duplicated {} (same ids)",
            self.expected, self.arrived, self.stored, self.duplicated
        )
    }
}

/// Every span Jaeger stored in the trace, duplicates included: `raw=true` skips the query
/// adjusters, one of which (`DeduplicateSpans`) drops a span equal to another, resource
/// included, so that the default answer never shows a re-export by the same process.
async fn raw_trace(query: &str, trace_id: &str) -> Vec<Value> {
    let url = format!("{query}/api/traces/{trace_id}?raw=true");
    let Ok(response) = reqwest::get(&url).await else {
        return Vec::new();
    };
    let body: Value = response.json().await.unwrap_or_default();
    body["data"][0]["spans"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Counts the trace's spans in the Jaeger at `query` once every expected one is there. Panics
/// when one is missing, when a span isn't one of the expected, when one object's span arrived
/// under two ids (a new span, not a re-export), or when two copies of one id differ.
pub async fn count_spans(query: &str, trace_id: &str, expected: &BTreeSet<String>) -> SpanCount {
    let names = |spans: &[Value]| -> BTreeSet<String> {
        spans
            .iter()
            .filter_map(|s| s["operationName"].as_str().map(str::to_owned))
            .collect()
    };
    let (within, every) = (Duration::from_secs(60), Duration::from_millis(500));
    poll::until("every expected span in Jaeger", within, every, async || {
        let found = names(&raw_trace(query, trace_id).await);
        if expected.is_subset(&found) {
            return Ok(());
        }
        let missing: Vec<&String> = expected.difference(&found).take(5).collect();
        Err(format!(
            "{} of {} missing, such as {missing:?}",
            expected.len() - expected.intersection(&found).count(),
            expected.len()
        ))
    })
    .await;
    // Jaeger stores in batches (200 ms): let any late copy land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spans = raw_trace(query, trace_id).await;
    let mut by_id: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for span in &spans {
        by_id
            .entry(span["spanID"].as_str().unwrap())
            .or_default()
            .push(span);
    }
    let mut ids_by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, copies) in &by_id {
        let name = copies[0]["operationName"].as_str().unwrap();
        assert!(expected.contains(name), "an unexpected span: {}", copies[0]);
        ids_by_name.entry(name).or_default().push(id);
        for copy in &copies[1..] {
            for field in [
                "operationName",
                "startTime",
                "duration",
                "references",
                "tags",
            ] {
                assert_eq!(
                    copy[field], copies[0][field],
                    "two copies of span {id} ({name}) differ in {field}"
                );
            }
        }
    }
    for (name, ids) in &ids_by_name {
        assert_eq!(ids.len(), 1, "{name} arrived as different spans: {ids:?}");
    }
    SpanCount {
        expected: expected.len(),
        arrived: ids_by_name.len(),
        stored: spans.len(),
        duplicated: spans.len() - by_id.len(),
    }
}

/// Which of the replicas leads, once exactly one does.
async fn single_leader(replicas: &[Controller; 2]) -> usize {
    let (within, every) = (Duration::from_secs(60), Duration::from_millis(250));
    poll::until("a single leader", within, every, async || {
        match [replicas[0].leads().await, replicas[1].leads().await] {
            [true, false] => Ok(0),
            [false, true] => Ok(1),
            states => Err(format!("{states:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_leader_is_replaced_once_its_lease_expires_and_no_span_is_lost() {
    const JOBS: usize = 100;
    let ns = TestNamespace::create("fault-leader").await;
    let collector = Collector::reserve().start();
    let _webhook = Webhook::start(&ns).await;
    let lease = [
        "--lease-namespace",
        ns.name.as_str(),
        "--lease-name",
        "exporter",
    ];
    let mut replicas = [
        Controller::start(&ns, "replica-a", &lease, &collector.otlp()).await,
        Controller::start(&ns, "replica-b", &lease, &collector.otlp()).await,
    ];
    let leader = single_leader(&replicas).await;
    let trace_id = random_trace_id();
    create_jobs(&ns, jobs(JOBS, &trace_id, |i| format!("{}s", 2 + i % 12))).await;
    until(
        "the leader exported the first Jobs",
        Duration::from_secs(60),
        async || replicas[leader].count(EXPORTED).await >= 40,
    )
    .await;
    let in_flight = unfinished(&ns).await;
    let exported_by_leader = replicas[leader].count(EXPORTED).await;

    replicas[leader].kill();
    let killed = Instant::now();
    // Killed, it gave nothing up: the Lease names it until it expires.
    let leases: Api<Lease> = ns.api();
    let holder = leases
        .get("exporter")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(
        holder.as_deref(),
        Some(["replica-a", "replica-b"][leader]),
        "the killed leader's Lease"
    );
    let standby = &replicas[1 - leader];
    until("the standby leads", Duration::from_secs(60), async || {
        standby.leads().await
    })
    .await;
    let took_over = killed.elapsed();
    until(
        "the new leader exports",
        Duration::from_secs(60),
        async || standby.count(EXPORTED).await > 0,
    )
    .await;
    let first_export = killed.elapsed();
    all_marked(&ns, JOBS, JOBS, Duration::from_secs(90)).await;
    let all_exported = killed.elapsed();

    let arrived = count_spans(&collector.query(), &trace_id, &expected_spans(&ns).await).await;
    eprintln!(
        "fault leader-sigkill: {arrived}; {in_flight} of {JOBS} Jobs in flight at the kill, \
         {exported_by_leader} spans exported by the killed leader; the standby led after \
         {took_over:.1?}, exported after {first_export:.1?}, all exported after {all_exported:.1?}"
    );
    assert_eq!(arrived.arrived, arrived.expected);
    assert!(
        arrived.duplicated <= BATCH,
        "only the batch the leader had exported and not marked can come again: {arrived}"
    );
}

/// A TCP proxy to `target` that counts the requests it passes on towards the target and passes the
/// answers back `delay` late: a request through it is in flight for `delay` at least.
struct SlowAnswers {
    port: u16,
    forwarded: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowAnswers {
    async fn start(target: String, delay: Duration) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let forwarded = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn({
            let forwarded = forwarded.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        continue;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let forwarded = forwarded.clone();
                    tokio::spawn(async move {
                        let mut buffer = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                            if server_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                            // A call's headers and data, not one of HTTP/2's small control
                            // frames (SETTINGS, WINDOW_UPDATE, PING: 9 to 17 bytes).
                            if n >= 100 {
                                forwarded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    });
                    tokio::spawn(async move {
                        let mut buffer = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
                            tokio::time::sleep(delay).await;
                            if client_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Self {
            port,
            forwarded,
            task,
        }
    }

    fn forwarded(&self) -> u64 {
        self.forwarded.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SlowAnswers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A collector that can be killed by SIGKILL and started again on the same port: a Jaeger whose
/// only pipeline passes each request on to `store` (another Jaeger) through a proxy that answers
/// late, and waits for the answer before it answers (no batch processor, no sending queue). What
/// it acknowledged is stored, and a kill while it waits breaks the call it was answering.
struct FlappingCollector {
    otlp: u16,
    health: u16,
    config: PathBuf,
    child: Option<Child>,
    proxy: SlowAnswers,
}

impl FlappingCollector {
    async fn start(store: &Collector) -> Self {
        let (otlp, health) = (free_port(), free_port());
        let proxy = SlowAnswers::start(
            store.otlp().replace("http://", ""),
            Duration::from_millis(500),
        )
        .await;
        let store = format!("127.0.0.1:{}", proxy.port);
        let config = std::env::temp_dir().join(format!("jobtrace-flapping-{otlp}.yaml"));
        std::fs::write(
            &config,
            format!(
                r"service:
  extensions: [healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/store]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp}
exporters:
  otlp/store:
    endpoint: {store}
    tls:
      insecure: true
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
"
            ),
        )
        .unwrap();
        let mut collector = Self {
            otlp,
            health,
            config,
            child: None,
            proxy,
        };
        collector.restart().await;
        collector
    }

    fn otlp(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp)
    }

    /// Starts it again; returns once it reports healthy.
    async fn restart(&mut self) -> Instant {
        let child = Command::new(bin_dir().join("jaeger"))
            .arg(format!("--config={}", self.config.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jaeger");
        self.child = Some(child);
        let health = format!("http://127.0.0.1:{}/status", self.health);
        until(
            "the flapping collector is healthy",
            Duration::from_secs(20),
            async || {
                reqwest::get(&health)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        Instant::now()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it as soon as it passes a request on (within `within`), while it waits for the
    /// answer; whether it had a request to break.
    async fn kill_mid_call(&mut self, within: Duration) -> bool {
        let before = self.proxy.forwarded();
        let deadline = Instant::now() + within;
        while self.proxy.forwarded() == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mid_call = self.proxy.forwarded() > before;
        self.kill();
        mid_call
    }
}

impl Drop for FlappingCollector {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.config);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_flapping_every_few_seconds_loses_no_span() {
    const JOBS: usize = 100;
    const FLAPS: usize = 5;
    const UP: Duration = Duration::from_secs(3);
    const DOWN: Duration = Duration::from_secs(3);
    let ns = TestNamespace::create("fault-flap").await;
    let store = Collector::reserve().start();
    let mut collector = FlappingCollector::start(&store).await;
    let _webhook = Webhook::start(&ns).await;
    let controller =
        Controller::start(&ns, "flapped", &["--no-leader-election"], &collector.otlp()).await;
    let exported = Recording::of(controller.metrics, EXPORTED);
    let trace_id = random_trace_id();
    // Jobs ending all through the flapping.
    create_jobs(&ns, jobs(JOBS, &trace_id, |i| format!("{}s", 1 + i % 25))).await;
    // Each start of the collector, with whether spans were waiting for it.
    let mut ups = Vec::new();
    let mut mid_call = 0;
    for _ in 0..FLAPS {
        tokio::time::sleep(UP).await;
        if collector.kill_mid_call(Duration::from_secs(3)).await {
            mid_call += 1;
        }
        tokio::time::sleep(DOWN).await;
        let up = collector.restart().await;
        ups.push((
            up,
            controller.count("jobtrace_spans_pending_objects").await > 0,
        ));
    }
    let stable = ups.last().unwrap().0;
    all_marked(&ns, JOBS, JOBS, Duration::from_secs(90)).await;
    let all_exported = stable.elapsed();

    assert_eq!(
        controller.count("jobtrace_spans_dropped_total").await,
        0,
        "spans dropped: {:?}",
        controller.log_lines("dropping them")
    );
    let arrived = count_spans(&store.query(), &trace_id, &expected_spans(&ns).await).await;
    let recoveries: Vec<String> = ups
        .iter()
        .filter(|(_, waiting)| *waiting)
        .map(|(up, _)| {
            exported
                .rise_after(*up)
                .map_or("-".to_owned(), |d| format!("{d:.1?}"))
        })
        .collect();
    // What tonic reports for a call whose connection broke (before the collector answered).
    let broken = controller.log_lines("Unknown: transport error").len();
    eprintln!(
        "fault collector-flapping: {arrived}; {FLAPS} kills ({UP:?} up at least, then at the \
         next request, {mid_call} of them mid-call; {DOWN:?} down), {broken} exports broken by \
         them; the controller counted {} spans exported, {} retried in {} failed exports; first \
         export after each restart that spans waited for: {}; all exported {all_exported:.1?} \
         after the last",
        controller.count(EXPORTED).await,
        controller.count("jobtrace_spans_retried_total").await,
        controller.count("jobtrace_export_retries_total").await,
        recoveries.join(", ")
    );
    assert_eq!(arrived.arrived, arrived.expected);
    assert!(
        broken > 0,
        "a kill broke a call in flight: {:?}",
        controller.log_lines("export failed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_sigkilled_with_500_jobs_in_flight_loses_no_span() {
    const JOBS: usize = 500;
    let ns = TestNamespace::create("fault-crash").await;
    let collector = Collector::reserve().start();
    let _webhook = Webhook::start(&ns).await;
    let mut controller =
        Controller::start(&ns, "crashed", &["--no-leader-election"], &collector.otlp()).await;
    let trace_id = random_trace_id();
    create_jobs(&ns, jobs(JOBS, &trace_id, |i| format!("{}s", 5 + i % 15))).await;
    until(
        "the controller exported the first Jobs",
        Duration::from_secs(60),
        async || controller.count(EXPORTED).await >= 100,
    )
    .await;
    let in_flight = unfinished(&ns).await;
    let exported_before = controller.count(EXPORTED).await;

    controller.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    controller.restart();
    let restarted = Instant::now();
    until(
        "the restarted controller exports",
        Duration::from_secs(60),
        async || controller.count(EXPORTED).await > 0,
    )
    .await;
    let first_export = restarted.elapsed();
    all_marked(&ns, JOBS, JOBS, Duration::from_secs(100)).await;
    let all_exported = restarted.elapsed();

    let arrived = count_spans(&collector.query(), &trace_id, &expected_spans(&ns).await).await;
    eprintln!(
        "fault controller-sigkill: {arrived}; {in_flight} of {JOBS} Jobs in flight at the kill, \
         {exported_before} spans exported before it; down 2 s; first export {first_export:.1?} \
         after the restart, all exported after {all_exported:.1?}"
    );
    assert_eq!(arrived.arrived, arrived.expected);
    assert!(
        arrived.duplicated <= BATCH,
        "only the batch exported and not marked at the kill can come again: {arrived}"
    );
    assert!(
        in_flight >= JOBS / 2,
        "the kill came with most Jobs in flight: {in_flight}"
    );
}
