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

mod backends;
pub mod backoff;
mod desired;
mod health;
pub mod lifecycle;
mod lost;
mod maintenance;
mod members;
mod rebalance;
mod scale_in;
mod scale_out;
mod withdraw;

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{
    Action, Backend, BackendUpdate, CommandId, Decision, DecisionAction, ProxyId, ReplicaId,
    ServiceName, ServiceTraffic, WorkerCommand, WorkerEvent, WorkerId, SCHEMA_VERSION,
};

use crate::config::{ServiceConfig, Services};
use crate::policy;
use crate::world::{Intent, Millis, Now, Record, ServiceState, World};
pub(crate) use backends::{digest as backends_digest, route_hash};

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

/// What a plan changes in the world's own records; read only by `World::apply`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bookkeeping {
    pub(crate) worker_health: Vec<HealthAnnounced>,
    /// A full disruption began (`true`) or ended (`false`) with this plan.
    pub(crate) disruption: Option<bool>,
    /// Workers and proxies gone for `forget_after_ms`: dropped from the world.
    pub(crate) forget_workers: Vec<WorkerId>,
    pub(crate) forget_proxies: Vec<ProxyId>,
    pub(crate) desired: Vec<DesiredChange>,
    /// Replicas started, draining or stopping; records no longer needed.
    pub(crate) records: Vec<RecordChange>,
    pub(crate) published: Vec<Published>,
    pub(crate) blocked: Vec<BlockedChange>,
    /// The sequence number the next new replica id takes.
    pub(crate) next_seq: u64,
    /// Services' lifecycle states as this plan saw them, and their crash-loop steps.
    pub(crate) lifecycle: Vec<lifecycle::LifecycleChange>,
    pub(crate) crash: Vec<(ServiceName, backoff::CrashStep)>,
    /// Rebalance moves begun (`Some`) or finished (`None`), per service.
    pub(crate) rebalance: Vec<(ServiceName, Option<ReplicaId>)>,
}

/// A worker health transition that the plan announces.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthAnnounced {
    pub(crate) worker: WorkerId,
    pub(crate) up: bool,
}

/// A service's desired count, and what to remember for the stabilisation windows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DesiredChange {
    pub(crate) service: ServiceName,
    pub(crate) desired: u32,
    /// The policy recommendation to remember (`None` while pinned by hand).
    pub(crate) recommendation: Option<u32>,
    /// Recommendations older than this are of no use to any window.
    pub(crate) history_keep_ms: Millis,
}

/// A change to the brain's record of one replica.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RecordChange {
    Upsert(ReplicaId, Record),
    Remove(ReplicaId),
}

/// A backend set the proxies have been told.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Published {
    pub(crate) service: ServiceName,
    pub(crate) version: u64,
    pub(crate) backends: BTreeMap<ReplicaId, Backend>,
    pub(crate) reset: bool,
}

/// Why a service cannot reach its desired count (`None`: it can again).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockedChange {
    pub(crate) service: ServiceName,
    pub(crate) reason: Option<String>,
}

/// How the plan sees one replica of a service. It borrows from the world: a pass builds one
/// per replica (100,000 at P6's scale), so no id or address is copied for it.
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
        plan_service(&mut plan, &pass, name, svc, members);
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

