//! What the world holds per worker, proxy and replica: the last report with the keys a plan
//! reads, drain evidence, the brain's intent for a replica, a worker's maintenance state.

use std::collections::BTreeMap;

use acs_events::{ProxyMetrics, ReplicaId, ServiceName, WorkerId, WorkerMetrics};

use super::{route_hash, Millis, Settings};

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    pub last: WorkerMetrics,
    pub last_seen: Millis,
    /// Health as last announced in a `WorkerEvent` (the plan announces transitions).
    pub announced_up: bool,
    /// Not chosen for placement before this time (it refused a start).
    pub backoff_until: Millis,
    /// When each replica on it was first seen unhealthy.
    pub unhealthy_since: BTreeMap<ReplicaId, Millis>,
    /// What a plan reads of each of `last.replicas` (same order) without touching its strings,
    /// computed when a report or event is folded in, while they are in the cache: at
    /// 100,000 replicas, a plan's reads of ids, addresses and service names were cache misses
    /// and most of its time. Kept by [`Self::reindex`].
    pub(super) keys: Vec<ReplicaKeys>,
}

/// A replica as a plan finds it: its route hash and its service's interned number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ReplicaKeys {
    /// `plan::backends::route_hash` of its id, address and worker.
    pub route: u64,
    /// Its service's number ([`World::service_numbers`]), or `None` past the cap.
    pub service: Option<u32>,
}

impl WorkerView {
    /// Recomputes `keys` after `last.replicas` changed.
    pub(super) fn reindex(&mut self, id: &WorkerId, names: &mut ServiceNumbers) {
        self.keys.clear();
        for r in &self.last.replicas {
            self.keys.push(ReplicaKeys {
                route: route_hash(&r.id, &r.addr, id),
                service: names.number(&r.service),
            });
        }
    }

    /// The keys of `last.replicas[i]`.
    pub(crate) fn keys(&self, i: usize) -> ReplicaKeys {
        match self.keys.get(i) {
            Some(&keys) => keys,
            None => {
                debug_assert!(false, "keys not reindexed");
                let r = &self.last.replicas[i];
                ReplicaKeys {
                    route: route_hash(&r.id, &r.addr, &self.last.worker),
                    service: None,
                }
            }
        }
    }
}

/// Every service name workers have reported, numbered in order of first sight. Bounded by
/// `max_ids`: names past it get no number, and a plan looks those up by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ServiceNumbers {
    numbers: BTreeMap<ServiceName, u32>,
    cap: usize,
}

impl ServiceNumbers {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            numbers: BTreeMap::new(),
            cap,
        }
    }

    pub(super) fn number(&mut self, name: &ServiceName) -> Option<u32> {
        if let Some(&n) = self.numbers.get(name) {
            return Some(n);
        }
        if self.numbers.len() >= self.cap {
            return None;
        }
        let n = self.numbers.len() as u32;
        self.numbers.insert(name.clone(), n);
        Some(n)
    }

    pub(crate) fn get(&self, name: &ServiceName) -> Option<u32> {
        self.numbers.get(name).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.numbers.len()
    }
}

impl WorkerView {
    pub fn is_up(&self, now: Millis, s: &Settings) -> bool {
        now.saturating_sub(self.last_seen) <= s.worker_timeout_ms
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyView {
    pub last: ProxyMetrics,
    pub last_seen: Millis,
    /// Drain evidence from `BackendDrained` events, by replica: the newest version the proxy
    /// said it had drained at, and when the brain heard it. Kept only for backends the proxy
    /// still lists (pruned on each metrics report).
    pub drained: BTreeMap<ReplicaId, Drained>,
}

/// One proxy's word that a draining replica has nothing in flight there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// The service's backend-set version the proxy had applied.
    pub version: u64,
    /// When the brain received it (monotonic).
    pub seen: Millis,
}

/// What the brain is doing with a replica, beyond what its worker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Start sent; not yet healthy.
    Starting { since: Millis },
    /// Out of rotation since `version`; waiting for in-flight requests to finish.
    Draining {
        since: Millis,
        version: u64,
        deadline: Millis,
    },
    /// Stop sent at `sent`.
    Stopping { sent: Millis, attempt: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub service: ServiceName,
    pub worker: WorkerId,
    pub intent: Intent,
}

/// A worker's maintenance state: cordoned (no new placements), and draining (its replicas move
/// off, make-before-break). A drain implies a cordon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Maintenance {
    pub cordoned: bool,
    pub draining: bool,
}
