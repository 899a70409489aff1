//! `jobtrace trace JOB`: a Job's trace as a tree. The Job is read from the cluster for its trace
//! id, the trace from a Jaeger-compatible query API ([`query`]), and the tree drawn by the pure
//! [`tree::render`]. Logs go to stderr, the tree (and the link) to stdout; a failure is one line
//! on stderr and an exit code of its own ([`Failure::exit_code`]).

pub mod escape;
pub mod query;
pub mod tree;

use std::fmt;
use std::io::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;

use crate::core::context::TraceId;
use crate::core::names;
use query::{Fetched, QueryApi};

/// How often `--wait` asks the query API again.
const POLL: Duration = Duration::from_secs(1);

/// The exit codes of `jobtrace trace` (clap's usage errors are 2).
pub mod exit {
    /// Any other failure: no kubeconfig, the apiserver or the query API unreachable or refusing.
    pub const FAILED: u8 = 1;
    /// The Job does not exist.
    pub const JOB_NOT_FOUND: u8 = 3;
    /// The Job has no (valid) `jobtrace.dev/trace-id` annotation.
    pub const NOT_TRACED: u8 = 4;
    /// The query API has no span of the Job's trace (404, or no spans), after `--wait`.
    pub const TRACE_NOT_FOUND: u8 = 5;
}

/// Why `jobtrace trace` printed no tree. Every message is one line, [`escape`](escape::escape)d
/// as a whole: it may quote an annotation or a query API's answer.
#[derive(Debug)]
pub enum Failure {
    JobNotFound {
        namespace: String,
        name: String,
    },
    NotTraced {
        namespace: String,
        name: String,
        why: String,
    },
    TraceNotFound {
        namespace: String,
        name: String,
        trace_id: String,
        query: String,
        hint: &'static str,
    },
    /// The cluster or the query API; the message names the causes.
    Failed(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self {
            Self::JobNotFound { namespace, name } => format!("Job {namespace}/{name} not found"),
            Self::NotTraced {
                namespace,
                name,
                why,
            } => format!("Job {namespace}/{name} is not traced: {why}"),
            Self::TraceNotFound {
                namespace,
                name,
                trace_id,
                query,
                hint,
            } => format!("trace {trace_id} of Job {namespace}/{name} not found at {query}: {hint}"),
            Self::Failed(message) => message.clone(),
        };
        f.write_str(&escape::escape(&message))
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::JobNotFound { .. } => exit::JOB_NOT_FOUND,
            Self::NotTraced { .. } => exit::NOT_TRACED,
            Self::TraceNotFound { .. } => exit::TRACE_NOT_FOUND,
            Self::Failed(_) => exit::FAILED,
        }
    }

    /// `what`, then `error` and its causes, on one line.
    fn failed(what: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = format!("{what}: {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Self::Failed(message.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// What the Job says about its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedJob {
    pub trace_id: String,
    /// The Job span's id (`jobtrace.dev/span-id`).
    pub span_id: Option<String>,
    /// Whether its trace flags have the sampled bit (no flags: yes).
    pub sampled: bool,
    /// Whether it has a `Complete` or `Failed` condition.
    pub finished: bool,
    /// Whether the controller marked it `jobtrace.dev/exported`.
    pub exported: bool,
}

/// The Job's trace, or why it has none (the end of a sentence).
pub fn traced(job: &Job) -> Result<TracedJob, String> {
    let annotation = |key: &str| {
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    };
    let Some(trace_id) = annotation(names::TRACE_ID) else {
        return Err(format!("it has no {} annotation", names::TRACE_ID));
    };
    if TraceId::parse(trace_id).is_none() {
        return Err(format!(
            "its {} annotation \"{trace_id}\" is not a trace id",
            names::TRACE_ID
        ));
    }
    let sampled = annotation(names::TRACE_FLAGS)
        .and_then(|f| u8::from_str_radix(f, 16).ok())
        .is_none_or(|f| f & 1 == 1);
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
    Ok(TracedJob {
        trace_id: trace_id.to_owned(),
        span_id: annotation(names::SPAN_ID).map(str::to_owned),
        sampled,
        finished,
        exported: annotation(names::EXPORTED).is_some(),
    })
}

/// Why a traced Job's trace may be missing from the query API.
pub fn not_found_hint(job: &TracedJob) -> &'static str {
    if !job.sampled {
        "the trace is not sampled, so none of its spans is exported"
    } else if !job.finished {
        "the Job has not finished; its spans are exported when it does (--wait DURATION waits)"
    } else if !job.exported {
        "its spans are not exported yet (--wait DURATION waits)"
    } else {
        "jobtrace exported its spans: does its collector send them to this query API?"
    }
}

