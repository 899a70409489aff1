//! The Helm chart as helm renders it, for the chart's tests (tests/chart.rs) and the end-to-end
//! ones that install it (tests/e2e/chart.rs): where helm is, `helm template` with the local control
//! plane's Kubernetes version, and readers of the rendered documents.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Where `hack/build-bins.sh` put helm and the control plane's binaries: `$JOBTRACE_BIN`, or
/// `~/.cache/jobtrace/bin`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("JOBTRACE_BIN").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/jobtrace/bin"),
        PathBuf::from,
    )
}

/// The helm binary `hack/build-bins.sh` builds, with the Kubernetes version compiled in.
pub fn helm_binary() -> PathBuf {
    bin_dir().join("helm")
}

pub fn chart_dir() -> PathBuf {
    crate::repo_dir().join("charts/jobtrace")
}

/// The Kubernetes version of the local control plane, from `hack/versions.env`.
pub fn kube_version() -> String {
    let versions = std::fs::read_to_string(crate::repo_dir().join("hack/versions.env")).unwrap();
    versions
        .lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION=v"))
        .expect("K8S_VERSION in versions.env")
        .to_owned()
}

pub fn helm(args: &[&str]) -> std::process::Output {
    Command::new(helm_binary())
        .args(args)
        .output()
        .expect("run helm (hack/build-bins.sh builds it)")
}

/// `helm template` of the chart as release `release` in `namespace`, with extra flags; the
/// documents, or helm's error.
pub fn render(release: &str, namespace: &str, flags: &[&str]) -> Result<Vec<Value>, String> {
    let chart = chart_dir();
    let version = kube_version();
    let mut args = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
        "--kube-version",
        &version,
    ];
    args.extend_from_slice(flags);
    let output = helm(&args);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("helm renders YAML");
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

pub fn defaults() -> Vec<Value> {
    render("jt", "tracing", &[]).unwrap()
}

pub fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

pub fn one<'a>(docs: &'a [Value], wanted: &str) -> &'a Value {
    let found = kind(docs, wanted);
    assert_eq!(found.len(), 1, "one {wanted} expected");
    found[0]
}

pub fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

pub fn pod_spec(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]
}

pub fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

pub fn env<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    container(docs)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

pub fn env_value(docs: &[Value], name: &str) -> String {
    env(docs, name).unwrap_or_else(|| panic!("no {name}"))["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn webhooks(docs: &[Value]) -> &Vec<Value> {
    one(docs, "MutatingWebhookConfiguration")["webhooks"]
        .as_array()
        .unwrap()
}
