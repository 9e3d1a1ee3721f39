//! Crash-loop backoff: a service whose replicas keep dying young is restarted ever more slowly.
//!
//! - **A crash** is a replica that exits before it has run [`MIN_UPTIME_MS`] (by its worker's
//!   own clock: `ReplicaEvent.ts_ms - started_ms`), or that exits while still starting, or a start
//!   the worker refused. A replica the brain is stopping or draining does not count.
//! - **Backoff.** The first crash is replaced at once (it may be a fluke, and a replica killed
//!   once must serve again within the 2 s chaos target). After the n-th crash in a row (n >= 2),
//!   no replica of the service is started before `BASE_MS * 2^(n-2)` has passed, capped at
//!   [`CAP_MS`]: 1 s, 2 s, 4 s ... 60 s. Kubernetes' CrashLoopBackOff runs 10 s doubling to
//!   5 min; our starts are cheap (a process or a warm container), so we start lower, and the
//!   60 s cap still bounds a broken image to about 60 starts an hour.
//! - **A crash loop** is two crashes or more in a row: the service is then `Failed` (0 ready) or
//!   `Partial-Running`, with the last error as the reason.
//! - **Reset.** Once a replica has been seen healthy for [`RESET_AFTER_MS`] with no crash since,
//!   the count goes back to 0 (Kubernetes resets after 10 min of running fine).
//! - **Said once per step**: a `blocked` decision when a backoff step begins, not every tick.
//!
//! The counts live here ([`CrashLoop`], in each service's state): exits are folded in by
//! `World::apply` ([`on_exit`], [`on_start_refused`]); the plan reads them (`plan/backoff.rs`)
//! and its steps ([`CrashStep`]) come back through `Event::PlanSent`. Everything here is pure.

use acs_events::{ReplicaStatus, UnixMs};

use super::{Intent, Millis};

/// A replica that exits before running this long crashed.
pub const MIN_UPTIME_MS: Millis = 10_000;
/// The first backoff step.
pub const BASE_MS: Millis = 1_000;
/// The longest wait between starts.
pub const CAP_MS: Millis = 60_000;
/// Healthy this long with no crash: the crash count is reset.
pub const RESET_AFTER_MS: Millis = 60_000;

/// A service's crash history, as the world keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashLoop {
    /// Crashes in a row.
    pub crashes: u32,
    /// When the last crash was seen (brain monotonic clock).
    pub last_at: Millis,
    /// `web-7 exited with status 1`.
    pub last_error: Option<String>,
    /// The step (crash count) last explained in a decision.
    pub announced: u32,
    /// Since when a replica has been seen healthy with no crash after it.
    pub healthy_since: Option<Millis>,
}

impl CrashLoop {
    pub fn crashed(&mut self, error: String, now: Millis) {
        self.crashes = self.crashes.saturating_add(1);
        self.last_at = now;
        self.last_error = Some(error);
        self.healthy_since = None;
    }

    /// The wait after the last crash before the next start.
    pub fn delay_ms(&self) -> Millis {
        match self.crashes {
            0 | 1 => 0,
            n => BASE_MS.saturating_mul(1 << (n - 2).min(20)).min(CAP_MS),
        }
    }

    /// When the next start may go out (`None`: no crash to back off from).
    pub fn next_start_at(&self) -> Option<Millis> {
        (self.crashes > 0).then(|| self.last_at + self.delay_ms())
    }

    /// Applies a plan's step.
    pub fn step(&mut self, step: &CrashStep) {
        match *step {
            CrashStep::Announced(n) => self.announced = n,
            CrashStep::HealthySince(at) => self.healthy_since = self.healthy_since.or(Some(at)),
            CrashStep::Reset => *self = CrashLoop::default(),
        }
    }
}

/// What a plan changes in a service's crash history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashStep {
    /// This backoff step has been explained.
    Announced(u32),
    /// A replica is healthy: the reset clock runs from here.
    HealthySince(Millis),
    /// Healthy long enough: forget the crashes.
    Reset,
}

/// Folds an exit in: a crash if it was young, still starting, and not asked for.
pub fn on_exit(
    crash: &mut CrashLoop,
    r: &ReplicaStatus,
    intent: Option<&Intent>,
    reason: &str,
    ts_ms: UnixMs,
    now: Millis,
) {
    let asked = matches!(
        intent,
        Some(Intent::Stopping { .. } | Intent::Draining { .. })
    );
    let starting = matches!(intent, Some(Intent::Starting { .. }));
    let young = r.started_ms > 0 && ts_ms.saturating_sub(r.started_ms) < MIN_UPTIME_MS;
    if asked || !(starting || young) {
        return;
    }
    let why = if reason.is_empty() { "exited" } else { reason };
    crash.crashed(format!("{} {why}", r.id), now);
}

/// Folds a refused start in: the worker could not run it (bad spec, image, runtime error).
/// Refusals that say nothing about the service (worker full, stale command, older term) are
/// left to the worker's own placement backoff.
pub fn on_start_refused(
    crash: &mut CrashLoop,
    replica: &str,
    worker: &str,
    error: &str,
    now: Millis,
) {
    let not_ours = [" is full", " is stale", "term"];
    if not_ours.iter().any(|s| error.contains(s)) {
        return;
    }
    crash.crashed(
        format!("start of {replica} on {worker} failed: {error}"),
        now,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::ReplicaState;

    fn status(started_ms: UnixMs) -> ReplicaStatus {
        ReplicaStatus {
            id: "web-7".parse().unwrap(),
            service: "web".parse().unwrap(),
            addr: "127.0.0.1:1".into(),
            state: ReplicaState::Exited,
            cpu_pct: 0.0,
            mem_bytes: 0,
            started_ms,
            restarts: 0,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut c = CrashLoop::default();
        let mut delays = vec![];
        for _ in 0..9 {
            c.crashed("x".into(), 0);
            delays.push(c.delay_ms() / 1000);
        }
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
        c.crashes = u32::MAX;
        assert_eq!(c.delay_ms(), CAP_MS, "no overflow");
    }

    #[test]
    fn only_young_unasked_exits_count() {
        let mut c = CrashLoop::default();
        let stopping = Intent::Stopping {
            sent: 0,
            attempt: 1,
        };
        on_exit(
            &mut c,
            &status(1_000),
            Some(&stopping),
            "exited with status 0",
            2_000,
            5,
        );
        assert_eq!(c.crashes, 0, "a stop the brain asked for");
        on_exit(
            &mut c,
            &status(1_000),
            None,
            "exited with status 1",
            1_000 + MIN_UPTIME_MS,
            5,
        );
        assert_eq!(c.crashes, 0, "ran long enough");
        on_exit(
            &mut c,
            &status(1_000),
            None,
            "exited with status 1",
            2_000,
            5,
        );
        assert_eq!(
            (c.crashes, c.last_error.as_deref()),
            (1, Some("web-7 exited with status 1"))
        );
        on_exit(
            &mut c,
            &status(0),
            Some(&Intent::Starting { since: 0 }),
            "",
            99_000,
            7,
        );
        assert_eq!(
            (c.crashes, c.last_at, c.last_error.as_deref()),
            (2, 7, Some("web-7 exited"))
        );
        on_start_refused(&mut c, "web-8", "w1", "command not allowed", 9);
        assert_eq!(
            c.last_error.as_deref(),
            Some("start of web-8 on w1 failed: command not allowed")
        );
        on_start_refused(&mut c, "web-9", "w1", "worker w1 is full: 4/4 replicas", 9);
        assert_eq!(c.crashes, 3, "a full worker is not the service's fault");
    }
}
