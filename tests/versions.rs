//! One version for everything released together: the operator's crate, the client library, the
//! chart (`version`, and `appVersion`, the image it deploys), and a section of CHANGELOG.md for
//! it (or an Unreleased one above it while it is being made).

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value of `key = "..."` in the `[table]` of a Cargo.toml, if there is one.
fn toml_string(manifest: &str, table: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == format!("[{table}]");
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// A crate's version: its own, or the workspace's when it inherits it.
fn crate_version(path: &str, workspace: &str) -> String {
    let manifest = read(path);
    if toml_string(&manifest, "package", "version.workspace").as_deref() == Some("true") {
        return workspace.to_owned();
    }
    toml_string(&manifest, "package", "version").unwrap_or_else(|| panic!("{path}: no version"))
}

fn workspace_version() -> String {
    toml_string(&read("Cargo.toml"), "workspace.package", "version")
        .expect("Cargo.toml: [workspace.package] version")
}

#[test]
fn the_crates_and_the_chart_have_one_version() {
    let version = workspace_version();
    assert_eq!(env!("CARGO_PKG_VERSION"), version, "the operator's crate");
    for manifest in ["Cargo.toml", "crates/jobtrace-context/Cargo.toml"] {
        assert_eq!(crate_version(manifest, &version), version, "{manifest}");
    }
    let chart: Value = serde_saphyr::from_str(&read("charts/jobtrace/Chart.yaml")).unwrap();
    assert_eq!(chart["version"], version.as_str(), "Chart.yaml version");
    assert_eq!(
        chart["appVersion"],
        version.as_str(),
        "Chart.yaml appVersion"
    );
    // The workspace's own dependency on the client library names the same version.
    let dependency = read("Cargo.toml")
        .lines()
        .find(|l| l.starts_with("jobtrace-context = {"))
        .expect("jobtrace-context in [workspace.dependencies]")
        .to_owned();
    assert!(
        dependency.contains(&format!("version = \"{version}\"")),
        "{dependency}"
    );
}

#[test]
fn the_changelog_has_a_section_for_the_version() {
    let version = workspace_version();
    let changelog = read("CHANGELOG.md");
    let sections: Vec<&str> = changelog
        .lines()
        .filter_map(|l| l.strip_prefix("## ["))
        .filter_map(|l| l.split_once(']').map(|(name, _)| name))
        .collect();
    assert!(
        sections.first() == Some(&"Unreleased") || sections.contains(&version.as_str()),
        "CHANGELOG.md needs a section for {version}, or an Unreleased one first: {sections:?}"
    );
}
