//! Answers to users and proxies: manual scale, maintenance, replace, status (whole, summary or
//! paged), backend snapshots (within the payload limit). Pure functions over
//! the `World` (a manual scale changes it through `World::apply`); the reconciler only decodes
//! requests and sends the replies.

use std::collections::BTreeMap;

use acs_events::{
    BackendChange, BackendUpdate, MaintenanceAction, MaintenanceReply, MaintenanceRequest,
    ReplicaId, ReplicaInfo, ReplicaReply, ReplicaRequest, ReplicaState, ScaleMode, ScaleReply,
    ScaleRequest, ServiceName, ServiceStatus, StatusDetail, StatusPage, StatusReply, StatusRequest,
    StatusSummary, SyncReply, SyncRequest, WorkerHealth, WorkerStatus, SCHEMA_VERSION,
    STATUS_DETAIL_MAX, STATUS_PAGE_MAX,
};

use crate::config::Services;
use crate::world::{Event, Intent, Maintenance, Now, World};

/// Applies a manual scale request: a pin, or (`auto`) the service handed back to its policy.
/// Unknown services are refused with the list of known ones.
pub fn manual_scale(
    world: &mut World,
    services: &Services,
    req: &ScaleRequest,
    now: Now,
) -> ScaleReply {
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
    world.apply(
        Event::Pin {
            service: req.service.clone(),
            replicas,
        },
        now.mono,
    );
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
    world
        .workers()
        .values()
        .filter(move |w| w.is_up(now.mono, world.settings()))
}

fn free_slots(world: &World, now: Now) -> u32 {
    live_workers(world, now)
        .map(|w| {
            let taken = w
                .last
                .replicas
                .iter()
                .filter(|r| r.state.takes_slot())
                .count() as u32;
            w.last.capacity.max_replicas.saturating_sub(taken)
        })
        .fold(0u32, u32::saturating_add)
}

/// The status of every service and worker, whole while small, else a summary (see
/// [`status_page`]). `rejected` is left at 0: that count belongs to the reconciler loop,
/// which fills it in.
pub fn status(world: &World, services: &Services, now: Now) -> StatusReply {
    status_page(world, services, &StatusRequest::default(), now)
        .expect("the default status request is always answered")
}

/// The answer to one `acs.status` request: everything while there are at most
/// [`STATUS_DETAIL_MAX`] replicas, backends and workers in all; else a summary (every
/// service with its counts, the workers' totals, no lists); or, on request, one service's
/// replicas and backends or the workers, a page at a time. A page is shrunk until the reply
/// fits in [`acs_events::MAX_PAYLOAD`]. Errors are for the user (an unknown service).
pub fn status_page(
    world: &World,
    services: &Services,
    req: &StatusRequest,
    now: Now,
) -> Result<StatusReply, String> {
    if let Some(name) = &req.service {
        if services.get(name).is_none() {
            return Err(format!(
                "unknown service {:?}; known services: {}",
                name.as_str(),
                services.names().join(", ")
            ));
        }
    }
    let t = now.mono;
    // Every live worker's replicas, by service: one pass over what workers report.
    let mut replicas: BTreeMap<&ServiceName, Vec<ReplicaInfo>> = BTreeMap::new();
    for (wid, w) in world
        .workers()
        .iter()
        .filter(|(_, w)| w.is_up(t, world.settings()))
    {
        for r in &w.last.replicas {
            if services.get(&r.service).is_none() {
                continue;
            }
            let draining = matches!(world.records().get(&r.id), Some(rec) if matches!(rec.intent, Intent::Draining { .. }));
            replicas.entry(&r.service).or_default().push(ReplicaInfo {
                id: r.id.clone(),
                worker: wid.clone(),
                state: r.state,
                addr: Some(r.addr.clone()),
                draining,
            });
        }
    }
    let mut out = Vec::new();
    for (name, svc) in services.iter() {
        let st = world.service(name);
        let replicas = replicas.remove(name).unwrap_or_default();
        let backends: Vec<acs_events::Backend> = st
            .map(|s| s.published.values().cloned().collect())
            .unwrap_or_default();
        out.push(ServiceStatus {
            name: name.clone(),
            mode: match st {
                Some(s) if s.manual.is_some() || s.pin_unreadable => ScaleMode::Manual,
                _ => ScaleMode::Auto,
            },
            desired: st
                .and_then(|s| s.desired)
                .unwrap_or(svc.policy.min_replicas),
            running: backends.iter().filter(|b| !b.draining).count() as u32,
            replicas_total: replicas.len() as u32,
            backends_total: backends.len() as u32,
            replicas,
            version: st.map_or(0, |s| s.version),
            backends,
            lifecycle: st.map(|s| s.lifecycle.clone()).unwrap_or_default(),
        });
    }
    let workers: Vec<WorkerStatus> = world
        .workers()
        .iter()
        .map(|(id, w)| WorkerStatus {
            id: id.clone(),
            health: if w.is_up(t, world.settings()) {
                WorkerHealth::Up
            } else {
                WorkerHealth::Down
            },
            cordoned: world.maintenance_of(id).cordoned,
            draining: world.maintenance_of(id).draining,
            last_seen_ms_ago: t.saturating_sub(w.last_seen),
            replicas: w.last.replicas.len() as u32,
            max_replicas: w.last.capacity.max_replicas,
            cpu_pct: (w.last.host.cpu_pct * 10.0).round() / 10.0,
        })
        .collect();
    let summary = summarise(&workers);
    let whole = StatusReply {
        v: SCHEMA_VERSION,
        ok: true,
        ts_ms: now.unix_ms,
        services: out,
        workers,
        rejected: 0,
        brain: None,
        summary: Some(summary),
        page: None,
    };
    let total = whole.workers.len()
        + whole
            .services
            .iter()
            .map(|s| s.replicas.len() + s.backends.len())
            .sum::<usize>();
    let mut limit = req.limit.unwrap_or(STATUS_PAGE_MAX).min(STATUS_PAGE_MAX) as usize;
    loop {
        let reply = if req.service.is_some() || req.workers {
            page(&whole, req, limit)
        } else if total <= STATUS_DETAIL_MAX {
            whole.clone()
        } else {
            summary_only(&whole, total)
        };
        // Room for the `brain` and `rejected` the loop adds.
        if limit <= 1 || acs_events::encode(&reply).len() + 1024 <= acs_events::MAX_PAYLOAD {
            return Ok(reply);
        }
        if reply.page.is_none() {
            return Ok(summary_only(&whole, total));
        }
        limit /= 2;
    }
}

