//! Jobs and pods as jobtrace reads them from the apiserver: only the fields its spans, its marks
//! and its counts use are built; the rest (a pod template of a megabyte, other parties'
//! annotations, `managedFields`, volumes, container images...) is skipped as it is parsed, never
//! allocated. A tenant's Job may be 1.5 MiB; jobtrace keeps a few hundred bytes of it, plus its
//! labels (a Job's span copies those its policy names) and the annotations of jobtrace's and the
//! job controller's domains (which the apiserver bounds, with all annotations, to 256 KiB).
//!
//! [`Slim`] wraps the k8s-openapi object built from what was read, and is a [`kube::Resource`] of
//! the same kind, so that `Api` and the watcher read through it.
//!
//! What is kept, by object:
//!
//! - metadata: name, namespace, uid, `resourceVersion`, `creationTimestamp`,
//!   `deletionTimestamp`; the annotations (and, for a pod, the labels) of the `jobtrace.dev/` and
//!   `batch.kubernetes.io/` domains; a Job's labels; the first owner that is a `CronJob` and the
//!   first controller that is a `batch/v1` Job; where jobtrace's finalizer is among the
//!   finalizers (not the finalizers themselves);
//! - a Job's spec: `completions`, `parallelism`, `backoffLimit`, `completionMode`, and of its pod
//!   template only the containers' `TRACEPARENT` values (below); its status: the conditions,
//!   `startTime`, `completionTime`, `succeeded`, `failed`;
//! - a pod's spec: `nodeName` and the containers' `TRACEPARENT` values; its status: `phase`,
//!   `reason`, `message`, the conditions' type, status and time, and each container's name and
//!   running or terminated state;
//! - an object's metadata alone ([`PartialObjectMeta`]: the status count, `jobtrace release`, the
//!   answers to the marks): as a pod's, without owners.
//!
//! The containers' `TRACEPARENT` variables only matter for an object admitted before jobtrace
//! recorded the trace flags (the flags then come from the first one of the object's trace):
//! the valid values of at most [`MAX_TRACEPARENTS`] distinct ones per list of containers are
//! kept, stood for by one container per list.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    EnvVar, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use kube::core::PartialObjectMeta;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::core::names;

/// Distinct valid `TRACEPARENT` values kept per list of containers (init containers, containers).
pub const MAX_TRACEPARENTS: usize = 16;
/// A `TRACEPARENT` value longer than this is not kept (version 00 has 55 characters).
const MAX_TRACEPARENT_LEN: usize = 256;

/// An object as jobtrace reads it: `object` holds only the fields jobtrace uses (the module's
/// documentation lists them).
#[derive(Debug, Clone)]
pub struct Slim<K> {
    pub object: K,
    /// Where jobtrace's finalizer `jobtrace.dev/export` is among the object's finalizers (which
    /// `object` doesn't keep).
    pub hold: Option<usize>,
}

impl<K: Resource<DynamicType = ()>> Resource for Slim<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn metadata_api() -> bool {
        K::metadata_api()
    }

    fn meta(&self) -> &ObjectMeta {
        self.object.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.object.meta_mut()
    }
}

impl<'de> Deserialize<'de> for Slim<Job> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let view = JobView::deserialize(deserializer)?;
        let spec = view.spec.map(|spec| JobSpec {
            completions: spec.completions,
            parallelism: spec.parallelism,
            backoff_limit: spec.backoff_limit,
            completion_mode: spec.completion_mode,
            template: PodTemplateSpec {
                metadata: None,
                spec: spec.template.spec.map(PodSpecView::into_spec),
            },
            ..JobSpec::default()
        });
        let status = view.status.map(|status| JobStatus {
            conditions: status.conditions,
            start_time: status.start_time,
            completion_time: status.completion_time,
            succeeded: status.succeeded,
            failed: status.failed,
            ..JobStatus::default()
        });
        Ok(Self {
            object: Job {
                metadata: view.metadata.meta,
                spec,
                status,
            },
            hold: view.metadata.hold,
        })
    }
}

