//! A finished Job's pods go with it: before the Job is exported its traced pods are listed (a
//! read, as of the Job's own version or later, so each pod is seen at least as late as the Job
//! was), and the spans of those that ended join the Job's. The Job's mark then covers them: no
//! write per pod.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, VersionMatch};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Context, Pending, Work};
use crate::names;
use crate::spans::{self, Skip};

/// Lists made at once.
const CONCURRENT_LISTS: usize = 16;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Adds to each queued Job the spans of its finished pods, and passes it on to the export.
pub(super) async fn assemble_loop(
    context: Arc<Context>,
    mut jobs: mpsc::Receiver<Work>,
    export: mpsc::Sender<Work>,
    pending: Arc<Pending>,
    shutdown: CancellationToken,
) {
    let assembled = futures::stream::poll_fn(move |cx| jobs.poll_recv(cx))
        .map(|job| {
            let (context, pending, shutdown) = (&context, &pending, &shutdown);
            async move { with_pods(context, pending, job, shutdown).await }
        })
        .buffer_unordered(CONCURRENT_LISTS);
    let mut assembled = std::pin::pin!(assembled);
    while let Some(job) = assembled.next().await {
        let Some(job) = job else { return };
        if export.send(job).await.is_err() {
            return;
        }
    }
}

/// `job` with its finished pods' spans; `None` on shutdown. Retries the list, with backoff,
/// until the apiserver answers.
async fn with_pods(
    context: &Context,
    pending: &Pending,
    mut job: Work,
    shutdown: &CancellationToken,
) -> Option<Work> {
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &job.namespace);
    let mut params = ListParams::default().labels(&format!(
        "{}=true,{}={}",
        names::TRACED_LABEL,
        names::JOB_UID_LABEL,
        job.uid
    ));
    if let Some(version) = &job.version {
        params = params.at(version).matching(VersionMatch::NotOlderThan);
    }
    let mut backoff = Duration::from_millis(500);
    let pods = loop {
        match api.list(&params).await {
            Ok(list) => break list.items,
            Err(e) => {
                tracing::warn!(error = %e, job = %job.name, namespace = %job.namespace, retry_in = ?backoff, "could not list the Job's pods; will retry");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    let (mut finished, mut running) = (Vec::new(), Vec::new());
    for pod in pods {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        match spans::pod_span(&pod, None) {
            Ok(span) => finished.push((uid, span)),
            Err(Skip::NotFinished) => running.push(uid),
            Err(Skip::NotTraced | Skip::Unsampled | Skip::Exported) => {}
        }
    }
    let with_job = pending.with_job(
        &job.uid,
        finished.iter().map(|(uid, _)| uid.clone()),
        running,
    );
    job.spans.extend(
        finished
            .into_iter()
            .filter(|(uid, _)| with_job.contains(uid))
            .map(|(_, span)| span),
    );
    Some(job)
}
