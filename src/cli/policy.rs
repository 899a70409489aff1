//! The policy flags: the cluster-wide tracing settings, in force wherever no `JobTracePolicy` says
//! otherwise.

use clap::Args;

use super::values::ratio;

/// The cluster-wide tracing settings: in force wherever no `JobTracePolicy` says otherwise.
#[derive(Debug, Clone, Args)]
#[allow(clippy::struct_excessive_bools)] // one per flag
pub struct PolicyArgs {
    /// Read `JobTracePolicy` objects (every replica keeps a watch-backed copy); with `false`, only
    /// these flags apply.
    #[arg(long, env = "JOBTRACE_POLICIES", default_value_t = true, action = clap::ArgAction::Set)]
    pub policies: bool,
    /// Keep the Jobs webhook's `matchConditions` in the webhook configuration
    /// (`--webhook-configuration`) in step with the policies: Jobs without context then reach the
    /// webhook only in namespaces where root traces are on.
    #[arg(long, env = "JOBTRACE_SYNC_MATCH_CONDITIONS")]
    pub sync_match_conditions: bool,
    /// Give Jobs without trace context a trace of their own, sampled at this ratio (0 to 1).
    /// Every Job then calls the webhook.
    #[arg(long, env = "JOBTRACE_ROOT_TRACES", value_parser = ratio)]
    pub root_traces: Option<f64>,
    /// How a Job's span relates to its creator's.
    #[arg(long, env = "JOBTRACE_RELATIONSHIP", value_enum, default_value_t = RelationshipArg::Child)]
    pub relationship: RelationshipArg,
    /// How the runs of CronJobs are traced.
    #[arg(long, env = "JOBTRACE_CRONJOBS", value_enum, default_value_t = CronJobsArg::NewTracePerRun)]
    pub cronjobs: CronJobsArg,
    /// Baggage keys never injected into containers (comma-separated).
    #[arg(long, env = "JOBTRACE_BAGGAGE_EXCLUDE", value_delimiter = ',')]
    pub baggage_exclude: Vec<String>,
    /// Give each pod attempt a span of its own.
    #[arg(long, env = "JOBTRACE_POD_SPANS", default_value_t = true, action = clap::ArgAction::Set)]
    pub pod_spans: bool,
    /// Set or extend `OTEL_RESOURCE_ATTRIBUTES` with the Kubernetes attributes.
    #[arg(long, env = "JOBTRACE_RESOURCE_ATTRIBUTES", default_value_t = true, action = clap::ArgAction::Set)]
    pub resource_attributes: bool,
    /// Read the trace context from the headers of the request that creates a Job when its
    /// annotations carry none (for creators whose HTTP client is instrumented). Every Job then
    /// calls the webhook.
    #[arg(long, env = "JOBTRACE_REQUEST_CONTEXT")]
    pub request_context: bool,
    /// Hold each traced, sampled Job with the finalizer `jobtrace.dev/export` until the
    /// controller has exported its spans (the chart turns it on). Only where a controller runs:
    /// nothing else removes the finalizer.
    #[arg(long, env = "JOBTRACE_HOLD_FOR_EXPORT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub hold_for_export: bool,
    /// With `--hold-for-export`, hold each held Job's pods too (through its pod template), so
    /// that their spans, the parent of the Job's processes, survive a deletion before their
    /// export (`ttlSecondsAfterFinished: 0` deletes the pods first). Costs one write per pod (the
    /// release); needs the `patch` verb on pods.
    #[arg(long, env = "JOBTRACE_HOLD_PODS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub hold_pods: bool,
    /// Job labels copied to Job spans as `k8s.job.label.<key>` (comma-separated keys).
    #[arg(long, env = "JOBTRACE_JOB_LABELS", value_delimiter = ',')]
    pub job_labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelationshipArg {
    Child,
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CronJobsArg {
    #[value(name = "newTracePerRun")]
    NewTracePerRun,
    Child,
    Off,
}

impl PolicyArgs {
    /// The settings these flags give.
    pub fn defaults(&self) -> crate::core::policy::TraceSettings {
        use crate::core::policy::{CronJobMode, KeyFilter, Relationship, TraceSettings};
        TraceSettings {
            root_traces: self.root_traces,
            relationship: match self.relationship {
                RelationshipArg::Child => Relationship::Child,
                RelationshipArg::Link => Relationship::Link,
            },
            cron_jobs: match self.cronjobs {
                CronJobsArg::NewTracePerRun => CronJobMode::NewTracePerRun,
                CronJobsArg::Child => CronJobMode::Child,
                CronJobsArg::Off => CronJobMode::Off,
            },
            baggage: KeyFilter::excluding(self.baggage_exclude.iter().cloned()),
            containers: KeyFilter::default(),
            pod_spans: self.pod_spans,
            resource_attributes: self.resource_attributes,
            job_labels: self.job_labels.clone(),
            request_context: self.request_context,
            hold_for_export: self.hold_for_export,
            hold_pods: self.hold_pods,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn policy_flags_give_the_cluster_defaults() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["jobtrace", "webhook", "--cert-secret", "s"][..], args].concat())
        };
        let Command::Webhook(plain) = parse(&[]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            plain.policy.defaults(),
            crate::core::policy::TraceSettings::default()
        );
        assert!(plain.policy.policies);
        let Command::Webhook(set) = parse(&[
            "--root-traces",
            "0.25",
            "--relationship",
            "link",
            "--cronjobs",
            "off",
            "--baggage-exclude",
            "user.email,session",
            "--pod-spans",
            "false",
            "--resource-attributes",
            "false",
            "--job-labels",
            "team,app",
            "--policies",
            "false",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        let defaults = set.policy.defaults();
        assert_eq!(defaults.root_traces, Some(0.25));
        assert_eq!(
            defaults.relationship,
            crate::core::policy::Relationship::Link
        );
        assert_eq!(defaults.cron_jobs, crate::core::policy::CronJobMode::Off);
        assert_eq!(
            defaults.baggage,
            crate::core::policy::KeyFilter::excluding(["user.email", "session"])
        );
        assert!(!defaults.pod_spans && !defaults.resource_attributes);
        assert_eq!(defaults.job_labels, ["team", "app"]);
        assert!(!set.policy.policies);
        assert!(parse(&["--root-traces", "2"]).is_err());
        assert!(parse(&["--cronjobs", "sometimes"]).is_err());
    }
}
