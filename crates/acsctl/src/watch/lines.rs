//! One summary line per message type, as `acsctl watch` prints it (pure).

use std::fmt::Write as _;

use acs_events::{
    Action, BackendChange, BackendUpdate, Decision, DecisionAction, LeaderChange, LeaderEvent,
    MaintenanceAction, MaintenanceRequest, ProxyMetrics, Rejection, ReplicaEvent, ScaleRequest,
    SyncRequest, WorkerCommand, WorkerEvent, WorkerHealth, WorkerMetrics,
};

use crate::status::state_name;

pub(super) fn worker_metrics(m: &WorkerMetrics) -> String {
    let h = &m.host;
    let mut s = format!(
        "worker {} cpu {:.0}% mem {}/{} load {:.2} replicas {}/{}",
        m.worker,
        h.cpu_pct,
        gib(h.mem_used_bytes),
        gib_unit(h.mem_total_bytes),
        h.load1,
        m.capacity.running,
        m.capacity.max_replicas,
    );
    if !m.replicas.is_empty() {
        let list: Vec<String> = m
            .replicas
            .iter()
            .map(|r| format!("{} {} {:.0}%", r.id, state_name(r.state), r.cpu_pct))
            .collect();
        let _ = write!(s, " [{}]", list.join(", "));
    }
    if m.rejected > 0 {
        let _ = write!(s, " rejected {}", m.rejected);
    }
    s
}

pub(super) fn proxy_metrics(m: &ProxyMetrics) -> String {
    let mut s = format!("proxy {}", m.proxy);
    if m.services.is_empty() {
        s.push_str(" no services");
    }
    let parts: Vec<String> = m
        .services
        .iter()
        .map(|svc| {
            let t = &svc.totals;
            let mut p = format!(
                "{} {:.0} rps inflight {} p99 {:.0}ms",
                svc.service, t.rps, t.in_flight, t.p99_ms
            );
            if t.errors > 0 {
                let _ = write!(p, " errors {}", t.errors);
            }
            let _ = write!(p, " v{}", svc.version);
            if !svc.backends.is_empty() {
                let list: Vec<String> = svc
                    .backends
                    .iter()
                    .map(|b| {
                        let mut x =
                            format!("{} {:.0}rps/{}", b.id, b.traffic.rps, b.traffic.in_flight);
                        if b.draining {
                            x.push_str(" draining");
                        }
                        if b.ejected {
                            x.push_str(" ejected");
                        }
                        x
                    })
                    .collect();
                let _ = write!(p, " [{}]", list.join(", "));
            }
            p
        })
        .collect();
    if !parts.is_empty() {
        s.push(' ');
        s.push_str(&parts.join("; "));
    }
    if m.unrouted > 0 {
        let _ = write!(s, " unrouted {}", m.unrouted);
    }
    if m.rejected > 0 {
        let _ = write!(s, " rejected {}", m.rejected);
    }
    s
}

pub(super) fn replica_event(e: &ReplicaEvent) -> String {
    let r = &e.replica;
    let mut s = format!(
        "replica {} {} {} ({} at {})",
        e.worker,
        r.id,
        state_name(r.state),
        r.service,
        r.addr
    );
    if !e.reason.is_empty() {
        let _ = write!(s, ": {}", e.reason);
    }
    s
}

pub(super) fn decision(d: &Decision) -> String {
    let what = match &d.action {
        DecisionAction::Scale { from, to, manual } => {
            format!(
                "scale {from}→{to}{}",
                if *manual { " (manual)" } else { "" }
            )
        }
        DecisionAction::Place { replica, worker } => format!("place {replica} on {worker}"),
        DecisionAction::Drain { replica, worker } => format!("drain {replica} on {worker}"),
        DecisionAction::Stop { replica, worker } => format!("stop {replica} on {worker}"),
        DecisionAction::Lost { replica, worker } => format!("lost {replica} on {worker}"),
        DecisionAction::Relocate {
            replica,
            from,
            replacement,
            to,
        } => {
            format!("relocate {replica} on {from} → {replacement} on {to}")
        }
        DecisionAction::Blocked => "blocked".to_string(),
        DecisionAction::Lifecycle { from, to } => format!("{} -> {}", from.name(), to.name()),
    };
    if d.reason.is_empty() {
        format!("decision {} {what}", d.service)
    } else {
        format!("decision {} {what}: {}", d.service, d.reason)
    }
}

