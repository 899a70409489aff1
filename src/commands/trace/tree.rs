//! A trace as a tree of lines, from the JSON a Jaeger-compatible query API answers for
//! `GET /api/traces/{trace id}`. Pure: no I/O, no clock.
//!
//! ```text
//! POST /reports [report-api] 20 ms
//! └── job demo/nightly-report-f48de2 [jobtrace] 13000 ms
//!     ├── pod nightly-report-f48de2-8ds5w [jobtrace] 1000 ms ERROR error.type="Error" jobtrace.container.exit_code=1
//!     │   └── generate-report [report-task] 1202 ms ERROR
//!     └── pod nightly-report-f48de2-9fbtd [jobtrace] 1000 ms
//!         └── generate-report [report-task] 1202 ms
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::Deserialize;

use super::escape::{escape, quoted};
use crate::core::names::attribute;

/// The attributes a span's line shows, in this order, when the span has them.
pub const SHOWN_ATTRIBUTES: [&str; 4] = [
    "error.type",
    "jobtrace.container.exit_code",
    attribute::CONTAINER_STATUS_REASON,
    attribute::POD_STATUS_REASON,
];

/// The answer of `GET /api/traces/{trace id}`: `data`, a list of traces (null when not found).
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<Vec<Trace>>,
}

/// One trace of the answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Trace {
    #[serde(rename = "traceID", default)]
    pub trace_id: String,
    #[serde(default)]
    pub spans: Vec<Span>,
    /// The processes (resources) the spans' `processID`s name.
    #[serde(default)]
    pub processes: HashMap<String, Process>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Span {
    #[serde(rename = "spanID")]
    pub span_id: String,
    #[serde(rename = "operationName", default)]
    pub operation_name: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Microseconds since the epoch.
    #[serde(rename = "startTime", default)]
    pub start_time: u64,
    /// Microseconds.
    #[serde(default)]
    pub duration: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(rename = "processID", default)]
    pub process_id: String,
}

/// A parent (`CHILD_OF`) or a span link (`FOLLOWS_FROM`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reference {
    #[serde(rename = "refType", default)]
    pub ref_type: String,
    #[serde(rename = "traceID", default)]
    pub trace_id: String,
    #[serde(rename = "spanID", default)]
    pub span_id: String,
}

/// An attribute (or one of the query API's own tags, such as `otel.status_code`).
#[derive(Debug, Clone, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Process {
    #[serde(rename = "serviceName", default)]
    pub service_name: String,
}

/// The trace `trace_id` in a query API's answer (else its first trace); `None` when the answer
/// has no trace, or only an empty one.
pub fn parse(body: &[u8], trace_id: &str) -> Result<Option<Trace>, serde_json::Error> {
    let answer: Answer = serde_json::from_slice(body)?;
    let mut traces = answer.data.unwrap_or_default();
    traces.retain(|t| !t.spans.is_empty());
    if traces.is_empty() {
        return Ok(None);
    }
    let index = traces
        .iter()
        .position(|t| t.trace_id.eq_ignore_ascii_case(trace_id))
        .unwrap_or(0);
    Ok(Some(traces.swap_remove(index)))
}

impl Trace {
    /// Whether the trace holds the span `span_id`, or else one named `name`.
    pub fn has_span(&self, span_id: Option<&str>, name: &str) -> bool {
        self.spans
            .iter()
            .any(|s| Some(s.span_id.as_str()) == span_id || s.operation_name == name)
    }
}

impl Span {
    fn tag(&self, key: &str) -> Option<&serde_json::Value> {
        self.tags.iter().find(|t| t.key == key).map(|t| &t.value)
    }

    /// ERROR status: OpenTelemetry's status code, or the `error` tag of other instrumentations.
    fn is_error(&self) -> bool {
        self.tag("otel.status_code").and_then(|v| v.as_str()) == Some("ERROR")
            || self.tag("error").and_then(serde_json::Value::as_bool) == Some(true)
    }

    /// The span's parent in the trace: its first `CHILD_OF` reference in the same trace.
    fn parent(&self, trace_id: &str) -> Option<&str> {
        self.references
            .iter()
            .find(|r| {
                r.ref_type == "CHILD_OF"
                    && (r.trace_id.is_empty() || r.trace_id.eq_ignore_ascii_case(trace_id))
            })
            .map(|r| r.span_id.as_str())
    }

