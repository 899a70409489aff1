//! Leader election: only the replica holding the Lease exports, and it gives the Lease up when
//! it stops.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use tokio_util::sync::CancellationToken;

use super::{Deps, run};

/// How long a Lease is valid after its last renewal, in seconds.
const LEASE_SECONDS: u16 = 15;
/// How long before the Lease's expiry its holder renews it: every 5 s, as kube-controller-manager
/// renews its 15 s Lease.
const RENEW_BEFORE_SECONDS: u16 = 10;
/// How long before the Lease's expiry its holder stops exporting when no later renewal was read
/// back: the clock skew between replicas this tolerates. Less than [`RENEW_BEFORE_SECONDS`], so
/// that a renewal has time to land: with the two equal, the renewal was due at the very moment
/// the export stopped, and a renewal a little late on a busy machine ended the export.
const SKEW_SECONDS: u16 = 5;
/// How often the leader reads its Lease back to learn until when it holds it.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Until when, by this replica's clock, `lease` lets `identity` export: its last renewal plus the
/// Lease's duration, less the grace. Others may take the Lease over at renewal plus duration (by
/// their clocks, which the grace allows to run ahead); the holder wrote the renewal time by its
/// own clock. `None` when `identity` doesn't hold it.
pub(super) fn exports_until(lease: &Lease, identity: &str, grace: Duration) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    let renewed =
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(renewed.as_nanosecond()).ok()?);
    (renewed + Duration::from_secs(seconds)).checked_sub(grace)
}

/// Resolves when this replica can no longer be sure it holds the Lease: the deadline its last
/// renewal gives passes before a later renewal is read back. The apiserver being unreachable
/// makes no difference: the deadline stands, so the replica stops exporting before another one
/// can take the Lease, whatever the lease library reports meanwhile.
async fn lease_lapses(leases: Api<Lease>, name: &str, identity: &str) {
    let grace = Duration::from_secs(SKEW_SECONDS.into());
    let first = Duration::from_secs((LEASE_SECONDS - SKEW_SECONDS).into());
    let mut until = tokio::time::Instant::now() + first;
    loop {
        match leases.get(name).await {
            Ok(lease) => match exports_until(&lease, identity, grace) {
                Some(deadline) => {
                    let left = deadline
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    until = tokio::time::Instant::now() + left;
                }
                None => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "can't read the Lease back; exporting until it would expire");
            }
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep_until(until.min(now + CHECK_EVERY)).await;
    }
}

/// Resolves once `identity`'s Lease, read back, lets it export for a while yet: renewed since it
/// lapsed. Without this, a replica whose export stopped for one late renewal kept the Lease,
/// renewed by the library, and exported nothing, nor could any other replica.
async fn renewed(leases: &Api<Lease>, name: &str, identity: &str) {
    let grace = Duration::from_secs(SKEW_SECONDS.into());
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if let Ok(lease) = leases.get(name).await
            && let Some(until) = exports_until(&lease, identity, grace)
            && until > SystemTime::now() + CHECK_EVERY
        {
            return;
        }
    }
}

/// Where the Lease is, and what owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// The Deployment of the replicas, made the Lease's owner by each new leader: the garbage
    /// collector deletes the Lease with it (at `helm uninstall`, whose replicas can no longer
    /// write by the time they stop, their RBAC gone with the release).
    pub owner: Option<String>,
}

/// Makes the Deployment `owner` the owner of the Lease, unless it is already.
async fn own_lease(deps: &Deps, settings: &LeaseSettings, owner: &str) -> kube::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(deps.client.clone(), &settings.namespace);
    let leases: Api<Lease> = Api::namespaced(deps.client.clone(), &settings.namespace);
    let deployment = deployments.get(owner).await?;
    let Some(reference) = deployment.controller_owner_ref(&()).map(|mut r| {
        // An owner, not a controller: nothing reconciles the Lease from the Deployment.
        r.controller = None;
        r.block_owner_deletion = None;
        r
    }) else {
        return Ok(());
    };
    let lease = leases.get(&settings.name).await?;
    let mut references = lease.metadata.owner_references.unwrap_or_default();
    if references.iter().any(|r| r.uid == reference.uid) {
        return Ok(());
    }
    references.retain(|r| r.kind != "Deployment");
    references.push(reference);
    let patch = serde_json::json!({ "metadata": {
        "ownerReferences": references,
        "resourceVersion": lease.metadata.resource_version,
    } });
    leases
        .patch(
            &settings.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    tracing::info!(lease = %settings.name, deployment = owner, "the Lease is owned by the Deployment");
    Ok(())
}

