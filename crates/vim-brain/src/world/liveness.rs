//! The brain's own link to the bus, and what it means for down-marking.
//!
//! Liveness is `now - last_seen` on the brain's clock, so a brain that cannot hear (NATS lost,
//! or its own loop stalled) would see every worker fall silent at once. Two guards:
//! - [`Link`]: while the brain is disconnected, and for one worker timeout plus 5 s after it
//!   reconnects (time for every worker to reconnect and report again), no worker is marked down;
//! - full disruption (like Kubernetes' node controller): when most workers go silent at once,
//!   the brain takes it for its own problem and marks none of them down until reports resume.
//!   The plan's `health` step decides it; the world only remembers that it was announced.

use std::collections::BTreeMap;

use acs_events::{WorkerEvent, WorkerHealth, WorkerId, WorkerMetrics, SCHEMA_VERSION};

use super::{Millis, Settings, WorkerView};

/// A second process reporting under a worker id whose accepted instance is still alive. Its
/// metrics are not applied; it is counted, and announced once (`announced_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The accepted (first) instance and its start (worker wall clock).
    pub first: String,
    pub first_started_ms: u64,
    /// The refused instance and its start.
    pub second: String,
    pub second_started_ms: u64,
    /// Reports refused so far.
    pub refused: u64,
    /// When it was first seen and last heard from (brain monotonic clock).
    pub since: Millis,
    pub last_seen: Millis,
}

/// Whether `m` comes from another process than the one accepted in `w` while that one lives.
///
/// A real restart (same id, new instance) is accepted at once: the old instance's last report
/// predates the new one's start (same host clock), or the old one is silent past the worker
/// timeout. Otherwise both run: the newcomer is refused. Workers that report no instance
/// (older versions) are never taken for duplicates.
pub(super) fn is_duplicate(w: &WorkerView, m: &WorkerMetrics, now: Millis, s: &Settings) -> bool {
    let (old, new) = (&w.last, m);
    if old.instance.is_empty() || new.instance.is_empty() || old.instance == new.instance {
        return false;
    }
    let restarted = old.ts_ms < new.started_ms;
    !restarted && w.is_up(now, s)
}

/// Records one refused report from the second instance.
pub(super) fn note_duplicate(
    dups: &mut BTreeMap<WorkerId, Duplicate>,
    w: &WorkerView,
    m: &WorkerMetrics,
    now: Millis,
) {
    let fresh = || Duplicate {
        first: w.last.instance.clone(),
        first_started_ms: w.last.started_ms,
        second: m.instance.clone(),
        second_started_ms: m.started_ms,
        refused: 0,
        since: now,
        last_seen: now,
    };
    let d = dups.entry(m.worker.clone()).or_insert_with(fresh);
    if d.second != m.instance || d.first != w.last.instance {
        // Another pair: count (and announce) it afresh.
        *d = fresh();
    }
    d.refused += 1;
    d.last_seen = now;
}

/// The `WorkerEvent` (health `Duplicate`) announcing `d`; announce it once per pair, when
/// `d.refused == 1` (the plan's health step, or whoever publishes worker events).
pub fn duplicate_event(worker: &WorkerId, d: &Duplicate, ts_ms: u64) -> WorkerEvent {
    WorkerEvent {
        v: SCHEMA_VERSION,
        worker: worker.clone(),
        ts_ms,
        health: WorkerHealth::Duplicate,
        reason: format!(
            "a second process reports as worker {worker}: instance {} (started at {} ms) refused; \
             instance {} (started at {} ms) is still alive and keeps the id",
            d.second, d.second_started_ms, d.first, d.first_started_ms
        ),
    }
}

/// The brain's connection to NATS, as the reconciler reports it (`Event::Connection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Connected now.
    pub connected: bool,
    /// When the link was lost, while it is.
    pub lost_at: Option<Millis>,
    /// No worker is marked down before this (the grace after a reconnect).
    pub hold_until: Millis,
    /// A full disruption has been announced and not yet ended.
    pub disruption: bool,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            connected: true,
            lost_at: None,
            hold_until: 0,
            disruption: false,
        }
    }
}

impl Link {
    /// Folds a connection change in; `grace_ms` is the hold after a reconnect.
    pub(super) fn set(&mut self, connected: bool, now: Millis, grace_ms: Millis) {
        match (self.connected, connected) {
            (true, false) => self.lost_at = Some(now),
            (false, true) => {
                self.lost_at = None;
                self.hold_until = now.saturating_add(grace_ms);
            }
            _ => {}
        }
        self.connected = connected;
    }

