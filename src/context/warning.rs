//! Admission warnings: something wrong with an object's input, never fatal, told to the client
//! and counted by reason.

/// Something wrong with the input annotations: never fatal, reported as an admission warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub reason: WarningReason,
    pub message: String,
}

impl Warning {
    pub(crate) fn new(reason: WarningReason, message: String) -> Self {
        Self { reason, message }
    }
}

/// Why a warning was given. Its label is the `reason` of `jobtrace_admission_warnings_total`;
/// docs/operations.md explains each one, and a test keeps that table and [`Self::ALL`] alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningReason {
    /// A traceparent holds characters outside ASCII.
    NonAscii,
    /// A traceparent of the wrong length for its version.
    Length,
    /// A traceparent's version is not two lowercase hex digits, or is `ff`.
    Version,
    /// A traceparent's fields are not separated by `-`.
    Separator,
    /// A traceparent's ids or flags are not lowercase hex.
    NotLowerHex,
    /// A traceparent's trace-id or parent-id is all zeros.
    ZeroId,
    /// A later valid traceparent or baggage differs from the one that won.
    Conflict,
    /// Tracestate or baggage annotations without a valid traceparent.
    NoTraceparent,
    /// A tracestate of another source than the winning traceparent's.
    TracestateOfOtherSource,
    /// A tracestate of more than 32 list-members.
    TooManyMembers,
    /// A tracestate list-member that breaks the grammar.
    Grammar,
    /// A tracestate key that appears more than once.
    TracestateDuplicateKey,
    /// A tracestate longer than 512 characters.
    TracestateTruncated,
    /// A baggage member dropped (grammar or limits).
    BaggageMemberDropped,
    /// A container sets a variable jobtrace would, to another value, or takes it from a reference.
    EnvUserSet,
    /// A container's `envFrom` may define `OTEL_RESOURCE_ATTRIBUTES`.
    EnvFrom,
    /// The object in the review could not be read as a Job or pod.
    UnreadableObject,
    /// The `JobTracePolicy` objects are not loaded yet: the cluster defaults apply.
    PoliciesNotSynced,
}

impl WarningReason {
    /// Every reason, in the order of the documentation's table.
    pub const ALL: [Self; 18] = [
        Self::NonAscii,
        Self::Length,
        Self::Version,
        Self::Separator,
        Self::NotLowerHex,
        Self::ZeroId,
        Self::Conflict,
        Self::NoTraceparent,
        Self::TracestateOfOtherSource,
        Self::TooManyMembers,
        Self::Grammar,
        Self::TracestateDuplicateKey,
        Self::TracestateTruncated,
        Self::BaggageMemberDropped,
        Self::EnvUserSet,
        Self::EnvFrom,
        Self::UnreadableObject,
        Self::PoliciesNotSynced,
    ];

    /// The short, stable name metrics carry.
    pub fn label(self) -> &'static str {
        match self {
            Self::NonAscii => "non_ascii",
            Self::Length => "length",
            Self::Version => "version",
            Self::Separator => "separator",
            Self::NotLowerHex => "not_lower_hex",
            Self::ZeroId => "zero_id",
            Self::Conflict => "conflict",
            Self::NoTraceparent => "no_traceparent",
            Self::TracestateOfOtherSource => "tracestate_of_other_source",
            Self::TooManyMembers => "too_many_members",
            Self::Grammar => "grammar",
            Self::TracestateDuplicateKey => "tracestate_duplicate_key",
            Self::TracestateTruncated => "tracestate_truncated",
            Self::BaggageMemberDropped => "baggage_member_dropped",
            Self::EnvUserSet => "env_user_set",
            Self::EnvFrom => "env_from",
            Self::UnreadableObject => "unreadable_object",
            Self::PoliciesNotSynced => "policies_not_synced",
        }
    }
}

impl From<&jobtrace_context::TraceparentError> for WarningReason {
    fn from(error: &jobtrace_context::TraceparentError) -> Self {
        use jobtrace_context::TraceparentError as E;
        match error {
            E::NonAscii => Self::NonAscii,
            E::Length(_) | E::TooShort => Self::Length,
            E::Version(_) | E::VersionFf => Self::Version,
            E::Separator => Self::Separator,
            E::NotLowerHex(_) => Self::NotLowerHex,
            E::ZeroTraceId | E::ZeroParentId => Self::ZeroId,
        }
    }
}

impl From<&jobtrace_context::TracestateError> for WarningReason {
    fn from(error: &jobtrace_context::TracestateError) -> Self {
        use jobtrace_context::TracestateError as E;
        match error {
            E::TooManyMembers(_) => Self::TooManyMembers,
            E::NoEquals(_) | E::Key(_) | E::Value(_) => Self::Grammar,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The first column of the table under `### Admission warnings` in docs/operations.md.
    fn documented_reasons() -> Vec<String> {
        let text = include_str!("../../docs/operations.md");
        let section = text
            .split("\n### Admission warnings\n")
            .nth(1)
            .expect("a section \"### Admission warnings\"");
        section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            // The header row and the separator row.
            .skip(2)
            .map(|row| {
                let cell = row.split('|').nth(1).expect("a first column");
                cell.trim().trim_matches('`').to_owned()
            })
            .collect()
    }

    #[test]
    fn the_documentation_lists_exactly_the_warning_reasons() {
        let documented = documented_reasons();
        let unique: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
        assert_eq!(
            unique.len(),
            documented.len(),
            "a reason documented twice: {documented:?}"
        );
        let labels: BTreeSet<&str> = WarningReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(
            labels.len(),
            WarningReason::ALL.len(),
            "two reasons share a label"
        );
        let missing: Vec<_> = labels.difference(&unique).collect();
        assert!(
            missing.is_empty(),
            "reasons not in docs/operations.md: {missing:?}"
        );
        let unknown: Vec<_> = unique.difference(&labels).collect();
        assert!(
            unknown.is_empty(),
            "documented reasons jobtrace doesn't have: {unknown:?}"
        );
    }

    #[test]
    fn all_holds_every_reason_once_in_declaration_order() {
        for (i, reason) in WarningReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
        assert_eq!(
            WarningReason::ALL.len(),
            WarningReason::PoliciesNotSynced as usize + 1,
            "the last reason declared is the last of ALL"
        );
    }
}
