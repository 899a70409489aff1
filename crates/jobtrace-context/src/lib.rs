//! W3C trace context for Kubernetes Jobs traced by [jobtrace](https://github.com/jobtrace/jobtrace),
//! for the programs on either side of a Job: the service that creates it and the code that runs in
//! it. The operator reads and writes the same names and parses with the same code.
//!
//! - [`names`]: the annotations jobtrace reads on a Job (`traceparent`, `tracestate`, `baggage`
//!   and their `jobtrace.dev/` forms) and writes on it (`jobtrace.dev/trace-id`, ...), and the
//!   environment variables its containers get (`TRACEPARENT`, `TRACESTATE`, `BAGGAGE`).
//! - [`traceparent`], [`tracestate`], [`baggage`]: parsers by W3C Trace Context (Level 2) and W3C
//!   Baggage, strict where the specifications are and lenient where they ask receivers to be.
//! - [`Context`]: one context, read from a process's environment ([`Context::from_env`], what
//!   `jobtrace stamp` does with what a CI system or `otel-cli exec` set) and written as a Job's
//!   annotations ([`Context::annotations`]).
//! - With the `opentelemetry` feature, [`otel`]: an OpenTelemetry [`opentelemetry::Context`]
//!   written on a Job's annotations, and read back from the environment inside the Job; with
//!   `k8s-openapi` too, straight onto a Job's `ObjectMeta`.
//!
//! ```
//! use std::collections::HashMap;
//! use jobtrace_context::Context;
//!
//! let env = HashMap::from([
//!     ("TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
//!     ("BAGGAGE", "tenant=acme"),
//! ]);
//! let context = Context::from_vars(|name| env.get(name).map(|v| (*v).to_owned()))
//!     .expect("a valid context")
//!     .expect("one is set");
//! let annotations = context.annotations();
//! assert_eq!(annotations["traceparent"], env["TRACEPARENT"]);
//! assert_eq!(annotations["baggage"], "tenant=acme");
//! ```

#![deny(missing_docs)]

pub mod baggage;
pub mod names;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod traceparent;
pub mod tracestate;

use std::collections::BTreeMap;

pub use baggage::{Baggage, BaggageProblem};
pub use traceparent::{SpanId, TraceFlags, TraceId, Traceparent, TraceparentError};
pub use tracestate::{Tracestate, TracestateError};

/// Longest input quoted back in a message.
const QUOTE_LEN: usize = 40;

/// Shortens `s` for quoting in a message (at most 40 characters and an ellipsis), on a character
/// boundary.
pub fn shorten(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// One trace context: a `traceparent`, the `tracestate` that goes with it, and `baggage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The trace, the parent span and the flags.
    pub traceparent: Traceparent,
    /// The vendors' state that goes with `traceparent`, when there is one.
    pub tracestate: Option<Tracestate>,
    /// The baggage, when there is some.
    pub baggage: Option<Baggage>,
}

/// Why the environment's context can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `TRACEPARENT` is malformed.
    #[error("TRACEPARENT {value:?} {source}")]
    Traceparent {
        /// The value (shortened for quoting).
        value: String,
        /// What is wrong with it.
        source: TraceparentError,
    },
    /// `TRACESTATE` is malformed.
    #[error("TRACESTATE {value:?} {source}")]
    Tracestate {
        /// The value (shortened for quoting).
        value: String,
        /// What is wrong with it.
        source: TracestateError,
    },
    /// Part of `BAGGAGE` is malformed.
    #[error("BAGGAGE: {0}")]
    Baggage(BaggageProblem),
    /// This variable (`TRACESTATE` or `BAGGAGE`) is set without a `TRACEPARENT`.
    #[error("{0} is set but TRACEPARENT is not: it means nothing without one")]
    WithoutTraceparent(&'static str),
}