/// `template` with `{trace_id}` replaced.
pub fn trace_link(template: &str, trace_id: &str) -> String {
    template.replace("{trace_id}", trace_id)
}

/// Logs on stderr, filtered by `RUST_LOG` or `level` (`--log-level`): stdout is the tree's.
pub fn init_logging(level: &str) {
    let filter = crate::k8s::logging::filter(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Which Job's trace `jobtrace trace` prints, and where it reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Job's name.
    pub job: String,
    /// The Job's namespace; `None` for the kubeconfig context's.
    pub namespace: Option<String>,
    /// Base URL of the Jaeger-compatible query API.
    pub query_url: String,
    /// A link to print, `{trace_id}` replaced.
    pub url_template: Option<String>,
    /// How long to wait for the Job's span; zero asks once.
    pub wait: Duration,
}

/// `jobtrace trace`: prints the tree of the Job's trace, and its link with `--url-template`.
pub async fn run(config: Config) -> Result<(), Failure> {
    let query = QueryApi::new(&config.query_url).map_err(|e| Failure::failed("--query-url", &e))?;
    let (namespace, job) = read_job(&config).await?;
    let traced = traced(&job).map_err(|why| Failure::NotTraced {
        namespace: namespace.clone(),
        name: config.job.clone(),
        why,
    })?;
    let job_span = format!("job {namespace}/{}", config.job);
    let fetched = fetch_waiting(&query, &traced, &job_span, config.wait)
        .await
        .map_err(|e| Failure::failed("query API", &e))?;
    let Fetched::Found(trace) = fetched else {
        return Err(Failure::TraceNotFound {
            namespace,
            name: config.job,
            hint: not_found_hint(&traced),
            trace_id: traced.trace_id,
            query: query.base().to_owned(),
        });
    };
    let mut out = tree::render(&trace);
    if let Some(template) = &config.url_template {
        out.push('\n');
        out.push_str(&trace_link(template, &traced.trace_id));
        out.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not a failure.
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    if !trace.has_span(traced.span_id.as_deref(), &job_span) {
        let why = if traced.finished {
            "not exported yet? --wait DURATION waits for it"
        } else {
            "the Job has not finished"
        };
        let note = format!(
            "note: the trace has no span of Job {namespace}/{} yet: {why}",
            config.job
        );
        eprintln!("{}", escape::escape(&note));
    }
    Ok(())
}

/// The Job, from the kubeconfig's cluster (`KUBECONFIG`, else in-cluster), in `-n` or else the
/// kubeconfig context's namespace.
async fn read_job(asked: &Config) -> Result<(String, Job), Failure> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Failure::failed("no Kubernetes configuration", &e))?;
    let namespace = asked
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client =
        kube::Client::try_from(config).map_err(|e| Failure::failed("no Kubernetes client", &e))?;
    let jobs: Api<Job> = Api::namespaced(client, &namespace);
    match jobs.get_opt(&asked.job).await {
        Ok(Some(job)) => Ok((namespace, job)),
        Ok(None) => Err(Failure::JobNotFound {
            namespace,
            name: asked.job.clone(),
        }),
        Err(e) => Err(Failure::failed(
            &format!("reading Job {namespace}/{}", asked.job),
            &e,
        )),
    }
}

/// The trace, asked for until it holds the Job span or `wait` has passed; the last answer.
async fn fetch_waiting(
    query: &QueryApi,
    job: &TracedJob,
    job_span: &str,
    wait: Duration,
) -> Result<Fetched, query::QueryError> {
    let deadline = Instant::now().checked_add(wait);
    loop {
        let fetched = query.fetch(&job.trace_id).await;
        let complete = matches!(&fetched, Ok(Fetched::Found(trace)) if trace.has_span(job.span_id.as_deref(), job_span));
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if complete || left == Some(Duration::ZERO) {
            return fetched;
        }
        tracing::debug!(url = %query.trace_url(&job.trace_id), answer = ?fetched.as_ref().map(|f| matches!(f, Fetched::Found(_))), "waiting for the Job span");
        tokio::time::sleep(left.map_or(POLL, |left| left.min(POLL))).await;
    }
}

#[cfg(test)]
mod tests;
