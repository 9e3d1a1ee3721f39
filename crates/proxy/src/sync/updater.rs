//! [`Updater`]: decode, check and fold backend updates into the [`RouteTable`], buffer deltas
//! that arrive ahead of a gap, and swap a new [`Snapshot`] into [`Shared`]. No I/O.
//!
//! # Fencing, and no version ceiling
//!
//! Versions are `(term, sequence)` ([`acs_events::pack_version`]), not clock readings, so a
//! wall-clock ceiling would refuse honest versions. The updater keeps the newest term seen (from
//! `LeaderEvent`s and from the versions it accepted) and refuses anything from an older term as
//! `fenced`: a paused old leader cannot roll routes back. A garbage huge sequence from a buggy
//! leader can freeze a service only until the next election, whose higher term outranks it. A
//! forged huge *term* would need the brain's credentials (only the brain may publish backends
//! and leader events), and refusing terms "too far" ahead would instead risk fencing out a real
//! leader forever.

use std::collections::BTreeMap;
use std::sync::Arc;

use acs_events::{
    check_sender, decode, version_term, BackendChange, BackendUpdate, DecodeError, ServiceName,
    SyncReply, Term,
};
use tracing::{debug, info};

use crate::routes::{Outcome, RouteTable};
use crate::service::Shared;
use crate::snapshot::Snapshot;

/// Out-of-order deltas kept per service while a sync is under way.
const MAX_PENDING: usize = 64;

/// A refused message, as published in a `Rejection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: &'static str,
    pub error: String,
}

impl From<DecodeError> for Refused {
    fn from(e: DecodeError) -> Self {
        Self {
            kind: e.kind(),
            error: e.to_string(),
        }
    }
}

/// Folds updates into the table and publishes snapshots into [`Shared`].
pub struct Updater {
    table: RouteTable,
    /// Deltas that arrived ahead of their turn (a gap), applied once the gap is filled.
    pending: BTreeMap<ServiceName, BTreeMap<u64, BackendUpdate>>,
    shared: Arc<Shared>,
    /// The newest leader term seen; updates from older terms are fenced.
    term_floor: Term,
}

