//! The decision: `plan(&World, &Services, now) -> Plan`. Pure: no clock, no I/O, no awaits.
//!
//! Level-triggered: every call compares what should be with what is, from scratch. A `Plan` is
//! plain data (commands to send, backend updates and explanations to publish) plus the
//! bookkeeping that [`World::commit`] folds back in once the reconciler has sent it.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{
    Action, Backend, BackendChange, BackendUpdate, CommandId, Decision, DecisionAction, ReplicaId,
    ReplicaState, ServiceName, WorkerCommand, WorkerEvent, WorkerHealth, WorkerId,
    SCHEMA_VERSION,
};

use crate::config::{ServiceConfig, Services};
use crate::placement::{self, Candidate, VictimCandidate};
use crate::policy::{self, Signals};
use crate::world::{Intent, Millis, Now, Record, World};

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
    pub commands: Vec<Command>,
    pub updates: Vec<BackendUpdate>,
    pub decisions: Vec<Decision>,
    pub worker_events: Vec<WorkerEvent>,
    // ---- bookkeeping ----
    pub worker_health: Vec<(WorkerId, bool)>,
    /// (service, desired, policy proposal to remember for stabilisation)
    pub desired: Vec<(ServiceName, u32, Option<u32>)>,
    pub records: Vec<(ReplicaId, Option<Record>)>,
    pub published: Vec<Published>,
    pub blocked: Vec<(ServiceName, Option<String>)>,
    pub next_seq: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub service: ServiceName,
    pub version: u64,
    pub backends: BTreeMap<ReplicaId, Backend>,
    pub reset: bool,
}

/// How the plan sees one replica of a service.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    id: ReplicaId,
    worker: WorkerId,
    phase: Phase,
    addr: Option<String>,
    cpu_pct: f64,
    started_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Start sent, not yet reported by the worker.
    Pending,
    Starting,
    Healthy,
    Unhealthy { since: Millis },
    Draining { since: Millis, version: u64, deadline: Millis },
    Stopping { sent: Millis, attempt: u32 },
}

impl Phase {
    fn active(self) -> bool {
        matches!(self, Phase::Pending | Phase::Starting | Phase::Healthy | Phase::Unhealthy { .. })
    }
}

