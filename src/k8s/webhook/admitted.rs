//! Reading the object of a review at a cost bounded by a constant: its JSON values are counted
//! first (without allocating), and only the fields the mutation reads are deserialized; a pod
//! spec's volumes, probes and the rest are skipped, not built. A Job of a million empty volumes
//! would otherwise cost gigabytes as typed objects before the apiserver ever validated it.

use std::fmt;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Most JSON values (every scalar, array and object, keys not counted) an object may hold to be
/// read; a Job of ordinary size holds a few hundred, one with thousands of variables a few
/// thousand.
pub const MAX_VALUES: usize = 50_000;
/// Most containers (init containers included) of a pod jobtrace injects into. Kubernetes sets no
/// limit; each container adds its share to the patch.
pub const MAX_CONTAINERS: usize = 128;
/// Bytes of memory counted per JSON value of an object being read: what the largest value the
/// mutation keeps (an `env` entry, 280 bytes as a typed object) takes in a list that grows by
/// doubling.
pub const BYTES_PER_VALUE: usize = 560;

/// Why an object was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("it holds more than {MAX_VALUES} JSON values")]
    TooManyValues,
    #[error("its pod has {0} containers, more than the {MAX_CONTAINERS} jobtrace injects into")]
    TooManyContainers(usize),
    #[error("{0}")]
    Malformed(#[from] serde_json::Error),
}

impl ReadError {
    /// Whether the object was refused for its size rather than its shape.
    pub fn too_large(&self) -> bool {
        !matches!(self, Self::Malformed(_))
    }
}

/// The JSON values in `json`, or `None` past `limit`: stops reading there, allocates nothing.
pub fn count_values(json: &str, limit: usize) -> Result<Option<usize>, serde_json::Error> {
    let mut counter = Counter { seen: 0, limit };
    match (&mut counter).deserialize(&mut serde_json::Deserializer::from_str(json)) {
        Ok(()) => Ok(Some(counter.seen)),
        Err(_) if counter.seen > limit => Ok(None),
        Err(e) => Err(e),
    }
}

struct Counter {
    seen: usize,
    limit: usize,
}

