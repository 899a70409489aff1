//! How far the controller's watches have got: `/syncz` and `jobtrace_controller_listing` report
//! it. It is the controller's own signal: serving the webhook (and `/readyz`) never waits on it.

use std::sync::Mutex;

use prometheus_client::metrics::gauge::Gauge;

use super::ObjectKind;

/// The controller's state, as `/syncz` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Not deciding yet whether it leads (building its client, reading the Lease).
    Starting,
    /// Another replica leads: nothing to list here.
    Standby,
    /// Leading, and a watch of the traced Jobs or pods is listing (the first list after taking
    /// the lead, or a relist): objects not listed yet wait for their spans.
    Listing,
    /// Leading, and both watches have listed everything.
    Synced,
}

impl SyncState {
    /// Whether nothing waits to be listed: synced, or standing by.
    pub fn synced(self) -> bool {
        matches!(self, Self::Standby | Self::Synced)
    }

    /// What `/syncz` says.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Standby => "standby: another replica leads and lists",
            Self::Listing => "listing the traced Jobs and pods",
            Self::Synced => "synced",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
enum Phase {
    #[default]
    Starting,
    Standby,
    /// Whether the Jobs' and the pods' watch have each listed since the lead was taken, or since
    /// their latest relist began.
    Leading {
        jobs: bool,
        pods: bool,
    },
}

/// The controller's state, shared with the metrics port; keeps the listing gauge in step.
#[derive(Debug, Default)]
pub struct ControllerSync {
    phase: Mutex<Phase>,
    /// `jobtrace_controller_listing`: 1 while [`SyncState::Listing`].
    listing: Gauge,
}

impl ControllerSync {
    /// Starting, with `listing` the gauge to keep (a registered one: [`crate::k8s::metrics::Metrics`]'s).
    pub fn new(listing: Gauge) -> Self {
        Self {
            phase: Mutex::default(),
            listing,
        }
    }

    pub fn state(&self) -> SyncState {
        match *self.phase.lock().expect("not poisoned") {
            Phase::Starting => SyncState::Starting,
            Phase::Standby => SyncState::Standby,
            Phase::Leading {
                jobs: true,
                pods: true,
            } => SyncState::Synced,
            Phase::Leading { .. } => SyncState::Listing,
        }
    }

    /// Not leading (or not any more).
    pub fn standby(&self) {
        self.set(Phase::Standby);
    }

    /// Leading: both watches have everything to list.
    pub fn leading(&self) {
        self.set(Phase::Leading {
            jobs: false,
            pods: false,
        });
    }

    /// The watch of `kind` begins a (re)list.
    pub(super) fn listing(&self, kind: ObjectKind) {
        self.listed_is(kind, false);
    }

    /// The watch of `kind` has listed everything.
    pub(super) fn listed(&self, kind: ObjectKind) {
        self.listed_is(kind, true);
    }

    fn listed_is(&self, kind: ObjectKind, listed: bool) {
        let mut phase = self.phase.lock().expect("not poisoned");
        // Events of a watch that outlived the lead change nothing.
        if let Phase::Leading { jobs, pods } = &mut *phase {
            match kind {
                ObjectKind::Job => *jobs = listed,
                ObjectKind::Pod => *pods = listed,
            }
        }
        drop(phase);
        self.update_gauge();
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().expect("not poisoned") = phase;
        self.update_gauge();
    }

    fn update_gauge(&self) {
        self.listing
            .set(i64::from(self.state() == SyncState::Listing));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_once_both_watches_listed_after_taking_the_lead() {
        let sync = ControllerSync::default();
        assert_eq!(sync.state(), SyncState::Starting);
        assert!(!sync.state().synced(), "nothing known yet");
        sync.standby();
        assert_eq!(sync.state(), SyncState::Standby);
        assert!(sync.state().synced(), "a standby has nothing to list");
        sync.leading();
        assert_eq!(sync.state(), SyncState::Listing);
        sync.listing(ObjectKind::Job);
        sync.listing(ObjectKind::Pod);
        sync.listed(ObjectKind::Job);
        assert_eq!(
            sync.state(),
            SyncState::Listing,
            "the pods are still listing"
        );
        sync.listed(ObjectKind::Pod);
        assert_eq!(sync.state(), SyncState::Synced);
        assert!(sync.state().synced());
    }

    #[test]
    fn a_relist_is_listing_again_until_it_is_done() {
        let sync = ControllerSync::default();
        sync.leading();
        sync.listed(ObjectKind::Job);
        sync.listed(ObjectKind::Pod);
        sync.listing(ObjectKind::Pod);
        assert_eq!(sync.state(), SyncState::Listing);
        sync.listed(ObjectKind::Pod);
        assert_eq!(sync.state(), SyncState::Synced);
    }

    #[test]
    fn a_new_lead_lists_again_and_watch_events_after_the_lead_change_nothing() {
        let sync = ControllerSync::default();
        sync.leading();
        sync.listed(ObjectKind::Job);
        sync.listed(ObjectKind::Pod);
        sync.standby();
        sync.listed(ObjectKind::Job);
        assert_eq!(sync.state(), SyncState::Standby);
        sync.leading();
        assert_eq!(
            sync.state(),
            SyncState::Listing,
            "nothing kept from the last lead"
        );
    }

    #[test]
    fn the_gauge_is_one_exactly_while_listing() {
        let gauge = Gauge::default();
        let sync = ControllerSync::new(gauge.clone());
        assert_eq!(gauge.get(), 0, "starting");
        sync.leading();
        assert_eq!(gauge.get(), 1);
        sync.listed(ObjectKind::Job);
        assert_eq!(gauge.get(), 1);
        sync.listed(ObjectKind::Pod);
        assert_eq!(gauge.get(), 0, "synced");
        sync.listing(ObjectKind::Job);
        assert_eq!(gauge.get(), 1, "relisting");
        sync.standby();
        assert_eq!(gauge.get(), 0, "lost the lead");
    }
}
