//! Every name jobtrace reads or writes on Kubernetes objects and in containers' environments:
//! those of the client library, which creators and Job programs share with the operator.

pub use jobtrace_context::names::*;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{DOMAIN, Exported};

    /// Every string literal of the client library's names.rs, comments left out.
    fn literals_of_the_code() -> BTreeSet<&'static str> {
        include_str!("../crates/jobtrace-context/src/names.rs")
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            // Between a line's quotes, every second piece is a literal (none holds a quote).
            .flat_map(|line| line.split('"').skip(1).step_by(2))
            .collect()
    }

    /// The names docs/design.md's `## Names` section lists in its tables: the backticked keys
    /// with a prefix (`jobtrace.dev/…`, `batch.kubernetes.io/…`), the environment variables
    /// (upper case), and, in `### What jobtrace reads`, the unprefixed input keys.
    fn documented_names() -> BTreeSet<&'static str> {
        let doc = include_str!("../docs/design.md");
        let section = doc
            .split("\n## Names\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/design.md has a section \"## Names\"");
        let mut names = BTreeSet::new();
        let mut reads = false;
        for line in section.lines() {
            if let Some(heading) = line.strip_prefix("### ") {
                reads = heading.starts_with("What jobtrace reads");
            }
            if !line.starts_with('|') {
                continue;
            }
            for token in line.split('`').skip(1).step_by(2) {
                let prefixed = token.split_once('/').is_some_and(|(prefix, name)| {
                    prefix.contains('.')
                        && [prefix, name].iter().all(|part| {
                            !part.is_empty()
                                && part.chars().all(|c| {
                                    c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c)
                                })
                        })
                });
                let variable = token.len() > 1
                    && token.starts_with(|c: char| c.is_ascii_uppercase())
                    && token
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                let input_key = reads && token.chars().all(|c| c.is_ascii_lowercase());
                if prefixed || variable || input_key {
                    names.insert(token);
                }
            }
        }
        names
    }

    #[test]
    fn names_are_the_documented_ones() {
        // Literals that are values, not names: the domain, and what `jobtrace.dev/exported` says.
        let values = [
            DOMAIN,
            Exported::Accepted.label(),
            Exported::Dropped.label(),
        ];
        let code: BTreeSet<&str> = literals_of_the_code()
            .into_iter()
            .filter(|literal| !values.contains(literal))
            .collect();
        let documented = documented_names();
        assert!(code.len() > 20, "names.rs read: {code:?}");
        let undocumented: Vec<_> = code.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "names in crates/jobtrace-context/src/names.rs that docs/design.md's Names tables lack: \
             {undocumented:?}"
        );
        let unknown: Vec<_> = documented.difference(&code).collect();
        assert!(
            unknown.is_empty(),
            "names in docs/design.md's Names tables that crates/jobtrace-context/src/names.rs \
             lacks: {unknown:?}"
        );
    }
}