/// Every step for one service, in order; each feeds the next through `members` and `plan`.
fn plan_service(
    plan: &mut Plan,
    pass: &Pass,
    name: &ServiceName,
    svc: &ServiceConfig,
    mut members: Vec<Member>,
) {
    let Pass {
        world, now, health, ..
    } = *pass;
    let periodic_reset = pass.snapshots.contains(name);
    let up = &health.up;
    let default_state = ServiceState::default();
    let state = world.service(name).unwrap_or(&default_state);
    let policy = &svc.policy;
    let settings = world.settings();
    let proxies: Vec<scale_in::ProxyReport> = world
        .live_proxies(now.mono)
        .map(|proxy| scale_in::ProxyReport {
            seen: proxy.last_seen,
            traffic: proxy.last.services.iter().find(|s| &s.service == name),
            drained: &proxy.drained,
        })
        .collect();
    let traffic: Vec<&ServiceTraffic> = proxies.iter().filter_map(|p| p.traffic).collect();

    // The steady case: every published backend is a routed member, so none can be lost.
    if !backends::unchanged(&state.published, state.published_digest, &members) {
        let being_stopped = plan.upserted_records();
        plan.decisions.extend(lost::lost_replicas(
            name,
            now,
            &state.published,
            &members,
            &being_stopped,
            up,
        ));
    }
    for stop in lost::replace_unhealthy(
        &mut members,
        now.mono,
        settings.unhealthy_grace_ms,
        policy.stop_grace_s,
    ) {
        plan.stop(name, stop, now);
    }

    let active = members.iter().filter(|m| m.phase.active()).count() as u32;
    let measured = desired::measure(&members, svc.cpus, &traffic);
    let desired = desired::desired_count(name, policy, state, active, &measured, now);
    plan.decisions.extend(desired.decision);
    plan.bookkeeping.desired.push(DesiredChange {
        service: name.clone(),
        desired: desired.count,
        recommendation: desired.recommendation,
        history_keep_ms: policy::history_keep_ms(policy),
    });

    let ready = members.iter().filter(|m| m.phase == Phase::Healthy).count() as u32;
    let crash = backoff::check(name, &state.crash, ready, now);
    plan.decisions.extend(crash.decision.clone());
    plan.bookkeeping
        .crash
        .extend(crash.step.clone().map(|step| (name.clone(), step)));
    let draining: BTreeSet<WorkerId> = world
        .maintenance()
        .iter()
        .filter(|(_, m)| m.draining)
        .map(|(w, _)| w.clone())
        .collect();
    let (rebalancing, rebalance_reason) = rebalance::step(
        plan,
        world,
        name,
        svc,
        state,
        &members,
        &health.fresh,
        desired.count,
        &draining,
        crash.hold,
        now,
    );
    let moves = maintenance::moves(
        name,
        &members,
        desired.count,
        &state.published,
        &draining,
        &rebalancing,
        now,
    );
    plan.decisions.extend(moves.decision.clone());
    let target = moves.target;
    let mut placed = 0;
    // In a crash-loop backoff, no start until its step has passed.
    let blocked = if active < target && !crash.hold {
        let mut candidates = scale_out::candidates(world, now.mono, name, &health.fresh);
        let planned: Vec<&WorkerId> = plan
            .commands
            .iter()
            .filter(|c| c.is_start())
            .map(|c| &c.worker)
            .collect();
        scale_out::count_planned_starts(&mut candidates, &planned);
        if let Some((_, from)) = &moves.replacing {
            // A replacement never goes back where its original is leaving, except for an
            // operator's replace of one replica, which may land anywhere placement allows.
            if state.replacing.is_none() || draining.contains(from) {
                candidates.retain(|c| &c.id != from);
            }
        }
        let out = scale_out::scale_out(candidates, name, active, target);
        for mut placement in out.placements {
            if let Some((old, from)) = &moves.replacing {
                let why = match &rebalance_reason {
                    Some(r) => r.clone(),
                    None if draining.contains(from) => format!("moving off draining worker {from}"),
                    None => match &state.replacing {
                        Some(why) => why.clone(),
                        None => format!("moving off {from} (rebalance)"),
                    },
                };
                placement.reason = format!("replacement for {old}, {why}: {}", placement.reason);
            }
            plan.start(world, name, svc, placement, now);
            placed += 1;
        }
        match (&moves.replacing, out.blocked) {
            // A rebalance with nowhere to go is simply given up: the replica stays where it is.
            (Some((old, _)), Some(_)) if rebalancing.contains(old) => {
                plan.bookkeeping.rebalance.push((name.clone(), None));
                None
            }
            (Some((old, from)), Some(why)) => Some(maintenance::blocked_reason(old, from, &why)),
            (_, blocked) => blocked,
        }
    } else {
        None
    };
    let blocked_reason = blocked.clone();
    plan.set_blocked(name, state.blocked.as_ref(), blocked, now);

    let worker_cpu_pct = |worker: &WorkerId| {
        world
            .workers()
            .get(worker)
            .map_or(0.0, |w| w.last.host.cpu_pct)
    };
    let scale_in = scale_in::scale_in(
        name,
        &mut members,
        target,
        policy,
        worker_cpu_pct,
        &moves.leaving,
        now,
    );
    for step in scale_in.steps {
        match step {
            scale_in::Victim::Stop(stop) => plan.stop(name, stop, now),
            scale_in::Victim::Drain(decision) => plan.decisions.push(decision),
        }
    }
    let (grace_s, retry_ms) = (policy.stop_grace_s, settings.stop_retry_ms);
    for stop in scale_in::finish_drains(
        &mut members,
        &scale_in.newly_draining,
        &proxies,
        now.mono,
        grace_s,
        retry_ms,
    ) {
        plan.stop(name, stop, now);
    }

    // A new term starts with snapshots, so every proxy moves to the new leader's versions at once.
    let reset_due = periodic_reset
        || acs_events::version_term(state.version) < world.term()
        || state.reset_requested;
    let publish = backends::publish(
        name,
        svc,
        state,
        world.first_version(),
        &members,
        reset_due,
        now,
    );
    plan.updates.extend(publish.updates);
    plan.bookkeeping.published.extend(publish.published);

    // Record drains with the version that told the proxies.
    for m in members
        .iter()
        .filter(|m| scale_in.newly_draining.contains(m.id))
    {
        if let Phase::Draining {
            since, deadline, ..
        } = m.phase
        {
            let intent = Intent::Draining {
                since,
                version: publish.drain_version,
                deadline,
            };
            plan.record(m.id, name, m.worker, intent);
        }
    }
    let started = lost::started_records_done(&members, world.records());
    plan.bookkeeping
        .records
        .extend(started.into_iter().map(RecordChange::Remove));

    let counts = lifecycle::Inputs::count(&members, placed);
    let ever_ready = state.ever_ready || counts.ready > 0;
    let inputs = lifecycle::Inputs {
        desired: desired.count,
        pinned: state.manual.is_some() || state.pin_unreadable,
        blocked: blocked_reason.as_deref(),
        crash: crash.reason.as_deref(),
        ever_ready,
        ..counts
    };
    lifecycle::observe(
        plan,
        name,
        state,
        lifecycle::lifecycle(&inputs),
        ever_ready,
        now,
    );
}