/// Exports only while this replica holds the Lease, so two replicas never both export; loses
/// nothing when leadership moves, since the next leader finds the unmarked objects.
pub async fn run_as_leader(
    deps: Arc<Deps>,
    settings: &LeaseSettings,
    shutdown: CancellationToken,
) -> Result<(), kube_lease_manager::LeaseManagerError> {
    let (lease_namespace, lease_name) = (settings.namespace.as_str(), settings.name.as_str());
    let manager = kube_lease_manager::LeaseManagerBuilder::new(deps.client.clone(), lease_name)
        .with_namespace(lease_namespace)
        .with_identity(deps.instance.clone())
        .with_duration(LEASE_SECONDS.into())
        .with_grace(RENEW_BEFORE_SECONDS.into())
        .build()
        .await?;
    let (mut leader, lease) = manager.watch().await;
    loop {
        deps.metrics.leader.set(0);
        deps.sync.standby();
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return Ok(()); },
                () = shutdown.cancelled() => { release(leader, lease).await; return Ok(()); }
            }
        }
        tracing::info!(instance = %deps.instance, "leading: exporting spans");
        deps.metrics.leader.set(1);
        if let Some(owner) = &settings.owner
            && let Err(e) = own_lease(&deps, settings, owner).await
        {
            tracing::warn!(error = %e, deployment = %owner, "could not make the Deployment the Lease's owner; the Lease outlives it");
        }
        let term = shutdown.child_token();
        let mut exporting = tokio::spawn(run(deps.clone(), term.clone()));
        let lapses = lease_lapses(
            Api::namespaced(deps.client.clone(), lease_namespace),
            lease_name,
            &deps.instance,
        );
        tokio::pin!(lapses);
        let lease_lapsed = loop {
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() || !*leader.borrow_and_update() { break false; }
                }
                () = &mut lapses => break true,
                () = shutdown.cancelled() => break false,
            }
        };
        term.cancel();
        if lease_lapsed {
            // Not a moment more: another replica may hold the Lease from now on.
            exporting.abort();
            tracing::warn!(instance = %deps.instance, "the Lease was not renewed in time: stopped exporting");
            deps.metrics.leader.set(0);
            deps.sync.standby();
            // Lead again once a renewal is read back (the library kept the Lease: a late renewal,
            // an apiserver away for a while), or once the library has seen it lost and regained.
            let leases = Api::namespaced(deps.client.clone(), lease_namespace);
            while *leader.borrow_and_update() {
                tokio::select! {
                    changed = leader.changed() => if changed.is_err() { return Ok(()); },
                    () = renewed(&leases, lease_name, &deps.instance) => break,
                    () = shutdown.cancelled() => { release(leader, lease).await; return Ok(()); }
                }
            }
            continue;
        }
        let _ = (&mut exporting).await;
        if shutdown.is_cancelled() {
            deps.metrics.leader.set(0);
            release(leader, lease).await;
            return Ok(());
        }
        tracing::warn!(instance = %deps.instance, "lost the lease: stopped exporting");
    }
}

/// Gives the Lease up, so that another replica leads at once rather than when it expires.
async fn release(
    leader: tokio::sync::watch::Receiver<bool>,
    lease: tokio::task::JoinHandle<
        Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
    >,
) {
    // The lease task releases the Lease once nobody listens to it any more.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease).await {
        Ok(Ok(Ok(_))) => tracing::info!("Lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the Lease; it expires"),
        Ok(Err(_)) | Err(_) => tracing::warn!("could not release the Lease in time; it expires"),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;

    fn lease(holder: &str, renewed_secs: i64, duration: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    k8s_openapi::jiff::Timestamp::from_second(renewed_secs).unwrap(),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn the_holder_exports_until_renewal_plus_duration_less_the_grace() {
        let grace = Duration::from_secs(5);
        let until = exports_until(&lease("me", 1_000, 15), "me", grace).unwrap();
        assert_eq!(until, SystemTime::UNIX_EPOCH + Duration::from_secs(1_010));
        assert_eq!(exports_until(&lease("other", 1_000, 15), "me", grace), None);
        assert_eq!(exports_until(&Lease::default(), "me", grace), None);
    }

    #[test]
    fn a_renewal_is_due_well_before_the_export_would_stop() {
        let renewed_after = LEASE_SECONDS - RENEW_BEFORE_SECONDS;
        let export_stops_after = LEASE_SECONDS - SKEW_SECONDS;
        // Two renewals' worth of time: one may be late, and CHECK_EVERY must read it back.
        assert!(
            2 * renewed_after <= export_stops_after,
            "{renewed_after} {export_stops_after}"
        );
        assert!(Duration::from_secs(renewed_after.into()) > CHECK_EVERY);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_apiserver_ends_the_export_before_the_lease_expires() {
        // No apiserver answers at this address: every read of the Lease fails.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let started = tokio::time::Instant::now();
        lease_lapses(Api::namespaced(client, "ns"), "jobtrace", "me").await;
        let waited = started.elapsed();
        assert!(
            waited <= Duration::from_secs((LEASE_SECONDS - SKEW_SECONDS).into()) + CHECK_EVERY,
            "{waited:?}"
        );
    }
}
