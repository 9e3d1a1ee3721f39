//! Runtime state of backends and services: in-flight counts, consecutive failures, ejection and
//! the metrics window. These live in `Arc`s that survive route-table swaps (a new snapshot reuses
//! the state of every backend it still holds, by service and replica id), so counters and
//! ejections carry over and requests in flight on a removed backend still finish and count down.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use acs_events::{ReplicaId, ServiceName};

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
}

impl BackendState {
    pub fn new(service: ServiceName, id: ReplicaId) -> Self {
        Self {
            service,
            id,
            in_flight: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            window: Window::default(),
        }
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
        self.0.in_flight.fetch_sub(1, Relaxed);
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
        ))
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
        assert_eq!(b.window.take().errors, 0, "ejection bookkeeping does not count errors twice");
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
