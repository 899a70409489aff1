//! The release of one held Job or pod: jobtrace's `jobtrace.dev/export` finalizer removed from
//! that very object, and no other finalizer. The controller's mark, the hold keeper and
//! `jobtrace release` ([`crate::commands::release`]) all release through it.

use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Resource};

use crate::core::slim::Slim;
use crate::core::{names, patch};

/// The JSON patch operations that remove jobtrace's finalizer at `index`, only if it is still
/// there (the controller's mark writes them too).
pub fn release_ops(index: usize) -> [json_patch::PatchOperation; 2] {
    let index = index.to_string();
    let path = || patch::pointer(["metadata", "finalizers", index.as_str()]);
    [
        patch::test(path(), names::EXPORT_FINALIZER),
        patch::remove(path()),
    ]
}

/// The JSON patch that removes the finalizer at `index` of the object (Job or pod) `uid`, only if
/// it is still there.
pub fn release_patch(uid: &str, index: usize) -> json_patch::Patch {
    let mut ops = vec![patch::test(patch::pointer(["metadata", "uid"]), uid)];
    ops.extend(release_ops(index));
    json_patch::Patch(ops)
}

/// What became of one held object's release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Its finalizer was removed.
    Released,
    /// It was gone, replaced by another object of its name, or held no more.
    NotHeld,
    /// Its finalizers changed under every attempt.
    KeptChanging,
}

/// Removes jobtrace's finalizer from the Job or pod `name` of uid `uid` (at `hold` among its
/// finalizers, as last seen), through `api`; looks it up again when the finalizers moved
/// meanwhile, a few times. Only that very object, and only jobtrace's finalizer, are ever
/// written.
pub async fn release_held<K>(
    api: &Api<Slim<PartialObjectMeta<K>>>,
    name: &str,
    uid: &str,
    hold: Option<usize>,
) -> Result<Released, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut index = hold;
    for _ in 0..3 {
        let Some(i) = index else {
            return Ok(Released::NotHeld);
        };
        match api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::<()>::Json(release_patch(uid, i)),
            )
            .await
        {
            Ok(_) => return Ok(Released::Released),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Released::NotHeld),
            Err(kube::Error::Api(e)) if e.code == 422 => match api.get_opt(name).await? {
                Some(current) if current.object.metadata.uid.as_deref() == Some(uid) => {
                    index = current.hold;
                }
                _ => return Ok(Released::NotHeld),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(Released::KeptChanging)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_patch_removes_only_jobtraces_finalizer_of_that_very_job() {
        let mut job = serde_json::json!({
            "metadata": { "uid": "u1", "finalizers": ["example.com/keep", "jobtrace.dev/export"] }
        });
        let patch = release_patch("u1", 1);
        json_patch::patch(&mut job, &patch).unwrap();
        assert_eq!(job["metadata"]["finalizers"], json!(["example.com/keep"]));

        let mut other = serde_json::json!({
            "metadata": { "uid": "u2", "finalizers": ["example.com/keep", "jobtrace.dev/export"] }
        });
        assert!(
            json_patch::patch(&mut other, &patch).is_err(),
            "another Job"
        );
        let mut moved = serde_json::json!({
            "metadata": { "uid": "u1", "finalizers": ["jobtrace.dev/export", "example.com/keep"] }
        });
        assert!(
            json_patch::patch(&mut moved, &patch).is_err(),
            "never another finalizer"
        );
    }
}
