//! The Job span and, for a Job created suspended, its queued span.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::jiff::Timestamp;

use super::{
    Attributes, Event, Link, Skip, SpanKind, SpanRecord, Status, Value, began, derived_span_id,
    latest, trace_flags, traced,
};

/// The annotation the CronJob controller writes on each run: when the run was scheduled.
const CRONJOB_SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
use crate::core::context::SpanId;
use crate::core::names;
use crate::core::names::attribute;

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// The spans of a Job that has finished, or was deleted (`deleted_at`, when the controller saw the
/// deletion but the object carries no deletion time).
pub fn job_spans(job: &Job, deleted_at: Option<Timestamp>) -> Result<Vec<SpanRecord>, Skip> {
    let meta = &job.metadata;
    let (annotations, trace_id) = traced(meta)?;
    let span_id = annotations
        .get(names::SPAN_ID)
        .and_then(|v| SpanId::parse(v))
        .ok_or(Skip::NotTraced)?;
    let spec = job.spec.as_ref();
    let pod = spec.and_then(|s| s.template.spec.as_ref());
    let containers = pod.into_iter().flat_map(|p| {
        p.init_containers
            .iter()
            .flatten()
            .chain(p.containers.iter())
    });
    let flags = trace_flags(annotations, containers, trace_id);
    if !flags.is_sampled() {
        return Err(Skip::Unsampled);
    }

    let failed = condition(job, "Failed");
    // The controller's own clock (`deleted_at`) is precise; the objects' times are to the second.
    let deletion = meta
        .deletion_timestamp
        .as_ref()
        .map(|t| latest(t.0))
        .or(deleted_at);
    let (end, result, status) = outcome(job, deletion)?;
    let start = began(meta);
    let end = end.or(deletion).or(start).ok_or(Skip::NotFinished)?;
    let start = start.unwrap_or(end).min(end);

    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let attributes = attributes(job, result, failed);
    let started = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0);
    let events = events(job, started);

    let parent_span_id = annotations
        .get(names::PARENT_SPAN_ID)
        .and_then(|v| SpanId::parse(v));
    let (label_attributes, dropped_labels) = label_attributes(job, annotations);
    let mut spans = vec![SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        name: format!("job {namespace}/{name}"),
        start,
        end,
        attributes,
        events,
        status,
        kind: SpanKind::Internal,
        trace_flags: flags.bits(),
        label_attributes,
        dropped_attributes: dropped_labels,
        links: links(annotations),
    }];
    if annotations
        .get(names::CREATED_SUSPENDED)
        .map(String::as_str)
        == Some("true")
    {
        spans.push(SpanRecord {
            trace_id,
            span_id: derived_span_id(span_id, b"queued"),
            parent_span_id: Some(span_id),
            name: "queued".to_owned(),
            start,
            end: started.map_or(end, latest).clamp(start, end),
            attributes: vec![
                (attribute::NAMESPACE_NAME, namespace.as_str().into()),
                (attribute::JOB_NAME, name.as_str().into()),
            ],
            events: Vec::new(),
            status: Status::Unset,
            kind: SpanKind::Internal,
            trace_flags: flags.bits(),
            label_attributes: Vec::new(),
            dropped_attributes: 0,
            links: Vec::new(),
        });
    }
    Ok(spans)
}

/// How the Job ended (the end, `jobtrace.job.result`, the status), or that it has not yet.
fn outcome(
    job: &Job,
    deletion: Option<Timestamp>,
) -> Result<(Option<Timestamp>, &'static str, Status), Skip> {
    if let Some(c) = condition(job, "Complete") {
        let end = c
            .last_transition_time
            .as_ref()
            .or(job.status.as_ref().and_then(|s| s.completion_time.as_ref()))
            .map(|t| latest(t.0));
        Ok((end, "succeeded", Status::Ok))
    } else if let Some(c) = condition(job, "Failed") {
        let description = c
            .message
            .clone()
            .or_else(|| c.reason.clone())
            .unwrap_or_else(|| "failed".to_owned());
        Ok((
            c.last_transition_time.as_ref().map(|t| latest(t.0)),
            "failed",
            Status::Error { description },
        ))
    } else if let Some(deleted) = deletion {
        Ok((Some(deleted), "deleted", Status::Unset))
    } else {
        Err(Skip::NotFinished)
    }
}

/// A trace of its own (a linked Job, a CronJob run) links to the creator's context.
fn links(annotations: &std::collections::BTreeMap<String, String>) -> Vec<Link> {
    annotations
        .get(names::LINK)
        .and_then(|v| crate::core::context::traceparent::parse(v).ok())
        .map(|tp| Link {
            trace_id: tp.trace_id,
            span_id: tp.parent_id,
            trace_flags: tp.flags.bits(),
        })
        .into_iter()
        .collect()
}