pub(super) fn worker_event(e: &WorkerEvent) -> String {
    let health = match e.health {
        WorkerHealth::Up => "up",
        WorkerHealth::Down => "DOWN",
        WorkerHealth::Duplicate => "DUPLICATE (refused)",
    };
    format!("worker {} {health}: {}", e.worker, e.reason)
}

pub(super) fn rejection(r: &Rejection) -> String {
    format!(
        "error {}: {} on {}: {} (total {})",
        r.component, r.kind, r.subject, r.error, r.total
    )
}

pub(super) fn backend_update(u: &BackendUpdate) -> String {
    let head = format!("backends {} v{}", u.service, u.version);
    let list = |bs: &[acs_events::Backend]| -> String {
        bs.iter()
            .map(|b| {
                format!(
                    "{}@{}{}",
                    b.id,
                    b.addr,
                    if b.draining { " (draining)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ids = |ids: &[acs_events::ReplicaId]| -> String {
        ids.iter()
            .map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &u.change {
        BackendChange::Reset { route, backends } => {
            let mut s = format!("{head} reset [{}]", list(backends));
            if let Some(h) = &route.host {
                let _ = write!(s, " host {h}");
            }
            if let Some(p) = &route.path_prefix {
                let _ = write!(s, " prefix {p}");
            }
            s
        }
        BackendChange::Add { backends } => format!("{head} add {}", list(backends)),
        BackendChange::Drain { ids: i } => format!("{head} drain {}", ids(i)),
        BackendChange::Remove { ids: i } => format!("{head} remove {}", ids(i)),
        BackendChange::Withdraw => format!("{head} withdraw (no longer declared)"),
    }
}

pub(super) fn worker_command(worker: &str, c: &WorkerCommand) -> String {
    match &c.action {
        Action::Start { replica, spec } => {
            format!(
                "command {worker} start {replica} ({}) id {}",
                spec.service, c.id
            )
        }
        Action::Stop { replica, grace_ms } => {
            format!(
                "command {worker} stop {replica} grace {grace_ms}ms id {}",
                c.id
            )
        }
    }
}

pub(super) fn scale_request(r: &ScaleRequest) -> String {
    match (r.replicas, r.auto) {
        (_, true) => format!("scale request {} → auto", r.service),
        (Some(n), _) => format!("scale request {} → {n}", r.service),
        (None, false) => format!("scale request {} (no target)", r.service),
    }
}

pub(super) fn sync_request(r: &SyncRequest) -> String {
    if r.services.is_empty() {
        "sync backends request (all services)".to_string()
    } else {
        let names: Vec<&str> = r.services.iter().map(|s| s.as_str()).collect();
        format!("sync backends request ({})", names.join(", "))
    }
}

/// `2.1` (GiB, one decimal).
fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

fn gib_unit(bytes: u64) -> String {
    format!("{}G", gib(bytes))
}

pub(super) fn leader_event(e: &LeaderEvent) -> String {
    let what = match e.change {
        LeaderChange::Elected => "elected",
        LeaderChange::Renewed => "renewed",
        LeaderChange::SteppedDown => "STEPPED DOWN",
    };
    format!(
        "leader {} {what} (term {}, lease {} ms)",
        e.brain, e.term, e.lease_ms
    )
}

pub(super) fn maintenance_request(r: &MaintenanceRequest) -> String {
    let what = match r.action {
        MaintenanceAction::Cordon => "cordon",
        MaintenanceAction::Uncordon => "uncordon",
        MaintenanceAction::Drain => "drain",
    };
    format!("maintenance request: {what} {}", r.worker)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lifecycle_change_reads_as_from_to() {
        let json = r#"{"service":"web","ts_ms":1,"action":"lifecycle","from":"running","to":"partial_running","reason":"2/3: no worker has a free slot"}"#;
        let d: acs_events::Decision = serde_json::from_str(json).unwrap();
        assert_eq!(
            super::decision(&d),
            "decision web Running -> Partial-Running: 2/3: no worker has a free slot"
        );
    }
}