impl Counter {
    fn one<E: de::Error>(&mut self) -> Result<(), E> {
        self.seen += 1;
        if self.seen > self.limit {
            return Err(E::custom("too many values"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for &mut Counter {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Counter {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.one()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.one()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.one()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.one()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.one()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.one()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.one()?;
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.one()?;
        while map.next_key::<de::IgnoredAny>()?.is_some() {
            map.next_value_seed(&mut *self)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct JobView {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<JobSpecView>,
}

#[derive(Deserialize)]
struct JobSpecView {
    #[serde(default)]
    suspend: Option<bool>,
    #[serde(default)]
    template: TemplateView,
}

#[derive(Deserialize, Default)]
struct TemplateView {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    spec: Option<PodSpecView>,
}

#[derive(Deserialize)]
struct PodView {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<PodSpecView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecView {
    #[serde(default)]
    containers: Vec<ContainerView>,
    #[serde(default)]
    init_containers: Option<Vec<ContainerView>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerView {
    #[serde(default)]
    name: String,
    /// Kept as JSON until its length is known (see [`env_list`]).
    #[serde(default)]
    env: Option<Box<RawValue>>,
    #[serde(default)]
    env_from: Option<Vec<EnvFromSource>>,
}

/// A container's `env`, read into a list of exactly its length: its entries are counted first
/// (without allocating), then read. Read into a list that grows by doubling, 24,000 entries
/// (280 bytes each as typed objects) took 8.75 MiB after lists of 4.4, 2.2, 1.1 and 0.5 MiB, each
/// a fresh block that the allocator keeps a while after it is freed; now one block of 6.4 MiB.
fn env_list(json: &RawValue) -> Result<Vec<EnvVar>, serde_json::Error> {
    let mut length = Length(0);
    (&mut length).deserialize(&mut serde_json::Deserializer::from_str(json.get()))?;
    let mut deserializer = serde_json::Deserializer::from_str(json.get());
    let list = deserializer.deserialize_seq(EnvList(length.0))?;
    deserializer.end()?;
    Ok(list)
}

/// The length of a list, `null` counting as empty.
struct Length(usize);

impl<'de> DeserializeSeed<'de> for &mut Length {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Length {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {
            self.0 += 1;
        }
        Ok(())
    }
}

/// A list of env variables, read into a list with room for the given number of them.
struct EnvList(usize);

impl<'de> Visitor<'de> for EnvList {
    type Value = Vec<EnvVar>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of env variables")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::with_capacity(self.0);
        while let Some(var) = seq.next_element()? {
            list.push(var);
        }
        Ok(list)
    }
}

impl PodSpecView {
    fn into_spec(self) -> Result<PodSpec, ReadError> {
        let count = self.containers.len() + self.init_containers.as_ref().map_or(0, Vec::len);
        if count > MAX_CONTAINERS {
            return Err(ReadError::TooManyContainers(count));
        }
        let containers = |list: Vec<ContainerView>| -> Result<Vec<Container>, ReadError> {
            list.into_iter()
                .map(|c| {
                    Ok(Container {
                        name: c.name,
                        env: c.env.as_deref().map(env_list).transpose()?,
                        env_from: c.env_from,
                        ..Container::default()
                    })
                })
                .collect()
        };
        Ok(PodSpec {
            containers: containers(self.containers)?,
            init_containers: self.init_containers.map(containers).transpose()?,
            ..PodSpec::default()
        })
    }
}

/// Checks `json`'s size, then reads what the mutation of a Job needs of it.
pub fn job(json: &str) -> Result<Job, ReadError> {
    count_values(json, MAX_VALUES)?.ok_or(ReadError::TooManyValues)?;
    let view: JobView = serde_json::from_str(json)?;
    let spec = match view.spec {
        None => None,
        Some(spec) => Some(JobSpec {
            suspend: spec.suspend,
            template: PodTemplateSpec {
                metadata: spec.template.metadata,
                spec: spec.template.spec.map(PodSpecView::into_spec).transpose()?,
            },
            ..JobSpec::default()
        }),
    };
    Ok(Job {
        metadata: view.metadata,
        spec,
        status: None,
    })
}

/// Checks `json`'s size, then reads what the mutation of a pod needs of it.
pub fn pod(json: &str) -> Result<Pod, ReadError> {
    count_values(json, MAX_VALUES)?.ok_or(ReadError::TooManyValues)?;
    let view: PodView = serde_json::from_str(json)?;
    Ok(Pod {
        metadata: view.metadata,
        spec: view.spec.map(PodSpecView::into_spec).transpose()?,
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_counted_as_scalars_arrays_and_objects() {
        let cases = [
            ("1", 1),
            ("[]", 1),
            ("{}", 1),
            (r#"{"a":1,"b":[true,null,"x"]}"#, 6),
            (r#"[[[]],{"k":{}}]"#, 5),
        ];
        for (json, values) in cases {
            assert_eq!(count_values(json, 100).unwrap(), Some(values), "{json}");
        }
    }

    #[test]
    fn counting_stops_past_the_limit() {
        let many = format!("[{}]", vec!["{}"; 1_000].join(","));
        assert_eq!(count_values(&many, 1_001).unwrap(), Some(1_001));
        assert_eq!(count_values(&many, 1_000).unwrap(), None);
        assert!(
            count_values("[1,", 100).is_err(),
            "malformed JSON is an error"
        );
    }

    #[test]
    fn a_job_is_read_with_what_the_mutation_needs_and_nothing_else() {
        let object = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": "j", "annotations": { "traceparent": "x" } },
            "spec": {
                "suspend": true,
                "backoffLimit": 3,
                "template": {
                    "metadata": { "labels": { "app": "a" } },
                    "spec": {
                        "volumes": [{ "name": "v", "emptyDir": {} }],
                        "initContainers": [{ "name": "i", "image": "busybox" }],
                        "containers": [{
                            "name": "c",
                            "image": "busybox",
                            "env": [{ "name": "A", "value": "1" }],
                            "envFrom": [{ "prefix": "P_", "configMapRef": { "name": "m" } }],
                            "livenessProbe": { "exec": { "command": ["true"] } }
                        }]
                    }
                }
            }
        });
        let job = job(&object.to_string()).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("j"));
        let spec = job.spec.unwrap();
        assert_eq!(spec.suspend, Some(true));
        assert_eq!(spec.backoff_limit, None, "not read");
        let pod = spec.template.spec.unwrap();
        assert!(pod.volumes.is_none(), "not read");
        assert_eq!(pod.containers[0].name, "c");
        assert_eq!(pod.containers[0].env.as_ref().unwrap()[0].name, "A");
        assert_eq!(
            pod.containers[0].env_from.as_ref().unwrap()[0]
                .prefix
                .as_deref(),
            Some("P_")
        );
        assert!(pod.containers[0].liveness_probe.is_none(), "not read");
        assert_eq!(pod.init_containers.unwrap()[0].name, "i");
        assert_eq!(spec.template.metadata.unwrap().labels.unwrap()["app"], "a");
    }

    #[test]
    fn a_long_env_is_read_whole_and_in_order() {
        for count in [0, 1, 2, 1023, 1024, 1025, 3079] {
            let env: Vec<_> = (0..count)
                .map(|i| json!({ "name": format!("V{i}"), "value": i.to_string() }))
                .collect();
            let object = json!({ "spec": { "containers": [{ "name": "c", "env": env }] } });
            let pod = pod(&object.to_string()).unwrap();
            let read = pod.spec.unwrap().containers.remove(0).env.unwrap();
            assert_eq!(read.len(), count);
            assert_eq!(read.capacity(), count);
            for (i, var) in read.iter().enumerate() {
                assert_eq!(var.name, format!("V{i}"));
                assert_eq!(var.value.as_deref(), Some(i.to_string().as_str()));
            }
        }
        for env in [json!(null), json!([])] {
            let object = json!({ "spec": { "containers": [{ "name": "c", "env": env }] } });
            let pod = pod(&object.to_string()).unwrap();
            let read = pod.spec.unwrap().containers[0].env.clone();
            assert_eq!(
                read.map(|e| e.len()),
                if env.is_null() { None } else { Some(0) }
            );
        }
    }

    #[test]
    fn an_object_past_the_limits_is_not_read() {
        let volumes = vec![json!({}); MAX_VALUES];
        let object = json!({ "spec": { "template": { "spec": { "volumes": volumes } } } });
        assert!(matches!(
            job(&object.to_string()),
            Err(ReadError::TooManyValues)
        ));
        let containers = vec![json!({ "name": "c" }); MAX_CONTAINERS + 1];
        let object = json!({ "spec": { "containers": containers } });
        assert!(matches!(
            pod(&object.to_string()),
            Err(ReadError::TooManyContainers(n)) if n == MAX_CONTAINERS + 1
        ));
        let containers = vec![json!({ "name": "c" }); MAX_CONTAINERS];
        let object = json!({ "spec": { "containers": containers } });
        assert!(pod(&object.to_string()).is_ok(), "at the limit");
    }
}
