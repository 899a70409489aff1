//! docs/design.md's "Map of the code" names every module of the crate's top level and of its
//! layers (`src/core`, `src/k8s`, `src/commands`), and only those.

use std::collections::BTreeSet;
use std::path::Path;

const LAYERS: [&str; 3] = ["core", "k8s", "commands"];

/// The backticked module paths of the first column of the map's table.
fn mapped(design: &str) -> BTreeSet<String> {
    let section = design
        .split("\n## Map of the code\n")
        .nth(1)
        .expect("docs/design.md has a section \"## Map of the code\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(module, _)| module.to_owned())
        .collect()
}

/// The modules `src/lib.rs` declares, and those of each layer's folder: `layer::name` for a file
/// `name.rs` or a folder `name/` with a `mod.rs`.
fn modules(src: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut found: BTreeSet<String> = lib
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .filter_map(|rest| rest.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    for layer in LAYERS {
        for entry in std::fs::read_dir(src.join(layer)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let module = if path.is_dir() && path.join("mod.rs").is_file() {
                name
            } else if let Some(stem) = name.strip_suffix(".rs") {
                if stem == "mod" {
                    continue;
                }
                stem.to_owned()
            } else {
                continue;
            };
            found.insert(format!("{layer}::{module}"));
        }
    }
    found
}

#[test]
fn the_map_of_the_code_lists_every_module_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let design = std::fs::read_to_string(root.join("docs/design.md")).unwrap();
    let mapped = mapped(&design);
    let modules = modules(&root.join("src"));
    let missing: Vec<_> = modules.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&modules).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/design.md's Map of the code lacks {missing:?} and names {stale:?}, which src/ has not"
    );
}

#[test]
fn a_module_is_a_file_or_a_folder_with_its_mod_rs() {
    let dir = std::env::temp_dir().join(format!("jobtrace-code-map-{}", std::process::id()));
    for layer in LAYERS {
        std::fs::create_dir_all(dir.join(layer)).unwrap();
        std::fs::write(dir.join(layer).join("mod.rs"), "").unwrap();
    }
    std::fs::write(
        dir.join("lib.rs"),
        "pub mod core;\n#[cfg(test)]\npub mod kit;\nmod private;\n",
    )
    .unwrap();
    std::fs::write(dir.join("core/context.rs"), "").unwrap();
    std::fs::create_dir_all(dir.join("k8s/otlp")).unwrap();
    std::fs::write(dir.join("k8s/otlp/mod.rs"), "").unwrap();
    std::fs::create_dir_all(dir.join("k8s/otlp_tests")).unwrap();
    std::fs::write(dir.join("commands/notes.md"), "").unwrap();
    let found = modules(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        found,
        ["core", "core::context", "k8s::otlp", "kit"]
            .map(str::to_owned)
            .into()
    );
    let doc = "# t\n## Map of the code\n\n| module | what |\n|---|---|\n| `core` | pure |\n\
               | `k8s::otlp` | OTLP |\n\n## Next\n\n| `not::mapped` | x |\n";
    assert_eq!(mapped(doc), ["core", "k8s::otlp"].map(str::to_owned).into());
}
