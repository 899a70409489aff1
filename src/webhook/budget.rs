//! The memory that admission work may hold at once. A review reserves its share twice: its body's
//! declared length before the body is read, then what reading its object may take, counted from
//! the object's JSON values. A review that can't get its share within the wait is answered
//! unchanged (see `handle`), so that an overload is answered in time instead of queueing past the
//! apiserver's timeout, and a flood of large reviews costs a bounded amount of memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Bytes of admission work in hand at once, by the estimates below: with the chart's 256 MiB
/// limit, room for the controller beside it.
pub const BUDGET_BYTES: usize = 40 * 1024 * 1024;
/// How long a review waits for its share: well within the apiserver's timeout (3 s by default).
pub const WAIT: Duration = Duration::from_secs(1);
/// Bytes counted per byte of a body: the body as it arrives in pieces, gathered into one buffer,
/// and the strings read from it (a 3.8 MB body took 19 MiB of peak RSS with nothing built from it,
/// docs/benchmarks.md).
pub const PER_BODY_BYTE: usize = 6;
/// What a review takes besides its body and its object's values: the patch and the answer.
pub const PER_REVIEW_BYTES: usize = 1024 * 1024;
/// A share of [`BUDGET_BYTES`], counted in KiB.
#[derive(Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    total_kib: u32,
    pub wait: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(BUDGET_BYTES, WAIT)
    }
}

impl Budget {
    pub fn new(bytes: usize, wait: Duration) -> Self {
        let total_kib = kib(bytes, u32::MAX);
        Self {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            wait,
        }
    }

    /// Reserves `bytes` until the permit is dropped, waiting until `deadline` at most. A share
    /// larger than the whole budget waits for all of it, so that every review can run alone.
    pub async fn reserve(&self, bytes: usize, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        let wanted = kib(bytes, self.total_kib);
        tokio::time::timeout_at(deadline, self.permits.clone().acquire_many_owned(wanted))
            .await
            .ok()?
            .ok()
    }
}

impl Budget {
    /// `more`, or what is left of the budget beside `held`: a second share that, with the
    /// first, can always be had.
    pub fn at_most_with(&self, held: usize, more: usize) -> usize {
        let total = self.total_kib as usize * 1024;
        more.min(total.saturating_sub(held.min(total)))
    }
}

/// `bytes` in KiB, rounded up, at least one and at most `max`.
fn kib(bytes: usize, max: u32) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_review_waits_for_its_share_and_gives_up_at_the_deadline() {
        let budget = Budget::new(10 * 1024, Duration::from_millis(50));
        let soon = || Instant::now() + Duration::from_millis(50);
        let first = budget.reserve(6 * 1024, soon()).await.expect("room");
        assert!(
            budget.reserve(6 * 1024, soon()).await.is_none(),
            "over the budget"
        );
        let small = budget.reserve(4 * 1024, soon()).await;
        assert!(small.is_some(), "what is left");
        drop(first);
        assert!(budget.reserve(6 * 1024, soon()).await.is_some(), "released");
    }

    #[tokio::test]
    async fn a_share_larger_than_the_budget_takes_all_of_it() {
        let budget = Budget::new(1024, Duration::from_millis(50));
        let deadline = Instant::now() + Duration::from_millis(50);
        let all = budget
            .reserve(1 << 30, deadline)
            .await
            .expect("the whole budget");
        assert!(budget.reserve(1, deadline).await.is_none());
        drop(all);
    }
}