fn summarise(workers: &[WorkerStatus]) -> StatusSummary {
    let mut s = StatusSummary::default();
    for w in workers {
        if w.health == WorkerHealth::Up {
            s.workers_up += 1;
            s.replicas += u64::from(w.replicas);
            s.max_replicas += u64::from(w.max_replicas);
        } else {
            s.workers_down += 1;
        }
        s.cordoned += u32::from(w.cordoned);
        s.draining += u32::from(w.draining);
    }
    s
}

/// `whole` without its lists.
fn summary_only(whole: &StatusReply, total: usize) -> StatusReply {
    let mut r = whole.clone();
    r.workers.clear();
    for s in &mut r.services {
        s.replicas.clear();
        s.backends.clear();
    }
    r.page = Some(StatusPage {
        detail: StatusDetail::Summary,
        offset: 0,
        count: 0,
        total: total as u32,
        next: None,
    });
    r
}

/// One page of a service's replicas and backends, or of the workers.
fn page(whole: &StatusReply, req: &StatusRequest, limit: usize) -> StatusReply {
    let mut r = summary_only(whole, 0);
    let offset = req.offset as usize;
    let cut = |n: usize| offset.min(n)..(offset + limit).min(n);
    let (detail, total, count) = match &req.service {
        Some(name) => {
            let (i, full) = whole
                .services
                .iter()
                .enumerate()
                .find(|(_, s)| &s.name == name)
                .expect("checked: declared");
            let total = full.replicas.len().max(full.backends.len());
            r.services[i].replicas = full.replicas[cut(full.replicas.len())].to_vec();
            r.services[i].backends = full.backends[cut(full.backends.len())].to_vec();
            (StatusDetail::Service, total, cut(total).len())
        }
        None => {
            r.workers = whole.workers[cut(whole.workers.len())].to_vec();
            (StatusDetail::Workers, whole.workers.len(), r.workers.len())
        }
    };
    let next = (offset + count < total).then_some((offset + count) as u32);
    r.page = Some(StatusPage {
        detail,
        offset: req.offset,
        count: count as u32,
        total: total as u32,
        next,
    });
    r
}

