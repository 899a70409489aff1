//! Label selectors as admission matches them: a namespace's selectors compiled once, when its
//! policies are stored, against one dictionary of the label keys and values they name. Matching a
//! Job then compares numbers held side by side, not strings held apart, whatever the selectors'
//! size; and each selector tells the one label (or key) a Job must carry to be selected at all, by
//! which the namespace's policies are indexed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Why `selector` is no valid Kubernetes label selector, when it isn't: an operator Kubernetes
/// doesn't define, `In` or `NotIn` without values (read by kube's own selector parser). Such a
/// selector selects no Job; its policy's status says so.
pub fn invalid(selector: Option<&LabelSelector>) -> Option<String> {
    selector?
        .match_expressions
        .iter()
        .flatten()
        .enumerate()
        .find_map(|(i, requirement)| {
            let operator = requirement.operator.clone();
            kube::core::Expression::try_from(requirement.clone())
                .err()
                .map(|e| {
                    format!(
                        "spec.selector.matchExpressions[{i}] (operator {operator:?}) is no label \
                         selector requirement: {}",
                        e.0
                    )
                })
        })
}

/// The label keys and values a namespace's selectors name, numbered.
#[derive(Debug, Default)]
pub struct Names {
    keys: BTreeMap<String, u32>,
    values: BTreeMap<String, u32>,
}

/// The number of a value no selector names.
const UNNAMED: u32 = u32::MAX;

impl Names {
    fn key(&mut self, key: &str) -> u32 {
        number(&mut self.keys, key)
    }

    fn value(&mut self, value: &str) -> u32 {
        number(&mut self.values, value)
    }

    /// A Job's labels by number: those whose key a selector names, their values numbered too (or
    /// `UNNAMED`).
    pub fn job(&self, labels: &BTreeMap<String, String>) -> JobLabels {
        let mut numbered: Vec<(u32, u32)> = labels
            .iter()
            .filter_map(|(key, value)| {
                let key = *self.keys.get(key)?;
                Some((key, self.values.get(value).copied().unwrap_or(UNNAMED)))
            })
            .collect();
        numbered.sort_unstable();
        JobLabels(numbered)
    }
}

fn number(names: &mut BTreeMap<String, u32>, name: &str) -> u32 {
    if let Some(&n) = names.get(name) {
        return n;
    }
    let n = u32::try_from(names.len()).expect("fewer names than the policies' limits allow");
    names.insert(name.to_owned(), n);
    n
}

/// A Job's labels as [`Names::job`] numbers them, by key.
#[derive(Debug)]
pub struct JobLabels(Vec<(u32, u32)>);

impl JobLabels {
    fn value(&self, key: u32) -> Option<u32> {
        let i = self.0.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        Some(self.0[i].1)
    }

    /// The labels, by number.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.0.iter().copied()
    }
}

