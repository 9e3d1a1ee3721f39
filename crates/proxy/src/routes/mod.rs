//! The route table: a pure value folded from `BackendUpdate`s, and the lookup structure compiled
//! from it.
//!
//! Modelled on Sōzu's config state and linkerd2-proxy's discovery updates. [`RouteTable::apply`]
//! follows the versioning rules of `acs_events::BackendUpdate`:
//!
//! - a delta (`add`, `drain`, `remove`) applies only when its version is exactly `current + 1`;
//! - an older (or equal) version is [`Outcome::Stale`] and ignored;
//! - a newer delta, or any delta for a service the table does not know, is a [`Outcome::Gap`]:
//!   the caller asks for a snapshot on `Subjects::backends_sync()`;
//! - a `reset` applies whenever it is newer than what the table holds.
//!
//! [`RouteTable::compile`] turns the table into a [`Router`], which matches a request by `Host`
//! (port ignored, case-insensitive) and/or the longest path prefix without allocating.
//!
//! Files: this one holds the table; `router.rs` the compiled matcher; `tests.rs` the tests of both.

mod router;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use acs_events::{Backend, BackendChange, BackendUpdate, ReplicaId, Route, Selection, ServiceName};

pub use router::{prefix_matches, Router};

/// What [`RouteTable::apply`] did with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The table changed (or at least its version moved on).
    Applied,
    /// The version is not newer than what the table holds; nothing changed.
    Stale,
    /// A version was skipped (or the service is unknown): nothing changed, ask for a sync.
    Gap,
}

/// One service as the table knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    pub version: u64,
    pub route: Route,
    pub selection: Selection,
    pub backends: BTreeMap<ReplicaId, Backend>,
}

/// Every service the proxy knows, keyed by name (ordered, so compiling is deterministic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    services: BTreeMap<ServiceName, ServiceEntry>,
    /// Versions of withdrawn services, so a late update from before the withdrawal cannot
    /// bring the route back. Bounded: the oldest are forgotten first.
    withdrawn: BTreeMap<ServiceName, u64>,
}

/// Withdrawn services remembered (their versions), at most.
const MAX_WITHDRAWN: usize = 10_000;

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one update into the table; see the module docs for the rules.
    ///
    /// The service's selection algorithm is taken from `reset`s only: deltas may omit the field
    /// (it then defaults to round-robin) and must not flip the algorithm by accident.
    /// `drain` / `remove` of ids the table does not hold are no-ops (the version still moves on).
    pub fn apply(&mut self, u: &BackendUpdate) -> Outcome {
        let current = self.services.get(&u.service).map(|s| s.version);
        let tombstone = self.withdrawn.get(&u.service).copied();
        if tombstone.is_some_and(|w| u.version <= w) {
            return Outcome::Stale;
        }
        match &u.change {
            BackendChange::Withdraw => {
                if current.is_some_and(|c| u.version <= c) {
                    return Outcome::Stale;
                }
                self.services.remove(&u.service);
                self.withdrawn.insert(u.service.clone(), u.version);
                if self.withdrawn.len() > MAX_WITHDRAWN {
                    // Lowest version = withdrawn longest ago (versions grow with the clock).
                    if let Some(oldest) = self
                        .withdrawn
                        .iter()
                        .min_by_key(|(_, v)| **v)
                        .map(|(s, _)| s.clone())
                    {
                        self.withdrawn.remove(&oldest);
                    }
                }
                Outcome::Applied
            }
            BackendChange::Reset { route, backends } => {
                if current.is_some_and(|c| u.version <= c) {
                    return Outcome::Stale;
                }
                self.withdrawn.remove(&u.service);
                let backends = backends.iter().map(|b| (b.id.clone(), b.clone())).collect();
                self.services.insert(
                    u.service.clone(),
                    ServiceEntry {
                        version: u.version,
                        route: route.clone(),
                        selection: u.selection,
                        backends,
                    },
                );
                Outcome::Applied
            }
            change => {
                let Some(entry) = self.services.get_mut(&u.service) else {
                    return Outcome::Gap;
                };
                if u.version <= entry.version {
                    return Outcome::Stale;
                }
                if u.version != entry.version + 1 {
                    return Outcome::Gap;
                }
                entry.version = u.version;
                match change {
                    BackendChange::Add { backends } => {
                        for b in backends {
                            entry.backends.insert(b.id.clone(), b.clone());
                        }
                    }
                    BackendChange::Drain { ids } => {
                        for id in ids {
                            if let Some(b) = entry.backends.get_mut(id) {
                                b.draining = true;
                            }
                        }
                    }
                    BackendChange::Remove { ids } => {
                        for id in ids {
                            entry.backends.remove(id);
                        }
                    }
                    BackendChange::Reset { .. } | BackendChange::Withdraw => {
                        unreachable!("handled above")
                    }
                }
                Outcome::Applied
            }
        }
    }

    pub fn get(&self, service: &str) -> Option<&ServiceEntry> {
        self.services.get(service)
    }

    /// The applied version of `service`, if known.
    pub fn version(&self, service: &str) -> Option<u64> {
        self.get(service).map(|s| s.version)
    }

    /// Services in name order; [`Router`] indices refer to this order.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceName, &ServiceEntry)> {
        self.services.iter()
    }

    /// Drops every service not in `keep` (a full sync names all the services the brain
    /// declares); returns the names dropped.
    pub fn retain_only(
        &mut self,
        keep: &std::collections::BTreeSet<ServiceName>,
    ) -> Vec<ServiceName> {
        let gone: Vec<ServiceName> = self
            .services
            .keys()
            .filter(|s| !keep.contains(*s))
            .cloned()
            .collect();
        for s in &gone {
            self.services.remove(s);
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Compiles the routes into a [`Router`] whose indices follow [`services`](Self::services).
    pub fn compile(&self) -> Router {
        Router::build(self.services.values().map(|s| &s.route))
    }
}