impl Plan {
    fn record(
        &mut self,
        replica: &ReplicaId,
        service: &ServiceName,
        worker: &WorkerId,
        intent: Intent,
    ) {
        let record = Record {
            service: service.clone(),
            worker: worker.clone(),
            intent,
        };
        self.bookkeeping
            .records
            .push(RecordChange::Upsert(replica.clone(), record));
    }

    /// Replicas this plan has recorded an intent for so far.
    fn upserted_records(&self) -> BTreeSet<ReplicaId> {
        let upserted = self
            .bookkeeping
            .records
            .iter()
            .filter_map(|change| match change {
                RecordChange::Upsert(id, _) => Some(id.clone()),
                RecordChange::Remove(_) => None,
            });
        upserted.collect()
    }

    /// The stop command, its record, and on the first attempt its decision.
    fn stop(&mut self, service: &ServiceName, stop: Stop, now: Now) {
        let Stop {
            replica,
            worker,
            attempt,
            grace_s,
            reason,
        } = stop;
        let cmd = WorkerCommand {
            v: SCHEMA_VERSION,
            id: command_id("stop", &replica, attempt),
            issued_ms: now.unix_ms,
            term: 0,
            instance: None,
            action: Action::Stop {
                replica: replica.clone(),
                grace_ms: (grace_s * 1000.0) as u64,
            },
        };
        self.commands.push(Command {
            worker: worker.clone(),
            replica: replica.clone(),
            cmd,
        });
        self.record(
            &replica,
            service,
            &worker,
            Intent::Stopping {
                sent: now.mono,
                attempt,
            },
        );
        if attempt == 1 {
            let action = DecisionAction::Stop { replica, worker };
            self.decisions
                .push(decision(service, now, action, reason, BTreeMap::new()));
        }
    }

