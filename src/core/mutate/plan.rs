//! Which trace a Job joins, decided from its context, the settings that apply to it and whether a
//! CronJob owns it (pure).

use crate::core::context::{
    Baggage, Context, SpanId, TraceFlags, TraceId, Traceparent, Tracestate,
};
use crate::core::policy::{CronJobMode, Relationship, TraceSettings, sampling};

/// Why a Job is traced the way it is; written on the Job as `jobtrace.dev/origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A child of its creator's span.
    Child,
    /// A trace of its own, linked to its creator's span (`relationship: link`).
    Linked,
    /// A run of a CronJob, a trace of its own linked to the context of the CronJob's template.
    CronRun,
    /// A Job without context, traced because root traces are on.
    Root,
}

impl Origin {
    pub fn label(self) -> &'static str {
        match self {
            Self::Child => "child",
            Self::Linked => "link",
            Self::CronRun => "cronjob-run",
            Self::Root => "root",
        }
    }
}

/// The trace a Job joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub origin: Origin,
    pub trace_id: TraceId,
    /// The Job span's parent: the creator's span, or none in a trace of its own.
    pub parent: Option<SpanId>,
    /// The W3C trace flags of the Job's context.
    pub flags: TraceFlags,
    /// The creator's context that a trace of its own links to.
    pub link: Option<Traceparent>,
    /// Only in the creator's trace: a `tracestate` describes a position in that trace.
    pub tracestate: Option<Tracestate>,
    /// Baggage is not about a trace: it goes along in every case, as far as the settings allow.
    pub baggage: Option<Baggage>,
}

