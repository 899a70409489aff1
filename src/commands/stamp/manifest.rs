//! The stamping: the trace context written on the Jobs and CronJobs of one input's documents,
//! every other document written as it came.

use std::collections::BTreeMap;

use super::StampError;
use super::node::Node;
use crate::core::context::Context;
use crate::core::names;

/// A stamped input: what to print, and what to say on stderr.
#[derive(Debug, Default, PartialEq)]
pub struct Stamped {
    pub output: String,
    pub warnings: Vec<String>,
    /// How many Jobs and CronJobs got the context.
    pub stamped: usize,
}

/// Stamps the documents of `text` (from `name`, for messages) with `context`; with none, writes
/// them as they are.
pub fn stamp(text: &str, name: &str, context: Option<&Context>) -> Result<Stamped, StampError> {
    let json = text.trim_start().starts_with(['{', '[']);
    let documents: Vec<Node> = if json {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Node>()
            .collect::<Result<_, _>>()
            .map_err(|source| StampError::Json {
                name: name.to_owned(),
                source,
            })?
    } else {
        // As kubectl reads YAML (1.1: `0644` is octal, `yes` and `off` are booleans), so that no
        // value changes its meaning on the way through.
        let mut options = serde_saphyr::Options::default();
        options.legacy_octal_numbers = true;
        serde_saphyr::from_multiple_with_options::<Node>(text, options).map_err(|e| {
            StampError::Yaml {
                name: name.to_owned(),
                message: e.to_string(),
            }
        })?
    };
    let annotations = context.map(Context::annotations).unwrap_or_default();
    let mut stamped = Stamped::default();
    let mut written = Vec::new();
    for (i, mut document) in documents.into_iter().enumerate() {
        if document == Node::Null {
            continue;
        }
        let label = format!("{name}, document {}", i + 1);
        stamp_object(&mut document, &label, &annotations, &mut stamped)?;
        written.push(document);
    }
    stamped.output = if json {
        let mut out = String::new();
        for document in &written {
            out.push_str(
                &serde_json::to_string_pretty(document)
                    .map_err(|e| StampError::Write(e.to_string()))?,
            );
            out.push('\n');
        }
        out
    } else if written.is_empty() {
        String::new()
    } else {
        serde_saphyr::to_string_multiple(&written).map_err(|e| StampError::Write(e.to_string()))?
    };
    Ok(stamped)
}

/// Stamps one object (a document or a list's item) described as `label` in messages.
fn stamp_object(
    object: &mut Node,
    label: &str,
    annotations: &BTreeMap<String, String>,
    stamped: &mut Stamped,
) -> Result<(), StampError> {
    let problem = |problem: String| StampError::Document {
        document: label.to_owned(),
        problem,
    };
    let Node::Map(_) = object else {
        return Err(problem(
            "not a Kubernetes object (a mapping with apiVersion and kind)".to_owned(),
        ));
    };
    let kind = object
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_owned();
    let api_version = object
        .get("apiVersion")
        .and_then(Node::as_str)
        .unwrap_or_default();
    let path: &[&str] = match (kind.as_str(), api_version) {
        ("Job", "batch/v1") => &["metadata"],
        ("CronJob", "batch/v1") => &["spec", "jobTemplate", "metadata"],
        (list, _) if list.ends_with("List") => {
            let name = kind.clone();
            return match object.get_mut("items") {
                None | Some(Node::Null) => Ok(()),
                Some(Node::Seq(items)) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        let label = format!("{label}, {name} item {}", i + 1);
                        stamp_object(item, &label, annotations, stamped)?;
                    }
                    Ok(())
                }
                Some(_) => Err(problem(format!("the {name}'s items are not a list"))),
            };
        }
        _ => return Ok(()),
    };
    if annotations.is_empty() {
        return Ok(());
    }
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Node::as_str)
        .unwrap_or("(unnamed)")
        .to_owned();
    let mut meta = &mut *object;
    for key in path {
        meta = meta.entry(key).ok_or_else(|| {
            problem(format!(
                "{kind} {name}: {} is not a mapping",
                path.join(".")
            ))
        })?;
    }
    let Some(Node::Map(entries)) = meta.entry("annotations") else {
        return Err(problem(format!(
            "{kind} {name}: {}.annotations is not a mapping",
            path.join(".")
        )));
    };
    let replaced: Vec<String> = entries
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .filter(|k| is_context_key(k))
        .map(str::to_owned)
        .collect();
    if !replaced.is_empty() {
        stamped.warnings.push(format!(
            "{label}: {kind} {name}: {} replaced by the environment's context",
            replaced.join(", ")
        ));
    }
    entries.retain(|(k, _)| !k.as_str().is_some_and(is_context_key));
    for (key, value) in annotations {
        entries.push((Node::String(key.clone()), Node::String(value.clone())));
    }
    stamped.stamped += 1;
    Ok(())
}

