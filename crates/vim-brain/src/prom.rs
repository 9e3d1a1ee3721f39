//! The brain's Prometheus metrics (`GET /metrics`, served by `acs_node::metrics`).
//!
//! Counted once per plan from what the plan holds (never per message):
//! `acs_brain_plans_total`, `acs_brain_plan_duration_seconds` (the pure `plan` call),
//! `acs_brain_decisions_total{service,action}`, `acs_brain_placements_total{service}` (starts
//! sent), `acs_brain_commands_total{kind,result}` (worker answers). Set on every reconcile:
//! `acs_brain_leader` (1 while acting), `acs_brain_term`, `acs_brain_workers{state}`,
//! `acs_brain_rejected_messages_total` (the same count `acs.status` reports).
//!
//! Whether the loop keeps up (see `reconciler/pace.rs`): `acs_brain_decision_loop_seconds`
//! (each plan pass, from its event taken off the inbox to the plan sent, folding in what was
//! queued included), `acs_brain_inbox_lag_seconds` (the oldest worker report's age when taken,
//! since the previous pass) and `acs_brain_inbox_backlog` (messages folded in before the last
//! plan). What it publishes: `acs_brain_largest_message_bytes{kind}` (the largest payload
//! so far, by kind: the subject's second token, or `reply`) and
//! `acs_brain_oversize_messages_total{kind}` (payloads over `acs_events::MAX_PAYLOAD`, which
//! subscribers refuse).

use std::sync::atomic::Ordering;
use std::time::Duration;

use acs_events::DecisionAction;
use acs_node::metrics::prometheus_client;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::plan::Plan;

/// Bucket bounds of `acs_brain_decision_loop_seconds`: 0.5 ms .. 5 s.
const LOOP_BUCKETS: [f64; 22] = [
    0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0,
];

