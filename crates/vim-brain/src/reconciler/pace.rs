//! Whether the loop keeps up with the bus: each pass's latency (from the event taken off the
//! inbox to the plan sent), how much was queued before it, and how old the reports were when
//! taken. It goes to `GET /metrics` and, when a pass is slow or the inbox lags, to a warning
//! (at most one per [`LOG_EVERY`], with what happened since), never to a silent stall.
//!
//! It also spaces plans out when they are expensive ([`Pace::admit`]): after a pass of `T`
//! (over [`SPACE_ABOVE`]) the next plan waits until `GAP_FACTOR × T` after it ended, and
//! every event in between is folded into that one plan. Planning then takes at most about a
//! third of the loop, and the rest is left to take reports off the inbox.

use std::time::{Duration, Instant};

use tracing::warn;

use crate::prom::BrainProm;

/// A pass slower than this is logged (the decision loop's target at 10,000 workers).
pub(super) const SLOW_PASS: Duration = Duration::from_millis(50);
/// Reports older than this when taken off the inbox mean the loop is behind the bus (a report
/// is at most one metrics interval old when it is sent).
pub(super) const LAG_WARN_MS: u64 = 2_000;
/// Warnings of each kind are at most this frequent.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);
/// Passes at most this long never put the next plan off.
pub(super) const SPACE_ABOVE: Duration = Duration::from_millis(20);
/// After a longer pass, the next plan waits this many times the pass after it ended...
pub(super) const GAP_FACTOR: u32 = 2;
/// ... but never longer than this.
pub(super) const MAX_GAP: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(super) struct Pace {
    /// Oldest report age seen (ms, sender's clock to ours) since the last pass.
    lag_ms: u64,
    /// Messages folded in from the inbox since the last pass (drained before it plans).
    folded: u64,
    /// Whether the last drain stopped at its cap with more still queued.
    capped: bool,
    slow: Throttle,
    lagging: Throttle,
    /// The last pass: when it ended and how long it took.
    last: Option<(Instant, Duration)>,
    /// A plan was asked for and put off; the first event that asked was taken then.
    deferred: Option<Instant>,
}

/// Counts occurrences and lets a warning through at most every [`LOG_EVERY`].
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    since: u64,
}

impl Throttle {
    /// `Some(n)`: log now, `n` occurrences since the last line (this one included).
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

impl Pace {
    /// A report stamped `sent_unix_ms` by its sender was taken off the inbox at `now_unix_ms`.
    pub(super) fn report_taken(&mut self, sent_unix_ms: u64, now_unix_ms: u64) {
        self.lag_ms = self.lag_ms.max(now_unix_ms.saturating_sub(sent_unix_ms));
    }

    /// `n` queued messages were folded in before a plan; `capped`: more were still queued.
    pub(super) fn drained(&mut self, n: u64, capped: bool) {
        self.folded += n;
        self.capped |= capped;
    }

    /// Before each plan (leader or standby): inbox lag and backlog to the gauges, and a warning
    /// while the brain is behind.
    pub(super) fn report_inbox(&mut self, prom: &BrainProm) {
        let (lag_ms, folded, capped) = (self.lag_ms, self.folded, self.capped);
        (self.lag_ms, self.folded, self.capped) = (0, 0, false);
        prom.inbox(lag_ms, folded);
        if lag_ms > LAG_WARN_MS || capped {
            if let Some(times) = self.lagging.hit(Instant::now()) {
                warn!(
                    lag_ms, backlog = folded, more_queued = capped, times,
                    "the brain is behind the bus: reports waited in its inbox (lag: oldest report's age when taken)"
                );
            }
        }
    }

    /// A plan is asked for by an event taken at `taken`: `Some(first taken)` to plan now (for
    /// this event and any put off before), `None` if it is put off until [`Self::due`].
    pub(super) fn admit(&mut self, taken: Instant, now: Instant) -> Option<Instant> {
        let first = self.deferred.map_or(taken, |d| d.min(taken));
        match self.due_after() {
            Some(due) if now < due => {
                self.deferred = Some(first);
                None
            }
            _ => {
                self.deferred = None;
                Some(first)
            }
        }
    }

    /// When the plan put off may run, if one is.
    pub(super) fn due(&self) -> Option<Instant> {
        self.deferred?;
        Some(self.due_after().unwrap_or_else(Instant::now))
    }

    /// The earliest time the next plan may start, after an expensive pass.
    fn due_after(&self) -> Option<Instant> {
        let (ended, took) = self.last?;
        (took > SPACE_ABOVE).then(|| ended + (took * GAP_FACTOR).min(MAX_GAP))
    }

    /// A plan was sent: `pass` since its event was taken, `plan` for the pure decision.
    pub(super) fn pass(&mut self, prom: &BrainProm, pass: Duration, plan: Duration) {
        prom.decision_loop(pass);
        // Spaced by what the plan itself cost, not by the wait of a plan put off.
        self.last = Some((Instant::now(), plan));
        if pass > SLOW_PASS {
            if let Some(times) = self.slow.hit(Instant::now()) {
                warn!(
                    pass_ms = pass.as_secs_f64() * 1e3,
                    plan_ms = plan.as_secs_f64() * 1e3,
                    times,
                    threshold_ms = SLOW_PASS.as_millis() as u64,
                    "slow decision loop pass (event taken off the inbox to plan sent)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_logs_the_first_and_counts_the_rest() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(1));
        assert_eq!(t.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.hit(t0 + LOG_EVERY + Duration::from_millis(1)), Some(3));
    }

    #[test]
    fn plans_after_an_expensive_one_are_put_off_and_merged() {
        let prom = BrainProm::default();
        let mut p = Pace::default();
        let t0 = Instant::now();
        assert_eq!(p.admit(t0, t0), Some(t0), "nothing known yet: plan now");
        p.pass(&prom, Duration::from_millis(5), Duration::from_millis(5));
        let t1 = Instant::now();
        assert_eq!(
            p.admit(t1, t1),
            Some(t1),
            "a cheap plan never puts the next off"
        );

        p.pass(
            &prom,
            Duration::from_millis(300),
            Duration::from_millis(300),
        );
        let (ended, _) = p.last.unwrap();
        let (a, b) = (
            ended + Duration::from_millis(10),
            ended + Duration::from_millis(20),
        );
        assert_eq!(p.admit(a, a), None);
        assert_eq!(p.admit(b, b), None);
        assert_eq!(p.due(), Some(ended + Duration::from_millis(600)));
        let late = ended + Duration::from_millis(600);
        assert_eq!(
            p.admit(late, late),
            Some(a),
            "one plan for both, measured from the first"
        );
        assert_eq!(p.due(), None);

        p.pass(&prom, Duration::from_secs(5), Duration::from_secs(5));
        let (ended, _) = p.last.unwrap();
        let soon = ended + Duration::from_millis(1);
        assert_eq!(p.admit(soon, soon), None);
        assert_eq!(p.due(), Some(ended + MAX_GAP));
    }

    #[test]
    fn lag_is_the_oldest_report_since_the_last_pass_and_resets() {
        let prom = BrainProm::default();
        let mut p = Pace::default();
        p.report_taken(1_000, 1_300);
        p.report_taken(900, 3_400);
        p.report_taken(5_000, 4_000); // a sender's clock ahead of ours: no negative lag
        p.drained(7, false);
        p.drained(3, true);
        assert_eq!((p.lag_ms, p.folded, p.capped), (2_500, 10, true));
        p.report_inbox(&prom);
        assert_eq!((p.lag_ms, p.folded, p.capped), (0, 0, false));
    }
}
