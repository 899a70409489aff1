//! The OTLP resource of everything jobtrace exports: the service it names, the attributes of
//! `OTEL_RESOURCE_ATTRIBUTES` (such as `k8s.cluster.name`), and jobtrace's own.

use super::config::percent_decode;

const SERVICE_NAME: &str = "service.name";
/// The attributes jobtrace always sets itself: what runs, and which replica.
const OWN: [&str; 2] = ["service.version", "service.instance.id"];

/// The resource attributes, in order: `service.name`, `service.version`, `service.instance.id`,
/// then the others of `OTEL_RESOURCE_ATTRIBUTES` in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub attributes: Vec<(String, String)>,
    /// Keys of `OTEL_RESOURCE_ATTRIBUTES` that jobtrace's own attributes override, to be warned of.
    pub overridden: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error(
        "OTEL_RESOURCE_ATTRIBUTES: {0:?} is not key=value (a non-empty key; `,`, `=` and `%` \
         in keys and values percent-encoded)"
    )]
    Attribute(String),
}

impl Resource {
    /// The resource of the replica `instance`, from the process environment.
    pub fn from_env(instance: &str) -> Result<Self, ResourceError> {
        Self::from_vars(|k| std::env::var(k).ok(), instance)
    }

    /// The resource of the replica `instance`. `service.name` is `OTEL_SERVICE_NAME`, else the
    /// `service.name` of `OTEL_RESOURCE_ATTRIBUTES`, else `jobtrace`; `service.version` (jobtrace's)
    /// and `service.instance.id` (`instance`) are always jobtrace's, as the program's own resource
    /// wins over the variable's in the OpenTelemetry merge. A value that can't be decoded refuses
    /// the whole variable.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        instance: &str,
    ) -> Result<Self, ResourceError> {
        let mut from_env = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(value) => parse(&value)?,
            None => Vec::new(),
        };
        let named = var("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty());
        let given_name = take(&mut from_env, SERVICE_NAME);
        let service = named
            .map(|v| v.trim().to_owned())
            .or(given_name)
            .unwrap_or_else(|| "jobtrace".to_owned());
        let mut overridden = Vec::new();
        for key in OWN {
            if take(&mut from_env, key).is_some() {
                overridden.push(key.to_owned());
            }
        }
        let mut attributes = vec![
            (SERVICE_NAME.to_owned(), service),
            (OWN[0].to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            (OWN[1].to_owned(), instance.to_owned()),
        ];
        attributes.extend(from_env);
        Ok(Self {
            attributes,
            overridden,
        })
    }
}

/// Removes `key` from `attributes`, returning its value.
fn take(attributes: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let at = attributes.iter().position(|(k, _)| k == key)?;
    Some(attributes.remove(at).1)
}

/// `key1=value1,key2=value2`, keys and values percent-decoded, as the OpenTelemetry resource
/// specification has it; the later of two equal keys wins, in the place of the first.
fn parse(value: &str) -> Result<Vec<(String, String)>, ResourceError> {
    let mut attributes: Vec<(String, String)> = Vec::new();
    for pair in value.split(',').filter(|pair| !pair.trim().is_empty()) {
        let refused = || ResourceError::Attribute(pair.trim().to_owned());
        let (key, value) = pair.split_once('=').ok_or_else(refused)?;
        let key = percent_decode(key.trim()).ok_or_else(refused)?;
        let value = percent_decode(value.trim()).ok_or_else(refused)?;
        if key.is_empty() {
            return Err(refused());
        }
        match attributes.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => attributes.push((key, value)),
        }
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(vars: &[(&str, &str)]) -> Result<Resource, ResourceError> {
        let vars: std::collections::HashMap<&str, &str> = vars.iter().copied().collect();
        Resource::from_vars(|k| vars.get(k).map(|v| (*v).to_owned()), "jobtrace-7d9f-x2")
    }

    fn attributes(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        resource(vars).unwrap().attributes
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const VERSION: &str = env!("CARGO_PKG_VERSION");

    #[test]
    fn without_variables_the_resource_is_jobtraces_own() {
        assert_eq!(
            attributes(&[]),
            pairs(&[
                ("service.name", "jobtrace"),
                ("service.version", VERSION),
                ("service.instance.id", "jobtrace-7d9f-x2"),
            ])
        );
    }

    #[test]
    fn attributes_follow_jobtraces_own_decoded_in_their_order() {
        assert_eq!(
            attributes(&[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "k8s.cluster.name=prod-eu , deployment.environment.name=production,team=a%2Cb%3Dc%25,note=batch%20jobs,",
            )])[3..],
            pairs(&[
                ("k8s.cluster.name", "prod-eu"),
                ("deployment.environment.name", "production"),
                ("team", "a,b=c%"),
                ("note", "batch jobs"),
            ])
        );
    }

    #[test]
    fn the_later_of_two_equal_keys_wins_and_keys_are_decoded() {
        assert_eq!(
            attributes(&[("OTEL_RESOURCE_ATTRIBUTES", "a=1,b%3Dx=2,a=3,empty=")])[3..],
            pairs(&[("a", "3"), ("b=x", "2"), ("empty", "")])
        );
    }

    #[test]
    fn service_name_is_otel_service_name_then_the_attribute_then_jobtrace() {
        let name = |vars: &[(&str, &str)]| attributes(vars)[0].1.clone();
        let given = ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes");
        assert_eq!(name(&[given]), "from-attributes");
        assert_eq!(
            name(&[given, ("OTEL_SERVICE_NAME", "from-service-name")]),
            "from-service-name"
        );
        assert_eq!(name(&[given, ("OTEL_SERVICE_NAME", "")]), "from-attributes");
        assert_eq!(name(&[("OTEL_SERVICE_NAME", "")]), "jobtrace");
        // Only once, in first place.
        assert_eq!(
            attributes(&[given])
                .iter()
                .filter(|(k, _)| k == "service.name")
                .count(),
            1
        );
    }

    #[test]
    fn version_and_instance_stay_jobtraces_and_the_given_ones_are_reported() {
        let r = resource(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.instance.id=shared,service.version=9.9.9,k8s.cluster.name=prod",
        )])
        .unwrap();
        assert_eq!(
            r.attributes,
            pairs(&[
                ("service.name", "jobtrace"),
                ("service.version", VERSION),
                ("service.instance.id", "jobtrace-7d9f-x2"),
                ("k8s.cluster.name", "prod"),
            ])
        );
        assert_eq!(r.overridden, ["service.version", "service.instance.id"]);
    }

    #[test]
    fn an_undecodable_attribute_refuses_the_variable_naming_the_pair() {
        for (value, pair) in [
            ("k8s.cluster.name=prod,novalue", "novalue"),
            ("=orphan", "=orphan"),
            ("share=100%", "share=100%"),
            ("bad=%zz", "bad=%zz"),
            // Two hex digits, not a signed number.
            ("signed=%+f", "signed=%+f"),
            ("utf8=%ff", "utf8=%ff"),
        ] {
            assert_eq!(
                resource(&[("OTEL_RESOURCE_ATTRIBUTES", value)]),
                Err(ResourceError::Attribute(pair.to_owned())),
                "{value}"
            );
        }
    }
}
