//! Leader election: only the replica holding the Lease exports, and it gives the Lease up when
//! it stops.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Context, run};

/// Exports only while this replica holds the Lease, so two replicas never both export; loses
/// nothing when leadership moves, since the next leader finds the unmarked objects.
pub async fn run_as_leader(
    context: Arc<Context>,
    lease_namespace: &str,
    lease_name: &str,
    shutdown: CancellationToken,
) -> Result<(), kube_lease_manager::LeaseManagerError> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(context.client.clone(), lease_name)
        .with_namespace(lease_namespace)
        .with_identity(context.instance.clone())
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (mut leader, lease) = manager.watch().await;
    loop {
        context.metrics.leader.set(0);
        context.sync.standby();
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return Ok(()); },
                () = shutdown.cancelled() => { release(leader, lease).await; return Ok(()); }
            }
        }
        tracing::info!(instance = %context.instance, "leading: exporting spans");
        context.metrics.leader.set(1);
        let term = shutdown.child_token();
        let exporting = tokio::spawn(run(context.clone(), term.clone()));
        loop {
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() || !*leader.borrow_and_update() { break; }
                }
                () = shutdown.cancelled() => break,
            }
        }
        term.cancel();
        let _ = exporting.await;
        if shutdown.is_cancelled() {
            context.metrics.leader.set(0);
            release(leader, lease).await;
            return Ok(());
        }
        tracing::warn!(instance = %context.instance, "lost the lease: stopped exporting");
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