pub fn plan(world: &World, services: &Services, now: Now) -> Plan {
    let mut p = Plan { next_seq: world.next_seq, ..Plan::default() };
    let t = now.mono;
    let s = &world.settings;

    // Worker health transitions.
    let mut up: BTreeSet<&WorkerId> = BTreeSet::new();
    for (id, w) in &world.workers {
        let is_up = w.is_up(t, s);
        if is_up {
            up.insert(id);
        }
        if is_up != w.announced_up {
            p.worker_health.push((id.clone(), is_up));
            let reason = if is_up {
                format!(
                    "metrics arriving; {}/{} replicas, runtime {:?}",
                    w.last.capacity.running, w.last.capacity.max_replicas, w.last.runtime
                )
            } else {
                format!("no metrics for {} ms (timeout {} ms)", t - w.last_seen, s.worker_timeout_ms)
            };
            p.worker_events.push(WorkerEvent {
                v: SCHEMA_VERSION,
                worker: id.clone(),
                ts_ms: now.unix_ms,
                health: if is_up { WorkerHealth::Up } else { WorkerHealth::Down },
                reason,
            });
        }
    }

    // Until warmed up, only listen: a restarted brain must learn what runs first.
    if !world.warmed_up(t) {
        return p;
    }

    let mut members: BTreeMap<&ServiceName, Vec<Member>> = BTreeMap::new();
    let mut seen: BTreeSet<&ReplicaId> = BTreeSet::new();
    for wid in &up {
        let w = &world.workers[*wid];
        for r in &w.last.replicas {
            if r.state == ReplicaState::Exited {
                continue;
            }
            seen.insert(&r.id);
            let record = world.records.get(&r.id);
            let phase = match (record.map(|r| &r.intent), r.state) {
                (Some(Intent::Stopping { sent, attempt }), _) => {
                    Phase::Stopping { sent: *sent, attempt: *attempt }
                }
                (_, ReplicaState::Stopping) => Phase::Stopping { sent: t, attempt: 0 },
                (Some(Intent::Draining { since, version, deadline }), _) => {
                    Phase::Draining { since: *since, version: *version, deadline: *deadline }
                }
                (_, ReplicaState::Starting) => Phase::Starting,
                (_, ReplicaState::Healthy) => Phase::Healthy,
                (_, ReplicaState::Unhealthy) => {
                    Phase::Unhealthy { since: w.unhealthy_since.get(&r.id).copied().unwrap_or(t) }
                }
                (_, ReplicaState::Exited) => unreachable!("skipped above"),
            };
            if services.get(&r.service).is_none() {
                // A replica of a service that is not declared (any more): stop it.
                match phase {
                    Phase::Stopping { sent, attempt } => {
                        if t.saturating_sub(sent) >= s.stop_retry_ms {
                            stop(&mut p, now, &r.service, &r.id, wid, attempt + 1, 0.0, String::new());
                        }
                    }
                    _ => stop(&mut p, now, &r.service, &r.id, wid, 1, 0.0,
                        format!("service {} is not declared in the services file", r.service)),
                }
                continue;
            }
            members.entry(&r.service).or_default().push(Member {
                id: r.id.clone(),
                worker: (*wid).clone(),
                phase,
                addr: Some(r.addr.clone()),
                cpu_pct: r.cpu_pct,
                started_ms: r.started_ms,
            });
        }
    }

    // Our own records of replicas the workers do not (or no longer) report.
    for (id, rec) in &world.records {
        if seen.contains(id) {
            continue;
        }
        let worker_up = up.contains(&rec.worker);
        match rec.intent {
            Intent::Starting { since } if worker_up && t.saturating_sub(since) < s.start_timeout_ms => {
                if services.get(&rec.service).is_some() {
                    members.entry(&rec.service).or_default().push(Member {
                        id: id.clone(),
                        worker: rec.worker.clone(),
                        phase: Phase::Pending,
                        addr: None,
                        cpu_pct: 0.0,
                        started_ms: 0,
                    });
                } else {
                    p.records.push((id.clone(), None));
                }
            }
            Intent::Starting { .. } if worker_up => {
                // Timed out before the worker ever reported it: give up, stop it in case.
                stop(&mut p, now, &rec.service, id, &rec.worker, 1, 0.0,
                    format!("not healthy within {} s; replacing it", s.start_timeout_ms / 1000));
            }
            // Gone (stopped, exited) or its worker is down: forget it.
            _ => p.records.push((id.clone(), None)),
        }
    }

    for (name, svc) in services.iter() {
        let ms = members.remove(name).unwrap_or_default();
        plan_service(&mut p, world, now, name, svc, ms, &up);
    }
    p
}

#[allow(clippy::too_many_arguments)]
fn stop(
    p: &mut Plan,
    now: Now,
    service: &ServiceName,
    replica: &ReplicaId,
    worker: &WorkerId,
    attempt: u32,
    grace_s: f64,
    reason: String,
) {
    let cmd = WorkerCommand {
        v: SCHEMA_VERSION,
        id: command_id("stop", replica, attempt),
        issued_ms: now.unix_ms,
        action: Action::Stop { replica: replica.clone(), grace_ms: (grace_s * 1000.0) as u64 },
    };
    p.commands.push(Command { worker: worker.clone(), replica: replica.clone(), cmd });
    p.records.push((
        replica.clone(),
        Some(Record {
            service: service.clone(),
            worker: worker.clone(),
            intent: Intent::Stopping { sent: now.mono, attempt },
        }),
    ));
    if attempt == 1 {
        p.decisions.push(decision(
            service,
            now,
            DecisionAction::Stop { replica: replica.clone(), worker: worker.clone() },
            reason,
            BTreeMap::new(),
        ));
    }
}

