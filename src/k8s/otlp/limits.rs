//! OpenTelemetry's span limits, as the SDK specification defines them and its `OTEL_*_LIMIT`
//! variables set them: how many attributes, events and links an exported span keeps, and how
//! long a string value may be. They bound what a Job's owner can make jobtrace send.

use super::config::{ConfigError, pick};

/// The length, in characters, a string value is cut to unless configured otherwise. The
/// specification has no default; a collector refuses a request past its own limit (4 MiB by
/// default), so jobtrace keeps one.
pub const DEFAULT_VALUE_LENGTH: usize = 4096;

/// The specification's default of every count limit.
const DEFAULT_COUNT: usize = 128;

/// The limits applied to every exported span. Resource attributes are exempt, as the
/// specification has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanLimits {
    /// Attributes of a span; later ones are dropped.
    pub attribute_count: usize,
    /// Characters of a string value of a span's, its events' and its links' attributes, and of
    /// its status message; longer ones are cut.
    pub attribute_value_length: usize,
    /// Events of a span; later ones are dropped.
    pub event_count: usize,
    /// Links of a span; later ones are dropped.
    pub link_count: usize,
    /// Attributes of one event.
    pub event_attribute_count: usize,
    /// Attributes of one link.
    pub link_attribute_count: usize,
}

impl Default for SpanLimits {
    fn default() -> Self {
        Self {
            attribute_count: DEFAULT_COUNT,
            attribute_value_length: DEFAULT_VALUE_LENGTH,
            event_count: DEFAULT_COUNT,
            link_count: DEFAULT_COUNT,
            event_attribute_count: DEFAULT_COUNT,
            link_attribute_count: DEFAULT_COUNT,
        }
    }
}

impl SpanLimits {
    /// The limits the variables set: a span-specific variable wins over the general one
    /// (`OTEL_ATTRIBUTE_COUNT_LIMIT`, `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`); an empty variable is
    /// an unset one, and one that is not a whole number is refused.
    pub fn from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let limit = |specific, general: Option<&'static str>, default| match pick(
            var,
            specific,
            general.unwrap_or(specific),
        ) {
            None => Ok(default),
            Some(s) => s
                .value
                .trim()
                .parse()
                .map_err(|_| ConfigError::Limit(s.name, s.value.clone())),
        };
        Ok(Self {
            attribute_count: limit(
                "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
                Some("OTEL_ATTRIBUTE_COUNT_LIMIT"),
                defaults.attribute_count,
            )?,
            attribute_value_length: limit(
                "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                Some("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
                defaults.attribute_value_length,
            )?,
            event_count: limit("OTEL_SPAN_EVENT_COUNT_LIMIT", None, defaults.event_count)?,
            link_count: limit("OTEL_SPAN_LINK_COUNT_LIMIT", None, defaults.link_count)?,
            event_attribute_count: limit(
                "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
                Some("OTEL_ATTRIBUTE_COUNT_LIMIT"),
                defaults.event_attribute_count,
            )?,
            link_attribute_count: limit(
                "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
                Some("OTEL_ATTRIBUTE_COUNT_LIMIT"),
                defaults.link_attribute_count,
            )?,
        })
    }

    /// `value` cut to [`Self::attribute_value_length`] characters (not bytes, as the
    /// specification counts them).
    pub fn truncate(&self, value: &str) -> String {
        match value.char_indices().nth(self.attribute_value_length) {
            Some((end, _)) => value[..end].to_owned(),
            None => value.to_owned(),
        }
    }
}

/// How many of `total` items a limit of `kept` left out, as OTLP's `dropped_*_count` fields
/// hold it.
pub(super) fn dropped(total: usize, kept: usize) -> u32 {
    u32::try_from(total.saturating_sub(kept)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn limits(vars: &[(&str, &str)]) -> Result<SpanLimits, ConfigError> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        SpanLimits::from_vars(&|k: &str| vars.get(k).map(|v| (*v).to_owned()))
    }

    #[test]
    fn defaults_are_the_specifications_with_a_finite_value_length() {
        let l = limits(&[]).unwrap();
        assert_eq!(l, SpanLimits::default());
        assert_eq!(l.attribute_count, 128);
        assert_eq!(l.event_count, 128);
        assert_eq!(l.link_count, 128);
        assert_eq!(l.event_attribute_count, 128);
        assert_eq!(l.attribute_value_length, 4096);
    }

    #[test]
    fn span_variables_win_over_the_general_ones() {
        let l = limits(&[
            ("OTEL_ATTRIBUTE_COUNT_LIMIT", "10"),
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "20"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", "3"),
            ("OTEL_SPAN_LINK_COUNT_LIMIT", "0"),
        ])
        .unwrap();
        assert_eq!(l.attribute_count, 20);
        assert_eq!(
            l.event_attribute_count, 10,
            "the general count applies to events"
        );
        assert_eq!(l.link_attribute_count, 10);
        assert_eq!(l.attribute_value_length, 100);
        assert_eq!(l.event_count, 3);
        assert_eq!(l.link_count, 0);
        let l = limits(&[
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
            ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", " 50 "),
        ])
        .unwrap();
        assert_eq!(l.attribute_value_length, 50);
    }

    #[test]
    fn a_limit_that_is_not_a_whole_number_names_its_variable() {
        for value in ["-1", "4k", "1.5"] {
            assert_eq!(
                limits(&[("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", value)]),
                Err(ConfigError::Limit(
                    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                    value.to_owned()
                ))
            );
        }
    }

    #[test]
    fn strings_are_cut_by_characters_not_bytes() {
        let l = SpanLimits {
            attribute_value_length: 3,
            ..SpanLimits::default()
        };
        assert_eq!(l.truncate("abcdef"), "abc");
        assert_eq!(l.truncate("ab"), "ab");
        assert_eq!(l.truncate("ééééé"), "ééé");
        assert_eq!(dropped(5, 3), 2);
        assert_eq!(dropped(2, 3), 0);
    }
}
