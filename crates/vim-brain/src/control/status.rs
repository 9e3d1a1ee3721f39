//! `acs.status`: every service and worker, whole while small, else a summary, with pages of
//! one service's replicas or of the workers on request; each reply within the payload limit.

use std::collections::BTreeMap;

use acs_events::{
    ReplicaInfo, ScaleMode, ServiceName, ServiceStatus, StatusDetail, StatusPage, StatusReply,
    StatusRequest, StatusSummary, WorkerHealth, WorkerStatus, SCHEMA_VERSION, STATUS_DETAIL_MAX,
    STATUS_PAGE_MAX,
};

use crate::config::Services;
use crate::world::{Intent, Millis, Now, World};

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
    let out = service_statuses(world, services, t);
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

/// Every declared service with its live replicas (one pass over what workers report) and the
/// backends last published for it.
fn service_statuses(world: &World, services: &Services, t: Millis) -> Vec<ServiceStatus> {
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
            .map(|s| s.routing.published.values().cloned().collect())
            .unwrap_or_default();
        out.push(ServiceStatus {
            name: name.clone(),
            mode: match st {
                Some(s) if s.scale.pinned() => ScaleMode::Manual,
                _ => ScaleMode::Auto,
            },
            desired: st
                .and_then(|s| s.scale.desired)
                .unwrap_or(svc.policy.min_replicas),
            running: backends.iter().filter(|b| !b.draining).count() as u32,
            replicas_total: replicas.len() as u32,
            backends_total: backends.len() as u32,
            replicas,
            version: st.map_or(0, |s| s.routing.version),
            backends,
            lifecycle: st.map(|s| s.status.lifecycle.clone()).unwrap_or_default(),
        });
    }
    out
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