impl<'de> Deserialize<'de> for Slim<Pod> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let view = PodView::deserialize(deserializer)?;
        Ok(Self {
            object: Pod {
                metadata: view.metadata.meta,
                spec: view.spec.map(PodSpecView::into_spec),
                status: view.status.map(PodStatusView::into_status),
            },
            hold: view.metadata.hold,
        })
    }
}

impl<'de, K> Deserialize<'de> for Slim<PartialObjectMeta<K>> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let view = PartialView::deserialize(deserializer)?;
        Ok(Self {
            object: PartialObjectMeta {
                types: None,
                metadata: view.metadata.meta,
                _phantom: std::marker::PhantomData,
            },
            hold: view.metadata.hold,
        })
    }
}

#[derive(Deserialize)]
struct JobView {
    #[serde(default, deserialize_with = "job_meta")]
    metadata: Meta,
    #[serde(default)]
    spec: Option<JobSpecView>,
    #[serde(default)]
    status: Option<JobStatusView>,
}

#[derive(Deserialize)]
struct PodView {
    #[serde(default, deserialize_with = "pod_meta")]
    metadata: Meta,
    #[serde(default)]
    spec: Option<PodSpecView>,
    #[serde(default)]
    status: Option<PodStatusView>,
}

#[derive(Deserialize)]
struct PartialView {
    #[serde(default, deserialize_with = "partial_meta")]
    metadata: Meta,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobSpecView {
    completions: Option<i32>,
    parallelism: Option<i32>,
    backoff_limit: Option<i32>,
    completion_mode: Option<String>,
    #[serde(default)]
    template: TemplateView,
}

#[derive(Deserialize, Default)]
struct TemplateView {
    #[serde(default)]
    spec: Option<PodSpecView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecView {
    node_name: Option<String>,
    #[serde(default, deserialize_with = "traceparents")]
    init_containers: Vec<String>,
    #[serde(default, deserialize_with = "traceparents")]
    containers: Vec<String>,
}

impl PodSpecView {
    fn into_spec(self) -> PodSpec {
        // One container stands for a list: what is read of it is the order of its values.
        let container = |values: Vec<String>| Container {
            env: Some(
                values
                    .into_iter()
                    .map(|value| EnvVar {
                        name: names::env::TRACEPARENT.to_owned(),
                        value: Some(value),
                        value_from: None,
                    })
                    .collect(),
            ),
            ..Container::default()
        };
        PodSpec {
            node_name: self.node_name,
            init_containers: (!self.init_containers.is_empty())
                .then(|| vec![container(self.init_containers)]),
            containers: if self.containers.is_empty() {
                Vec::new()
            } else {
                vec![container(self.containers)]
            },
            ..PodSpec::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobStatusView {
    conditions: Option<Vec<JobCondition>>,
    start_time: Option<Time>,
    completion_time: Option<Time>,
    succeeded: Option<i32>,
    failed: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatusView {
    phase: Option<String>,
    reason: Option<String>,
    message: Option<String>,
    conditions: Option<Vec<PodConditionView>>,
    init_container_statuses: Option<Vec<ContainerStatusView>>,
    container_statuses: Option<Vec<ContainerStatusView>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodConditionView {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    last_transition_time: Option<Time>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatusView {
    name: String,
    state: Option<StateView>,
    /// The run before the current one, when the kubelet restarted the container in its pod.
    last_state: Option<StateView>,
    #[serde(default)]
    restart_count: i32,
}

#[derive(Deserialize)]
struct StateView {
    running: Option<ContainerStateRunning>,
    terminated: Option<ContainerStateTerminated>,
}

impl StateView {
    fn into_state(self) -> ContainerState {
        ContainerState {
            running: self.running,
            terminated: self.terminated,
            waiting: None,
        }
    }
}

impl PodStatusView {
    fn into_status(self) -> PodStatus {
        let statuses = |list: Option<Vec<ContainerStatusView>>| {
            list.map(|list| {
                list.into_iter()
                    .map(|c| ContainerStatus {
                        name: c.name,
                        state: c.state.map(StateView::into_state),
                        last_state: c.last_state.map(StateView::into_state),
                        restart_count: c.restart_count,
                        ..ContainerStatus::default()
                    })
                    .collect()
            })
        };
        PodStatus {
            phase: self.phase,
            reason: self.reason,
            message: self.message,
            conditions: self.conditions.map(|list| {
                list.into_iter()
                    .map(|c| PodCondition {
                        type_: c.type_,
                        status: c.status,
                        last_transition_time: c.last_transition_time,
                        ..PodCondition::default()
                    })
                    .collect()
            }),
            init_container_statuses: statuses(self.init_container_statuses),
            container_statuses: statuses(self.container_statuses),
            ..PodStatus::default()
        }
    }
}

/// An object's metadata as read, and where jobtrace's finalizer is.
#[derive(Default)]
struct Meta {
    meta: ObjectMeta,
    hold: Option<usize>,
}

/// Which of an object's metadata is kept, beyond its identity and times.
#[derive(Clone, Copy)]
struct Keep {
    /// Every label (a Job's: its span copies those its policy names), else only those of
    /// jobtrace's and the job controller's domains.
    all_labels: bool,
    /// The first `CronJob` owner and the first `batch/v1` Job controller.
    owners: bool,
}

fn job_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Meta, D::Error> {
    let keep = Keep {
        all_labels: true,
        owners: true,
    };
    deserializer.deserialize_map(keep)
}

fn pod_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Meta, D::Error> {
    let keep = Keep {
        all_labels: false,
        owners: true,
    };
    deserializer.deserialize_map(keep)
}

fn partial_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Meta, D::Error> {
    let keep = Keep {
        all_labels: false,
        owners: false,
    };
    deserializer.deserialize_map(keep)
}

/// A label or annotation key of jobtrace's domain or the job controller's.
fn ours(key: &str) -> bool {
    key.strip_prefix(names::DOMAIN)
        .is_some_and(|rest| rest.starts_with('/'))
        || key.starts_with("batch.kubernetes.io/")
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum MetaField {
    Name,
    Namespace,
    Uid,
    ResourceVersion,
    CreationTimestamp,
    DeletionTimestamp,
    Labels,
    Annotations,
    OwnerReferences,
    Finalizers,
    #[serde(other)]
    Other,
}

impl<'de> Visitor<'de> for Keep {
    type Value = Meta;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object's metadata")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Meta, A::Error> {
        let mut read = Meta::default();
        let meta = &mut read.meta;
        while let Some(field) = map.next_key::<MetaField>()? {
            match field {
                MetaField::Name => meta.name = map.next_value()?,
                MetaField::Namespace => meta.namespace = map.next_value()?,
                MetaField::Uid => meta.uid = map.next_value()?,
                MetaField::ResourceVersion => meta.resource_version = map.next_value()?,
                MetaField::CreationTimestamp => meta.creation_timestamp = map.next_value()?,
                MetaField::DeletionTimestamp => meta.deletion_timestamp = map.next_value()?,
                MetaField::Labels => {
                    let keep: fn(&str) -> bool = if self.all_labels { |_| true } else { ours };
                    meta.labels = map.next_value_seed(KeptMap(keep))?;
                }
                MetaField::Annotations => meta.annotations = map.next_value_seed(KeptMap(ours))?,
                MetaField::OwnerReferences if self.owners => {
                    meta.owner_references = map.next_value_seed(Owners)?;
                }
                MetaField::Finalizers => read.hold = map.next_value_seed(Hold)?,
                MetaField::OwnerReferences | MetaField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(read)
    }
}

/// A string map (labels, annotations) of which only the entries whose keys pass are built.
struct KeptMap(fn(&str) -> bool);

impl<'de> DeserializeSeed<'de> for KeptMap {
    type Value = Option<BTreeMap<String, String>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for KeptMap {
    type Value = Option<BTreeMap<String, String>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of strings")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept = BTreeMap::new();
        while let Some(key) = map.next_key_seed(KeyIf(self.0))? {
            match key {
                Some(key) => {
                    kept.insert(key, map.next_value()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(kept))
    }
}

/// A key, built only when it passes.
struct KeyIf(fn(&str) -> bool);

impl<'de> DeserializeSeed<'de> for KeyIf {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIf {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok((self.0)(key).then(|| key.to_owned()))
    }
}

/// Of the owner references, the first `CronJob` (a Job's span names it) and the first `batch/v1`
/// Job controller (a pod's Job): at most two, whatever the object lists.
struct Owners;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerView {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
    controller: Option<bool>,
}

impl<'de> DeserializeSeed<'de> for Owners {
    type Value = Option<Vec<OwnerReference>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Owners {
    type Value = Option<Vec<OwnerReference>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of owner references")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (mut cronjob, mut job) = (false, false);
        let mut kept = Vec::new();
        while let Some(owner) = seq.next_element::<OwnerView>()? {
            let is_cronjob = !cronjob && owner.kind == "CronJob";
            let is_job = !job
                && owner.controller == Some(true)
                && owner.kind == "Job"
                && owner.api_version == "batch/v1";
            if is_cronjob || is_job {
                cronjob |= is_cronjob;
                job |= is_job;
                kept.push(OwnerReference {
                    api_version: owner.api_version,
                    kind: owner.kind,
                    name: owner.name,
                    uid: owner.uid,
                    controller: owner.controller,
                    block_owner_deletion: None,
                });
            }
        }
        Ok(Some(kept))
    }
}

/// Where `jobtrace.dev/export` is among the finalizers; none of them is built.
struct Hold;

impl<'de> DeserializeSeed<'de> for Hold {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Hold {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of finalizers")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut index = 0;
        while let Some(is_ours) = seq.next_element_seed(Is(names::EXPORT_FINALIZER))? {
            if is_ours && found.is_none() {
                found = Some(index);
            }
            index += 1;
        }
        Ok(found)
    }
}

/// Whether a string is this one, without building it.
struct Is(&'static str);

impl<'de> DeserializeSeed<'de> for Is {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Is {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// The valid `TRACEPARENT` values of a list of containers, in order, each once, at most
/// [`MAX_TRACEPARENTS`]; nothing else of the containers is built.
fn traceparents<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let mut kept = Vec::new();
    deserializer.deserialize_option(Containers(&mut kept))?;
    Ok(kept)
}

/// A list of containers, whose `TRACEPARENT` values go to the vector.
struct Containers<'a>(&'a mut Vec<String>);

impl<'de> Visitor<'de> for Containers<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of containers")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ContainerEnv(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One container, whose `TRACEPARENT` values go to the vector.
struct ContainerEnv<'a>(&'a mut Vec<String>);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ContainerField {
    Env,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for ContainerEnv<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ContainerEnv<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a container")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(field) = map.next_key::<ContainerField>()? {
            match field {
                ContainerField::Env => map.next_value_seed(Env(&mut *self.0))?,
                ContainerField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A container's `env`.
struct Env<'a>(&'a mut Vec<String>);

impl<'de> DeserializeSeed<'de> for Env<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Env<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of env variables")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<EnvView>()? {
            let Some(value) = value.traceparent() else {
                continue;
            };
            if self.0.len() < MAX_TRACEPARENTS && !self.0.contains(&value) {
                self.0.push(value);
            }
        }
        Ok(())
    }
}

/// An env variable: whether it is `TRACEPARENT`, and its value if short enough to be one.
#[derive(Deserialize)]
struct EnvView {
    #[serde(deserialize_with = "is_traceparent")]
    name: bool,
    #[serde(default, deserialize_with = "short")]
    value: Option<String>,
}

impl EnvView {
    fn traceparent(self) -> Option<String> {
        self.value
            .filter(|v| self.name && crate::core::context::traceparent::parse(v).is_ok())
    }
}

fn is_traceparent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Is(names::env::TRACEPARENT).deserialize(deserializer)
}

fn short<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_option(Short)
}

/// A string built only when it is at most [`MAX_TRACEPARENT_LEN`] bytes long.
struct Short;

impl<'de> Visitor<'de> for Short {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((v.len() <= MAX_TRACEPARENT_LEN).then(|| v.to_owned()))
    }
}

#[cfg(test)]
mod tests;