type ServiceAction = [(&'static str, String); 2];
type Service = [(&'static str, String); 1];
type Fixed = [(&'static str, &'static str); 2];
type State = [(&'static str, &'static str); 1];
type Kind = [(&'static str, String); 1];

/// Cheap to clone: the metrics are shared handles.
#[derive(Debug, Clone)]
pub struct BrainProm {
    plans: Counter,
    plan_duration: Histogram,
    decision_loop: Histogram,
    inbox_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    inbox_backlog: Gauge,
    largest: Family<Kind, Gauge>,
    oversize: Family<Kind, Counter>,
    decisions: Family<ServiceAction, Counter>,
    placements: Family<Service, Counter>,
    commands: Family<Fixed, Counter>,
    leader: Gauge,
    term: Gauge,
    workers: Family<State, Gauge>,
    rejected: Counter,
    proxy_parts_dropped: Counter,
}

impl Default for BrainProm {
    fn default() -> Self {
        Self {
            plans: Counter::default(),
            // 20 µs .. ~0.3 s.
            plan_duration: Histogram::new(exponential_buckets(0.000_02, 2.0, 15)),
            // Fine around the 50 ms target, so a scraper's p99 is not off by a factor of two.
            decision_loop: Histogram::new(LOOP_BUCKETS.iter().copied()),
            inbox_lag: Gauge::default(),
            inbox_backlog: Gauge::default(),
            largest: Family::default(),
            oversize: Family::default(),
            decisions: Family::default(),
            placements: Family::default(),
            commands: Family::default(),
            leader: Gauge::default(),
            term: Gauge::default(),
            workers: Family::default(),
            rejected: Counter::default(),
            proxy_parts_dropped: Counter::default(),
        }
    }
}

impl BrainProm {
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        for kind in ["start", "stop"] {
            for result in ["ok", "refused", "failed"] {
                let _ = self
                    .commands
                    .get_or_create(&[("kind", kind), ("result", result)]);
            }
        }
        for state in ["up", "down"] {
            let _ = self.workers.get_or_create(&[("state", state)]);
        }
        r.register(
            "acs_brain_plans",
            "Plans made while acting as leader",
            self.plans.clone(),
        );
        r.register_with_unit(
            "acs_brain_plan_duration",
            "Time one plan (the pure decision over the whole world) took",
            Unit::Seconds,
            self.plan_duration.clone(),
        );
        r.register_with_unit(
            "acs_brain_decision_loop",
            "One plan pass: from the event taken off the inbox to the plan sent (folding in what was queued, planning, publishing)",
            Unit::Seconds,
            self.decision_loop.clone(),
        );
        r.register_with_unit(
            "acs_brain_inbox_lag",
            "Age of the oldest worker report taken off the inbox since the previous plan (its sender's timestamp to now)",
            Unit::Seconds,
            self.inbox_lag.clone(),
        );
        r.register(
            "acs_brain_inbox_backlog",
            "Messages already queued and folded in before the last plan",
            self.inbox_backlog.clone(),
        );
        r.register(
            "acs_brain_largest_message_bytes",
            "Largest payload this brain has published, by kind (subject's second token, or reply)",
            self.largest.clone(),
        );
        r.register(
            "acs_brain_oversize_messages",
            "Payloads published over the 256 KiB limit every subscriber enforces, by kind",
            self.oversize.clone(),
        );
        r.register(
            "acs_brain_decisions",
            "Decisions published, by service and action (scale, place, drain, stop, lost, relocate, blocked, lifecycle)",
            self.decisions.clone(),
        );
        r.register(
            "acs_brain_placements",
            "Replica starts sent to workers, by service",
            self.placements.clone(),
        );
        r.register(
            "acs_brain_commands",
            "Worker commands answered, by kind and result (ok, refused by the worker, failed: no or bad answer)",
            self.commands.clone(),
        );
        r.register(
            "acs_brain_leader",
            "1 while this brain holds the lease and acts, else 0",
            self.leader.clone(),
        );
        r.register(
            "acs_brain_term",
            "The leader term this brain last acted in (0: never)",
            self.term.clone(),
        );
        r.register(
            "acs_brain_workers",
            "Workers this brain knows, by state",
            self.workers.clone(),
        );
        r.register(
            "acs_brain_rejected_messages",
            "Messages this brain refused (malformed, wrong sender, over the id cap, refused requests)",
            self.rejected.clone(),
        );
        r.register(
            "acs_brain_proxy_parts_dropped",
            "Split proxy reports given up on before they were whole (timed out, superseded, inconsistent)",
            self.proxy_parts_dropped.clone(),
        );
        r
    }

    /// Incomplete split proxy reports dropped so far (a running total, as the assembler counts).
    pub fn proxy_parts_dropped(&self, total: u64) {
        self.proxy_parts_dropped
            .inner()
            .store(total, Ordering::Relaxed);
    }

    /// A plan was made (in `took`) and sent.
    pub fn plan_sent(&self, plan: &Plan, took: Duration) {
        self.plans.inc();
        self.plan_duration.observe(took.as_secs_f64());
        for d in &plan.decisions {
            let labels = [
                ("service", d.service.to_string()),
                ("action", action_label(&d.action).to_string()),
            ];
            self.decisions.get_or_create(&labels).inc();
        }
        for c in plan.commands.iter().filter(|c| c.is_start()) {
            if let acs_events::Action::Start { spec, .. } = &c.cmd.action {
                self.placements
                    .get_or_create(&[("service", spec.service.to_string())])
                    .inc();
            }
        }
    }

    /// One plan pass, from its event taken off the inbox to the plan sent.
    pub fn decision_loop(&self, took: Duration) {
        self.decision_loop.observe(took.as_secs_f64());
    }

    /// Before each plan: the oldest report's age when taken (ms) and what was queued.
    pub fn inbox(&self, lag_ms: u64, backlog: u64) {
        self.inbox_lag.set(lag_ms as f64 / 1000.0);
        self.inbox_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    }

    /// A payload of `bytes` was published on `subject`.
    pub fn published(&self, subject: &str, bytes: usize) {
        let kind = if subject.starts_with("_INBOX") {
            "reply"
        } else {
            subject.split('.').nth(1).unwrap_or("other")
        };
        let labels = [("kind", kind.to_string())];
        let largest = self.largest.get_or_create(&labels);
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        if bytes > largest.get() {
            largest.set(bytes);
        }
        if bytes as usize > acs_events::MAX_PAYLOAD {
            self.oversize.get_or_create(&labels).inc();
        }
    }

    /// A worker answered a command (`Ok(true)`), refused it (`Ok(false)`) or did not answer.
    pub fn command_result(&self, start: bool, result: Result<bool, ()>) {
        let kind = if start { "start" } else { "stop" };
        let result = match result {
            Ok(true) => "ok",
            Ok(false) => "refused",
            Err(()) => "failed",
        };
        self.commands
            .get_or_create(&[("kind", kind), ("result", result)])
            .inc();
    }

    /// The brain's standing, on every reconcile.
    pub fn standing(
        &self,
        acting: bool,
        term: u64,
        workers_up: usize,
        workers_down: usize,
        rejected: u64,
    ) {
        self.leader.set(i64::from(acting));
        self.term.set(i64::try_from(term).unwrap_or(i64::MAX));
        self.workers
            .get_or_create(&[("state", "up")])
            .set(workers_up as i64);
        self.workers
            .get_or_create(&[("state", "down")])
            .set(workers_down as i64);
        // Mirrors the brain's own count, which only grows.
        self.rejected.inner().store(rejected, Ordering::Relaxed);
    }
}

fn action_label(a: &DecisionAction) -> &'static str {
    match a {
        DecisionAction::Scale { .. } => "scale",
        DecisionAction::Place { .. } => "place",
        DecisionAction::Drain { .. } => "drain",
        DecisionAction::Stop { .. } => "stop",
        DecisionAction::Lost { .. } => "lost",
        DecisionAction::Relocate { .. } => "relocate",
        DecisionAction::Blocked => "blocked",
        DecisionAction::Lifecycle { .. } => "lifecycle",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::{Decision, ServiceName};

    #[test]
    fn a_plan_is_counted_with_conventional_names() {
        let p = BrainProm::default();
        let r = p.registry();
        let decision = |action| Decision {
            v: 1,
            service: ServiceName::new("web").unwrap(),
            ts_ms: 0,
            action,
            reason: "because".into(),
            inputs: Default::default(),
            lifecycle: None,
            term: 3,
        };
        let plan = Plan {
            decisions: vec![
                decision(DecisionAction::Scale {
                    from: 1,
                    to: 2,
                    manual: false,
                }),
                decision(DecisionAction::Blocked),
                decision(DecisionAction::Blocked),
            ],
            ..Plan::default()
        };
        p.plan_sent(&plan, Duration::from_millis(2));
        p.command_result(true, Ok(false));
        p.command_result(false, Err(()));
        p.standing(true, 3, 2, 1, 5);
        p.decision_loop(Duration::from_millis(42));
        p.inbox(1_500, 12);
        p.published("acs.backends.web", 300_000);
        p.published("acs.backends.api", 10);
        p.published("_INBOX.abc.def", 20);
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, &r).unwrap();
        for line in [
            "acs_brain_plans_total 1",
            "acs_brain_plan_duration_seconds_count 1",
            "acs_brain_decisions_total{service=\"web\",action=\"scale\"} 1",
            "acs_brain_decisions_total{service=\"web\",action=\"blocked\"} 2",
            "acs_brain_commands_total{kind=\"start\",result=\"refused\"} 1",
            "acs_brain_commands_total{kind=\"stop\",result=\"failed\"} 1",
            "acs_brain_commands_total{kind=\"start\",result=\"ok\"} 0",
            "acs_brain_leader 1",
            "acs_brain_term 3",
            "acs_brain_workers{state=\"up\"} 2",
            "acs_brain_workers{state=\"down\"} 1",
            "acs_brain_rejected_messages_total 5",
            "acs_brain_decision_loop_seconds_count 1",
            "acs_brain_decision_loop_seconds_bucket{le=\"0.04\"} 0",
            "acs_brain_decision_loop_seconds_bucket{le=\"0.05\"} 1",
            "acs_brain_inbox_lag_seconds 1.5",
            "acs_brain_inbox_backlog 12",
            "acs_brain_largest_message_bytes{kind=\"backends\"} 300000",
            "acs_brain_largest_message_bytes{kind=\"reply\"} 20",
            "acs_brain_oversize_messages_total{kind=\"backends\"} 1",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
        assert!(
            s.contains("# TYPE acs_brain_plan_duration_seconds histogram"),
            "{s}"
        );
        p.standing(false, 3, 0, 3, 5);
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, &r).unwrap();
        assert!(s.lines().any(|l| l == "acs_brain_leader 0"), "{s}");
    }
}
