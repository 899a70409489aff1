//! Every name jobtrace reads or writes on Kubernetes objects and in containers' environments:
//! those of the client library, which creators and Job programs share with the operator.

pub use jobtrace_context::names::*;

/// The annotations jobtrace writes on Jobs, their pod templates and pods, and reads back to build
/// spans: nobody but jobtrace may change them on an existing object (the chart's admission policy
/// `<fullname>-keys` refuses it, with this list; a chart test keeps the two equal). The creator's
/// input keys are not among them: users may write those again.
pub const WRITTEN_ANNOTATIONS: [&str; 12] = [
    TRACE_ID,
    SPAN_ID,
    PARENT_SPAN_ID,
    TRACE_FLAGS,
    ORIGIN,
    LINK,
    JOB_LABELS,
    POLICY_OVERRIDDEN,
    CREATED_SUSPENDED,
    ADMITTED_AT,
    ADMISSION_TAG,
    EXPORTED,
];
/// The labels jobtrace writes on Jobs and their pod templates, held like [`WRITTEN_ANNOTATIONS`].
pub const WRITTEN_LABELS: [&str; 2] = [TRACED_LABEL, POLICY];

/// The `k8s.*` attribute keys of the OpenTelemetry semantic conventions that jobtrace records on
/// its spans and in the Job's processes' `OTEL_RESOURCE_ATTRIBUTES`; docs/controller.md's
/// attribute table lists each (a test keeps the two equal).
pub mod attribute {
    pub const NAMESPACE_NAME: &str = "k8s.namespace.name";
    pub const JOB_NAME: &str = "k8s.job.name";
    pub const JOB_UID: &str = "k8s.job.uid";
    /// Followed by a label's key: the Job's labels its policy names.
    pub const JOB_LABEL_PREFIX: &str = "k8s.job.label.";
    pub const CRONJOB_NAME: &str = "k8s.cronjob.name";
    pub const CRONJOB_UID: &str = "k8s.cronjob.uid";
    pub const POD_NAME: &str = "k8s.pod.name";
    pub const POD_UID: &str = "k8s.pod.uid";
    pub const POD_STATUS_PHASE: &str = "k8s.pod.status.phase";
    pub const POD_STATUS_REASON: &str = "k8s.pod.status.reason";
    pub const NODE_NAME: &str = "k8s.node.name";
    pub const CONTAINER_NAME: &str = "k8s.container.name";
    pub const CONTAINER_STATUS_REASON: &str = "k8s.container.status.reason";
    pub const CONTAINER_RESTART_COUNT: &str = "k8s.container.restart_count";

    /// Every key above, the label prefix as `k8s.job.label.<key>`.
    pub const ALL: [&str; 14] = [
        NAMESPACE_NAME,
        JOB_NAME,
        JOB_UID,
        "k8s.job.label.<key>",
        CRONJOB_NAME,
        CRONJOB_UID,
        POD_NAME,
        POD_UID,
        POD_STATUS_PHASE,
        POD_STATUS_REASON,
        NODE_NAME,
        CONTAINER_NAME,
        CONTAINER_STATUS_REASON,
        CONTAINER_RESTART_COUNT,
    ];
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{
        BAGGAGE_KEYS, DOMAIN, EXPORT_FINALIZER, Exported, TRACEPARENT_KEYS, TRACESTATE_KEYS,
        WRITTEN_ANNOTATIONS, WRITTEN_LABELS,
    };

