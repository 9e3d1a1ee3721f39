//! Early traffic reports. A load step should not wait up to a whole metrics interval (1 s) to
//! reach the brain: every `check` (50 ms) [`Pressure::check`] looks at each service's requests
//! completed and in flight since the last report, and asks for a report *now* when the recent
//! rate or the in-flight count has jumped well above what the last report said.
//!
//! An early report is an ordinary `ProxyMetrics` over a shorter window (`interval_ms` says how
//! long), so the brain applies its usual stabilisation windows to it; nothing downstream changes.
//! The first early report after a step covers a window that is partly before the step (its rate
//! understates the spike); the next check then sees the full rate against that lower figure and
//! reports again, so the brain has the spike's real rate within two or three checks.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use acs_events::{ProxyMetrics, ServiceName};

use crate::snapshot::Snapshot;

/// When to report early. `check` zero turns early reports off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureSettings {
    /// How often the request counters are looked at.
    pub check: Duration,
    /// The recent rate (or in-flight count) must be at least this many times the last report's.
    pub factor: f64,
    /// ... and at least this many requests per second above it, so that small absolute changes
    /// (3 → 7 req/s) do not trigger reports.
    pub min_rps: f64,
    /// In-flight requests above the last report's that count as a jump on their own (a backend
    /// that slows down shows in flight before it shows in completions).
    pub min_in_flight: u64,
}

impl Default for PressureSettings {
    fn default() -> Self {
        Self {
            check: Duration::from_millis(50),
            factor: 2.0,
            min_rps: 20.0,
            min_in_flight: 16,
        }
    }
}

impl PressureSettings {
    pub fn enabled(&self) -> bool {
        !self.check.is_zero()
    }
}

/// The recent rate is measured over at least this long and at least [`MIN_REQUESTS`], so one
/// burst of a few requests in a 50 ms check is not taken for a rate; and over the shortest such
/// span within [`LOOKBACK`], so it is the rate after a step, not the average since the report.
const RECENT: Duration = Duration::from_millis(100);
const MIN_REQUESTS: u64 = 5;
const LOOKBACK: Duration = Duration::from_millis(500);
/// Two reports are at least this far apart, whatever the traffic does.
const MIN_GAP: Duration = Duration::from_millis(100);

/// Why a report was sent early (for the log and the counter).
#[derive(Debug, Clone, PartialEq)]
pub struct Jump {
    pub service: ServiceName,
    /// Recent completion rate (req/s) and the last report's.
    pub rps: f64,
    pub reported_rps: f64,
    pub in_flight: u64,
    pub reported_in_flight: u64,
}

#[derive(Debug, Default)]
struct Seen {
    reported_rps: f64,
    reported_in_flight: u64,
    /// `(when, requests completed since the last report)`, oldest first.
    samples: VecDeque<(Instant, u64)>,
}

/// The early-report detector; owned by the metrics task (no locking).
#[derive(Debug)]
pub struct Pressure {
    settings: PressureSettings,
    last_report: Instant,
    services: HashMap<ServiceName, Seen>,
}

impl Pressure {
    pub fn new(settings: PressureSettings, now: Instant) -> Self {
        Self {
            settings,
            last_report: now,
            services: HashMap::new(),
        }
    }

    /// A report was sent at `at` (its windows were reset then): its figures become the baseline.
    pub fn reported(&mut self, m: &ProxyMetrics, at: Instant) {
        self.last_report = at;
        self.services
            .retain(|name, _| m.services.iter().any(|s| &s.service == name));
        for s in &m.services {
            let seen = self.services.entry(s.service.clone()).or_default();
            seen.reported_rps = s.totals.rps;
            seen.reported_in_flight = s.totals.in_flight;
            seen.samples.clear();
        }
    }

