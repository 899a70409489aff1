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

/// Most warnings of one admission kept with their message; the rest are only counted. The
/// apiserver keeps about 4 KiB of warning text per request, in items of at most 256 characters.
pub const MAX_KEPT: usize = 15;
/// Longest warning message sent, in characters, as the apiserver would cut it.
pub const MAX_MESSAGE_CHARS: usize = 256;

/// The warnings of one admission: the first `MAX_KEPT` with their message, and a count of every
/// one by reason, so that an input with a million problems costs no more than one with sixteen.
/// It reads as the slice of the kept warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    kept: Vec<Warning>,
    /// Every warning given, kept or not, indexed by `WarningReason as usize`.
    counts: [u64; WarningReason::ALL.len()],
}

impl Warnings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, warning: Warning) {
        let count = &mut self.counts[warning.reason as usize];
        *count = count.saturating_add(1);
        if self.kept.len() < MAX_KEPT {
            self.kept.push(warning);
        }
    }

    /// How many warnings were given, kept or not.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// How many were only counted.
    pub fn omitted(&self) -> u64 {
        self.total() - self.kept.len() as u64
    }

    /// Each reason given at least once, with how many times.
    pub fn by_reason(&self) -> impl Iterator<Item = (WarningReason, u64)> + '_ {
        WarningReason::ALL
            .iter()
            .map(|&reason| (reason, self.counts[reason as usize]))
            .filter(|&(_, n)| n > 0)
    }

    /// The warnings as an admission response carries them: each kept message prefixed with
    /// `jobtrace: ` and cut to `MAX_MESSAGE_CHARS`, then one line for those only counted.
    pub fn messages(&self) -> Vec<String> {
        let mut messages: Vec<String> = self
            .kept
            .iter()
            .map(|w| cut(&format!("jobtrace: {}", w.message)))
            .collect();
        let omitted = self.omitted();
        if omitted > 0 {
            let mut kept = [0u64; WarningReason::ALL.len()];
            for w in &self.kept {
                kept[w.reason as usize] += 1;
            }
            let reasons: Vec<String> = self
                .by_reason()
                .filter(|&(reason, n)| n > kept[reason as usize])
                .map(|(reason, n)| format!("{} {}", n - kept[reason as usize], reason.label()))
                .collect();
            messages.push(cut(&format!(
                "jobtrace: {omitted} more warnings not shown ({})",
                reasons.join(", ")
            )));
        }
        messages
    }
}

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters, the cut marked with an ellipsis.
fn cut(message: &str) -> String {
    if message.chars().nth(MAX_MESSAGE_CHARS).is_none() {
        return message.to_owned();
    }
    let (end, _) = message
        .char_indices()
        .nth(MAX_MESSAGE_CHARS - 1)
        .expect("longer than the limit");
    format!("{}…", &message[..end])
}

impl std::ops::Deref for Warnings {
    type Target = [Warning];

    fn deref(&self) -> &[Warning] {
        &self.kept
    }
}

impl Extend<Warning> for Warnings {
    fn extend<I: IntoIterator<Item = Warning>>(&mut self, warnings: I) {
        for warning in warnings {
            self.push(warning);
        }
    }
}

impl FromIterator<Warning> for Warnings {
    fn from_iter<I: IntoIterator<Item = Warning>>(warnings: I) -> Self {
        let mut all = Self::new();
        all.extend(warnings);
        all
    }
}

impl<'a> IntoIterator for &'a Warnings {
    type Item = &'a Warning;
    type IntoIter = std::slice::Iter<'a, Warning>;

    fn into_iter(self) -> Self::IntoIter {
        self.kept.iter()
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
    /// The object is too large to read or to inject into within jobtrace's bounds: not traced.
    ObjectTooLarge,
    /// The webhook had more admission work in hand than its memory budget: answered unchanged.
    Overloaded,
}

impl WarningReason {
    /// Every reason, in the order of the documentation's table.
    pub const ALL: [Self; 20] = [
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
        Self::ObjectTooLarge,
        Self::Overloaded,
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
            Self::ObjectTooLarge => "object_too_large",
            Self::Overloaded => "overloaded",
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
        let text = include_str!("../../../docs/operations.md");
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
    fn the_answer_keeps_fifteen_messages_cut_to_256_characters_and_counts_the_rest() {
        let mut warnings = Warnings::new();
        warnings.push(Warning::new(WarningReason::Conflict, "é".repeat(1_000)));
        for i in 0..20 {
            warnings.push(Warning::new(WarningReason::EnvUserSet, format!("w{i}")));
        }
        warnings.push(Warning::new(WarningReason::EnvFrom, "last".to_owned()));
        assert_eq!(warnings.total(), 22);
        assert_eq!(warnings.len(), MAX_KEPT);
        let messages = warnings.messages();
        assert_eq!(messages.len(), MAX_KEPT + 1);
        assert_eq!(messages[0].chars().count(), MAX_MESSAGE_CHARS);
        assert!(messages[0].starts_with("jobtrace: éé") && messages[0].ends_with('…'));
        assert_eq!(messages[1], "jobtrace: w0");
        assert_eq!(
            messages[MAX_KEPT],
            "jobtrace: 7 more warnings not shown (6 env_user_set, 1 env_from)"
        );
        let short = Warnings::from_iter([Warning::new(WarningReason::Conflict, "x".repeat(246))]);
        assert_eq!(
            short.messages()[0].chars().count(),
            MAX_MESSAGE_CHARS,
            "exactly at the limit"
        );
        assert!(!short.messages()[0].ends_with('…'));
    }

    #[test]
    fn all_holds_every_reason_once_in_declaration_order() {
        for (i, reason) in WarningReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
        assert_eq!(
            WarningReason::ALL.len(),
            WarningReason::Overloaded as usize + 1,
            "the last reason declared is the last of ALL"
        );
    }
}
