//! W3C trace context as jobtrace reads it from annotations: parsing (pure, no Kubernetes) and
//! the precedence between annotation sources.

mod warning;

use std::collections::BTreeMap;

/// The parsers and the context are the client library's, which creators and Job programs use too.
pub use jobtrace_context::{
    Baggage, Context, SpanId, TraceFlags, TraceId, Traceparent, Tracestate, baggage, shorten,
    traceparent, tracestate,
};
pub use warning::{Warning, WarningReason, Warnings};

use crate::core::names;

/// An input annotation's value without the surrounding whitespace a YAML block scalar or a
/// careless template leaves (`traceparent: |` ends in a newline). The same for every key.
pub fn annotation_value(value: &str) -> &str {
    value.trim_ascii()
}

/// The trace context of the HTTP request that created the object: its `traceparent`,
/// `tracestate` and `baggage` headers, each value the request carried (HTTP allows a header to
/// repeat). An instrumented HTTP client sends them without any code of its creator's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub traceparent: Vec<String>,
    pub tracestate: Vec<String>,
    pub baggage: Vec<String>,
}

impl RequestContext {
    /// No headers at all.
    pub fn none() -> &'static Self {
        static NONE: RequestContext = RequestContext {
            traceparent: Vec::new(),
            tracestate: Vec::new(),
            baggage: Vec::new(),
        };
        &NONE
    }

    fn is_empty(&self) -> bool {
        self.traceparent.is_empty() && self.tracestate.is_empty() && self.baggage.is_empty()
    }
}

/// Reads the trace context from `annotations` by the documented precedence: the first source
/// whose `traceparent` is valid wins, and its own `tracestate` (never another source's) comes
/// with it; the first valid `baggage` wins on its own. Invalid values and conflicting sources
/// become warnings. As W3C requires, a `tracestate` is read only next to a valid `traceparent`.
pub fn from_annotations(annotations: &BTreeMap<String, String>) -> (Option<Context>, Warnings) {
    read(annotations, None)
}

/// The same, with the create request's headers as the last source after every annotation: its
/// `traceparent` (with its own `tracestate`) when no annotation has a valid one, its `baggage`
/// when no annotation has one.
pub fn from_annotations_and_request(
    annotations: &BTreeMap<String, String>,
    request: &RequestContext,
) -> (Option<Context>, Warnings) {
    read(annotations, Some(request).filter(|r| !r.is_empty()))
}

fn read(
    annotations: &BTreeMap<String, String>,
    request: Option<&RequestContext>,
) -> (Option<Context>, Warnings) {
    let mut warnings = Warnings::new();
    let get = |key: &str| annotations.get(key).map(|v| annotation_value(v));
    let mut winner: Option<(names::ContextSource, Traceparent)> = None;
    for source in names::CONTEXT_SOURCES {
        let Some(value) = get(source.traceparent) else {
            continue;
        };
        match traceparent::parse(value) {
            Err(e) => warnings.push(Warning::new(
                WarningReason::from(&e),
                format!(
                    "annotation {} ignored: {:?} {e}",
                    source.traceparent,
                    shorten(value)
                ),
            )),
            Ok(parsed) => match &winner {
                None => winner = Some((source, parsed)),
                Some((won, kept)) if *kept != parsed => warnings.push(Warning::new(
                    WarningReason::Conflict,
                    format!(
                        "annotation {} differs from {}; {} wins",
                        source.traceparent, won.traceparent, won.traceparent
                    ),
                )),
                Some(_) => {}
            },
        }
    }
    let Some((source, traceparent)) = winner else {
        if let Some(context) = request.and_then(|r| from_request(annotations, r, &mut warnings)) {
            return (Some(context), warnings);
        }
        let ignored: Vec<&str> = names::TRACESTATE_KEYS
            .iter()
            .chain(&names::BAGGAGE_KEYS)
            .copied()
            .filter(|k| annotations.contains_key(*k))
            .collect();
        if !ignored.is_empty() {
            warnings.push(Warning::new(
                WarningReason::NoTraceparent,
                format!(
                    "annotations {} ignored: there is no valid traceparent",
                    ignored.join(", ")
                ),
            ));
        }
        return (None, warnings);
    };
    let own = source.tracestate.and_then(|key| Some((key, get(key)?)));
    for other in names::TRACESTATE_KEYS {
        let Some(value) = get(other).filter(|_| Some(other) != source.tracestate) else {
            continue;
        };
        if own.is_none_or(|(_, v)| v != value) {
            warnings.push(Warning::new(
                WarningReason::TracestateOfOtherSource,
                format!(
                    "annotation {other} ignored: a tracestate goes with its own traceparent, \
                     and {} wins",
                    source.traceparent
                ),
            ));
        }
    }
    let tracestate = own.and_then(|(key, value)| {
        read_tracestate(&format!("annotation {key}"), value, &mut warnings)
    });
    let baggage = read_baggage(annotations, &mut warnings)
        .or_else(|| request.and_then(|r| request_baggage(r, &mut warnings)));
    let context = Context {
        traceparent,
        tracestate,
        baggage,
    };
    (Some(context), warnings)
}