    /// A start on the chosen worker, with a fresh replica id.
    fn start(
        &mut self,
        world: &World,
        service: &ServiceName,
        svc: &ServiceConfig,
        placement: scale_out::Placement,
        now: Now,
    ) {
        let seq = self.bookkeeping.next_seq;
        self.bookkeeping.next_seq += 1;
        let replica = world.replica_id(service, seq);
        let worker = placement.worker;
        let cmd = WorkerCommand {
            v: SCHEMA_VERSION,
            id: command_id("start", &replica, 1),
            issued_ms: now.unix_ms,
            term: 0,
            instance: world.instance_of(&worker),
            action: Action::Start {
                replica: replica.clone(),
                spec: svc.replica_spec(),
            },
        };
        self.commands.push(Command {
            worker: worker.clone(),
            replica: replica.clone(),
            cmd,
        });
        self.record(
            &replica,
            service,
            &worker,
            Intent::Starting { since: now.mono },
        );
        let action = DecisionAction::Place { replica, worker };
        self.decisions.push(decision(
            service,
            now,
            action,
            placement.reason,
            BTreeMap::new(),
        ));
    }

    /// Announces a blocked service once, and records the change.
    fn set_blocked(
        &mut self,
        service: &ServiceName,
        was: Option<&String>,
        blocked: Option<String>,
        now: Now,
    ) {
        if was != blocked.as_ref() {
            if let Some(reason) = &blocked {
                self.decisions.push(decision(
                    service,
                    now,
                    DecisionAction::Blocked,
                    reason.clone(),
                    BTreeMap::new(),
                ));
            }
            self.bookkeeping.blocked.push(BlockedChange {
                service: service.clone(),
                reason: blocked,
            });
        }
    }
}

/// `<kind>-<replica>-<attempt>`, or with the replica id hashed when that would not fit in an id
/// (replica ids reported by workers may be up to 64 bytes).
fn command_id(kind: &str, replica: &ReplicaId, attempt: u32) -> CommandId {
    CommandId::new(format!("{kind}-{replica}-{attempt}")).unwrap_or_else(|_| {
        // FNV-1a: stable across runs, so a retried command keeps its id.
        let h = replica
            .as_str()
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
        CommandId::new(format!("{kind}-{h:016x}-{attempt}")).expect("short ascii id")
    })
}

fn decision(
    service: &ServiceName,
    now: Now,
    action: DecisionAction,
    reason: String,
    inputs: BTreeMap<String, f64>,
) -> Decision {
    Decision {
        v: SCHEMA_VERSION,
        service: service.clone(),
        ts_ms: now.unix_ms,
        action,
        reason,
        inputs,
        lifecycle: None,
        term: 0,
    }
}

/// Builders shared by the steps' unit tests.
#[cfg(test)]
mod test_support {
    use super::*;

    pub fn now(ms: Millis) -> Now {
        Now {
            mono: ms,
            unix_ms: 1_700_000_000_000 + ms,
        }
    }

    pub fn id<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        s.parse().unwrap()
    }

    /// Members borrow from the world; here the ids and address are leaked, a few bytes a test.
    pub fn member(replica: &str, worker: &str, phase: Phase) -> Member<'static> {
        let (id, worker): (&'static ReplicaId, &'static WorkerId) = (
            Box::leak(Box::new(id(replica))),
            Box::leak(Box::new(id(worker))),
        );
        let addr: &'static str =
            Box::leak(format!("127.0.0.1:4{}", replica.len()).into_boxed_str());
        Member {
            id,
            worker,
            phase,
            addr: Some(addr),
            route: backends::route_hash(id, addr, worker),
            cpu_pct: 0.0,
            started_ms: 0,
        }
    }

    /// A worker's report with these replicas (room for 8).
    pub fn report(
        worker: &str,
        replicas: Vec<acs_events::ReplicaStatus>,
    ) -> acs_events::WorkerMetrics {
        acs_events::WorkerMetrics {
            v: 1,
            worker: id(worker),
            seq: 1,
            ts_ms: 0,
            started_ms: 0,
            instance: String::new(),
            interval_ms: 1000,
            runtime: acs_events::RuntimeKind::Process,
            host: acs_events::HostMetrics::default(),
            capacity: acs_events::Capacity {
                max_replicas: 8,
                running: replicas.len() as u32,
            },
            replicas,
            rejected: 0,
        }
    }

    pub fn ids(stops: &[Stop]) -> Vec<&str> {
        stops.iter().map(|s| s.replica.as_str()).collect()
    }
}
