//! Runtime state of backends and services: in-flight counts, consecutive failures, ejection and
//! the metrics window. These live in `Arc`s that survive route-table swaps (a new snapshot reuses
//! the state of every backend it still holds, by service and replica id), so counters and
//! ejections carry over and requests in flight on a removed backend still finish and count down.
//!
//! Drains: a backend marked draining wakes the [`DrainWatch`] when its last request in flight
//! finishes (the decrement that reaches 0, and only for draining backends), so the NATS task can
//! tell the brain at once instead of on the next metrics tick.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use acs_events::{ReplicaId, ServiceName};
use tokio::sync::Notify;

use crate::stats::Window;

/// Milliseconds on a monotonic clock that starts with the process (never 0 after start-up
/// because we add 1, so 0 can mean "not ejected").
pub fn mono_now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}

/// When a backend leaves the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectPolicy {
    /// Consecutive failures (connect errors, upstream I/O errors) before ejection.
    pub after: u32,
    /// How long an ejected backend stays out; afterwards it gets traffic again, and one more
    /// failure ejects it again until a success resets the count.
    pub duration: Duration,
}

impl Default for EjectPolicy {
    fn default() -> Self {
        Self {
            after: 3,
            duration: Duration::from_secs(5),
        }
    }
}

/// Woken when a draining backend may have just drained: its last request finished, or a
/// snapshot with a draining backend was swapped in. One per proxy, shared by every
/// [`BackendState`]; wake-ups coalesce (a `Notify` permit), and the waiter checks the snapshot.
#[derive(Debug, Default)]
pub struct DrainWatch {
    notify: Notify,
}

impl DrainWatch {
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

/// One backend's runtime state.
#[derive(Debug)]
pub struct BackendState {
    pub service: ServiceName,
    pub id: ReplicaId,
    in_flight: AtomicU64,
    consecutive_failures: AtomicU32,
    /// `mono_now_ms()` until which the backend is ejected; 0 = never ejected.
    ejected_until_ms: AtomicU64,
    pub window: Window,
    /// Draining in the newest snapshot (set when the snapshot is built).
    draining: AtomicBool,
    /// The service version at which the NATS task last reported this backend drained; 0: not
    /// reported (reset when the backend stops draining). Only the NATS task writes it.
    drain_reported: AtomicU64,
    watch: Arc<DrainWatch>,
}

impl BackendState {
    pub fn new(service: ServiceName, id: ReplicaId, watch: Arc<DrainWatch>) -> Self {
        Self {
            service,
            id,
            in_flight: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            window: Window::default(),
            draining: AtomicBool::new(false),
            drain_reported: AtomicU64::new(0),
            watch,
        }
    }

    /// Marks the backend draining (or not) as the newest snapshot says.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Relaxed);
        if !draining {
            self.drain_reported.store(0, Relaxed);
        }
    }

    /// Whether a drained report is due at `version`: `true` once per version (and marks it).
    pub fn drain_report_due(&self, version: u64) -> bool {
        if self.drain_reported.load(Relaxed) >= version {
            return false;
        }
        self.drain_reported.store(version, Relaxed);
        true
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// Counts a request in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Relaxed) > now_ms
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Relaxed)
    }

    /// Records a failure; returns `true` when this failure ejected the backend.
    /// Counts towards ejection only; callers count the error in the window (once).
    pub fn record_failure(&self, now_ms: u64, policy: &EjectPolicy) -> bool {
        let n = self
            .consecutive_failures
            .fetch_add(1, Relaxed)
            .saturating_add(1);
        if policy.after > 0 && n >= policy.after && !self.is_ejected(now_ms) {
            let until = now_ms + policy.duration.as_millis() as u64;
            self.ejected_until_ms.store(until, Relaxed);
            return true;
        }
        false
    }

    /// A request went through: the failure streak ends, and so does an ejection (the backend
    /// was used because every other one was ejected too, and it answered).
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
        if self.ejected_until_ms.load(Relaxed) != 0 {
            self.ejected_until_ms.store(0, Relaxed);
        }
    }
}