/// The context of the request's headers, when no annotation has a valid `traceparent`. As W3C
/// requires of a receiver, several `traceparent` headers are no context at all, and the
/// `tracestate` headers join into one list.
fn from_request(
    annotations: &BTreeMap<String, String>,
    request: &RequestContext,
    warnings: &mut Warnings,
) -> Option<Context> {
    let value = match request.traceparent.as_slice() {
        [] => return None,
        [one] => one.trim_ascii(),
        _ => {
            warnings.push(Warning::new(
                WarningReason::Conflict,
                format!(
                    "request header traceparent ignored: the request carries {}",
                    request.traceparent.len()
                ),
            ));
            return None;
        }
    };
    let traceparent = match traceparent::parse(value) {
        Ok(parsed) => parsed,
        Err(e) => {
            warnings.push(Warning::new(
                WarningReason::from(&e),
                format!(
                    "request header traceparent ignored: {:?} {e}",
                    shorten(value)
                ),
            ));
            return None;
        }
    };
    let joined = request.tracestate.join(",");
    let tracestate = (!request.tracestate.is_empty())
        .then(|| read_tracestate("request header tracestate", &joined, warnings))
        .flatten();
    let baggage =
        read_baggage(annotations, warnings).or_else(|| request_baggage(request, warnings));
    Some(Context {
        traceparent,
        tracestate,
        baggage,
    })
}

/// The request's `baggage` headers as one list, its invalid members dropped with a warning each.
fn request_baggage(request: &RequestContext, warnings: &mut Warnings) -> Option<Baggage> {
    if request.baggage.is_empty() {
        return None;
    }
    let (baggage, problems) = baggage::parse(request.baggage.join(",").trim_ascii());
    warnings.extend(problems.into_iter().map(|p| {
        Warning::new(
            WarningReason::BaggageMemberDropped,
            format!("request header baggage: {p}"),
        )
    }));
    (!baggage.is_empty()).then_some(baggage)
}

/// The `tracestate` of `source` (for messages: "annotation tracestate"), or nothing with a
/// warning when it is invalid; duplicate keys keep their first entry and an over-long value loses
/// whole entries, each with a warning.
fn read_tracestate(source: &str, value: &str, warnings: &mut Warnings) -> Option<Tracestate> {
    let mut ts = match tracestate::parse(value) {
        Ok(ts) => ts,
        Err(e) => {
            warnings.push(Warning::new(
                WarningReason::from(&e),
                format!("{source} ignored: {:?} {e}", shorten(value)),
            ));
            return None;
        }
    };
    if !ts.duplicates().is_empty() {
        warnings.push(Warning::new(
            WarningReason::TracestateDuplicateKey,
            format!(
                "{source}: later entries of {} dropped, the first is kept",
                ts.duplicates().join(", ")
            ),
        ));
    }
    let dropped = ts.truncate(tracestate::MAX_LEN);
    if dropped > 0 {
        warnings.push(Warning::new(
            WarningReason::TracestateTruncated,
            format!(
                "{source}: {dropped} entries dropped to stay within {} characters",
                tracestate::MAX_LEN
            ),
        ));
    }
    (!ts.is_empty()).then_some(ts)
}