/// Decides the trace of a Job whose annotations gave `context`. `new_trace` is the id a trace of
/// its own gets. `None`: the Job is not traced.
pub fn plan(
    context: Option<Context>,
    settings: &TraceSettings,
    cron_run: bool,
    new_trace: TraceId,
) -> Option<Plan> {
    if cron_run && settings.cron_jobs == CronJobMode::Off {
        return None;
    }
    let Some(context) = context else {
        let ratio = settings.root_traces?;
        let sampled = if sampling::sampled(new_trace, ratio) {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::NONE
        };
        return Some(Plan {
            origin: Origin::Root,
            trace_id: new_trace,
            parent: None,
            flags: sampled | TraceFlags::RANDOM,
            link: None,
            tracestate: None,
            baggage: None,
        });
    };
    let baggage = context
        .baggage
        .map(|b| b.retain_keys(|key| settings.baggage.allows(key)))
        .filter(|b| !b.is_empty());
    let creator = context.traceparent;
    let own_trace = if cron_run && settings.cron_jobs == CronJobMode::NewTracePerRun {
        Some(Origin::CronRun)
    } else if settings.relationship == Relationship::Link {
        Some(Origin::Linked)
    } else {
        None
    };
    Some(match own_trace {
        // The creator's sampling decision carries over to the trace it links to.
        Some(origin) => Plan {
            origin,
            trace_id: new_trace,
            parent: None,
            flags: creator.flags.sampled_only() | TraceFlags::RANDOM,
            link: Some(creator),
            tracestate: None,
            baggage,
        },
        None => Plan {
            origin: Origin::Child,
            trace_id: creator.trace_id,
            parent: Some(creator.parent_id),
            flags: creator.flags,
            link: None,
            tracestate: context.tracestate,
            baggage,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::policy::KeyFilter;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const NEW: TraceId = TraceId([0x5a; 16]);

    fn context(traceparent: &str) -> Option<Context> {
        let annotations: BTreeMap<String, String> = [
            ("traceparent", traceparent),
            ("tracestate", "rojo=1"),
            ("baggage", "a=1,user.email=x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        crate::core::context::from_annotations(&annotations).0
    }

    #[test]
    fn a_job_with_context_is_a_child_of_its_creator_by_default() {
        let plan = plan(context(TP), &TraceSettings::default(), false, NEW).unwrap();
        assert_eq!(plan.origin, Origin::Child);
        assert_eq!(
            plan.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(plan.parent.unwrap().to_string(), "00f067aa0ba902b7");
        assert_eq!(plan.flags.bits(), 0x01);
        assert_eq!(plan.tracestate.unwrap().header(), "rojo=1");
        assert_eq!(plan.baggage.unwrap().header(), "a=1,user.email=x");
        assert!(plan.link.is_none());
    }

    #[test]
    fn link_mode_starts_a_trace_of_its_own_linked_to_the_creator() {
        let settings = TraceSettings {
            relationship: Relationship::Link,
            ..TraceSettings::default()
        };
        let plan = plan(context(TP), &settings, false, NEW).unwrap();
        assert_eq!(plan.origin, Origin::Linked);
        assert_eq!(plan.trace_id, NEW);
        assert_eq!(plan.parent, None);
        assert_eq!(plan.link.unwrap().to_string(), TP);
        assert_eq!(plan.flags.bits(), 0x03, "sampled as the creator, random id");
        assert!(
            plan.tracestate.is_none(),
            "the creator's tracestate is about its trace"
        );
        assert!(plan.baggage.is_some(), "baggage goes along");
    }

    #[test]
    fn each_cronjob_run_is_a_trace_of_its_own_by_default() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let plan = plan(context(unsampled), &TraceSettings::default(), true, NEW).unwrap();
        assert_eq!(plan.origin, Origin::CronRun);
        assert_eq!(plan.trace_id, NEW);
        assert_eq!(plan.link.unwrap().to_string(), unsampled);
        assert_eq!(
            plan.flags.bits(),
            0x02,
            "unsampled as the template's context"
        );
    }

    #[test]
    fn cronjob_child_mode_keeps_the_template_context_and_off_traces_nothing() {
        let child = TraceSettings {
            cron_jobs: CronJobMode::Child,
            ..TraceSettings::default()
        };
        assert_eq!(
            plan(context(TP), &child, true, NEW).unwrap().origin,
            Origin::Child
        );
        let off = TraceSettings {
            cron_jobs: CronJobMode::Off,
            root_traces: Some(1.0),
            ..TraceSettings::default()
        };
        assert_eq!(plan(context(TP), &off, true, NEW), None);
        assert_eq!(plan(None, &off, true, NEW), None, "not even a root trace");
        assert!(plan(None, &off, false, NEW).is_some(), "only CronJob runs");
    }

    #[test]
    fn jobs_without_context_get_root_traces_only_when_asked() {
        assert_eq!(plan(None, &TraceSettings::default(), false, NEW), None);
        let all = TraceSettings {
            root_traces: Some(1.0),
            ..TraceSettings::default()
        };
        let root = plan(None, &all, false, NEW).unwrap();
        assert_eq!(root.origin, Origin::Root);
        assert_eq!(
            (root.trace_id, root.parent, root.flags.bits()),
            (NEW, None, 0x03)
        );
        let none = TraceSettings {
            root_traces: Some(0.0),
            ..TraceSettings::default()
        };
        let unsampled = plan(None, &none, false, NEW).unwrap();
        assert_eq!(
            unsampled.flags.bits(),
            0x02,
            "still a context, with the sampled flag off"
        );
    }

    #[test]
    fn baggage_keys_are_filtered_by_the_settings() {
        let settings = TraceSettings {
            baggage: KeyFilter::excluding(["user.email"]),
            ..TraceSettings::default()
        };
        let plan = plan(context(TP), &settings, false, NEW).unwrap();
        assert_eq!(plan.baggage.unwrap().header(), "a=1");
        let nothing = TraceSettings {
            baggage: KeyFilter::including::<&str>([]),
            ..TraceSettings::default()
        };
        let plan = super::plan(context(TP), &nothing, false, NEW).unwrap();
        assert!(plan.baggage.is_none());
    }
}