    /// Looks at the live counters; `Some` when a report is due now.
    pub fn check(&mut self, snap: &Snapshot, now: Instant) -> Option<Jump> {
        if now.saturating_duration_since(self.last_report) < MIN_GAP {
            return None;
        }
        let s = self.settings;
        let mut due = None;
        for svc in &snap.services {
            let (mut done, mut in_flight) = (0u64, 0u64);
            for b in &svc.backends {
                done += b.state.window.requests_so_far();
                in_flight += b.state.in_flight();
            }
            let seen = self.services.entry(svc.name.clone()).or_default();
            if seen.samples.is_empty() {
                // The windows were reset at the last report: that is the first sample.
                seen.samples.push_back((self.last_report, 0));
            }
            seen.samples.push_back((now, done));
            while seen.samples.len() > 1
                && now.saturating_duration_since(seen.samples[0].0) > LOOKBACK
            {
                seen.samples.pop_front();
            }
            if due.is_some() {
                continue; // keep every service's samples current, report once
            }
            let start = seen.samples.iter().rev().find(|&&(t, n)| {
                now.saturating_duration_since(t) >= RECENT && done.saturating_sub(n) >= MIN_REQUESTS
            });
            let rps = start.map_or(0.0, |&(t, n)| {
                done.saturating_sub(n) as f64 / now.saturating_duration_since(t).as_secs_f64()
            });
            let rate_jump =
                rps >= seen.reported_rps * s.factor && rps - seen.reported_rps >= s.min_rps;
            let in_flight_jump = in_flight
                >= seen.reported_in_flight.saturating_add(s.min_in_flight)
                && in_flight as f64 >= seen.reported_in_flight as f64 * s.factor;
            if rate_jump || in_flight_jump {
                due = Some(Jump {
                    service: svc.name.clone(),
                    rps,
                    reported_rps: seen.reported_rps,
                    in_flight,
                    reported_in_flight: seen.reported_in_flight,
                });
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::collect;
    use crate::routes::RouteTable;
    use crate::snapshot::PeerTimeouts;
    use acs_events::{
        Backend, BackendChange, BackendUpdate, ProxyId, ReplicaId, Route, Selection, WorkerId,
    };

    fn snapshot() -> Snapshot {
        let b = |id: &str| Backend {
            id: ReplicaId::new(id).unwrap(),
            addr: "127.0.0.1:9".into(),
            worker: WorkerId::new("w1").unwrap(),
            draining: false,
        };
        let mut t = RouteTable::new();
        t.apply(&BackendUpdate {
            v: 1,
            service: ServiceName::new("web").unwrap(),
            version: 1,
            ts_ms: 0,
            selection: Selection::RoundRobin,
            change: BackendChange::Reset {
                route: Route::default(),
                backends: vec![b("a"), b("b")],
            },
        });
        Snapshot::build(&t, &Snapshot::default(), &PeerTimeouts::default())
    }

    fn complete(s: &Snapshot, n: usize) {
        for i in 0..n {
            s.services[0].backends[i % 2]
                .state
                .window
                .done(Duration::from_millis(1), false);
        }
    }

    /// Reports `s` as the metrics task would: collect (resets the windows), then `reported`.
    fn report(p: &mut Pressure, s: &Snapshot, window: Duration, at: Instant) -> ProxyMetrics {
        let m = collect(
            s,
            &ProxyId::new("p1").unwrap(),
            window,
            0,
            0,
            0,
            &Default::default(),
        );
        p.reported(&m, at);
        m
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_step_in_rate_is_reported_early_and_steady_load_is_not() {
        let s = snapshot();
        let t0 = Instant::now();
        let mut p = Pressure::new(PressureSettings::default(), t0);
        // A steady second at 10 req/s, reported by the regular tick.
        complete(&s, 10);
        let m = report(&mut p, &s, MS(1000), t0 + MS(1000));
        assert!((m.services[0].totals.rps - 10.0).abs() < 1e-9);
        // The same rate afterwards: no early report, check after check.
        for i in 1..=10 {
            complete(&s, 1);
            assert_eq!(p.check(&s, t0 + MS(1000 + 100 * i)), None, "check {i}");
        }
        let m = report(&mut p, &s, MS(1000), t0 + MS(2000));
        assert!((m.services[0].totals.rps - 10.0).abs() < 1e-9);
        // A step to 200 req/s: 10 requests per 50 ms check. Too soon after the report (MIN_GAP)
        // and too short a span (RECENT) for the first check; due at the second.
        complete(&s, 10);
        assert_eq!(p.check(&s, t0 + MS(2050)), None);
        complete(&s, 10);
        let j = p
            .check(&s, t0 + MS(2100))
            .expect("a jump from 10 to 200 req/s is due");
        assert_eq!(j.service.as_str(), "web");
        assert!((j.rps - 200.0).abs() < 1.0, "{j:?}");
        assert_eq!(j.reported_rps, 10.0);
    }

    #[test]
    fn the_recent_rate_is_over_the_last_span_not_the_whole_window() {
        let s = snapshot();
        let t0 = Instant::now();
        let mut p = Pressure::new(PressureSettings::default(), t0);
        complete(&s, 10);
        report(&mut p, &s, MS(1000), t0);
        // 800 ms at 10 req/s (checks every 50 ms see nothing due) ...
        for i in 1..=16 {
            if i % 2 == 0 {
                complete(&s, 1);
            }
            assert_eq!(p.check(&s, t0 + MS(50 * i)), None, "check {i}");
        }
        // ... then 200 req/s: seen within two checks, although the window's average since the
        // report is still only about 30 req/s.
        complete(&s, 10);
        let first = p.check(&s, t0 + MS(850));
        complete(&s, 10);
        let second = p.check(&s, t0 + MS(900));
        let j = first.or(second).expect("the step is due within two checks");
        assert!(j.rps > 100.0, "{j:?}");
    }

    #[test]
    fn small_changes_are_not_jumps_and_moderate_ones_are() {
        let s = snapshot();
        let t0 = Instant::now();
        let mut p = Pressure::new(PressureSettings::default(), t0);
        complete(&s, 3);
        report(&mut p, &s, MS(1000), t0);
        // 3 → 15 req/s for 500 ms: five times the rate, but only 12 req/s above it (min_rps 20).
        for i in 1..=10 {
            if i % 2 == 0 || i % 3 == 0 {
                complete(&s, 1);
            }
            assert_eq!(p.check(&s, t0 + MS(50 * i)), None, "check {i}");
        }
        // 3 → 40 req/s: 2 requests per check. Fewer than MIN_REQUESTS in 100 ms, so the span
        // stretches back until it holds enough of them.
        let mut due = None;
        for i in 11..=16 {
            complete(&s, 2);
            due = due.or(p.check(&s, t0 + MS(50 * i)));
        }
        let j = due.expect("3 → 40 req/s is due");
        assert!((23.0..=50.0).contains(&j.rps), "{j:?}");
    }

    #[test]
    fn in_flight_piling_up_is_a_jump() {
        let s = snapshot();
        let t0 = Instant::now();
        let mut p = Pressure::new(PressureSettings::default(), t0);
        report(&mut p, &s, MS(1000), t0);
        let held: Vec<_> = (0..20)
            .map(|_| s.services[0].backends[0].state.begin())
            .collect();
        let j = p
            .check(&s, t0 + MS(150))
            .expect("20 in flight after 0 is due");
        assert_eq!((j.in_flight, j.reported_in_flight), (20, 0));
        // Reported: the baseline is now 20 in flight, so the same 20 are not due again.
        report(&mut p, &s, MS(150), t0 + MS(150));
        assert_eq!(p.check(&s, t0 + MS(300)), None);
        drop(held);
    }

    #[test]
    fn reports_are_spaced() {
        let s = snapshot();
        let t0 = Instant::now();
        let mut p = Pressure::new(PressureSettings::default(), t0);
        report(&mut p, &s, MS(1000), t0);
        complete(&s, 100);
        assert_eq!(
            p.check(&s, t0 + MS(99)),
            None,
            "within MIN_GAP of the last report"
        );
        assert!(p.check(&s, t0 + MS(100)).is_some());
    }
}