/// The first `baggage` source with at least one valid member; its invalid members are dropped
/// with a warning each, a source with none falls through to the next, and a later valid source
/// that differs is reported.
fn read_baggage(
    annotations: &BTreeMap<String, String>,
    warnings: &mut Warnings,
) -> Option<Baggage> {
    let mut winner: Option<(&str, Baggage)> = None;
    for key in names::BAGGAGE_KEYS {
        let Some(value) = annotations.get(key).map(|v| annotation_value(v)) else {
            continue;
        };
        let (baggage, problems) = baggage::parse(value);
        if let Some((won, kept)) = &winner {
            if baggage.header() != kept.header() {
                warnings.push(Warning::new(
                    WarningReason::Conflict,
                    format!("annotation {key} differs from {won}; {won} wins"),
                ));
            }
            continue;
        }
        warnings.extend(problems.into_iter().map(|p| {
            Warning::new(
                WarningReason::BaggageMemberDropped,
                format!("annotation {key}: {p}"),
            )
        }));
        if !baggage.is_empty() {
            winner = Some((key, baggage));
        }
    }
    winner.map(|(_, baggage)| baggage)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &str = "00-11111111111111111111111111111111-2222222222222222-01";

    use jobtrace_testkit::fixtures::string_map as annotations;

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
        assert_eq!(warnings[0].reason, WarningReason::Conflict);
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
        assert_eq!(warnings[0].reason, WarningReason::ZeroId);
        assert_eq!(warnings[1].reason, WarningReason::NoTraceparent);
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
        assert_eq!(shorten(&s).chars().count(), 41);
        assert_eq!(shorten("short"), "short");
    }

    #[test]
    fn tracestate_comes_from_the_source_of_the_winning_traceparent() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("jobtrace.dev/traceparent", TP),
            ("jobtrace.dev/tracestate", "mine=1"),
            ("traceparent", OTHER),
            ("tracestate", "theirs=2"),
        ]));
        assert_eq!(cx.unwrap().tracestate.unwrap().header(), "mine=1");
        let reasons: Vec<WarningReason> = warnings.iter().map(|w| w.reason).collect();
        assert_eq!(
            reasons,
            [
                WarningReason::Conflict,
                WarningReason::TracestateOfOtherSource
            ]
        );
    }

    #[test]
    fn the_tracestate_of_an_invalid_traceparent_is_not_used() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("jobtrace.dev/traceparent", "00-broken"),
            ("jobtrace.dev/tracestate", "mine=1"),
            ("traceparent", TP),
        ]));
        let cx = cx.unwrap();
        assert_eq!(cx.traceparent.to_string(), TP);
        assert!(cx.tracestate.is_none(), "{:?}", cx.tracestate);
        assert!(
            warnings
                .iter()
                .any(|w| w.reason == WarningReason::TracestateOfOtherSource
                    && w.message.contains("jobtrace.dev/tracestate")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_winning_source_without_tracestate_takes_none_from_another() {
        let (cx, _) = from_annotations(&annotations(&[
            ("tracing.k8s.io/traceparent", TP),
            ("traceparent", OTHER),
            ("tracestate", "theirs=2"),
        ]));
        assert!(cx.unwrap().tracestate.is_none());
    }

    #[test]
    fn the_same_tracestate_next_to_the_same_traceparent_does_not_warn() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("jobtrace.dev/traceparent", TP),
            ("jobtrace.dev/tracestate", "a=1"),
            ("traceparent", TP),
            ("tracestate", "a=1"),
        ]));
        assert_eq!(cx.unwrap().tracestate.unwrap().header(), "a=1");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn duplicate_tracestate_keys_keep_the_first_and_warn() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("traceparent", TP),
            ("tracestate", "a=1,b=2,a=3"),
        ]));
        assert_eq!(cx.unwrap().tracestate.unwrap().header(), "a=1,b=2");
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].reason, WarningReason::TracestateDuplicateKey);
    }

    #[test]
    fn the_first_valid_baggage_source_wins() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("traceparent", TP),
            ("jobtrace.dev/baggage", "not baggage"),
            ("baggage", "k=v"),
        ]));
        assert_eq!(cx.unwrap().baggage.unwrap().header(), "k=v");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].reason, WarningReason::BaggageMemberDropped);
    }

    #[test]
    fn a_later_baggage_that_differs_is_a_conflict() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("traceparent", TP),
            ("jobtrace.dev/baggage", "k=v"),
            ("baggage", "k=w"),
        ]));
        assert_eq!(cx.unwrap().baggage.unwrap().header(), "k=v");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].reason, WarningReason::Conflict);
    }

    #[test]
    fn every_input_annotation_is_trimmed_the_same_way() {
        let (cx, warnings) = from_annotations(&annotations(&[
            ("traceparent", &format!("{TP}\n")),
            ("tracestate", "\n rojo=1\n"),
            ("baggage", "k=v\r\n"),
        ]));
        let cx = cx.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cx.tracestate.unwrap().header(), "rojo=1");
        assert_eq!(cx.baggage.unwrap().header(), "k=v");
    }

    fn request(traceparent: &[&str], tracestate: &[&str], baggage: &[&str]) -> RequestContext {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        RequestContext {
            traceparent: owned(traceparent),
            tracestate: owned(tracestate),
            baggage: owned(baggage),
        }
    }

    #[test]
    fn the_request_headers_are_the_last_source() {
        let headers = request(&[OTHER], &["h=1"], &["from=header"]);
        let (cx, warnings) = from_annotations_and_request(&annotations(&[]), &headers);
        let cx = cx.unwrap();
        assert_eq!(cx.traceparent.to_string(), OTHER);
        assert_eq!(cx.tracestate.unwrap().header(), "h=1");
        assert_eq!(cx.baggage.unwrap().header(), "from=header");
        assert!(warnings.is_empty(), "{warnings:?}");

        // An annotation always wins, and a header's tracestate never joins another traceparent.
        let (cx, _) = from_annotations_and_request(&annotations(&[("traceparent", TP)]), &headers);
        let cx = cx.unwrap();
        assert_eq!(cx.traceparent.to_string(), TP);
        assert!(cx.tracestate.is_none());
        assert_eq!(
            cx.baggage.unwrap().header(),
            "from=header",
            "no annotation has baggage: the header's comes along"
        );
        let (cx, _) = from_annotations_and_request(
            &annotations(&[("traceparent", TP), ("baggage", "from=annotation")]),
            &headers,
        );
        assert_eq!(cx.unwrap().baggage.unwrap().header(), "from=annotation");
    }

    #[test]
    fn without_the_setting_the_headers_are_not_read() {
        let headers = request(&[OTHER], &[], &[]);
        let (cx, _) = from_annotations(&annotations(&[]));
        assert!(cx.is_none());
        let (cx, _) = from_annotations_and_request(&annotations(&[]), &headers);
        assert!(cx.is_some());
    }

    #[test]
    fn an_invalid_annotation_falls_through_to_the_header() {
        let headers = request(&[OTHER], &[], &[]);
        let (cx, warnings) =
            from_annotations_and_request(&annotations(&[("traceparent", "junk")]), &headers);
        assert_eq!(cx.unwrap().traceparent.to_string(), OTHER);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn repeated_traceparent_headers_are_no_context_and_tracestate_headers_join() {
        let (cx, warnings) =
            from_annotations_and_request(&annotations(&[]), &request(&[TP, OTHER], &[], &[]));
        assert!(cx.is_none());
        assert!(
            warnings[0]
                .message
                .contains("request header traceparent ignored"),
            "{warnings:?}"
        );
        let (cx, _) = from_annotations_and_request(
            &annotations(&[]),
            &request(&[TP], &["a=1", "b=2"], &["k=v", "l=w"]),
        );
        let cx = cx.unwrap();
        assert_eq!(cx.tracestate.unwrap().header(), "a=1,b=2");
        assert_eq!(cx.baggage.unwrap().header(), "k=v,l=w");
    }

    #[test]
    fn invalid_headers_warn_and_name_the_header() {
        let (cx, warnings) =
            from_annotations_and_request(&annotations(&[]), &request(&["00-zz"], &[], &[]));
        assert!(cx.is_none());
        assert!(
            warnings[0]
                .message
                .starts_with("request header traceparent ignored")
        );
        let (cx, warnings) = from_annotations_and_request(
            &annotations(&[]),
            &request(&[TP], &["Bad=1"], &["not baggage"]),
        );
        let cx = cx.unwrap();
        assert!(cx.tracestate.is_none() && cx.baggage.is_none());
        let messages: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert!(
            messages[0].starts_with("request header tracestate ignored"),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with("request header baggage"),
            "{messages:?}"
        );
    }
}
