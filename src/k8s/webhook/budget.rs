//! The memory that admission work may hold at once. Before its body is read, a review reserves
//! what a body of its declared length can cost at most: the body itself as it arrives and is
//! gathered, the strings read from it, and as many typed values as it can hold (each takes at
//! least two bytes of JSON), up to the object limit. A review that can't get its share within
//! the wait is answered unchanged (see `handle`), so that an overload is answered in time
//! instead of queueing past the apiserver's timeout, and a flood of large reviews costs a bounded
//! amount of memory. One reservation per review, taken before anything is read: a review never
//! holds a share while it waits for another, so waits always end.

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

/// What a review whose body declares `length` bytes may cost at most.
pub fn share(length: usize) -> usize {
    let values = (length / 2 + 1).min(super::admitted::MAX_VALUES);
    length * PER_BODY_BYTE + values * super::admitted::BYTES_PER_VALUE + PER_REVIEW_BYTES
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

    #[test]
    fn a_review_is_counted_for_its_body_and_the_values_it_can_hold() {
        let typical = share(3_000);
        assert!(typical < 2 * 1024 * 1024, "{typical}");
        assert!(
            BUDGET_BYTES / typical >= 20,
            "twenty typical reviews at once"
        );
        let largest = share(super::super::MAX_BODY);
        assert!(
            largest >= super::super::admitted::MAX_VALUES * super::super::admitted::BYTES_PER_VALUE,
            "the most values any body can hold"
        );
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
