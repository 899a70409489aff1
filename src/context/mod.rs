//! W3C trace context as jobtrace reads it from annotations: parsing (pure, no Kubernetes) and
//! the precedence between annotation sources.

pub mod baggage;
pub mod traceparent;
pub mod tracestate;

use std::collections::BTreeMap;

pub use baggage::Baggage;
pub use traceparent::{SpanId, TraceId, Traceparent};
pub use tracestate::Tracestate;

use crate::names;

/// Longest input quoted back in a warning.
const QUOTE_LEN: usize = 40;

/// Shortens `s` for quoting in a message, on a character boundary.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Something wrong with the input annotations: never fatal, reported as an admission warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Short, stable name for metrics.
    pub reason: &'static str,
    pub message: String,
}

impl Warning {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

/// The creator's trace context, read from a Job's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub traceparent: Traceparent,
    pub tracestate: Option<Tracestate>,
    pub baggage: Option<Baggage>,
}

/// Reads the trace context from `annotations` by DESIGN.md's precedence: for each field the first
/// key holding a valid value wins; invalid values and conflicting sources become warnings.
/// `tracestate` is read only when a valid `traceparent` was found, as W3C requires.
pub fn from_annotations(annotations: &BTreeMap<String, String>) -> (Option<Context>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let traceparent = first_valid(
        annotations,
        &names::TRACEPARENT_KEYS,
        |v| traceparent::parse(v.trim()).map_err(|e| (e.label(), e.to_string())),
        &mut warnings,
    );
    let Some(traceparent) = traceparent else {
        let ignored: Vec<&str> = names::TRACESTATE_KEYS
            .iter()
            .chain(&names::BAGGAGE_KEYS)
            .copied()
            .filter(|k| annotations.contains_key(*k))
            .collect();
        if !ignored.is_empty() {
            warnings.push(Warning::new(
                "no_traceparent",
                format!(
                    "annotations {} ignored: there is no valid traceparent",
                    ignored.join(", ")
                ),
            ));
        }
        return (None, warnings);
    };
    let tracestate = first_valid(
        annotations,
        &names::TRACESTATE_KEYS,
        |v| {
            let mut ts = tracestate::parse(v).map_err(|e| (e.label(), e.to_string()))?;
            Ok((ts.truncate(tracestate::MAX_LEN), ts))
        },
        &mut warnings,
    )
    .and_then(|(dropped, ts)| {
        if dropped > 0 {
            warnings.push(Warning::new(
                "tracestate_truncated",
                format!(
                    "tracestate: {dropped} entries dropped to stay within {} characters",
                    tracestate::MAX_LEN
                ),
            ));
        }
        (!ts.is_empty()).then_some(ts)
    });
    let baggage =
        names::BAGGAGE_KEYS
            .iter()
            .find_map(|key| annotations.get(*key).map(|v| (*key, v)))
            .and_then(|(key, value)| {
                let (baggage, problems) = baggage::parse(value);
                warnings.extend(problems.into_iter().map(|p| {
                    Warning::new("baggage_member_dropped", format!("annotation {key}: {p}"))
                }));
                (!baggage.is_empty()).then_some(baggage)
            });
    let context = Context {
        traceparent,
        tracestate,
        baggage,
    };
    (Some(context), warnings)
}

/// The parsed value of the first of `keys` that is present and valid. Invalid values and later
/// valid values that differ from the winner are reported.
fn first_valid<T: PartialEq>(
    annotations: &BTreeMap<String, String>,
    keys: &[&str],
    parse: impl Fn(&str) -> Result<T, (&'static str, String)>,
    warnings: &mut Vec<Warning>,
) -> Option<T> {
    let mut winner: Option<(&str, T)> = None;
    for key in keys {
        let Some(value) = annotations.get(*key) else {
            continue;
        };
        match parse(value) {
            Err((reason, why)) => warnings.push(Warning::new(
                reason,
                format!("annotation {key} ignored: {:?} {why}", shorten(value)),
            )),
            Ok(parsed) => match &winner {
                None => winner = Some((key, parsed)),
                Some((won, kept)) if *kept != parsed => warnings.push(Warning::new(
                    "conflict",
                    format!("annotation {key} differs from {won}; {won} wins"),
                )),
                Some(_) => {}
            },
        }
    }
    winner.map(|(_, parsed)| parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &str = "00-11111111111111111111111111111111-2222222222222222-01";

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn otel_carrier_keys_are_read() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("traceparent", TP),
            ("tracestate", "rojo=1"),
            ("baggage", "k=v"),
        ]));
        let cx = cx.unwrap();
        assert_eq!(cx.traceparent.to_string(), TP);
        assert_eq!(cx.tracestate.unwrap().header(), "rojo=1");
        assert_eq!(cx.baggage.unwrap().header(), "k=v");
        assert!(warnings.is_empty());
    }

    #[test]
    fn jobtrace_keys_win_and_conflicts_warn() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("jobtrace.dev/traceparent", TP),
            ("traceparent", OTHER),
        ]));
        assert_eq!(cx.unwrap().traceparent.to_string(), TP);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].reason, "conflict");
        assert!(
            warnings[0]
                .message
                .contains("jobtrace.dev/traceparent wins")
        );
    }

    #[test]
    fn identical_sources_do_not_warn() {
        let (_, warnings) = from_annotations(&annotations(&[
            ("tracing.k8s.io/traceparent", TP),
            ("traceparent", TP),
        ]));
        assert!(warnings.is_empty());
    }

    #[test]
    fn invalid_higher_precedence_falls_through_with_a_warning() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("jobtrace.dev/traceparent", "garbage"),
            ("tracing.k8s.io/traceparent", TP),
        ]));
        assert_eq!(cx.unwrap().traceparent.to_string(), TP);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0]
                .message
                .starts_with("annotation jobtrace.dev/traceparent ignored")
        );
    }

    #[test]
    fn no_valid_traceparent_means_no_context_and_tracestate_is_not_read() {
        let (cx, warnings) = from_annotations(&annotations(&[
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("tracestate", "rojo=1"),
        ]));
        assert!(cx.is_none());
        assert_eq!(warnings.len(), 2);
        assert_eq!(warnings[0].reason, "zero_id");
        assert_eq!(warnings[1].reason, "no_traceparent");
    }

    #[test]
    fn invalid_tracestate_is_left_out_and_traceparent_kept() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("traceparent", TP),
            ("tracestate", "Bad=1"),
        ]));
        let cx = cx.unwrap();
        assert!(cx.tracestate.is_none());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0]
                .message
                .contains("annotation tracestate ignored")
        );
    }

    #[test]
    fn surrounding_whitespace_in_traceparent_is_tolerated() {
        let (cx, warnings) =
            from_annotations(&annotations(&[("traceparent", &format!(" {TP}\n"))]));
        assert!(cx.is_some());
        assert!(warnings.is_empty());
    }

    #[test]
    fn long_input_is_quoted_short() {
        let long = "x".repeat(10_000);
        let (_, warnings) = from_annotations(&annotations(&[("traceparent", &long)]));
        assert!(warnings[0].message.len() < 200, "{}", warnings[0].message);
    }

    #[test]
    fn shorten_cuts_on_char_boundaries() {
        let s = "é".repeat(50);
        assert_eq!(shorten(&s).chars().count(), QUOTE_LEN + 1);
        assert_eq!(shorten("short"), "short");
    }
}
