//! Answers to users and proxies: manual scale, maintenance, replace, status, backend snapshots. Pure functions over
//! the `World` (a manual scale changes it through `World::apply`); the reconciler only decodes
//! requests and sends the replies.

use acs_events::{
    BackendChange, BackendUpdate, MaintenanceAction, MaintenanceReply, MaintenanceRequest, ReplicaId, ReplicaInfo, ReplicaReply, ReplicaRequest, ReplicaState, ScaleMode, ScaleReply, ScaleRequest, ServiceStatus,
    StatusReply, SyncReply, SyncRequest, WorkerHealth, WorkerStatus, SCHEMA_VERSION,
};

use crate::config::Services;
use crate::world::{Event, Intent, Maintenance, Now, World};

/// Applies a manual scale request: a pin, or (`auto`) the service handed back to its policy.
/// Unknown services are refused with the list of known ones.
pub fn manual_scale(world: &mut World, services: &Services, req: &ScaleRequest, now: Now) -> ScaleReply {
    let Some(svc) = services.get(&req.service) else {
        return ScaleReply::error(format!(
            "unknown service {:?}; known services: {}",
            req.service.as_str(),
            services.names().join(", ")
        ));
    };
    let previous = world.service(&req.service).and_then(|st| st.desired);
    let policy = &svc.policy;
    let (replicas, mode, note) = if req.auto {
        let from = previous.unwrap_or(policy.min_replicas);
        (
            None,
            ScaleMode::Auto,
            format!(
                "{} is back under its policy (min {}, max {}), starting from {from} replicas",
                req.service, policy.min_replicas, policy.max_replicas
            ),
        )
    } else {
        let n = req.replicas.expect("validated: replicas or auto") as u32;
        let mut note = format!(
            "{} pinned at {n} replicas; its policy (min {}, max {}) is overridden until `acsctl scale {} auto`",
            req.service, policy.min_replicas, policy.max_replicas, req.service
        );
        let free = free_slots(world, now);
        let running = live_workers(world, now)
            .flat_map(|w| w.last.replicas.iter())
            .filter(|r| r.service == req.service && r.state.takes_slot())
            .count() as u32;
        if n > running.saturating_add(free) {
            note.push_str(&format!(
                "; only {} can run now ({running} running + {free} free slots on live workers)",
                running.saturating_add(free)
            ));
        }
        (Some(n), ScaleMode::Manual, note)
    };
    world.apply(Event::Pin { service: req.service.clone(), replicas }, now.mono);
    ScaleReply {
        v: SCHEMA_VERSION,
        ok: true,
        service: Some(req.service.clone()),
        previous,
        replicas: replicas.or(previous),
        mode: Some(mode),
        note: Some(note),
        error: None,
    }
}

fn live_workers(world: &World, now: Now) -> impl Iterator<Item = &crate::world::WorkerView> {
    world.workers().values().filter(move |w| w.is_up(now.mono, world.settings()))
}

fn free_slots(world: &World, now: Now) -> u32 {
    live_workers(world, now)
        .map(|w| {
            let taken = w.last.replicas.iter().filter(|r| r.state.takes_slot()).count() as u32;
            w.last.capacity.max_replicas.saturating_sub(taken)
        })
        .fold(0u32, u32::saturating_add)
}

/// The status of every service and worker. `rejected` is left at 0: that count belongs to the
/// reconciler loop, which fills it in.
pub fn status(world: &World, services: &Services, now: Now) -> StatusReply {
    let t = now.mono;
    let mut out = Vec::new();
    for (name, svc) in services.iter() {
        let st = world.service(name);
        let mut replicas = Vec::new();
        for (wid, w) in world.workers() {
            if !w.is_up(t, world.settings()) {
                continue;
            }
            for r in w.last.replicas.iter().filter(|r| &r.service == name) {
                let draining =
                    matches!(world.records().get(&r.id), Some(rec) if matches!(rec.intent, Intent::Draining { .. }));
                replicas.push(ReplicaInfo {
                    id: r.id.clone(),
                    worker: wid.clone(),
                    state: r.state,
                    addr: Some(r.addr.clone()),
                    draining,
                });
            }
        }
        let backends: Vec<_> = st.map(|s| s.published.values().cloned().collect()).unwrap_or_default();
        out.push(ServiceStatus {
            name: name.clone(),
            mode: if st.and_then(|s| s.manual).is_some() { ScaleMode::Manual } else { ScaleMode::Auto },
            desired: st.and_then(|s| s.desired).unwrap_or(svc.policy.min_replicas),
            running: backends.iter().filter(|b: &&acs_events::Backend| !b.draining).count() as u32,
            replicas,
            version: st.map_or(0, |s| s.version),
            backends,
            lifecycle: st.map(|s| s.lifecycle.clone()).unwrap_or_default(),
        });
    }
    let workers = world
        .workers()
        .iter()
        .map(|(id, w)| WorkerStatus {
            id: id.clone(),
            health: if w.is_up(t, world.settings()) { WorkerHealth::Up } else { WorkerHealth::Down },
            cordoned: world.maintenance_of(id).cordoned,
            draining: world.maintenance_of(id).draining,
            last_seen_ms_ago: t.saturating_sub(w.last_seen),
            replicas: w.last.replicas.len() as u32,
            max_replicas: w.last.capacity.max_replicas,
            cpu_pct: (w.last.host.cpu_pct * 10.0).round() / 10.0,
        })
        .collect();
    StatusReply { v: SCHEMA_VERSION, ok: true, ts_ms: now.unix_ms, services: out, workers, rejected: 0, brain: None }
}