impl Context {
    /// The context of this process's `TRACEPARENT`, `TRACESTATE` and `BAGGAGE` (see
    /// [`Context::from_vars`]).
    pub fn from_env() -> Result<Option<Self>, EnvError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The context of the variables `lookup` gives: `None` when `TRACEPARENT` is unset or empty,
    /// an error when any of the three is invalid (a whole value, never part of one, so a caller
    /// can refuse it), or when `TRACESTATE` or `BAGGAGE` is set without `TRACEPARENT`.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, EnvError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim_ascii().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(value) = get(names::env::TRACEPARENT) else {
            for other in [names::env::TRACESTATE, names::env::BAGGAGE] {
                if get(other).is_some() {
                    return Err(EnvError::WithoutTraceparent(other));
                }
            }
            return Ok(None);
        };
        let traceparent =
            traceparent::parse(&value).map_err(|source| EnvError::Traceparent { value, source })?;
        let tracestate = match get(names::env::TRACESTATE) {
            None => None,
            Some(value) => Some(
                tracestate::parse(&value)
                    .map_err(|source| EnvError::Tracestate { value, source })?,
            ),
        };
        let baggage = match get(names::env::BAGGAGE) {
            None => None,
            Some(value) => {
                let (baggage, mut problems) = baggage::parse(&value);
                if !problems.is_empty() {
                    return Err(EnvError::Baggage(problems.remove(0)));
                }
                Some(baggage)
            }
        };
        Ok(Some(Self {
            traceparent,
            tracestate: tracestate.filter(|t| !t.is_empty()),
            baggage: baggage.filter(|b| !b.is_empty()),
        }))
    }

    /// The annotations that carry this context on a Job: `traceparent`, and `tracestate` and
    /// `baggage` when there are any, exactly as an OpenTelemetry propagator's `inject()` with the
    /// annotations map as the carrier writes them.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::from([(
            names::TRACEPARENT_KEYS[2].to_owned(),
            self.traceparent.to_string(),
        )]);
        if let Some(tracestate) = &self.tracestate {
            annotations.insert(names::TRACESTATE_KEYS[1].to_owned(), tracestate.header());
        }
        if let Some(baggage) = &self.baggage {
            annotations.insert(names::BAGGAGE_KEYS[1].to_owned(), baggage.header());
        }
        annotations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn vars(pairs: &[(&str, &str)]) -> Result<Option<Context>, EnvError> {
        Context::from_vars(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn no_traceparent_is_no_context() {
        assert_eq!(vars(&[]), Ok(None));
        assert_eq!(vars(&[("TRACEPARENT", " ")]), Ok(None));
    }

    #[test]
    fn the_three_variables_become_the_three_annotations() {
        let context = vars(&[
            ("TRACEPARENT", TP),
            ("TRACESTATE", "rojo=00f067aa0ba902b7"),
            ("BAGGAGE", "tenant=acme,step=load;prop"),
        ])
        .unwrap()
        .unwrap();
        let annotations = context.annotations();
        assert_eq!(annotations.len(), 3);
        assert_eq!(annotations["traceparent"], TP);
        assert_eq!(annotations["tracestate"], "rojo=00f067aa0ba902b7");
        assert_eq!(annotations["baggage"], "tenant=acme,step=load;prop");
    }

    #[test]
    fn any_invalid_value_is_an_error_naming_the_variable() {
        let e = vars(&[("TRACEPARENT", "00-xyz")]).unwrap_err();
        assert!(e.to_string().starts_with("TRACEPARENT \"00-xyz\""), "{e}");
        let e = vars(&[("TRACEPARENT", TP), ("TRACESTATE", "Bad=1")]).unwrap_err();
        assert!(matches!(e, EnvError::Tracestate { .. }), "{e}");
        let e = vars(&[("TRACEPARENT", TP), ("BAGGAGE", "no equals")]).unwrap_err();
        assert!(e.to_string().starts_with("BAGGAGE: member"), "{e}");
        let e = vars(&[("BAGGAGE", "k=v")]).unwrap_err();
        assert_eq!(e, EnvError::WithoutTraceparent("BAGGAGE"));
    }

    #[test]
    fn a_newline_around_a_value_is_not_part_of_it() {
        let context = vars(&[("TRACEPARENT", &format!("{TP}\n"))])
            .unwrap()
            .unwrap();
        assert_eq!(context.annotations()["traceparent"], TP);
    }
}
