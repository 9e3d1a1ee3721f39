//! Waiting for something a test cannot be told about: poll it until it holds, with a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Calls `attempt` every `every` until it returns `Ok`; after `timeout`, returns its last `Err`
/// (which can carry what was seen last, for the test's panic message).
pub async fn eventually<T, E, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Polls `cond` every 50 ms until it holds; panics `timed out waiting until <what>` after
/// `timeout`.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let held = eventually(timeout, Duration::from_millis(50), || {
        let check = cond();
        async move { check.await.then_some(()).ok_or(()) }
    })
    .await;
    if held.is_err() {
        panic!("timed out after {timeout:?} waiting until {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_ok_or_the_last_err() {
        let mut n = 0;
        let r: Result<u32, u32> =
            eventually(Duration::from_secs(5), Duration::from_millis(1), || {
                n += 1;
                let seen = n;
                async move {
                    if seen == 3 {
                        Ok(seen)
                    } else {
                        Err(seen)
                    }
                }
            })
            .await;
        assert_eq!(r, Ok(3));

        let r: Result<(), Instant> = eventually(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || async { Err(Instant::now()) },
        )
        .await;
        assert!(r.is_err());
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting until never")]
    async fn until_panics_with_what_it_waited_for() {
        until("never", Duration::from_millis(50), || async { false }).await;
    }
}
