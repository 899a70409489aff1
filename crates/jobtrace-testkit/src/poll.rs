//! Waiting until something holds, with a deadline: the one way the kit waits on the cluster and
//! on the processes it starts.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `check` every `every` until it gives `Some`, and returns that; panics, saying `what` it
/// waited for, once `within` has passed.
pub async fn until<T, F, Fut>(what: &str, within: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_what_the_check_gives_once_it_holds() {
        let mut calls = 0;
        let got = until(
            "three calls",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                let done = (calls == 3).then_some(calls);
                async move { done }
            },
        )
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "nothing: not within")]
    async fn fails_once_the_deadline_passes() {
        until::<(), _, _>(
            "nothing",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { None },
        )
        .await;
    }
}