/// Keeps a request counted in its backend's `in_flight` until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl InFlight {
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The request path's only extra cost: a compare, and a load once the count hits 0.
        if self.0.in_flight.fetch_sub(1, Relaxed) == 1 && self.0.draining.load(Relaxed) {
            self.0.watch.wake();
        }
    }
}

/// Per-service runtime state that survives swaps.
#[derive(Debug, Default)]
pub struct ServiceState {
    /// Round-robin (and tie-break) counter.
    pub rr: AtomicUsize,
    /// Requests answered 503 without reaching any backend, in the current window.
    pub unbacked: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<BackendState> {
        Arc::new(BackendState::new(
            ServiceName::new("web").unwrap(),
            ReplicaId::new("a").unwrap(),
            Arc::default(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_request_of_a_draining_backend_wakes_the_watch() {
        let watch = Arc::new(DrainWatch::default());
        let b = Arc::new(BackendState::new(
            ServiceName::new("web").unwrap(),
            ReplicaId::new("a").unwrap(),
            watch.clone(),
        ));
        let woke = |w: &Arc<DrainWatch>| {
            let w = w.clone();
            async move {
                tokio::time::timeout(Duration::from_millis(10), w.woken())
                    .await
                    .is_ok()
            }
        };
        drop(b.begin());
        assert!(!woke(&watch).await, "not draining: no wake-up");
        let (g1, g2) = (b.begin(), b.begin());
        b.set_draining(true);
        drop(g1);
        assert!(!woke(&watch).await, "one still in flight");
        drop(g2);
        assert!(woke(&watch).await, "the last one finished");
        assert!(b.drain_report_due(7));
        assert!(!b.drain_report_due(7), "once per version");
        assert!(b.drain_report_due(8), "again at a newer version");
        b.set_draining(false);
        assert!(b.drain_report_due(8), "a new drain is reported again");
    }

    #[test]
    fn in_flight_guard_counts_down_on_drop() {
        let b = state();
        let g1 = b.begin();
        let g2 = b.begin();
        assert_eq!(b.in_flight(), 2);
        drop(g1);
        assert_eq!(b.in_flight(), 1);
        drop(g2);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn ejects_after_consecutive_failures_and_comes_back() {
        let b = state();
        let p = EjectPolicy {
            after: 3,
            duration: Duration::from_millis(5000),
        };
        let t = 1000;
        assert!(!b.record_failure(t, &p));
        assert!(!b.record_failure(t, &p));
        assert!(!b.is_ejected(t));
        assert!(b.record_failure(t, &p));
        assert!(b.is_ejected(t + 4999));
        assert!(!b.is_ejected(t + 5000));
        // Back in rotation; one more failure ejects it again.
        assert!(b.record_failure(t + 6000, &p));
        assert!(b.is_ejected(t + 6001));
        assert_eq!(
            b.window.take().errors,
            0,
            "ejection bookkeeping does not count errors twice"
        );
    }

    #[test]
    fn success_resets_the_streak() {
        let b = state();
        let p = EjectPolicy::default();
        b.record_failure(1, &p);
        b.record_failure(1, &p);
        b.record_success();
        assert_eq!(b.consecutive_failures(), 0);
        b.record_failure(1, &p);
        b.record_failure(1, &p);
        assert!(b.record_failure(1, &p));
        assert!(b.is_ejected(2));
        b.record_success();
        assert!(!b.is_ejected(2), "a success ends the ejection");
        assert!(!b.record_failure(1, &p));
        assert!(!b.is_ejected(1));
    }

    #[test]
    fn zero_threshold_never_ejects() {
        let b = state();
        let p = EjectPolicy {
            after: 0,
            duration: Duration::from_secs(5),
        };
        for _ in 0..10 {
            assert!(!b.record_failure(1, &p));
        }
        assert!(!b.is_ejected(1));
    }

    #[test]
    fn clock_is_monotonic_and_nonzero() {
        let a = mono_now_ms();
        let b = mono_now_ms();
        assert!(a >= 1 && b >= a);
    }
}
