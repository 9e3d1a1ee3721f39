//! Answers to users and proxies: manual scale, maintenance, replace, status (whole, summary or
//! paged), backend snapshots (within the payload limit). Pure functions over a `&World`: one
//! that changes the world (a pin, a maintenance state, a replace, a reset due) returns the reply
//! and the [`Event`]s to fold in, and the reconciler applies them; it also decodes the requests
//! and sends the replies.

mod status;

use acs_events::{
    BackendChange, BackendUpdate, MaintenanceAction, MaintenanceReply, MaintenanceRequest,
    ReplicaId, ReplicaReply, ReplicaRequest, ReplicaState, ScaleMode, ScaleReply, ScaleRequest,
    ServiceName, SyncReply, SyncRequest, SCHEMA_VERSION,
};

use crate::config::Services;
use crate::world::{Event, Intent, Maintenance, Now, World};
pub use status::{status, status_page};

/// A reply, and the events that make it true once folded into the world.
pub type Answer<R> = (R, Vec<Event>);

/// A manual scale request: a pin, or (`auto`) the service handed back to its policy.
/// Unknown services are refused with the list of known ones.
pub fn manual_scale(
    world: &World,
    services: &Services,
    req: &ScaleRequest,
    now: Now,
) -> Answer<ScaleReply> {
    let Some(svc) = services.get(&req.service) else {
        let error = format!(
            "unknown service {:?}; known services: {}",
            req.service.as_str(),
            services.names().join(", ")
        );
        return (ScaleReply::error(error), Vec::new());
    };
    let previous = world.service(&req.service).and_then(|st| st.scale.desired);
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
    let pin = Event::Pin {
        service: req.service.clone(),
        replicas,
    };
    let reply = ScaleReply {
        v: SCHEMA_VERSION,
        ok: true,
        service: Some(req.service.clone()),
        previous,
        replicas: replicas.or(previous),
        mode: Some(mode),
        note: Some(note),
        error: None,
    };
    (reply, vec![pin])
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

/// Snapshots of what has been published, one `reset` per service. Before the brain has
/// published anything (warm-up) the reply is empty, so a proxy keeps what it has.
///
/// The reply is one message, so it names every service but carries at most
/// [`acs_events::CHUNK_BYTES`] of backends, shared evenly among them: a service over its share
/// gets a `reset` with the first part of its set (at its current version, so a proxy already
/// there ignores it), and is listed in [`Sync::resend`]; the loop then publishes a fresh split
/// `reset` of it on `acs.backends.<service>` ([`Event::ResetDue`], from [`Sync::into_answer`]).
pub fn sync(world: &World, services: &Services, req: &SyncRequest, now: Now) -> Sync {
    let wanted: Vec<_> = services
        .iter()
        .filter(|(name, _)| req.services.is_empty() || req.services.contains(name))
        .filter_map(|(name, svc)| {
            world
                .service(name)
                .filter(|st| st.routing.last_reset.is_some())
                .map(|st| (name, svc, &st.routing))
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

impl Sync {
    /// The reply, and a fresh reset due for each service it carried only in part.
    pub fn into_answer(self) -> Answer<SyncReply> {
        let events = if self.resend.is_empty() {
            Vec::new()
        } else {
            vec![Event::ResetDue(self.resend)]
        };
        (self.reply, events)
    }
}

/// A maintenance request (`acs.cmd.maintenance`): cordon, uncordon or drain a worker.
/// Unknown workers are refused with the list of known ones. The drain itself is planned by
/// [`crate::plan`](mod@crate::plan) (make-before-break moves); this only records the state.
pub fn maintenance(world: &World, req: &MaintenanceRequest) -> Answer<MaintenanceReply> {
    let Some(worker) = world.workers().get(&req.worker) else {
        let known: Vec<&str> = world.workers().keys().map(|w| w.as_str()).collect();
        let error = format!(
            "unknown worker {:?}; known workers: {}",
            req.worker.as_str(),
            if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            }
        );
        return (MaintenanceReply::error(error), Vec::new());
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
    let event = Event::Maintenance {
        worker: req.worker.clone(),
        state,
    };
    let reply = MaintenanceReply {
        v: SCHEMA_VERSION,
        ok: true,
        worker: Some(req.worker.clone()),
        action: Some(req.action),
        replicas,
        note: Some(note),
        error: None,
    };
    (reply, vec![event])
}

/// `acs.cmd.replica` replace: checks the replica can be moved now, then hands it to the plan
/// ([`Event::Replace`]), which starts a replacement and drains the old one once it serves.
pub fn replace(world: &World, services: &Services, req: &ReplicaRequest) -> Answer<ReplicaReply> {
    match replace_checked(world, services, req) {
        Ok((reply, event)) => (reply, vec![event]),
        Err(reply) => (reply, Vec::new()),
    }
}

fn replace_checked(
    world: &World,
    services: &Services,
    req: &ReplicaRequest,
) -> Result<(ReplicaReply, Event), ReplicaReply> {
    let Ok(id) = ReplicaId::new(req.replica.as_str()) else {
        let error = format!("{:?} is not a valid replica id", req.replica);
        return Err(ReplicaReply::error(error));
    };
    let found = world.workers().iter().find_map(|(w, view)| {
        view.last
            .replicas
            .iter()
            .find(|r| r.id == id)
            .map(|r| (w.clone(), r.service.clone(), r.state))
    });
    let Some((worker, service, state)) = found else {
        return Err(ReplicaReply::error(format!(
            "unknown replica {id}: no worker reports it (`acsctl status` lists the replicas)"
        )));
    };
    let refuse = |error: String| ReplicaReply {
        service: Some(service.to_string()),
        replica: Some(id.to_string()),
        ..ReplicaReply::error(error)
    };
    if services.get(&service).is_none() {
        return Err(refuse(format!(
            "replica {id} belongs to {service}, which this brain does not manage"
        )));
    }
    if let Some(rec) = world.records().get(&id) {
        if !matches!(rec.intent, Intent::Starting { .. }) {
            return Err(refuse(format!(
                "replica {id} is already leaving (draining or stopping)"
            )));
        }
    }
    if state != ReplicaState::Healthy {
        return Err(refuse(format!(
            "replica {id} is {state:?}, not healthy; the brain replaces failed replicas by itself"
        )));
    }
    if let Some(moving) = world
        .service(&service)
        .and_then(|st| st.moves.moving.as_ref())
    {
        return Err(refuse(format!("{service} is already moving {moving}; one move per service at a time, try again when it is done")));
    }
    let reason = format!("replace of {id} on {worker} requested by an operator");
    let reply = ReplicaReply {
        v: SCHEMA_VERSION,
        ok: true,
        replica: Some(id.to_string()),
        service: Some(service.to_string()),
        note: Some(format!("{id} on {worker}: a replacement starts, and {id} is drained and stopped once the replacement serves")),
        error: None,
    };
    let event = Event::Replace {
        service,
        replica: id,
        reason,
    };
    Ok((reply, event))
}