/// Job labels copied to a Job span at most: the annotation naming them is the Job owner's to
/// write (an UPDATE, which the webhook never sees), so it must not make the span unbounded. The
/// OpenTelemetry default of attributes per span.
pub const MAX_JOB_LABELS: usize = 128;

/// The Job labels the policy asked for (`jobtrace.dev/job-labels`), as `k8s.job.label.<key>`: each
/// key once, in the order first named, the first [`MAX_JOB_LABELS`] the Job carries; and how many
/// more it carries that were left out.
fn label_attributes(
    job: &Job,
    annotations: &std::collections::BTreeMap<String, String>,
) -> (Vec<(String, String)>, u32) {
    let (Some(keys), Some(labels)) = (annotations.get(names::JOB_LABELS), &job.metadata.labels)
    else {
        return (Vec::new(), 0);
    };
    // Borrowed from the annotation, so a key named again and again costs nothing.
    let mut seen = std::collections::BTreeSet::new();
    let mut copied = Vec::new();
    let mut dropped: u32 = 0;
    for key in keys.split(',').map(str::trim) {
        let Some(value) = labels.get(key) else {
            continue;
        };
        if !seen.insert(key) {
            continue;
        }
        if copied.len() < MAX_JOB_LABELS {
            copied.push((
                format!("{}{key}", attribute::JOB_LABEL_PREFIX),
                value.clone(),
            ));
        } else {
            dropped = dropped.saturating_add(1);
        }
    }
    (copied, dropped)
}

fn attributes(job: &Job, result: &str, failed: Option<&JobCondition>) -> Attributes {
    let meta = &job.metadata;
    let mut attributes: Attributes = vec![
        (
            attribute::NAMESPACE_NAME,
            meta.namespace.clone().unwrap_or_default().into(),
        ),
        (
            attribute::JOB_NAME,
            meta.name.clone().unwrap_or_default().into(),
        ),
        (
            attribute::JOB_UID,
            meta.uid.clone().unwrap_or_default().into(),
        ),
        ("jobtrace.job.result", result.into()),
    ];
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "CronJob")
    {
        attributes.push((attribute::CRONJOB_NAME, owner.name.as_str().into()));
        attributes.push((attribute::CRONJOB_UID, owner.uid.as_str().into()));
    }
    if let Some(reason) = failed.and_then(|c| c.reason.clone()) {
        attributes.push(("error.type", reason.into()));
    }
    // A CronJob's run records when it was due: the delay to its creation shows a late schedule.
    let scheduled = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(CRONJOB_SCHEDULED))
        .and_then(|v| v.parse::<Timestamp>().ok());
    if let Some(scheduled) = scheduled {
        attributes.push((
            "jobtrace.cronjob.scheduled_time",
            scheduled.to_string().into(),
        ));
        if let Some(created) = &meta.creation_timestamp {
            let delay = created.0.duration_since(scheduled).as_millis();
            attributes.push((
                "jobtrace.cronjob.schedule_delay_ms",
                Value::Int(i64::try_from(delay).unwrap_or(i64::MAX)),
            ));
        }
    }
    if let Some(spec) = &job.spec {
        let shape = [
            ("jobtrace.job.completions", spec.completions),
            ("jobtrace.job.parallelism", spec.parallelism),
            ("jobtrace.job.backoff_limit", spec.backoff_limit),
        ];
        attributes.extend(shape.into_iter().filter_map(|(k, v)| Some((k, v?.into()))));
        if let Some(mode) = &spec.completion_mode {
            attributes.push(("jobtrace.job.completion_mode", mode.as_str().into()));
        }
    }
    if let Some(status) = &job.status {
        attributes.push((
            "jobtrace.job.succeeded",
            status.succeeded.unwrap_or(0).into(),
        ));
        attributes.push(("jobtrace.job.failed", status.failed.unwrap_or(0).into()));
    }
    attributes
}

/// Start, and the latest suspension or resumption (the only one the Job's status keeps).
fn events(job: &Job, started: Option<Timestamp>) -> Vec<Event> {
    let event = |name: &str, time| Event {
        name: name.to_owned(),
        time,
        attributes: Vec::new(),
    };
    let mut events: Vec<Event> = started.map(|t| event("started", t)).into_iter().collect();
    let suspended = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Suspended"));
    if let Some((c, time)) = suspended.and_then(|c| Some((c, c.last_transition_time.as_ref()?))) {
        let name = if c.status == "True" {
            "suspended"
        } else {
            "resumed"
        };
        events.push(event(name, time.0));
    }
    events.sort_by_key(|e| e.time);
    events
}