/// Snapshots of what has been published, one `reset` per service. Before the brain has
/// published anything (warm-up) the reply is empty, so a proxy keeps what it has.
pub fn sync(world: &World, services: &Services, req: &SyncRequest, now: Now) -> SyncReply {
    let mut updates = Vec::new();
    for (name, svc) in services.iter() {
        if !req.services.is_empty() && !req.services.contains(name) {
            continue;
        }
        let Some(st) = world.service(name) else { continue };
        if st.last_reset.is_none() {
            continue;
        }
        updates.push(BackendUpdate {
            v: SCHEMA_VERSION,
            service: name.clone(),
            version: st.version,
            ts_ms: now.unix_ms,
            selection: svc.selection,
            change: BackendChange::Reset { route: svc.route.clone(), backends: st.published.values().cloned().collect() },
        });
    }
    SyncReply { v: SCHEMA_VERSION, updates }
}

/// Applies a maintenance request (`acs.cmd.maintenance`): cordon, uncordon or drain a worker.
/// Unknown workers are refused with the list of known ones. The drain itself is planned by
/// [`crate::plan`] (make-before-break moves); this only records the state.
pub fn maintenance(world: &mut World, req: &MaintenanceRequest, now: Now) -> MaintenanceReply {
    let Some(worker) = world.workers().get(&req.worker) else {
        let known: Vec<&str> = world.workers().keys().map(|w| w.as_str()).collect();
        return MaintenanceReply::error(format!(
            "unknown worker {:?}; known workers: {}",
            req.worker.as_str(),
            if known.is_empty() { "none yet".to_string() } else { known.join(", ") }
        ));
    };
    let replicas = worker.last.replicas.iter().filter(|r| r.state.takes_slot()).count() as u32;
    let (state, note) = match req.action {
        MaintenanceAction::Cordon => (
            Maintenance { cordoned: true, draining: world.maintenance_of(&req.worker).draining },
            format!("{} cordoned: no new replicas are placed there; its {replicas} replicas stay", req.worker),
        ),
        MaintenanceAction::Uncordon => (
            Maintenance::default(),
            format!("{} uncordoned: placements allowed again (any drain in progress stops)", req.worker),
        ),
        MaintenanceAction::Drain => (
            Maintenance { cordoned: true, draining: true },
            format!(
                "{} draining: cordoned, and its {replicas} replicas move off one at a time, each replacement serving before the old one is drained",
                req.worker
            ),
        ),
    };
    world.apply(Event::Maintenance { worker: req.worker.clone(), state }, now.mono);
    MaintenanceReply {
        v: SCHEMA_VERSION,
        ok: true,
        worker: Some(req.worker.clone()),
        action: Some(req.action),
        replicas,
        note: Some(note),
        error: None,
    }
}

/// `acs.cmd.replica` replace: checks the replica can be moved now, then hands it to the plan
/// ([`Event::Replace`]), which starts a replacement and drains the old one once it serves.
pub fn replace(world: &mut World, services: &Services, req: &ReplicaRequest, now: Now) -> ReplicaReply {
    let Ok(id) = ReplicaId::new(req.replica.as_str()) else {
        return ReplicaReply::error(format!("{:?} is not a valid replica id", req.replica));
    };
    let found = world.workers().iter().find_map(|(w, view)| {
        view.last.replicas.iter().find(|r| r.id == id).map(|r| (w.clone(), r.service.clone(), r.state))
    });
    let Some((worker, service, state)) = found else {
        return ReplicaReply::error(format!("unknown replica {id}: no worker reports it (`acsctl status` lists the replicas)"));
    };
    let refuse = |error: String| ReplicaReply { service: Some(service.to_string()), replica: Some(id.to_string()), ..ReplicaReply::error(error) };
    if services.get(&service).is_none() {
        return refuse(format!("replica {id} belongs to {service}, which this brain does not manage"));
    }
    if let Some(rec) = world.records().get(&id) {
        if !matches!(rec.intent, Intent::Starting { .. }) {
            return refuse(format!("replica {id} is already leaving (draining or stopping)"));
        }
    }
    if state != ReplicaState::Healthy {
        return refuse(format!("replica {id} is {state:?}, not healthy; the brain replaces failed replicas by itself"));
    }
    if let Some(moving) = world.service(&service).and_then(|st| st.rebalancing.as_ref()) {
        return refuse(format!("{service} is already moving {moving}; one move per service at a time, try again when it is done"));
    }
    let reason = format!("replace of {id} on {worker} requested by an operator");
    world.apply(Event::Replace { service: service.clone(), replica: id.clone(), reason }, now.mono);
    ReplicaReply {
        v: SCHEMA_VERSION,
        ok: true,
        replica: Some(id.to_string()),
        service: Some(service.to_string()),
        note: Some(format!("{id} on {worker}: a replacement starts, and {id} is drained and stopped once the replacement serves")),
        error: None,
    }
}