/// `<kind>-<replica>-<attempt>`, or with the replica id hashed when that would not fit in an id
/// (replica ids reported by workers may be up to 64 bytes).
fn command_id(kind: &str, replica: &ReplicaId, attempt: u32) -> CommandId {
    CommandId::new(format!("{kind}-{replica}-{attempt}")).unwrap_or_else(|_| {
        // FNV-1a: stable across runs, so a retried command keeps its id.
        let h = replica.as_str().bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
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
    Decision { v: SCHEMA_VERSION, service: service.clone(), ts_ms: now.unix_ms, action, reason, inputs }
}

fn plan_service(
    p: &mut Plan,
    world: &World,
    now: Now,
    name: &ServiceName,
    svc: &ServiceConfig,
    mut members: Vec<Member>,
    up: &BTreeSet<&WorkerId>,
) {
    let t = now.mono;
    let s = &world.settings;
    let default_state = Default::default();
    let state = world.services.get(name).unwrap_or(&default_state);
    let policy = &svc.policy;

    // Replicas that were serving and are gone without us stopping them: lost.
    let member_ids: BTreeSet<&ReplicaId> = members.iter().map(|m| &m.id).collect();
    for (id, b) in &state.published {
        if !member_ids.contains(id) && !p.records.iter().any(|(r, rec)| r == id && rec.is_some()) {
            let why = if up.contains(&b.worker) {
                format!("{id} is no longer reported by {}", b.worker)
            } else {
                format!("worker {} is down", b.worker)
            };
            p.decisions.push(decision(
                name,
                now,
                DecisionAction::Lost { replica: id.clone(), worker: b.worker.clone() },
                format!("{why}; removed from rotation and replaced if still needed"),
                BTreeMap::new(),
            ));
        }
    }

    // Unhealthy too long: stop it; it no longer counts, so it is replaced.
    for m in members.iter_mut() {
        if let Phase::Unhealthy { since } = m.phase {
            if t.saturating_sub(since) >= s.unhealthy_grace_ms {
                stop(p, now, name, &m.id, &m.worker, 1, policy.stop_grace_s,
                    format!("unhealthy for {} s; replacing it", (t - since) / 1000));
                m.phase = Phase::Stopping { sent: t, attempt: 1 };
            }
        }
    }

    let active: Vec<usize> = (0..members.len()).filter(|&i| members[i].phase.active()).collect();
    let n_active = active.len() as u32;

    // ---- desired count ----
    let current = state.desired.unwrap_or_else(|| n_active.clamp(policy.min_replicas, policy.max_replicas));
    let (desired, proposal) = match state.manual {
        Some(n) => {
            if state.desired != Some(n) {
                p.decisions.push(decision(
                    name,
                    now,
                    DecisionAction::Scale { from: current, to: n, manual: true },
                    format!("manual scale to {n}; policy overridden until scaled with auto"),
                    BTreeMap::new(),
                ));
            }
            (n, None)
        }
        None => {
            let signals = signals(world, t, name, svc, &members);
            let rec = policy::recommend(policy, current, &signals);
            let mut st = policy::stabilize(policy, current, rec.replicas, &state.history, t);
            let step_ms = (policy.step_interval_s * 1000.0) as u64;
            if state.desired.is_none() {
                // First plan since the brain started: keep what runs. Recording `current` as a
                // recommendation makes the scale-down window hold it until there is evidence.
                st.desired = current;
            } else if st.desired != current && state.last_change.is_some_and(|c| t.saturating_sub(c) < step_ms) {
                st.desired = current;
            }
            if state.desired.is_some() && st.desired != current {
                let mut reason = rec.reason.clone();
                if let Some(l) = &st.limited_by {
                    reason.push_str(&format!("; limited by {l}"));
                }
                p.decisions.push(decision(
                    name,
                    now,
                    DecisionAction::Scale { from: current, to: st.desired, manual: false },
                    reason,
                    rec.inputs,
                ));
            }
            let remembered = if state.desired.is_none() { rec.replicas.max(current) } else { rec.replicas };
            (st.desired, Some(remembered))
        }
    };
    p.desired.push((name.clone(), desired, proposal));

    // ---- too few: place ----
    if n_active < desired {
        let mut cands = candidates(world, t, name, up);
        // Count starts planned elsewhere in this plan (other services).
        for c in p.commands.iter().filter(|c| c.is_start()) {
            if let Some(k) = cands.iter_mut().find(|k| k.id == c.worker) {
                k.running += 1;
            }
        }
        let mut placed = 0;
        for _ in n_active..desired {
            let Some(i) = placement::choose(&cands) else { break };
            let c = &mut cands[i];
            let seq = p.next_seq;
            p.next_seq += 1;
            let replica = world.replica_id(name, seq);
            let reason = format!(
                "{} has room ({}/{} replicas, {} of {name}, cpu {:.0}%); spread and least-loaded first",
                c.id, c.running, c.max_replicas, c.of_service, c.cpu_pct
            );
            p.commands.push(Command {
                worker: c.id.clone(),
                replica: replica.clone(),
                cmd: WorkerCommand {
                    v: SCHEMA_VERSION,
                    id: command_id("start", &replica, 1),
                    issued_ms: now.unix_ms,
                    action: Action::Start { replica: replica.clone(), spec: svc.replica_spec() },
                },
            });
            p.records.push((
                replica.clone(),
                Some(Record { service: name.clone(), worker: c.id.clone(), intent: Intent::Starting { since: t } }),
            ));
            p.decisions.push(decision(
                name,
                now,
                DecisionAction::Place { replica, worker: c.id.clone() },
                reason,
                BTreeMap::new(),
            ));
            c.running += 1;
            c.of_service += 1;
            placed += 1;
        }
        let missing = desired - n_active - placed;
        let blocked = (missing > 0).then(|| {
            let room: Vec<String> =
                cands.iter().map(|c| format!("{} {}/{}", c.id, c.running, c.max_replicas)).collect();
            format!(
                "{missing} of {desired} replicas cannot be placed: no live worker has room ({})",
                if room.is_empty() { "no worker is up".to_string() } else { room.join(", ") }
            )
        });
        set_blocked(p, state.blocked.as_ref(), name, now, blocked);
    } else {
        set_blocked(p, state.blocked.as_ref(), name, now, None);
    }

    // ---- too many: choose victims ----
    let mut newly_draining: BTreeSet<ReplicaId> = BTreeSet::new();
    if n_active > desired {
        let mut per_worker: BTreeMap<&WorkerId, u32> = BTreeMap::new();
        for &i in &active {
            *per_worker.entry(&members[i].worker).or_default() += 1;
        }
        let mut victims: Vec<VictimCandidate> = active
            .iter()
            .map(|&i| {
                let m = &members[i];
                VictimCandidate {
                    id: m.id.clone(),
                    worker: m.worker.clone(),
                    not_serving: m.phase != Phase::Healthy,
                    worker_of_service: per_worker[&m.worker],
                    worker_cpu_pct: world.workers.get(&m.worker).map_or(0.0, |w| w.last.host.cpu_pct),
                    started_ms: m.started_ms,
                }
            })
            .collect();
        victims.sort_by(placement::victim_order);
        for v in victims.into_iter().take((n_active - desired) as usize) {
            let m = members.iter_mut().find(|m| m.id == v.id).expect("victim is a member");
            if v.not_serving {
                stop(p, now, name, &m.id, &m.worker, 1, policy.stop_grace_s,
                    format!("scale-in to {desired}: not serving yet, stopped without drain"));
                m.phase = Phase::Stopping { sent: t, attempt: 1 };
            } else {
                let deadline = t + (policy.drain_timeout_s * 1000.0) as u64;
                // The version is filled in below, once the drain delta has one.
                m.phase = Phase::Draining { since: t, version: 0, deadline };
                newly_draining.insert(m.id.clone());
                p.decisions.push(decision(
                    name,
                    now,
                    DecisionAction::Drain { replica: m.id.clone(), worker: m.worker.clone() },
                    format!(
                        "scale-in to {desired}: no new requests; stops when in-flight reaches 0 or after {} s",
                        policy.drain_timeout_s
                    ),
                    BTreeMap::new(),
                ));
            }
        }
    }

    // ---- drains that finished, stops to retry ----
    for m in members.iter_mut() {
        match m.phase {
            Phase::Draining { since, version, deadline } if !newly_draining.contains(&m.id) => {
                let left = in_flight_left(world, t, name, &m.id, version);
                let reason = match left {
                    None => Some(format!("drained in {} ms: no request in flight", t - since)),
                    Some(u64::MAX) if t >= deadline => {
                        Some("drain deadline passed before every proxy applied the drain".to_string())
                    }
                    Some(n) if t >= deadline => {
                        Some(format!("drain deadline passed with {n} request(s) still in flight"))
                    }
                    Some(_) => None,
                };
                if let Some(reason) = reason {
                    stop(p, now, name, &m.id, &m.worker, 1, policy.stop_grace_s, reason);
                    m.phase = Phase::Stopping { sent: t, attempt: 1 };
                }
            }
            Phase::Stopping { sent, attempt } if t.saturating_sub(sent) >= s.stop_retry_ms => {
                stop(p, now, name, &m.id, &m.worker, attempt + 1, policy.stop_grace_s, String::new());
            }
            _ => {}
        }
    }

    // ---- backends: diff what should be routed with what was published ----
    let mut want: BTreeMap<ReplicaId, Backend> = BTreeMap::new();
    for m in &members {
        let draining = match m.phase {
            Phase::Healthy => false,
            Phase::Draining { .. } => true,
            _ => continue,
        };
        if let Some(addr) = &m.addr {
            want.insert(m.id.clone(), Backend { id: m.id.clone(), addr: addr.clone(), worker: m.worker.clone(), draining });
        }
    }
    let mut version = state.version.max(world.first_version());
    let mut changes = Vec::new();
    let reset_due = state.last_reset.is_none_or(|r| t.saturating_sub(r) >= s.reset_every_ms);
    if reset_due {
        changes.push(BackendChange::Reset { route: svc.route.clone(), backends: want.values().cloned().collect() });
    } else {
        let add: Vec<Backend> = want
            .values()
            .filter(|b| state.published.get(&b.id).is_none_or(|o| o.addr != b.addr || (o.draining && !b.draining)))
            .cloned()
            .collect();
        let drain: Vec<ReplicaId> = want
            .values()
            .filter(|b| b.draining && state.published.get(&b.id).is_some_and(|o| !o.draining))
            .map(|b| b.id.clone())
            .collect();
        let remove: Vec<ReplicaId> =
            state.published.keys().filter(|id| !want.contains_key(*id)).cloned().collect();
        if !add.is_empty() {
            changes.push(BackendChange::Add { backends: add });
        }
        if !drain.is_empty() {
            changes.push(BackendChange::Drain { ids: drain });
        }
        if !remove.is_empty() {
            changes.push(BackendChange::Remove { ids: remove });
        }
    }
    let mut drain_version = None;
    for change in changes {
        version += 1;
        if matches!(change, BackendChange::Drain { .. } | BackendChange::Reset { .. }) {
            drain_version = Some(version);
        }
        p.updates.push(BackendUpdate {
            v: SCHEMA_VERSION,
            service: name.clone(),
            version,
            ts_ms: now.unix_ms,
            selection: svc.selection,
            change,
        });
    }
    if version != state.version || reset_due {
        p.published.push(Published { service: name.clone(), version, backends: want, reset: reset_due });
    }

    // Record drains with the version that told the proxies.
    for m in &members {
        if let Phase::Draining { since, deadline, .. } = m.phase {
            if newly_draining.contains(&m.id) {
                p.records.push((
                    m.id.clone(),
                    Some(Record {
                        service: name.clone(),
                        worker: m.worker.clone(),
                        intent: Intent::Draining { since, version: drain_version.unwrap_or(version), deadline },
                    }),
                ));
            }
        }
    }
    // A replica now healthy no longer needs its `Starting` record.
    for m in &members {
        if m.phase == Phase::Healthy
            && matches!(world.records.get(&m.id), Some(Record { intent: Intent::Starting { .. }, .. }))
        {
            p.records.push((m.id.clone(), None));
        }
    }
}

fn set_blocked(p: &mut Plan, was: Option<&String>, name: &ServiceName, now: Now, blocked: Option<String>) {
    if was != blocked.as_ref() {
        if let Some(reason) = &blocked {
            p.decisions.push(decision(name, now, DecisionAction::Blocked, reason.clone(), BTreeMap::new()));
        }
        p.blocked.push((name.clone(), blocked));
    }
}

/// The scaling signals of one service, from worker and proxy reports.
fn signals(world: &World, t: Millis, name: &ServiceName, svc: &ServiceConfig, members: &[Member]) -> Signals {
    let healthy: Vec<&Member> = members.iter().filter(|m| m.phase == Phase::Healthy).collect();
    let per_replica_cores = svc.cpus.unwrap_or(1.0);
    let cpu_pct_sum = (!healthy.is_empty())
        .then(|| healthy.iter().map(|m| m.cpu_pct / per_replica_cores).sum::<f64>());
    let mut rps = None;
    let mut in_flight = None;
    for proxy in world.live_proxies(t) {
        if let Some(st) = proxy.last.services.iter().find(|s| &s.service == name) {
            *rps.get_or_insert(0.0) += st.totals.rps;
            *in_flight.get_or_insert(0.0) += st.totals.in_flight as f64; // f64: no overflow
        }
    }
    Signals { ready: healthy.len() as u32, cpu_pct_sum, rps, in_flight }
}

/// Workers that can take a replica of `service` now.
fn candidates(world: &World, t: Millis, service: &ServiceName, up: &BTreeSet<&WorkerId>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for id in up {
        let w = &world.workers[*id];
        if w.backoff_until > t {
            continue;
        }
        let live = w.last.replicas.iter().filter(|r| r.state != ReplicaState::Exited);
        let mut running = 0;
        let mut of_service = 0;
        let mut reported = BTreeSet::new();
        for r in live {
            running += 1;
            of_service += (&r.service == service) as u32;
            reported.insert(&r.id);
        }
        // Starts sent but not yet reported also take room.
        for (rid, rec) in &world.records {
            if &rec.worker == *id && matches!(rec.intent, Intent::Starting { .. }) && !reported.contains(rid) {
                running += 1;
                of_service += (&rec.service == service) as u32;
            }
        }
        out.push(Candidate {
            id: (*id).clone(),
            running,
            max_replicas: w.last.capacity.max_replicas,
            of_service,
            cpu_pct: w.last.host.cpu_pct,
        });
    }
    out
}

/// `None` when every live proxy has applied `version` (or a later one) for `service` and has no
/// request in flight to `replica`; otherwise how many are left (`u64::MAX` if a proxy has not yet
/// applied the drain).
fn in_flight_left(world: &World, t: Millis, service: &ServiceName, replica: &ReplicaId, version: u64) -> Option<u64> {
    let mut left = 0u64;
    for proxy in world.live_proxies(t) {
        let Some(st) = proxy.last.services.iter().find(|s| &s.service == service) else { continue };
        if st.version < version {
            return Some(u64::MAX);
        }
        if let Some(b) = st.backends.iter().find(|b| &b.id == replica) {
            left = left.saturating_add(b.traffic.in_flight);
        }
    }
    (left > 0).then_some(left)
}

impl World {
    /// Folds a plan's bookkeeping back in, once it has been sent.
    pub fn commit(&mut self, plan: &Plan, now: Millis) {
        for (id, is_up) in &plan.worker_health {
            if let Some(w) = self.workers.get_mut(id) {
                w.announced_up = *is_up;
            }
        }
        for (id, rec) in &plan.records {
            match rec {
                Some(r) => {
                    self.records.insert(id.clone(), r.clone());
                }
                None => {
                    self.records.remove(id);
                }
            }
        }
        for (svc, desired, proposal) in &plan.desired {
            let st = self.services.entry(svc.clone()).or_default();
            if st.desired.is_some_and(|d| d != *desired) {
                st.last_change = Some(now);
            }
            st.desired = Some(*desired);
            if let Some(p) = proposal {
                st.history.push_back((now, *p));
                // Bound the history even with very long windows.
                while st.history.len() > 4096 {
                    st.history.pop_front();
                }
            }
        }
        for p in &plan.published {
            let st = self.services.entry(p.service.clone()).or_default();
            st.version = p.version;
            st.published = p.backends.clone();
            if p.reset {
                st.last_reset = Some(now);
            }
        }
        for (svc, b) in &plan.blocked {
            self.services.entry(svc.clone()).or_default().blocked = b.clone();
        }
        self.next_seq = plan.next_seq;
    }

    /// Drops recommendation history that no window can use any more.
    pub fn prune(&mut self, services: &Services, now: Millis) {
        for (name, st) in self.services.iter_mut() {
            if let Some(svc) = services.get(name) {
                policy::prune(&svc.policy, &mut st.history, now);
            }
        }
    }
}
