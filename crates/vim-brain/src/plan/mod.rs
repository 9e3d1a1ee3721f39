//! The decision: `plan(&World, &Services, now) -> Plan`. Pure: no clock, no I/O, no awaits.
//!
//! Level-triggered: every call compares what should be with what is, from scratch. A `Plan` is
//! plain data: commands to send, backend updates and explanations to publish, and the
//! [`Bookkeeping`] that the world folds in (`Event::PlanSent`) once the reconciler has sent it.
//!
//! One file per step, each a pure function over plain data, in the order they run:
//! - `health.rs`: which workers are up, and the transitions to announce;
//! - `members.rs`: each service's replicas as the plan sees them, from the workers' reports and
//!   the brain's records; stops for undeclared services and for starts never reported;
//! - `lost.rs`: replicas gone without a stop, unhealthy ones to replace, records no longer needed;
//! - `desired.rs`: the desired count: a manual pin, or the policy over measured signals;
//! - `scale_out.rs`: which workers take the missing replicas;
//! - `rebalance.rs`: when enabled, one replica picked to leave the hottest worker (budgeted);
//! - `maintenance.rs`: moves off draining workers and rebalance picks, make-before-break
//!   (target `desired + 1`);
//! - `scale_in.rs`: which replicas go, their drains, and stops to send or retry;
//! - `backends.rs`: the backend set to route, diffed with what the proxies were told;
//! - `withdraw.rs`: services no longer declared that proxies still route: withdrawn.
//!
//! Per service, two more: `backoff.rs` holds starts back while it crash-loops, and
//! `lifecycle.rs` names its state (`Running`, `Partial-Running 2/3`, `Failed`, ...).
//! `service.rs` runs the steps for one service in order; `output.rs` builds what a plan emits
//! (commands with their records and decisions).

mod backends;
mod backoff;
mod desired;
mod health;
pub mod lifecycle;
mod lost;
mod maintenance;
mod members;
mod output;
mod rebalance;
mod scale_in;
mod scale_out;
mod service;
#[cfg(test)]
mod test_support;
mod withdraw;

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{
    Action, BackendUpdate, Decision, DecisionAction, ReplicaId, ServiceName, WorkerCommand,
    WorkerEvent, WorkerId,
};

use crate::config::Services;
use crate::world::{Bookkeeping, Millis, Now, RecordChange, World};
use output::decision;

/// A command for one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub worker: WorkerId,
    pub replica: ReplicaId,
    pub cmd: WorkerCommand,
}

impl Command {
    pub fn is_start(&self) -> bool {
        matches!(self.cmd.action, Action::Start { .. })
    }
}

/// What to do now, and the bookkeeping to record once it is sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Starts and stops, each sent to its worker as a request.
    pub commands: Vec<Command>,
    /// Backend set changes for the proxies (`acs.backends.<service>`).
    pub updates: Vec<BackendUpdate>,
    /// Every decision with its reason (`acs.events.decision.<service>`).
    pub decisions: Vec<Decision>,
    /// Worker health transitions (`acs.events.worker.<worker>`).
    pub worker_events: Vec<WorkerEvent>,
    /// A full disruption begins (`true`) or ends (`false`), and why; the reconciler logs it
    /// (its start is also a `blocked` decision for every service).
    pub disruption: Option<(bool, String)>,
    /// Services no longer declared that this plan withdraws from the proxies (in `updates`).
    pub withdrawn: Vec<ServiceName>,
    /// Folded into the world once the plan is sent: `world.apply(Event::PlanSent(..))`.
    pub bookkeeping: Bookkeeping,
}

/// How the plan sees one replica of a service. It borrows from the world: a pass builds one
/// per replica (100,000 at 10,000 workers), so no id or address is copied for it.
#[derive(Debug, Clone, PartialEq)]
struct Member<'a> {
    id: &'a ReplicaId,
    worker: &'a WorkerId,
    phase: Phase,
    addr: Option<&'a str>,
    /// `backends::route_hash` of its id, address and worker (0 without an address).
    route: u64,
    cpu_pct: f64,
    started_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Start sent, not yet reported by the worker.
    Pending,
    Starting,
    Healthy,
    Unhealthy {
        since: Millis,
    },
    Draining {
        since: Millis,
        version: u64,
        deadline: Millis,
    },
    Stopping {
        sent: Millis,
        attempt: u32,
    },
}

impl Phase {
    /// Counts towards the desired count.
    fn active(self) -> bool {
        matches!(
            self,
            Phase::Pending | Phase::Starting | Phase::Healthy | Phase::Unhealthy { .. }
        )
    }
}

/// A stop to send; a step's output.
#[derive(Debug, Clone, PartialEq)]
struct Stop {
    replica: ReplicaId,
    worker: WorkerId,
    attempt: u32,
    grace_s: f64,
    /// Published as a decision on the first attempt.
    reason: String,
}

pub fn plan(world: &World, services: &Services, now: Now) -> Plan {
    let mut health = health::worker_health(world, now);
    let mut plan = Plan {
        worker_events: std::mem::take(&mut health.events),
        bookkeeping: Bookkeeping {
            worker_health: std::mem::take(&mut health.announced),
            disruption: health.disruption.as_ref().map(|(on, _)| *on),
            forget_workers: std::mem::take(&mut health.forget_workers),
            forget_proxies: std::mem::take(&mut health.forget_proxies),
            next_seq: world.next_seq(),
            ..Bookkeeping::default()
        },
        disruption: health.disruption.take(),
        ..Plan::default()
    };
    if let Some((true, reason)) = &plan.disruption {
        for name in services.0.keys() {
            plan.decisions.push(decision(
                name,
                now,
                DecisionAction::Blocked,
                reason.clone(),
                BTreeMap::new(),
            ));
        }
    }
    // Until warmed up, only listen: a restarted brain must learn what runs first. Disconnected,
    // nothing it sends would arrive, and what it hears is stale: wait for the link.
    if !world.warmed_up(now.mono) || !world.link().connected {
        return plan;
    }
    let mut gathered = members::gather(world, services, &health.up, now.mono);
    for (service, stop) in gathered.stops {
        plan.stop(&service, stop, now);
    }
    for id in gathered.forget {
        plan.bookkeeping.records.push(RecordChange::Remove(id));
    }
    let pass = Pass {
        world,
        now,
        health: &health,
        snapshots: backends::periodic_resets(world, services, now.mono),
    };
    for (name, svc) in services.iter() {
        let members = gathered.by_service.remove(name).unwrap_or_default();
        service::plan_service(&mut plan, &pass, name, svc, members);
    }
    for w in withdraw::withdrawals(world, services, now) {
        plan.withdrawn.push(w.update.service.clone());
        plan.updates.push(w.update);
        plan.bookkeeping.published.push(w.published);
    }
    plan
}

/// What every service's steps share in one plan.
struct Pass<'a> {
    world: &'a World,
    now: Now,
    health: &'a health::Health<'a>,
    /// Services whose periodic snapshot is taken in this plan (`backends::periodic_resets`).
    snapshots: BTreeSet<&'a ServiceName>,
}
