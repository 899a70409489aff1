//! Every name jobtrace reads or writes on Kubernetes objects and in containers' environments.

/// The annotation and label domain.
pub const DOMAIN: &str = "jobtrace.dev";

/// Input annotations carrying the creator's `traceparent`, in order of precedence.
pub const TRACEPARENT_KEYS: [&str; 3] = [
    "jobtrace.dev/traceparent",
    "tracing.k8s.io/traceparent",
    "traceparent",
];
/// Input annotations carrying the creator's `tracestate`, in order of precedence.
pub const TRACESTATE_KEYS: [&str; 2] = ["jobtrace.dev/tracestate", "tracestate"];
/// Input annotations carrying the creator's `baggage`, in order of precedence.
pub const BAGGAGE_KEYS: [&str; 2] = ["jobtrace.dev/baggage", "baggage"];

/// A place a creator's context comes from: its `traceparent` key and the `tracestate` key that
/// belongs with it (a `tracestate` only means something next to its own `traceparent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextSource {
    /// The annotation holding the `traceparent`.
    pub traceparent: &'static str,
    /// The annotation holding its `tracestate`, for sources that have one.
    pub tracestate: Option<&'static str>,
}

/// The context sources in order of precedence; the same order as `TRACEPARENT_KEYS`.
pub const CONTEXT_SOURCES: [ContextSource; 3] = [
    ContextSource {
        traceparent: TRACEPARENT_KEYS[0],
        tracestate: Some(TRACESTATE_KEYS[0]),
    },
    ContextSource {
        traceparent: TRACEPARENT_KEYS[1],
        tracestate: None,
    },
    ContextSource {
        traceparent: TRACEPARENT_KEYS[2],
        tracestate: Some(TRACESTATE_KEYS[1]),
    },
];

/// Label on traced Jobs and their pod templates, so selectors can find them.
pub const TRACED_LABEL: &str = "jobtrace.dev/traced";
/// Trace id of the object's span.
pub const TRACE_ID: &str = "jobtrace.dev/trace-id";
/// Span id of the object's own span (the Job span on a Job, the attempt span on a pod).
pub const SPAN_ID: &str = "jobtrace.dev/span-id";
/// Span id of the object's parent span (the creator's span on a Job, the Job span on a pod).
pub const PARENT_SPAN_ID: &str = "jobtrace.dev/parent-span-id";
/// Set by the Job webhook when the Job is created suspended: its queued span then runs from
/// creation to the first start.
pub const CREATED_SUSPENDED: &str = "jobtrace.dev/created-suspended";
/// The W3C trace flags of the creator's context (two hex digits), recorded at admission: they
/// decide whether the object's spans are exported, and travel on the exported spans.
pub const TRACE_FLAGS: &str = "jobtrace.dev/trace-flags";
/// When the webhook admitted the object (RFC 3339, microseconds): tells a reinvocation of the
/// same request from an old object re-created from a saved manifest.
pub const ADMITTED_AT: &str = "jobtrace.dev/admitted-at";
/// The webhook's tag (HMAC-SHA256, base64url) over what a reinvocation of the same create request
/// keeps of the first pass: the object's kind, namespace and name, its trace id, span id and
/// [`ADMITTED_AT`]. Keyed by the webhook alone, so a creator can't write one that holds.
pub const ADMISSION_TAG: &str = "jobtrace.dev/admission-tag";
/// Why the Job is traced as it is: `child`, `link`, `cronjob-run` or `root`.
pub const ORIGIN: &str = "jobtrace.dev/origin";
/// The creator's context (a `traceparent`) that the Job span of a trace of its own links to.
pub const LINK: &str = "jobtrace.dev/link";
/// Label on a Job: the `JobTracePolicy` of its namespace that decided how it is traced.
pub const POLICY: &str = "jobtrace.dev/policy";
/// The other policies that selected the Job too, and lost to `jobtrace.dev/policy`.
pub const POLICY_OVERRIDDEN: &str = "jobtrace.dev/policy-overridden";
/// Label keys of the Job copied to its span as `k8s.job.label.<key>`, comma-separated.
pub const JOB_LABELS: &str = "jobtrace.dev/job-labels";
/// The finalizer that holds a traced Job until its spans are exported: added by the webhook at
/// admission, removed by the controller in the write that marks the Job exported.
pub const EXPORT_FINALIZER: &str = "jobtrace.dev/export";
/// Set by the controller once the object's span has been exported.
pub const EXPORTED: &str = "jobtrace.dev/exported";

/// What [`EXPORTED`] says of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exported {
    /// The collector accepted its spans.
    Accepted,
    /// The collector refused its spans for good: they were dropped.
    Dropped,
}

impl Exported {
    /// The annotation's value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "true",
            Self::Dropped => "dropped",
        }
    }
}
/// Annotations that describe one object only: never copied from a Job's pod template to its pods,
/// never trusted when they arrive on a CREATE.
pub const OBJECT_OWN: [&str; 5] = [
    SPAN_ID,
    ADMITTED_AT,
    ADMISSION_TAG,
    EXPORTED,
    CREATED_SUSPENDED,
];

/// The label the job controller puts on every pod of a Job (and on the Job's pod template) with
/// the Job's name,
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// and the one with the Job's uid.
pub const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

/// Environment variables injected into containers.
pub mod env {
    /// The pod attempt's `traceparent`: the creator's trace, the pod's span as parent.
    pub const TRACEPARENT: &str = "TRACEPARENT";
    /// The creator's `tracestate`.
    pub const TRACESTATE: &str = "TRACESTATE";
    /// The creator's `baggage`, as the policy filters it.
    pub const BAGGAGE: &str = "BAGGAGE";
    /// The Kubernetes resource attributes of the container, for the Job's own SDK.
    pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    /// Downward-API variables for values unknown at admission, referenced from
    /// `OTEL_RESOURCE_ATTRIBUTES` through `$(VAR)` expansion: the pod's name,
    pub const POD_NAME: &str = "JOBTRACE_POD_NAME";
    /// The pod's uid (downward API).
    pub const POD_UID: &str = "JOBTRACE_POD_UID";
    /// The Job's name (from the pod's job-name label, downward API).
    pub const JOB_NAME: &str = "JOBTRACE_JOB_NAME";
    /// The Job's uid (from the pod's controller-uid label, downward API).
    pub const JOB_UID: &str = "JOBTRACE_JOB_UID";
}
