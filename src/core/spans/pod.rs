//! The span of one pod attempt.

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

use super::{
    Attributes, Event, Skip, SpanKind, SpanRecord, Status, began, derived_span_id, latest,
    trace_flags, traced,
};
use crate::core::context::SpanId;
use crate::core::names;
use crate::core::names::attribute;

/// The span of a pod that has succeeded or failed, or was deleted (`deleted_at`, when the
/// controller saw the deletion but the object carries no deletion time).
pub fn pod_span(pod: &Pod, deleted_at: Option<Timestamp>) -> Result<SpanRecord, Skip> {
    let meta = &pod.metadata;
    let (annotations, trace_id) = traced(meta)?;
    let parent = annotations
        .get(names::PARENT_SPAN_ID)
        .and_then(|v| SpanId::parse(v))
        .ok_or(Skip::NotTraced)?;
    // Without the pod webhook the pod has no id of its own: derive one from its uid, stably.
    let span_id = annotations
        .get(names::SPAN_ID)
        .and_then(|v| SpanId::parse(v))
        .unwrap_or_else(|| {
            derived_span_id(parent, meta.uid.as_deref().unwrap_or_default().as_bytes())
        });
    let spec = pod.spec.as_ref();
    let containers = spec.into_iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    });
    let flags = trace_flags(annotations, containers, trace_id);
    if !flags.is_sampled() {
        return Err(Skip::Unsampled);
    }

    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let terminated: Vec<(&str, &ContainerStateTerminated)> = container_statuses(pod)
        .filter_map(|c| Some((c.name.as_str(), c.state.as_ref()?.terminated.as_ref()?)))
        .collect();
    // The controller's own clock (`deleted_at`) is precise; the objects' times are to the second.
    let deletion = meta
        .deletion_timestamp
        .as_ref()
        .map(|t| latest(t.0))
        .or(deleted_at);
    let finished = terminated
        .iter()
        .filter_map(|(_, t)| t.finished_at.as_ref())
        .map(|t| latest(t.0))
        .max();
    let last_condition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| latest(t.0)))
        .max();
    let end = match phase {
        "Succeeded" | "Failed" => finished.or(last_condition).or(deletion),
        _ if deletion.is_some() => deletion,
        _ => return Err(Skip::NotFinished),
    };
    let start = began(meta);
    let end = end.or(start).ok_or(Skip::NotFinished)?;
    let start = start.unwrap_or(end).min(end);

    let name = meta.name.clone().unwrap_or_default();
    let mut attributes = attributes(pod, phase);
    let span_status = outcome(pod, phase, &terminated, &mut attributes);
    let events = events(pod);

    Ok(SpanRecord {
        trace_id,
        span_id,
        parent_span_id: Some(parent),
        name: format!("pod {name}"),
        start,
        end,
        attributes,
        events,
        status: span_status,
        kind: SpanKind::Internal,
        trace_flags: flags.bits(),
        label_attributes: Vec::new(),
        dropped_attributes: 0,
        links: Vec::new(),
    })
}

fn attributes(pod: &Pod, phase: &str) -> Attributes {
    let meta = &pod.metadata;
    let labels = meta.labels.clone().unwrap_or_default();
    let mut attributes: Attributes = vec![
        (
            attribute::NAMESPACE_NAME,
            meta.namespace.clone().unwrap_or_default().into(),
        ),
        (
            attribute::POD_NAME,
            meta.name.clone().unwrap_or_default().into(),
        ),
        (
            attribute::POD_UID,
            meta.uid.clone().unwrap_or_default().into(),
        ),
        (attribute::POD_STATUS_PHASE, phase.into()),
    ];
    if let Some(job) = labels.get(names::JOB_NAME_LABEL) {
        attributes.push((attribute::JOB_NAME, job.as_str().into()));
    }
    if let Some(uid) = labels.get(names::JOB_UID_LABEL) {
        attributes.push((attribute::JOB_UID, uid.as_str().into()));
    }
    if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        attributes.push((attribute::NODE_NAME, node.into()));
    }
    let index = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
        .and_then(|v| v.parse::<i32>().ok());
    if let Some(index) = index {
        attributes.push(("jobtrace.job.completion_index", index.into()));
    }
    let restarts: i32 = container_statuses(pod)
        .map(|c| c.restart_count)
        .fold(0, i32::saturating_add);
    if restarts > 0 {
        attributes.push(("jobtrace.pod.restarts", restarts.into()));
    }
    attributes
}

