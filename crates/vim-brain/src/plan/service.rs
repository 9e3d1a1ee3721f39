//! Every step for one service, in order; each feeds the next through `members` and the plan:
//! lost and unhealthy replicas, the desired count, the crash-loop hold, moves (rebalance,
//! draining workers), scale-out, scale-in and drains, the backend set, the lifecycle.

use std::collections::BTreeSet;

use acs_events::{ReplicaId, ServiceName, ServiceTraffic, WorkerId};

use super::{
    backends, backoff, desired, lifecycle, lost, maintenance, rebalance, scale_in, scale_out,
    Member, Pass, Phase, Plan,
};
use crate::config::ServiceConfig;
use crate::policy;
use crate::world::{DesiredChange, Intent, Now, RecordChange, ServiceState, World};

/// What every step of one service reads.
struct Service<'a> {
    world: &'a World,
    now: Now,
    name: &'a ServiceName,
    svc: &'a ServiceConfig,
    state: &'a ServiceState,
    /// Workers being drained by an operator: their replicas move off.
    draining: BTreeSet<WorkerId>,
}

pub(super) fn plan_service(
    plan: &mut Plan,
    pass: &Pass,
    name: &ServiceName,
    svc: &ServiceConfig,
    mut members: Vec<Member>,
) {
    let (world, now, health) = (pass.world, pass.now, pass.health);
    let default_state = ServiceState::default();
    let state = world.service(name).unwrap_or(&default_state);
    let draining: BTreeSet<WorkerId> = world
        .maintenance()
        .iter()
        .filter(|(_, m)| m.draining)
        .map(|(w, _)| w.clone())
        .collect();
    let s = Service {
        world,
        now,
        name,
        svc,
        state,
        draining,
    };
    let proxies: Vec<scale_in::ProxyReport> = world
        .live_proxies(now.mono)
        .map(|proxy| scale_in::ProxyReport {
            seen: proxy.last_seen,
            traffic: proxy.last.services.iter().find(|t| &t.service == name),
            drained: &proxy.drained,
        })
        .collect();
    let traffic: Vec<&ServiceTraffic> = proxies.iter().filter_map(|p| p.traffic).collect();

    replace_lost(plan, &s, &mut members, &health.up);
    let active = members.iter().filter(|m| m.phase.active()).count() as u32;
    let desired = desired_count(plan, &s, &members, &traffic, active);

    let ready = members.iter().filter(|m| m.phase == Phase::Healthy).count() as u32;
    let crash = backoff::check(name, &state.crash, ready, now);
    plan.decisions.extend(crash.decision.clone());
    let step = crash.step.clone().map(|step| (name.clone(), step));
    plan.bookkeeping.crash.extend(step);
    let (rebalancing, rebalance_reason) = rebalance::step(
        plan,
        world,
        name,
        svc,
        state,
        &members,
        &health.fresh,
        desired,
        &s.draining,
        crash.hold,
        now,
    );
    let published = &state.routing.published;
    let moves = maintenance::moves(
        name,
        &members,
        desired,
        published,
        &s.draining,
        &rebalancing,
        now,
    );
    plan.decisions.extend(moves.decision.clone());
    // In a crash-loop backoff, no start until its step has passed.
    let (placed, blocked) = if active < moves.target && !crash.hold {
        let why = rebalance_reason.as_deref();
        scale_out(plan, &s, &health.fresh, &moves, &rebalancing, why, active)
    } else {
        (0, None)
    };
    plan.set_blocked(name, state.status.blocked.as_ref(), blocked.clone(), now);

    let newly_draining = scale_in(plan, &s, &mut members, &moves, &proxies);
    publish(
        plan,
        &s,
        &members,
        &newly_draining,
        pass.snapshots.contains(name),
    );

    let counts = lifecycle::Inputs::count(&members, placed);
    let ever_ready = state.status.ever_ready || counts.ready > 0;
    let inputs = lifecycle::Inputs {
        desired,
        pinned: state.scale.pinned(),
        blocked: blocked.as_deref(),
        crash: crash.reason.as_deref(),
        ever_ready,
        ..counts
    };
    let lc = lifecycle::lifecycle(&inputs);
    lifecycle::observe(plan, name, &state.status, lc, ever_ready, now);
}

/// The desired count (a pin, or the policy over the measured signals), recorded with the
/// recommendation the stabilisation windows remember.
fn desired_count(
    plan: &mut Plan,
    s: &Service,
    members: &[Member],
    traffic: &[&ServiceTraffic],
    active: u32,
) -> u32 {
    let policy = &s.svc.policy;
    let measured = desired::measure(members, s.svc.cpus, traffic);
    let scale = &s.state.scale;
    let desired = desired::desired_count(s.name, policy, scale, active, &measured, s.now);
    plan.decisions.extend(desired.decision);
    plan.bookkeeping.desired.push(DesiredChange {
        service: s.name.clone(),
        desired: desired.count,
        recommendation: desired.recommendation,
        history_keep_ms: policy::history_keep_ms(policy),
    });
    desired.count
}