/// Snapshots of what has been published, one `reset` per service. Before the brain has
/// published anything (warm-up) the reply is empty, so a proxy keeps what it has.
///
/// The reply is one message, so it names every service but carries at most
/// [`acs_events::CHUNK_BYTES`] of backends, shared evenly among them: a service over its share
/// gets a `reset` with the first part of its set (at its current version, so a proxy already
/// there ignores it), and is listed in [`Sync::resend`]; the loop then publishes a fresh split
/// `reset` of it on `acs.backends.<service>` ([`Event::ResetDue`]).
pub fn sync(world: &World, services: &Services, req: &SyncRequest, now: Now) -> Sync {
    let wanted: Vec<_> = services
        .iter()
        .filter(|(name, _)| req.services.is_empty() || req.services.contains(name))
        .filter_map(|(name, svc)| {
            world
                .service(name)
                .filter(|st| st.last_reset.is_some())
                .map(|st| (name, svc, st))
        })
        .collect();
    let share = acs_events::CHUNK_BYTES / wanted.len().max(1);
    let mut updates = Vec::new();
    let mut resend = Vec::new();
    for (name, svc, st) in wanted {
        let mut used = 0;
        let mut backends = Vec::new();
        for b in st.published.values() {
            used += acs_events::backend_bytes(b);
            if used > share {
                resend.push(name.clone());
                break;
            }
            backends.push(b.clone());
        }
        updates.push(BackendUpdate {
            v: SCHEMA_VERSION,
            service: name.clone(),
            version: st.version,
            ts_ms: now.unix_ms,
            selection: svc.selection,
            change: BackendChange::Reset {
                route: svc.route.clone(),
                backends,
            },
        });
    }
    Sync {
        reply: SyncReply {
            v: SCHEMA_VERSION,
            updates,
        },
        resend,
    }
}

/// A sync reply, and the services it could carry only in part.
#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    pub reply: SyncReply,
    pub resend: Vec<ServiceName>,
}

/// Applies a maintenance request (`acs.cmd.maintenance`): cordon, uncordon or drain a worker.
/// Unknown workers are refused with the list of known ones. The drain itself is planned by
/// [`crate::plan`](mod@crate::plan) (make-before-break moves); this only records the state.
pub fn maintenance(world: &mut World, req: &MaintenanceRequest, now: Now) -> MaintenanceReply {
    let Some(worker) = world.workers().get(&req.worker) else {
        let known: Vec<&str> = world.workers().keys().map(|w| w.as_str()).collect();
        return MaintenanceReply::error(format!(
            "unknown worker {:?}; known workers: {}",
            req.worker.as_str(),
            if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            }
        ));
    };
    let replicas = worker
        .last
        .replicas
        .iter()
        .filter(|r| r.state.takes_slot())
        .count() as u32;
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
    world.apply(
        Event::Maintenance {
            worker: req.worker.clone(),
            state,
        },
        now.mono,
    );
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
pub fn replace(
    world: &mut World,
    services: &Services,
    req: &ReplicaRequest,
    now: Now,
) -> ReplicaReply {
    let Ok(id) = ReplicaId::new(req.replica.as_str()) else {
        return ReplicaReply::error(format!("{:?} is not a valid replica id", req.replica));
    };
    let found = world.workers().iter().find_map(|(w, view)| {
        view.last
            .replicas
            .iter()
            .find(|r| r.id == id)
            .map(|r| (w.clone(), r.service.clone(), r.state))
    });
    let Some((worker, service, state)) = found else {
        return ReplicaReply::error(format!(
            "unknown replica {id}: no worker reports it (`acsctl status` lists the replicas)"
        ));
    };
    let refuse = |error: String| ReplicaReply {
        service: Some(service.to_string()),
        replica: Some(id.to_string()),
        ..ReplicaReply::error(error)
    };
    if services.get(&service).is_none() {
        return refuse(format!(
            "replica {id} belongs to {service}, which this brain does not manage"
        ));
    }
    if let Some(rec) = world.records().get(&id) {
        if !matches!(rec.intent, Intent::Starting { .. }) {
            return refuse(format!(
                "replica {id} is already leaving (draining or stopping)"
            ));
        }
    }
    if state != ReplicaState::Healthy {
        return refuse(format!(
            "replica {id} is {state:?}, not healthy; the brain replaces failed replicas by itself"
        ));
    }
    if let Some(moving) = world
        .service(&service)
        .and_then(|st| st.rebalancing.as_ref())
    {
        return refuse(format!("{service} is already moving {moving}; one move per service at a time, try again when it is done"));
    }
    let reason = format!("replace of {id} on {worker} requested by an operator");
    world.apply(
        Event::Replace {
            service: service.clone(),
            replica: id.clone(),
            reason,
        },
        now.mono,
    );
    ReplicaReply {
        v: SCHEMA_VERSION,
        ok: true,
        replica: Some(id.to_string()),
        service: Some(service.to_string()),
        note: Some(format!("{id} on {worker}: a replacement starts, and {id} is drained and stopped once the replacement serves")),
        error: None,
    }
}