/// One selector, in the numbers of its namespace's [`Names`]. Kubernetes label selector
/// semantics: an absent selector selects everything.
#[derive(Debug, Default)]
pub struct Selector {
    /// `matchLabels`, as (key, value).
    labels: Vec<(u32, u32)>,
    expressions: Vec<Expression>,
    /// The values of every expression, each expression's sorted, side by side.
    values: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Expression {
    key: u32,
    operator: Operator,
    /// Where its values are in [`Selector::values`].
    values: (u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// What a Job must carry for a selector to select it: where its policy is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// This label (key and value).
    Label(u32, u32),
    /// A label with this key, of any value.
    Key(u32),
    /// Nothing: any Job may be selected.
    Nothing,
}

impl Selector {
    /// `selector` in `names` (which it adds to), or `None` when it selects nothing at all (an
    /// expression with an operator Kubernetes doesn't define).
    pub fn new(selector: Option<&LabelSelector>, names: &mut Names) -> Option<Self> {
        let Some(selector) = selector else {
            return Some(Self::default());
        };
        let mut compiled = Self {
            labels: selector
                .match_labels
                .iter()
                .flatten()
                .map(|(key, value)| (names.key(key), names.value(value)))
                .collect(),
            ..Self::default()
        };
        for e in selector.match_expressions.iter().flatten() {
            let operator = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                _ => return None,
            };
            let start = compiled.values.len();
            if matches!(operator, Operator::In | Operator::NotIn) {
                compiled
                    .values
                    .extend(e.values.iter().flatten().map(|v| names.value(v)));
                compiled.values[start..].sort_unstable();
            }
            let end = compiled.values.len();
            compiled.expressions.push(Expression {
                key: names.key(&e.key),
                operator,
                values: (position(start), position(end)),
            });
        }
        Some(compiled)
    }

    /// Whether a Job with `labels` (numbered by the same [`Names`]) is selected.
    pub fn selects(&self, labels: &JobLabels) -> bool {
        self.labels.iter().all(|&(k, v)| labels.value(k) == Some(v))
            && self.expressions.iter().all(|e| {
                let value = labels.value(e.key);
                let (start, end) = (e.values.0 as usize, e.values.1 as usize);
                let named = |v: u32| self.values[start..end].binary_search(&v).is_ok();
                match e.operator {
                    Operator::In => value.is_some_and(named),
                    Operator::NotIn => !value.is_some_and(named),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// What a Job must carry to be selected: the first `matchLabels` pair, else the key of the
    /// first `In` or `Exists` expression.
    pub fn needs(&self) -> Needs {
        if let Some(&(key, value)) = self.labels.first() {
            return Needs::Label(key, value);
        }
        self.expressions
            .iter()
            .find(|e| matches!(e.operator, Operator::In | Operator::Exists))
            .map_or(Needs::Nothing, |e| Needs::Key(e.key))
    }
}

fn position(i: usize) -> u32 {
    u32::try_from(i).expect("fewer values than the policies' limits allow")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use jobtrace_testkit::fixtures::string_map as labels;

    /// `selector` compiled alone, and its names.
    fn compiled(selector: &serde_json::Value) -> (Option<Selector>, Names) {
        let mut names = Names::default();
        let selector: Option<LabelSelector> = serde_json::from_value(selector.clone()).unwrap();
        (Selector::new(selector.as_ref(), &mut names), names)
    }

    fn selects(selector: &serde_json::Value, labels: &BTreeMap<String, String>) -> bool {
        let (selector, names) = compiled(selector);
        selector.is_some_and(|s| s.selects(&names.job(labels)))
    }

    #[test]
    fn label_selectors_select_as_kubernetes_does() {
        let selector = json!({
            "matchLabels": { "team": "data" },
            "matchExpressions": [
                { "key": "tier", "operator": "In", "values": ["batch", "etl"] },
                { "key": "skip", "operator": "DoesNotExist" },
                { "key": "env", "operator": "NotIn", "values": ["dev"] }
            ]
        });
        let cases = [
            (labels(&[("team", "data"), ("tier", "etl")]), true),
            (
                labels(&[("team", "data"), ("tier", "etl"), ("env", "prod")]),
                true,
            ),
            (
                labels(&[("team", "data"), ("tier", "etl"), ("env", "dev")]),
                false,
            ),
            (labels(&[("team", "data"), ("tier", "web")]), false),
            (
                labels(&[("team", "data"), ("tier", "etl"), ("skip", "")]),
                false,
            ),
            (labels(&[("tier", "etl")]), false),
            (labels(&[("team", "web"), ("tier", "etl")]), false),
        ];
        for (labels, expected) in cases {
            assert_eq!(selects(&selector, &labels), expected, "{labels:?}");
        }
        assert!(
            selects(&json!(null), &BTreeMap::new()),
            "no selector: every Job"
        );
        assert!(selects(&json!({}), &labels(&[("a", "1")])));
        let unknown = json!({ "matchExpressions": [{ "key": "a", "operator": "Near" }] });
        assert!(!selects(&unknown, &labels(&[("a", "1")])));
        let exists = json!({ "matchExpressions": [{ "key": "a", "operator": "Exists" }] });
        assert!(selects(&exists, &labels(&[("a", "")])));
        assert!(!selects(&exists, &labels(&[("b", "1")])));
        let empty_in =
            json!({ "matchExpressions": [{ "key": "a", "operator": "In", "values": [] }] });
        assert!(!selects(&empty_in, &labels(&[("a", "1")])));
    }

    #[test]
    fn a_selector_needs_its_first_label_else_an_in_or_exists_key() {
        let (selector, names) = compiled(&json!({ "matchLabels": { "team": "data", "app": "r" } }));
        assert_eq!(
            selector.unwrap().needs(),
            Needs::Label(names.keys["app"], names.values["r"])
        );
        let (selector, names) = compiled(&json!({ "matchExpressions": [
            { "key": "env", "operator": "NotIn", "values": ["dev"] },
            { "key": "tier", "operator": "In", "values": ["etl"] }
        ] }));
        assert_eq!(selector.unwrap().needs(), Needs::Key(names.keys["tier"]));
        let (selector, names) =
            compiled(&json!({ "matchExpressions": [{ "key": "tier", "operator": "Exists" }] }));
        assert_eq!(selector.unwrap().needs(), Needs::Key(names.keys["tier"]));
        for nothing in [
            json!(null),
            json!({}),
            json!({ "matchExpressions": [{ "key": "tier", "operator": "DoesNotExist" }] }),
        ] {
            assert_eq!(
                compiled(&nothing).0.unwrap().needs(),
                Needs::Nothing,
                "{nothing}"
            );
        }
    }
}
