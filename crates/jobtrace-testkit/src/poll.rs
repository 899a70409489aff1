//! Waiting until something holds, with a deadline: the one way the tests and benchmarks wait on
//! the cluster and on the processes they start.

use std::time::{Duration, Instant};

/// What a check of [`until`] gives: `Some` or `Ok` with the value waited for once it holds;
/// before, `None`, or an `Err` saying what it saw instead.
pub trait Outcome {
    type Value;
    fn into_result(self) -> Result<Self::Value, String>;
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T> Outcome for Result<T, String> {
    type Value = T;
    fn into_result(self) -> Self {
        self
    }
}

/// Calls `check` every `every` until it holds, and returns the value it gave; once `within` has
/// passed, panics saying `what` it waited for, and what the last check saw.
pub async fn until<O: Outcome>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> O,
) -> O::Value {
    let deadline = Instant::now() + within;
    loop {
        let seen = match check().await.into_result() {
            Ok(done) => return done,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            let seen = if seen.is_empty() {
                String::new()
            } else {
                format!(" (last seen: {seen})")
            };
            panic!("{what}: not within {within:?}{seen}");
        }
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
            async || {
                calls += 1;
                if calls == 3 {
                    Ok(calls)
                } else {
                    Err(format!("{calls} calls"))
                }
            },
        )
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "nothing: not within 30ms (last seen: 7 of 8)")]
    async fn fails_once_the_deadline_passes_saying_what_it_saw_last() {
        until::<Result<(), String>>(
            "nothing",
            Duration::from_millis(30),
            Duration::from_millis(5),
            async || Err("7 of 8".to_owned()),
        )
        .await;
    }
}