fn is_context_key(key: &str) -> bool {
    names::TRACEPARENT_KEYS
        .iter()
        .chain(&names::TRACESTATE_KEYS)
        .chain(&names::BAGGAGE_KEYS)
        .any(|k| *k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn context() -> Context {
        Context::from_vars(|name| match name {
            "TRACEPARENT" => Some(TP.to_owned()),
            "BAGGAGE" => Some("tenant=acme".to_owned()),
            _ => None,
        })
        .unwrap()
        .unwrap()
    }

    fn yaml(output: &str) -> Vec<serde_json::Value> {
        serde_saphyr::from_multiple(output).unwrap()
    }

    const MANIFESTS: &str = "\
# the nightly report
apiVersion: batch/v1
kind: Job
metadata:
  name: report   # its name
  labels: {team: data}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: [sh, -c, 'echo \"a: b\"']}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: '0644'}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: '0 1 * * *'
  jobTemplate:
    metadata:
      labels: {team: data}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: main, image: busybox}]
---
";

    #[test]
    fn jobs_and_cronjobs_get_the_context_and_other_kinds_are_left_alone() {
        let stamped = stamp(MANIFESTS, "m.yaml", Some(&context())).unwrap();
        assert_eq!(stamped.stamped, 2);
        assert!(stamped.warnings.is_empty(), "{:?}", stamped.warnings);
        let docs = yaml(&stamped.output);
        assert_eq!(docs.len(), 3, "the empty last document is dropped");
        let job = &docs[0]["metadata"];
        assert_eq!(job["annotations"]["traceparent"], TP);
        assert_eq!(job["annotations"]["baggage"], "tenant=acme");
        assert_eq!(job["labels"]["team"], "data");
        assert_eq!(
            docs[0]["spec"]["template"]["spec"]["containers"][0]["command"][2],
            "echo \"a: b\""
        );
        let original: Vec<serde_json::Value> = serde_saphyr::from_multiple(MANIFESTS).unwrap();
        assert_eq!(docs[1], original[1], "a ConfigMap is written as it came");
        let template = &docs[2]["spec"]["jobTemplate"]["metadata"];
        assert_eq!(template["annotations"]["traceparent"], TP);
        assert_eq!(template["labels"]["team"], "data");
        assert!(
            docs[2]["metadata"].get("annotations").is_none(),
            "a CronJob's runs are created from its jobTemplate, not its own metadata"
        );
    }

    #[test]
    fn keys_keep_their_order() {
        let stamped = stamp(MANIFESTS, "m.yaml", Some(&context())).unwrap();
        let first: Vec<&str> = stamped.output.lines().take(4).collect();
        assert_eq!(
            first,
            [
                "apiVersion: batch/v1",
                "kind: Job",
                "metadata:",
                "  name: report"
            ]
        );
    }

    #[test]
    fn without_context_the_documents_are_written_unchanged() {
        let stamped = stamp(MANIFESTS, "m.yaml", None).unwrap();
        assert_eq!(stamped.stamped, 0);
        let original: Vec<serde_json::Value> = serde_saphyr::from_multiple(MANIFESTS).unwrap();
        assert_eq!(yaml(&stamped.output), original);
    }

    #[test]
    fn the_items_of_lists_are_stamped() {
        let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}}
        ]}
        {"apiVersion": "batch/v1", "kind": "JobList", "items": [
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "c-"}}
        ]}"#;
        let stamped = stamp(list, "list.json", Some(&context())).unwrap();
        assert_eq!(stamped.stamped, 2);
        let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stamped.output)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("JSON in, JSON out");
        assert_eq!(
            docs[0]["items"][0]["metadata"]["annotations"]["traceparent"],
            TP
        );
        assert!(docs[0]["items"][1]["metadata"].get("annotations").is_none());
        assert_eq!(
            docs[1]["items"][0]["metadata"]["annotations"]["traceparent"],
            TP
        );
    }

    #[test]
    fn a_context_already_there_is_replaced_with_a_warning() {
        let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: old\n  annotations:\n    \
                   jobtrace.dev/traceparent: 00-11111111111111111111111111111111-2222222222222222-01\n    \
                   tracestate: a=1\n    owner: me\n";
        let stamped = stamp(job, "old.yaml", Some(&context())).unwrap();
        let annotations = &yaml(&stamped.output)[0]["metadata"]["annotations"];
        assert_eq!(annotations["traceparent"], TP);
        assert_eq!(annotations["owner"], "me");
        assert!(annotations.get("jobtrace.dev/traceparent").is_none());
        assert!(
            annotations.get("tracestate").is_none(),
            "it went with the old traceparent"
        );
        assert_eq!(
            stamped.warnings,
            [
                "old.yaml, document 1: Job old: jobtrace.dev/traceparent, tracestate replaced by the \
              environment's context"
            ]
        );
    }

    #[test]
    fn values_keep_the_meaning_kubectl_gives_them() {
        let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: modes}\nspec:\n  template:\n    \
                   spec:\n      volumes: [{name: v, secret: {secretName: s, defaultMode: 0644}}]\n      \
                   containers: [{name: c, image: i, env: [{name: A, value: '007'}]}]\n";
        let stamped = stamp(job, "modes.yaml", Some(&context())).unwrap();
        let spec = &yaml(&stamped.output)[0]["spec"]["template"]["spec"];
        assert_eq!(
            spec["volumes"][0]["secret"]["defaultMode"], 420,
            "octal, as kubectl reads it"
        );
        assert_eq!(
            spec["containers"][0]["env"][0]["value"], "007",
            "a quoted string stays one"
        );
    }

    #[test]
    fn invalid_input_names_the_file_or_the_document() {
        let e = stamp("kind: Job\n  bad: [", "broken.yaml", Some(&context())).unwrap_err();
        assert!(
            e.to_string().starts_with("broken.yaml: not valid YAML"),
            "{e}"
        );
        let e = stamp("{\"kind\": ", "broken.json", Some(&context())).unwrap_err();
        assert!(
            e.to_string().starts_with("broken.json: not valid JSON"),
            "{e}"
        );
        let e = stamp(
            "apiVersion: v1\nkind: ConfigMap\n---\n- a\n- b\n",
            "m.yaml",
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.yaml, document 2: not a Kubernetes object (a mapping with apiVersion and kind)"
        );
        let e = stamp(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\n  annotations: [a]\n",
            "j.yaml",
            Some(&context()),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "j.yaml, document 1: Job j: metadata.annotations is not a mapping"
        );
        let e = stamp(
            "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: batch/v1\n    kind: Job\n    metadata: 3\n",
            "l.yaml",
            Some(&context()),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "l.yaml, document 1, List item 1: Job (unnamed): metadata is not a mapping"
        );
    }
}
