//! `jobtrace stamp [FILE...]`: writes the trace context of the environment (`TRACEPARENT`,
//! `TRACESTATE`, `BAGGAGE`, as CI systems with OpenTelemetry and `otel-cli exec` set them) on the
//! Jobs and CronJobs of Kubernetes manifests, for `kubectl create -f -`.
//!
//! Documents are read as YAML (several in a stream, separated by `---`) or, when a file starts
//! with `{` or `[`, as JSON (one or more values), and written back in the same format with their
//! keys in their order. A Job gets the context in `metadata.annotations`, a CronJob in
//! `spec.jobTemplate.metadata.annotations` (what each of its runs is created with); the items of
//! a `List` (or any `...List` kind) are stamped one by one; every other document is written as
//! it came. Values keep their meaning as kubectl reads them (YAML 1.1: `0644` is octal, `on` a
//! boolean); comments are not kept.

mod manifest;
mod node;

use std::io::Read;
use std::path::PathBuf;

pub use manifest::{Stamped, stamp};

use crate::core::context::Context;

/// Why `jobtrace stamp` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    #[error("reading {name}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("{name}: not valid YAML: {message}")]
    Yaml { name: String, message: String },
    #[error("{name}: not valid JSON: {source}")]
    Json {
        name: String,
        source: serde_json::Error,
    },
    #[error("{document}: {problem}")]
    Document { document: String, problem: String },
    #[error("the environment's trace context is invalid: {0}")]
    Context(#[from] jobtrace_context::EnvError),
    #[error(
        "there is no trace context to write: TRACEPARENT is not set (--require); run under a \
         traced CI step or `otel-cli exec`"
    )]
    NoContext,
    #[error("writing the manifests: {0}")]
    Write(String),
}

/// What `jobtrace stamp` reads, and how strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The manifest files, in turn; `-` is standard input.
    pub files: Vec<PathBuf>,
    /// Fail when the environment has no trace context (else a warning, and the manifests written
    /// unchanged).
    pub require: bool,
}

/// `jobtrace stamp`: every file in turn (standard input when there is none, or for `-`), to
/// standard output; nothing is printed unless every file could be stamped.
pub fn run(config: &Config) -> Result<(), StampError> {
    let context = Context::from_env()?;
    if context.is_none() {
        if config.require {
            return Err(StampError::NoContext);
        }
        eprintln!(
            "warning: TRACEPARENT is not set: the manifests are written without trace context"
        );
    }
    let mut outputs = Vec::new();
    for file in &config.files {
        let (name, text) = read(file)?;
        let stamped = stamp(&text, &name, context.as_ref())?;
        for warning in &stamped.warnings {
            eprintln!("warning: {warning}");
        }
        outputs.push(stamped.output);
    }
    print!("{}", join_outputs(&outputs));
    Ok(())
}

fn read(file: &PathBuf) -> Result<(String, String), StampError> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        let name = "standard input".to_owned();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| StampError::Read {
                name: name.clone(),
                source,
            })?;
        return Ok((name, text));
    }
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|source| StampError::Read {
        name: name.clone(),
        source,
    })?;
    Ok((name, text))
}

/// Several files' output as one stream: YAML streams joined by `---`, JSON values one after
/// another (as `kubectl create -f -` reads both).
fn join_outputs(outputs: &[String]) -> String {
    let mut joined = String::new();
    for output in outputs.iter().filter(|o| !o.is_empty()) {
        if !joined.is_empty() && !output.starts_with(['{', '[']) {
            joined.push_str("---\n");
        }
        joined.push_str(output);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_files_make_one_stream() {
        let joined = join_outputs(&[
            "a: 1\n".to_owned(),
            String::new(),
            "b: 2\n".to_owned(),
            "{\n}\n".to_owned(),
        ]);
        assert_eq!(joined, "a: 1\n---\nb: 2\n{\n}\n");
    }
}