/// The span status; a failed pod also says which container failed, how, and why.
fn outcome(
    pod: &Pod,
    phase: &str,
    terminated: &[(&str, &ContainerStateTerminated)],
    attributes: &mut Attributes,
) -> Status {
    match phase {
        "Succeeded" => return Status::Ok,
        "Failed" => {}
        _ => {
            attributes.push(("jobtrace.pod.result", "deleted".into()));
            return Status::Unset;
        }
    }
    let status = pod.status.as_ref();
    // The container that failed first says why; a pod-level reason (Evicted, DeadlineExceeded)
    // wins when there is one.
    let failed = terminated
        .iter()
        .filter(|(_, t)| t.exit_code != 0)
        .min_by_key(|(_, t)| t.finished_at.as_ref().map(|t| t.0));
    if let Some((container, t)) = failed {
        attributes.push((attribute::CONTAINER_NAME, (*container).into()));
        attributes.push(("jobtrace.container.exit_code", t.exit_code.into()));
        if let Some(reason) = &t.reason {
            // The reason of the state the container is in: terminated, by this very instance.
            attributes.push((attribute::CONTAINER_STATUS_REASON, reason.as_str().into()));
        }
    }
    if let Some(reason) = status.and_then(|s| s.reason.as_deref()) {
        attributes.push((attribute::POD_STATUS_REASON, reason.into()));
    }
    let error_type = status
        .and_then(|s| s.reason.clone())
        .or_else(|| failed.and_then(|(_, t)| t.reason.clone()))
        .unwrap_or_else(|| "Failed".to_owned());
    let description = status
        .and_then(|s| s.message.clone())
        .or_else(|| failed.and_then(|(_, t)| t.message.clone()))
        .or_else(|| failed.map(|(c, t)| format!("container {c} exited with code {}", t.exit_code)))
        .unwrap_or_else(|| error_type.clone());
    attributes.push(("error.type", error_type.into()));
    Status::Error { description }
}

/// Scheduling, and each container's start and end: of its current run and, when the kubelet
/// restarted it in the pod, of the run before (the only earlier run the kubelet keeps), each with
/// the run's `k8s.container.restart_count`.
fn events(pod: &Pod) -> Vec<Event> {
    let status = pod.status.as_ref();
    let mut events = Vec::new();
    let scheduled = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(time) = scheduled {
        events.push(Event {
            name: "scheduled".to_owned(),
            time: time.0,
            attributes: Vec::new(),
        });
    }
    for container in container_statuses(pod) {
        let restarts = container.restart_count;
        if restarts > 0 {
            let previous = container.last_state.as_ref();
            run_events(&mut events, &container.name, previous, restarts - 1);
        }
        run_events(
            &mut events,
            &container.name,
            container.state.as_ref(),
            restarts,
        );
    }
    events.sort_by_key(|e| e.time);
    events
}

/// The statuses of the pod's init containers, then of its containers.
fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status.iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
    })
}

/// The start and the end of one run of a container, as far as its state says.
fn run_events(
    events: &mut Vec<Event>,
    container: &str,
    state: Option<&ContainerState>,
    restarts: i32,
) {
    let mut attributes: Attributes = vec![(attribute::CONTAINER_NAME, container.into())];
    if restarts > 0 {
        attributes.push((attribute::CONTAINER_RESTART_COUNT, restarts.into()));
    }
    let terminated = state.and_then(|s| s.terminated.as_ref());
    let started = state
        .and_then(|s| s.running.as_ref()?.started_at.as_ref())
        .or_else(|| terminated?.started_at.as_ref());
    if let Some(time) = started {
        events.push(Event {
            name: "container started".to_owned(),
            time: time.0,
            attributes: attributes.clone(),
        });
    }
    if let Some((t, time)) = terminated.and_then(|t| Some((t, t.finished_at.as_ref()?))) {
        attributes.push(("jobtrace.container.exit_code", t.exit_code.into()));
        if let Some(reason) = &t.reason {
            attributes.push((attribute::CONTAINER_STATUS_REASON, reason.as_str().into()));
        }
        events.push(Event {
            name: "container terminated".to_owned(),
            time: time.0,
            attributes,
        });
    }
}
