//! Waiting for a condition with a deadline: the only way tests wait.
//!
//! A check is an async closure returning `bool`, `Option<T>` or
//! `Result<T, E>`; it is polled every [`POLL_INTERVAL`] until it holds. Each
//! poll is itself bounded by the deadline, so a check that hangs (an RPC to a
//! paused member) cannot stretch the wait.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

/// Pause between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a check returns: whether the condition holds, with a value if so, or
/// why not.
pub trait Check {
    /// The value of a condition that holds.
    type Output;
    /// `Ok` when the condition holds, else a description of why not.
    fn check(self) -> Result<Self::Output, String>;
}

impl Check for bool {
    type Output = ();
    fn check(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("condition is false".to_string())
        }
    }
}

impl<T> Check for Option<T> {
    type Output = T;
    fn check(self) -> Result<T, String> {
        self.ok_or_else(|| "condition returned None".to_string())
    }
}

impl<T, E: Display> Check for Result<T, E> {
    type Output = T;
    fn check(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Polls `check` until it holds and returns its value; panics when `timeout`
/// passes first, naming `what` and the last reason the check gave.
pub async fn wait_for<R: Check>(
    what: impl Display,
    timeout: Duration,
    check: impl AsyncFnMut() -> R,
) -> R::Output {
    match try_wait_for(timeout, check).await {
        Ok(value) => value,
        Err(last) => panic!("timed out after {timeout:?} waiting for {what}; last check: {last}"),
    }
}

/// Polls `check` until it holds; `Err` with the last reason when `timeout`
/// passes first.
pub async fn try_wait_for<R: Check>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> R,
) -> Result<R::Output, String> {
    let deadline = Instant::now() + timeout;
    let mut last = "never checked".to_string();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(result) => match result.check() {
                Ok(value) => return Ok(value),
                Err(why) => last = why,
            },
            Err(_) => {
                return Err(format!(
                    "{last}; then a check was still running at the deadline"
                ));
            }
        }
        tokio::time::sleep_until((Instant::now() + POLL_INTERVAL).min(deadline)).await;
    }
}

/// A pace for retrying loops: its `tick()` returns at once the first time,
/// then at most once per `period`, so that a loop whose server is down
/// retries without spinning. Waiting for a condition is [`wait_for`]'s job.
pub fn pace(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}