    /// Every string literal of the client library's names.rs, comments left out.
    fn literals_of_the_code() -> BTreeSet<&'static str> {
        include_str!("../../crates/jobtrace-context/src/names.rs")
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            // Between a line's quotes, every second piece is a literal (none holds a quote).
            .flat_map(|line| line.split('"').skip(1).step_by(2))
            .collect()
    }

    /// The names docs/design.md's `## Names` section lists in its tables: the backticked keys
    /// with a prefix (`jobtrace.dev/…`, `batch.kubernetes.io/…`), the environment variables
    /// (upper case), and, in `### What jobtrace reads`, the unprefixed input keys.
    fn documented_names() -> BTreeSet<&'static str> {
        let doc = include_str!("../../docs/design.md");
        let section = doc
            .split("\n## Names\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/design.md has a section \"## Names\"");
        let mut names = BTreeSet::new();
        let mut reads = false;
        for line in section.lines() {
            if let Some(heading) = line.strip_prefix("### ") {
                reads = heading.starts_with("What jobtrace reads");
            }
            if !line.starts_with('|') {
                continue;
            }
            for token in line.split('`').skip(1).step_by(2) {
                let prefixed = token.split_once('/').is_some_and(|(prefix, name)| {
                    prefix.contains('.')
                        && [prefix, name].iter().all(|part| {
                            !part.is_empty()
                                && part.chars().all(|c| {
                                    c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c)
                                })
                        })
                });
                let variable = token.len() > 1
                    && token.starts_with(|c: char| c.is_ascii_uppercase())
                    && token
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                let input_key = reads && token.chars().all(|c| c.is_ascii_lowercase());
                if prefixed || variable || input_key {
                    names.insert(token);
                }
            }
        }
        names
    }

    #[test]
    fn names_are_the_documented_ones() {
        // Literals that are values, not names: the domain, and what `jobtrace.dev/exported` says.
        let values = [
            DOMAIN,
            Exported::Accepted.label(),
            Exported::Dropped.label(),
        ];
        let code: BTreeSet<&str> = literals_of_the_code()
            .into_iter()
            .filter(|literal| !values.contains(literal))
            .collect();
        let documented = documented_names();
        assert!(code.len() > 20, "names.rs read: {code:?}");
        let undocumented: Vec<_> = code.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "names in crates/jobtrace-context/src/names.rs that docs/design.md's Names tables lack: \
             {undocumented:?}"
        );
        let unknown: Vec<_> = documented.difference(&code).collect();
        assert!(
            unknown.is_empty(),
            "names in docs/design.md's Names tables that crates/jobtrace-context/src/names.rs \
             lacks: {unknown:?}"
        );
    }

    /// The keys of docs/design.md's table "What jobtrace writes on objects": its labels and its
    /// annotations (the finalizer and the policies' `status` left out).
    fn documented_writes() -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
        let doc = include_str!("../../docs/design.md");
        let table = doc
            .split("\n### What jobtrace writes on objects\n")
            .nth(1)
            .and_then(|rest| rest.trim_start().split("\n\n").next())
            .filter(|table| table.starts_with('|'))
            .expect("docs/design.md has the table \"What jobtrace writes on objects\"");
        let (mut labels, mut annotations) = (BTreeSet::new(), BTreeSet::new());
        for row in table.lines().skip(2) {
            let key = row.split('|').nth(2).unwrap_or_default().trim();
            let Some(name) = key.split('`').nth(1) else {
                continue;
            };
            if key.starts_with("label ") {
                labels.insert(name);
            } else if !key.starts_with("finalizer ") && name != "status" {
                annotations.insert(name);
            }
        }
        (labels, annotations)
    }

    #[test]
    fn the_written_keys_are_the_documented_ones_and_no_input_key() {
        let (labels, annotations) = documented_writes();
        assert_eq!(labels, WRITTEN_LABELS.into_iter().collect());
        assert_eq!(annotations, WRITTEN_ANNOTATIONS.into_iter().collect());
        for input in TRACEPARENT_KEYS
            .iter()
            .chain(&TRACESTATE_KEYS)
            .chain(&BAGGAGE_KEYS)
            .chain([&EXPORT_FINALIZER])
        {
            assert!(
                !WRITTEN_ANNOTATIONS.contains(input) && !WRITTEN_LABELS.contains(input),
                "{input} is not held"
            );
        }
    }

    /// The `k8s.*` keys of docs/controller.md's attribute table, each name of a row's first cell
    /// (`k8s.job.name`, `k8s.job.uid` is two).
    fn documented_k8s_attributes() -> BTreeSet<&'static str> {
        let doc = include_str!("../../docs/controller.md");
        let table = doc
            .split("\n| attribute | on | value | registry |\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("docs/controller.md has the attribute table");
        table
            .lines()
            .skip(1)
            .filter_map(|row| row.split('|').nth(1))
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .filter(|name| name.starts_with("k8s."))
            .collect()
    }

    #[test]
    fn the_k8s_attributes_are_the_documented_ones() {
        let code: BTreeSet<&str> = super::attribute::ALL.into_iter().collect();
        assert_eq!(code, documented_k8s_attributes());
        assert_eq!(
            format!("{}<key>", super::attribute::JOB_LABEL_PREFIX),
            "k8s.job.label.<key>"
        );
    }
}