    /// The traces of the span's links.
    fn linked_traces(&self) -> impl Iterator<Item = &str> {
        self.references
            .iter()
            .filter(|r| r.ref_type == "FOLLOWS_FROM")
            .map(|r| r.trace_id.as_str())
    }

    /// The span's line, without the tree's prefix; what the span's emitter chose is escaped.
    fn line(&self, processes: &HashMap<String, Process>) -> String {
        let name = if self.operation_name.is_empty() {
            "?"
        } else {
            &self.operation_name
        };
        let service = processes
            .get(&self.process_id)
            .map(|p| p.service_name.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("?");
        let millis = self.duration.saturating_add(500) / 1000;
        let mut line = format!("{} [{}] {millis} ms", escape(name), escape(service));
        if self.is_error() {
            line.push_str(" ERROR");
        }
        for key in SHOWN_ATTRIBUTES {
            match self.tag(key) {
                Some(serde_json::Value::String(text)) => {
                    let _ = write!(line, " {key}={}", quoted(text));
                }
                Some(value) => {
                    let _ = write!(line, " {key}={}", escape(&value.to_string()));
                }
                None => {}
            }
        }
        line
    }
}

/// The trace as lines: each span's children under it in start order, each span whose parent is
/// not in the trace a root, and a `↪ linked from trace <id>` line under each span for each of its
/// links. What the answer holds is [`escape`]d, so no span adds a line or a control sequence.
pub fn render(trace: &Trace) -> String {
    // A span exported twice (with the same id) is shown once.
    let mut seen = HashSet::new();
    let spans: Vec<&Span> = trace
        .spans
        .iter()
        .filter(|s| seen.insert(s.span_id.as_str()))
        .collect();
    let mut children: HashMap<Option<&str>, Vec<&Span>> = HashMap::new();
    for span in &spans {
        let parent = span
            .parent(&trace.trace_id)
            .filter(|p| *p != span.span_id && seen.contains(p));
        children.entry(parent).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| {
            (a.start_time, &a.operation_name, &a.span_id).cmp(&(
                b.start_time,
                &b.operation_name,
                &b.span_id,
            ))
        });
    }
    let mut tree = Tree {
        processes: &trace.processes,
        children,
        printed: HashSet::new(),
        out: String::new(),
    };
    let roots = tree.children.get(&None).cloned().unwrap_or_default();
    for root in roots {
        tree.span(root, "", "");
    }
    // Spans whose parents form a cycle are reached from no root: each, in start order, is one.
    let mut rest: Vec<&Span> = spans
        .iter()
        .copied()
        .filter(|s| !tree.printed.contains(s.span_id.as_str()))
        .collect();
    rest.sort_by_key(|s| s.start_time);
    for span in rest {
        tree.span(span, "", "");
    }
    tree.out
}

struct Tree<'a> {
    processes: &'a HashMap<String, Process>,
    children: HashMap<Option<&'a str>, Vec<&'a Span>>,
    printed: HashSet<&'a str>,
    out: String,
}

impl<'a> Tree<'a> {
    /// Writes `span` after `branch`, and what is under it after `deeper`.
    fn span(&mut self, span: &'a Span, branch: &str, deeper: &str) {
        if !self.printed.insert(&span.span_id) {
            return;
        }
        let _ = writeln!(self.out, "{branch}{}", span.line(self.processes));
        let children: Vec<&Span> = self
            .children
            .get(&Some(span.span_id.as_str()))
            .into_iter()
            .flatten()
            .copied()
            .filter(|c| !self.printed.contains(c.span_id.as_str()))
            .collect();
        let link_indent = if children.is_empty() { "  " } else { "│ " };
        for trace in span.linked_traces() {
            let _ = writeln!(
                self.out,
                "{deeper}{link_indent}↪ linked from trace {}",
                escape(trace)
            );
        }
        for (i, child) in children.iter().enumerate() {
            if i + 1 == children.len() {
                self.span(child, &format!("{deeper}└── "), &format!("{deeper}    "));
            } else {
                self.span(child, &format!("{deeper}├── "), &format!("{deeper}│   "));
            }
        }
    }
}

#[cfg(test)]
mod tests;