    /// Why no worker may be marked down now, if none may (full disruption aside).
    pub fn hold_reason(&self, now: Millis) -> Option<String> {
        if !self.connected {
            let since = self.lost_at.map_or(0, |at| now.saturating_sub(at));
            return Some(format!(
                "the brain has been disconnected from NATS for {since} ms"
            ));
        }
        (now < self.hold_until).then(|| {
            format!(
                "the brain reconnected to NATS; every worker has {} ms more to report",
                self.hold_until - now
            )
        })
    }
}

/// Most workers silent at once: at least 2, and more than half of those believed up.
pub fn is_full_disruption(silent: usize, believed_up: usize) -> bool {
    silent >= 2 && silent * 2 > believed_up
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Event, World};

    fn report(instance: &str, started_ms: u64, ts_ms: u64) -> Event {
        let m: WorkerMetrics = serde_json::from_value(serde_json::json!({
            "worker": "w1", "seq": ts_ms, "ts_ms": ts_ms, "started_ms": started_ms,
            "instance": instance, "interval_ms": 1000, "runtime": "process",
            "host": serde_json::to_value(acs_events::HostMetrics::default()).unwrap(),
            "capacity": {"max_replicas": 4, "running": 0}, "replicas": []
        }))
        .expect("metrics");
        Event::WorkerMetrics(m)
    }

    fn world() -> World {
        World::new(
            Settings::default(),
            crate::world::Now {
                mono: 0,
                unix_ms: 0,
            },
        )
    }

    fn w1() -> WorkerId {
        WorkerId::new("w1").unwrap()
    }

    #[test]
    fn a_second_live_instance_is_refused_and_the_first_kept() {
        let mut w = world();
        w.apply(report("aaaa", 100, 1_000), 1_000);
        w.apply(report("bbbb", 500, 1_100), 1_100); // started before a's last report
        w.apply(report("aaaa", 100, 2_000), 2_000);
        w.apply(report("bbbb", 500, 2_100), 2_100);
        assert_eq!(w.instance_of(&w1()).as_deref(), Some("aaaa"));
        let d = &w.duplicates()[&w1()];
        assert_eq!(
            (d.first.as_str(), d.second.as_str(), d.refused),
            ("aaaa", "bbbb", 2)
        );
        let ev = duplicate_event(&w1(), d, 5);
        assert_eq!(ev.health, WorkerHealth::Duplicate);
        assert!(
            ev.reason.contains("aaaa") && ev.reason.contains("bbbb") && ev.reason.contains("500"),
            "{}",
            ev.reason
        );
    }

    #[test]
    fn the_second_takes_over_once_the_first_falls_silent() {
        let mut w = world();
        let timeout = Settings::default().worker_timeout_ms;
        w.apply(report("aaaa", 100, 1_000), 1_000);
        w.apply(report("bbbb", 500, 1_100), 1_100);
        assert_eq!(w.instance_of(&w1()).as_deref(), Some("aaaa"));
        let later = 1_000 + timeout + 1;
        w.apply(report("bbbb", 500, later), later);
        assert_eq!(w.instance_of(&w1()).as_deref(), Some("bbbb"));
        assert!(w.duplicates().is_empty());
    }

    #[test]
    fn a_restart_is_accepted_at_once() {
        let mut w = world();
        w.apply(report("aaaa", 100, 1_000), 1_000);
        // The new process started after the old one's last report: a restart, not a duplicate.
        w.apply(report("cccc", 1_200, 1_300), 1_300);
        assert_eq!(w.instance_of(&w1()).as_deref(), Some("cccc"));
        assert!(w.duplicates().is_empty());
        // Older workers report no instance: never duplicates.
        w.apply(report("", 1_400, 1_500), 1_500);
        assert_eq!(w.instance_of(&w1()), None);
    }

    #[test]
    fn holds_while_disconnected_and_for_the_grace_after() {
        let mut link = Link::default();
        assert_eq!(link.hold_reason(0), None);
        link.set(false, 1_000, 3_000);
        assert_eq!(
            link.hold_reason(5_000).unwrap(),
            "the brain has been disconnected from NATS for 4000 ms"
        );
        link.set(true, 6_000, 3_000);
        assert!(link
            .hold_reason(8_999)
            .unwrap()
            .contains("1 ms more to report"));
        assert_eq!(link.hold_reason(9_000), None);
        // A second "connected" changes nothing.
        link.set(true, 9_500, 3_000);
        assert_eq!(link.hold_reason(9_500), None);
    }

    #[test]
    fn full_disruption_is_most_workers_and_at_least_two() {
        assert!(!is_full_disruption(1, 1), "one worker alone can die");
        assert!(!is_full_disruption(1, 3));
        assert!(!is_full_disruption(2, 4), "half is not most");
        assert!(is_full_disruption(2, 3));
        assert!(is_full_disruption(2, 2));
    }
}
