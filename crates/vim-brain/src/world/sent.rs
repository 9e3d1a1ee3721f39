//! `Event::PlanSent`: what a plan the loop has sent changes in the world (records, desired
//! counts, published sets, blocked reasons, lifecycle, crash steps, rebalance moves). The plan
//! builds a [`Bookkeeping`]; only [`World::apply`] reads it.

use std::collections::BTreeMap;

use acs_events::{Backend, Lifecycle, ProxyId, ReplicaId, ServiceName, WorkerId};

use super::{digest, CrashStep, Millis, Record, World};
use crate::policy;

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
    pub(crate) lifecycle: Vec<LifecycleChange>,
    pub(crate) crash: Vec<(ServiceName, CrashStep)>,
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

/// The lifecycle as a plan sees it, to fold in with `Event::PlanSent`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LifecycleChange {
    pub(crate) service: ServiceName,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) ever_ready: bool,
}

impl World {
    /// Folds a sent plan's bookkeeping in.
    pub(super) fn plan_sent(&mut self, b: Bookkeeping, now: Millis) {
        if let Some(disruption) = b.disruption {
            self.link.disruption = disruption;
        }
        for id in &b.forget_workers {
            self.workers.remove(id);
        }
        for id in &b.forget_proxies {
            self.proxies.remove(id);
        }
        for h in b.worker_health {
            if let Some(w) = self.workers.get_mut(&h.worker) {
                w.announced_up = h.up;
            }
        }
        for change in b.records {
            match change {
                RecordChange::Upsert(id, record) => {
                    self.records.insert(id, record);
                }
                RecordChange::Remove(id) => {
                    self.records.remove(&id);
                }
            }
        }
        for d in b.desired {
            let scale = &mut self.services.entry(d.service).or_default().scale;
            if scale.desired.is_some_and(|was| was != d.desired) {
                scale.last_change = Some(now);
            }
            scale.desired = Some(d.desired);
            if let Some(r) = d.recommendation {
                scale.history.push_back((now, r));
                // Bound the history even with very long windows.
                while scale.history.len() > 4096 {
                    scale.history.pop_front();
                }
            }
            // Drop recommendations that no window can use any more.
            policy::prune(&mut scale.history, d.history_keep_ms, now);
        }
        for p in b.published {
            let routing = &mut self.services.entry(p.service).or_default().routing;
            routing.version = p.version;
            routing.digest = digest(p.backends.values());
            routing.published = p.backends;
            if p.reset {
                routing.last_reset = Some(now);
                routing.reset_requested = false;
            }
        }
        for blocked in b.blocked {
            self.services
                .entry(blocked.service)
                .or_default()
                .status
                .blocked = blocked.reason;
        }
        for lc in b.lifecycle {
            let status = &mut self.services.entry(lc.service).or_default().status;
            (status.lifecycle, status.ever_ready) = (lc.lifecycle, lc.ever_ready);
        }
        for (service, step) in &b.crash {
            self.services
                .entry(service.clone())
                .or_default()
                .crash
                .step(step);
        }
        for (service, moving) in b.rebalance {
            let moves = &mut self.services.entry(service).or_default().moves;
            if moving.is_none() {
                moves.replacing = None;
            } else if moves.replacing.is_none() {
                moves.begun.push_back(now);
                while moves.begun.len() > 64 {
                    moves.begun.pop_front();
                }
            }
            moves.moving = moving;
        }
        self.next_seq = b.next_seq;
    }
}