impl Updater {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            table: RouteTable::new(),
            pending: BTreeMap::new(),
            shared,
            term_floor: 0,
        }
    }

    /// Raises the fencing floor to `term` (a `LeaderEvent`, or an accepted version). True if
    /// it was raised.
    pub fn observe_term(&mut self, term: Term) -> bool {
        if term <= self.term_floor {
            return false;
        }
        info!(
            term,
            previous = self.term_floor,
            "newer leader term seen; updates from older terms are now refused"
        );
        self.term_floor = term;
        true
    }

    /// The newest leader term seen.
    pub fn term_floor(&self) -> Term {
        self.term_floor
    }

    /// Why `u` is refused as coming from an older term, if it is.
    fn fenced(&self, u: &BackendUpdate) -> Refused {
        Refused {
            kind: "fenced",
            error: format!(
                "backend update for service {:?} (version {}) from term {}, but term {} leads; refused (fenced)",
                u.service.as_str(),
                u.version,
                version_term(u.version),
                self.term_floor
            ),
        }
    }

    /// Refuses `u` if it comes from a term older than the newest seen; else raises the floor
    /// to its term.
    fn check_term(&mut self, u: &BackendUpdate) -> Result<(), Refused> {
        let term = version_term(u.version);
        if term < self.term_floor {
            return Err(self.fenced(u));
        }
        self.observe_term(term);
        Ok(())
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// A message on `<prefix>.backends.<service>`. `Ok(Gap)` means: request a sync.
    pub fn on_update(&mut self, subject: &str, payload: &[u8]) -> Result<Outcome, Refused> {
        let u: BackendUpdate = decode(payload)?;
        check_sender(subject, u.service.as_str()).map_err(|error| Refused {
            kind: "invalid",
            error,
        })?;
        self.check_term(&u)?;
        Ok(self.apply(u))
    }

    /// A reply from `<prefix>.sync.backends` to a full sync (every service the brain
    /// declares); returns how many updates applied. Services the reply does not name are no
    /// longer declared and are dropped, unless the reply is empty: a brain still warming up
    /// after its start answers with no updates, and the proxy keeps what it has.
    pub fn on_sync_reply(&mut self, payload: &[u8]) -> Result<usize, Refused> {
        let reply: SyncReply = decode(payload)?;
        // A reply from an older leader is refused whole: it must not drop services either.
        let (fenced, fresh): (Vec<_>, Vec<_>) = reply
            .updates
            .into_iter()
            .partition(|u| version_term(u.version) < self.term_floor);
        if let Some(first) = fenced.first() {
            if fresh.is_empty() {
                return Err(self.fenced(first));
            }
        }
        let declared: std::collections::BTreeSet<ServiceName> =
            fresh.iter().map(|u| u.service.clone()).collect();
        // Drop undeclared services only on a reply wholly from the current term.
        let dropped = if declared.is_empty() || !fenced.is_empty() {
            Vec::new()
        } else {
            self.table.retain_only(&declared)
        };
        for service in &dropped {
            info!(service = %service, "service not in the brain's full sync; route dropped");
            self.pending.remove(service);
        }
        let mut applied = dropped.len();
        for u in fresh {
            let _ = self.check_term(&u);
            if self.apply_one(u) == Outcome::Applied {
                applied += 1;
            }
        }
        if applied > 0 {
            self.publish();
        }
        // The current snapshots are applied; the fenced ones are reported.
        match fenced.first() {
            Some(u) => Err(self.fenced(u)),
            None => Ok(applied),
        }
    }

    /// Applies one update (plus any buffered deltas it unblocks) and swaps in a new snapshot.
    pub fn apply(&mut self, u: BackendUpdate) -> Outcome {
        let outcome = self.apply_one(u);
        if outcome == Outcome::Applied {
            self.publish();
        }
        outcome
    }

    fn apply_one(&mut self, u: BackendUpdate) -> Outcome {
        let service = u.service.clone();
        let version = u.version;
        let kind = change_kind(&u.change);
        let outcome = self.table.apply(&u);
        match outcome {
            Outcome::Applied => {
                let n = self
                    .table
                    .get(service.as_str())
                    .map_or(0, |s| s.backends.len());
                info!(service = %service, version, change = kind, backends = n, "backends updated");
                self.drain_pending(&service);
            }
            Outcome::Stale => {
                debug!(service = %service, version, change = kind, "stale backend update ignored");
            }
            Outcome::Gap => {
                let current = self.table.version(service.as_str());
                info!(service = %service, version, current, change = kind,
                    "gap in backend versions; asking for a sync");
                let q = self.pending.entry(service).or_default();
                q.insert(version, u);
                while q.len() > MAX_PENDING {
                    q.pop_first();
                }
            }
        }
        outcome
    }

    /// Applies buffered deltas that now follow the current version.
    fn drain_pending(&mut self, service: &ServiceName) {
        let Some(q) = self.pending.get_mut(service) else {
            return;
        };
        let mut current = self.table.version(service.as_str()).unwrap_or(0);
        loop {
            let floor = self.term_floor;
            while q
                .first_key_value()
                .is_some_and(|(v, _)| *v <= current || version_term(*v) < floor)
            {
                q.pop_first();
            }
            match q.first_key_value() {
                Some((v, _)) if *v == current + 1 => {
                    let (_, u) = q.pop_first().expect("non-empty");
                    if self.table.apply(&u) != Outcome::Applied {
                        break;
                    }
                    info!(service = %service, version = u.version, change = change_kind(&u.change),
                        "buffered backend update applied");
                    current = u.version;
                }
                _ => break,
            }
        }
        if q.is_empty() {
            self.pending.remove(service);
        }
    }

    fn publish(&self) {
        let prev = self.shared.snapshot.load();
        let next = Snapshot::build(&self.table, &prev, &self.shared.tuning.timeouts);
        let draining = next.has_draining();
        let drains = next.drains.clone();
        self.shared.snapshot.store(Arc::new(next));
        // A drain just applied may have nothing in flight: no decrement will say so.
        if draining {
            drains.wake();
        }
    }
}

fn change_kind(c: &BackendChange) -> &'static str {
    match c {
        BackendChange::Reset { .. } => "reset",
        BackendChange::Add { .. } => "add",
        BackendChange::Drain { .. } => "drain",
        BackendChange::Remove { .. } => "remove",
        BackendChange::Withdraw => "withdraw",
    }
}

#[cfg(test)]
mod tests;
