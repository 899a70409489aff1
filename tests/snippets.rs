//! The code in `docs/clients.md` is copied from the tested examples, never written apart: each
//! block after a `<!-- snippet: PATH NAME -->` line must be the lines between `docs:begin NAME`
//! and `docs:end NAME` in PATH (a comment of the file's language), dedented. With
//! `JOBTRACE_UPDATE_SNIPPETS=1` the test rewrites the blocks instead of comparing them.

use std::path::Path;

const DOCS: [&str; 1] = ["docs/clients.md"];

/// The lines of `file` between its `docs:begin name` and `docs:end name` markers, dedented.
fn region(file: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let is_marker = |line: &str, what: &str| {
        line.trim_start()
            .trim_start_matches(['/', '#', '-', '*', ' '])
            .trim_end()
            == format!("docs:{what} {name}")
    };
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| is_marker(l, "begin"))
        .unwrap_or_else(|| panic!("{}: no `docs:begin {name}`", file.display()));
    let body: Vec<&str> = lines.take_while(|l| !is_marker(l, "end")).collect();
    assert!(
        !body.is_empty(),
        "{}: region {name} is empty",
        file.display()
    );
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The doc with every snippet's block replaced by the region it names; and how many there were.
fn render(doc: &str, root: &Path) -> (String, usize) {
    let mut out = Vec::new();
    let mut lines = doc.lines().peekable();
    let mut count = 0;
    while let Some(line) = lines.next() {
        out.push(line.to_owned());
        let Some(spec) = line
            .trim()
            .strip_prefix("<!-- snippet: ")
            .and_then(|s| s.strip_suffix(" -->"))
        else {
            continue;
        };
        let (path, name) = spec
            .split_once(' ')
            .unwrap_or_else(|| panic!("`{line}`: a snippet names a file and a region"));
        let fence = lines
            .next()
            .filter(|l| l.starts_with("```"))
            .unwrap_or_else(|| panic!("`{line}` must be followed by a fenced block"));
        out.push(fence.to_owned());
        for body in lines.by_ref() {
            if body.starts_with("```") {
                break;
            }
        }
        out.push(region(&root.join(path), name));
        out.push("```".to_owned());
        count += 1;
    }
    let mut rendered = out.join("\n");
    rendered.push('\n');
    (rendered, count)
}

#[test]
fn the_docs_quote_the_examples_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("JOBTRACE_UPDATE_SNIPPETS").is_some();
    for doc in DOCS {
        let path = root.join(doc);
        let text = std::fs::read_to_string(&path).unwrap();
        let (rendered, count) = render(&text, root);
        assert!(count > 0, "{doc} quotes no example");
        if update {
            std::fs::write(&path, rendered).unwrap();
        } else {
            assert!(
                rendered == text,
                "{doc} differs from the examples it quotes: run \
                 `JOBTRACE_UPDATE_SNIPPETS=1 cargo test --test snippets`"
            );
        }
    }
}

#[test]
fn a_region_is_found_whatever_the_comment_syntax() {
    let dir = std::env::temp_dir().join(format!("jobtrace-snippets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.py");
    std::fs::write(
        &file,
        "a\n    # docs:begin job\n    one()\n      two()\n    # docs:end job\nb\n",
    )
    .unwrap();
    assert_eq!(region(&file, "job"), "one()\n  two()");
    let doc = "t\n<!-- snippet: x.py job -->\n```python\nstale\n```\nend\n";
    let (rendered, count) = render(doc, &dir);
    assert_eq!(count, 1);
    assert_eq!(
        rendered,
        "t\n<!-- snippet: x.py job -->\n```python\none()\n  two()\n```\nend\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
