//! The brain's Prometheus metrics (`GET /metrics`, served by `acs_node::metrics`).
//!
//! Counted once per plan from what the plan holds (never per message):
//! `acs_brain_plans_total`, `acs_brain_plan_duration_seconds` (the pure `plan` call),
//! `acs_brain_decisions_total{service,action}`, `acs_brain_placements_total{service}` (starts
//! sent), `acs_brain_commands_total{kind,result}` (worker answers). Set on every reconcile:
//! `acs_brain_leader` (1 while acting), `acs_brain_term`, `acs_brain_workers{state}`,
//! `acs_brain_rejected_messages_total` (the same count `acs.status` reports).

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

type ServiceAction = [(&'static str, String); 2];
type Service = [(&'static str, String); 1];
type Fixed = [(&'static str, &'static str); 2];
type State = [(&'static str, &'static str); 1];

/// Cheap to clone: the metrics are shared handles.
#[derive(Debug, Clone)]
pub struct BrainProm {
    plans: Counter,
    plan_duration: Histogram,
    decisions: Family<ServiceAction, Counter>,
    placements: Family<Service, Counter>,
    commands: Family<Fixed, Counter>,
    leader: Gauge,
    term: Gauge,
    workers: Family<State, Gauge>,
    rejected: Counter,
}

impl Default for BrainProm {
    fn default() -> Self {
        Self {
            plans: Counter::default(),
            // 20 µs .. ~0.3 s.
            plan_duration: Histogram::new(exponential_buckets(0.000_02, 2.0, 15)),
            decisions: Family::default(),
            placements: Family::default(),
            commands: Family::default(),
            leader: Gauge::default(),
            term: Gauge::default(),
            workers: Family::default(),
            rejected: Counter::default(),
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
        r
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