/// Replicas gone without a stop (explained), and unhealthy ones past their grace (stopped).
fn replace_lost(plan: &mut Plan, s: &Service, members: &mut [Member], up: &BTreeSet<&WorkerId>) {
    let routing = &s.state.routing;
    // The steady case: every published backend is a routed member, so none can be lost.
    if !backends::unchanged(&routing.published, routing.digest, members) {
        let being_stopped = plan.upserted_records();
        plan.decisions.extend(lost::lost_replicas(
            s.name,
            s.now,
            &routing.published,
            members,
            &being_stopped,
            up,
        ));
    }
    let grace_ms = s.world.settings().unhealthy_grace_ms;
    let stop_grace_s = s.svc.policy.stop_grace_s;
    for stop in lost::replace_unhealthy(members, s.now.mono, grace_ms, stop_grace_s) {
        plan.stop(s.name, stop, s.now);
    }
}

/// Starts up to the moves' target on the fresh workers; returns how many were placed and why
/// the rest could not be.
fn scale_out(
    plan: &mut Plan,
    s: &Service,
    fresh: &BTreeSet<&WorkerId>,
    moves: &maintenance::Moves,
    rebalancing: &BTreeSet<ReplicaId>,
    rebalance_reason: Option<&str>,
    active: u32,
) -> (u32, Option<String>) {
    let (world, name, replacing) = (s.world, s.name, &s.state.moves.replacing);
    let mut candidates = scale_out::candidates(world, s.now.mono, name, fresh);
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
        if replacing.is_none() || s.draining.contains(from) {
            candidates.retain(|c| &c.id != from);
        }
    }
    let out = scale_out::scale_out(candidates, name, active, moves.target);
    let mut placed = 0;
    for mut placement in out.placements {
        if let Some((old, from)) = &moves.replacing {
            let why = match (rebalance_reason, replacing) {
                (Some(r), _) => r.to_string(),
                (None, _) if s.draining.contains(from) => {
                    format!("moving off draining worker {from}")
                }
                (None, Some(why)) => why.clone(),
                (None, None) => format!("moving off {from} (rebalance)"),
            };
            placement.reason = format!("replacement for {old}, {why}: {}", placement.reason);
        }
        plan.start(world, name, s.svc, placement, s.now);
        placed += 1;
    }
    let blocked = match (&moves.replacing, out.blocked) {
        // A rebalance with nowhere to go is simply given up: the replica stays where it is.
        (Some((old, _)), Some(_)) if rebalancing.contains(old) => {
            plan.bookkeeping.rebalance.push((name.clone(), None));
            None
        }
        (Some((old, from)), Some(why)) => Some(maintenance::blocked_reason(old, from, &why)),
        (_, blocked) => blocked,
    };
    (placed, blocked)
}

/// Picks the replicas that go (drained first when routed), stops finished drains and retries
/// stops; returns the replicas that started draining in this plan.
fn scale_in(
    plan: &mut Plan,
    s: &Service,
    members: &mut [Member],
    moves: &maintenance::Moves,
    proxies: &[scale_in::ProxyReport],
) -> BTreeSet<ReplicaId> {
    let policy = &s.svc.policy;
    let worker_cpu_pct = |worker: &WorkerId| {
        s.world
            .workers()
            .get(worker)
            .map_or(0.0, |w| w.last.host.cpu_pct)
    };
    let out = scale_in::scale_in(
        s.name,
        members,
        moves.target,
        policy,
        worker_cpu_pct,
        &moves.leaving,
        s.now,
    );
    for step in out.steps {
        match step {
            scale_in::Victim::Stop(stop) => plan.stop(s.name, stop, s.now),
            scale_in::Victim::Drain(decision) => plan.decisions.push(decision),
        }
    }
    let (grace_s, retry_ms) = (policy.stop_grace_s, s.world.settings().stop_retry_ms);
    for stop in scale_in::finish_drains(
        members,
        &out.newly_draining,
        proxies,
        s.now.mono,
        grace_s,
        retry_ms,
    ) {
        plan.stop(s.name, stop, s.now);
    }
    out.newly_draining
}

/// The backend set published (a reset when one is due), the new drains recorded with the
/// version that told the proxies, and start records no longer needed dropped.
fn publish(
    plan: &mut Plan,
    s: &Service,
    members: &[Member],
    newly_draining: &BTreeSet<ReplicaId>,
    periodic_reset: bool,
) {
    let (world, routing) = (s.world, &s.state.routing);
    // A new term starts with snapshots, so every proxy moves to the new leader's versions at once.
    let reset_due = periodic_reset
        || acs_events::version_term(routing.version) < world.term()
        || routing.reset_requested;
    let first = world.first_version();
    let publish = backends::publish(s.name, s.svc, routing, first, members, reset_due, s.now);
    plan.updates.extend(publish.updates);
    plan.bookkeeping.published.extend(publish.published);

    // Record drains with the version that told the proxies.
    for m in members.iter().filter(|m| newly_draining.contains(m.id)) {
        if let Phase::Draining {
            since, deadline, ..
        } = m.phase
        {
            let intent = Intent::Draining {
                since,
                version: publish.drain_version,
                deadline,
            };
            plan.record(m.id, s.name, m.worker, intent);
        }
    }
    let started = lost::started_records_done(members, world.records());
    plan.bookkeeping
        .records
        .extend(started.into_iter().map(RecordChange::Remove));
}
