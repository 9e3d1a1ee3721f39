//! [`Updater`]: decode, check and fold backend updates into the [`RouteTable`], buffer deltas
//! that arrive ahead of a gap, and swap a new [`Snapshot`] into [`Shared`]. No I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use acs_events::{
    check_sender, decode, BackendChange, BackendUpdate, DecodeError, ServiceName, SyncReply,
};
use tracing::{debug, info};

use crate::routes::{Outcome, RouteTable};
use crate::service::Shared;
use crate::snapshot::Snapshot;

/// Out-of-order deltas kept per service while a sync is under way.
const MAX_PENDING: usize = 64;

/// How far past this proxy's own wall clock a backend version may reach. The brain seeds
/// versions with its start time in microseconds and adds one per update, so an honest version
/// never runs ahead of the clock; one beyond this (forged, or from a clock an hour fast) would
/// make every later update look stale and freeze the service's routes, and is refused.
pub const MAX_VERSION_AHEAD_MS: u64 = 3_600_000;

/// The highest version accepted at wall-clock time `now_unix_ms`.
pub fn version_ceiling(now_unix_ms: u64) -> u64 {
    now_unix_ms.saturating_add(MAX_VERSION_AHEAD_MS).saturating_mul(1000)
}

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
    /// Versions above this are refused ([`version_ceiling`]); the caller moves it with its
    /// clock ([`Self::set_version_ceiling`]), so the updater itself reads no clock.
    ceiling: u64,
}

impl Updater {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            table: RouteTable::new(),
            pending: BTreeMap::new(),
            shared,
            ceiling: u64::MAX,
        }
    }

    pub fn set_version_ceiling(&mut self, ceiling: u64) {
        self.ceiling = ceiling;
    }

    /// Sets the version ceiling for wall-clock time `now_unix_ms`; chain the update after it.
    pub fn with_clock(&mut self, now_unix_ms: u64) -> &mut Self {
        self.set_version_ceiling(version_ceiling(now_unix_ms));
        self
    }

    fn check_version(&self, u: &BackendUpdate) -> Result<(), Refused> {
        if u.version <= self.ceiling {
            return Ok(());
        }
        Err(Refused {
            kind: "invalid",
            error: format!(
                "version {} for service {:?} is beyond any version a brain can have produced by now (> {}); \
                 refused so that it cannot freeze the service's routes",
                u.version,
                u.service.as_str(),
                self.ceiling
            ),
        })
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
        self.check_version(&u)?;
        Ok(self.apply(u))
    }

    /// A reply from `<prefix>.sync.backends` to a full sync (every service the brain
    /// declares); returns how many updates applied. Services the reply does not name are no
    /// longer declared and are dropped, unless the reply is empty: a brain still warming up
    /// after its start answers with no updates, and the proxy keeps what it has.
    pub fn on_sync_reply(&mut self, payload: &[u8]) -> Result<usize, Refused> {
        let reply: SyncReply = decode(payload)?;
        let declared: std::collections::BTreeSet<ServiceName> = reply.updates.iter().map(|u| u.service.clone()).collect();
        let dropped = if declared.is_empty() { Vec::new() } else { self.table.retain_only(&declared) };
        for service in &dropped {
            info!(service = %service, "service not in the brain's full sync; route dropped");
            self.pending.remove(service);
        }
        let mut applied = dropped.len();
        let mut refused = None;
        for u in reply.updates {
            if let Err(r) = self.check_version(&u) {
                refused = Some(r);
                continue;
            }
            if self.apply_one(u) == Outcome::Applied {
                applied += 1;
            }
        }
        if applied > 0 {
            self.publish();
        }
        // The good snapshots are applied; the forged one is reported.
        refused.map_or(Ok(applied), Err)
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
            while q.first_key_value().is_some_and(|(v, _)| *v <= current) {
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
        self.shared.snapshot.store(Arc::new(next));
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
mod tests {
    use super::*;
    use crate::config::Tuning;
    use acs_events::{encode, Backend, ReplicaId, Route, Selection, WorkerId};

    fn updater() -> Updater {
        Updater::new(Arc::new(Shared::new(Tuning::default())))
    }

    fn backend(id: &str) -> Backend {
        Backend {
            id: ReplicaId::new(id).unwrap(),
            addr: "127.0.0.1:9".into(),
            worker: WorkerId::new("w1").unwrap(),
            draining: false,
        }
    }

    fn upd(version: u64, change: BackendChange) -> BackendUpdate {
        BackendUpdate {
            v: 1,
            service: ServiceName::new("web").unwrap(),
            version,
            ts_ms: 0,
            selection: Selection::RoundRobin,
            change,
        }
    }

    fn reset(version: u64, ids: &[&str]) -> BackendUpdate {
        upd(
            version,
            BackendChange::Reset {
                route: Route::default(),
                backends: ids.iter().map(|i| backend(i)).collect(),
            },
        )
    }

    fn add(version: u64, id: &str) -> BackendUpdate {
        upd(
            version,
            BackendChange::Add {
                backends: vec![backend(id)],
            },
        )
    }

    fn live_ids(u: &Updater) -> Vec<String> {
        let snap = u.shared.snapshot.load();
        snap.service("web").map_or(vec![], |s| {
            s.backends.iter().map(|b| b.id().to_string()).collect()
        })
    }

    #[test]
    fn applied_updates_reach_the_live_snapshot() {
        let mut u = updater();
        assert_eq!(u.apply(reset(1, &["a"])), Outcome::Applied);
        assert_eq!(live_ids(&u), ["a"]);
        assert_eq!(u.apply(add(2, "b")), Outcome::Applied);
        assert_eq!(live_ids(&u), ["a", "b"]);
        assert_eq!(u.shared.snapshot.load().service("web").unwrap().version, 2);
    }

    #[test]
    fn buffered_deltas_apply_once_the_gap_is_filled() {
        let mut u = updater();
        u.apply(reset(1, &["a"]));
        assert_eq!(u.apply(add(3, "c")), Outcome::Gap);
        assert_eq!(u.apply(add(4, "d")), Outcome::Gap);
        assert_eq!(live_ids(&u), ["a"]);
        // The missing delta arrives late: 2, then the buffered 3 and 4 follow.
        assert_eq!(u.apply(add(2, "b")), Outcome::Applied);
        assert_eq!(live_ids(&u), ["a", "b", "c", "d"]);
        assert_eq!(u.table().version("web"), Some(4));
        assert!(u.pending.is_empty());
    }

    #[test]
    fn a_sync_reset_drops_older_buffered_deltas() {
        let mut u = updater();
        u.apply(reset(1, &["a"]));
        u.apply(add(3, "c"));
        u.apply(add(6, "f"));
        let reply = SyncReply {
            v: 1,
            updates: vec![reset(5, &["x"])],
        };
        assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap(), 1);
        // 3 is older than the reset (dropped); 6 follows it (applied).
        assert_eq!(live_ids(&u), ["f", "x"]);
        assert_eq!(u.table().version("web"), Some(6));
    }

    #[test]
    fn deltas_before_any_reset_wait_for_the_sync() {
        let mut u = updater();
        assert_eq!(u.apply(add(8, "b")), Outcome::Gap);
        u.on_sync_reply(&encode(&SyncReply {
            v: 1,
            updates: vec![reset(7, &["a"])],
        }))
        .unwrap();
        assert_eq!(live_ids(&u), ["a", "b"]);
    }

    #[test]
    fn pending_is_bounded() {
        let mut u = updater();
        u.apply(reset(1, &["a"]));
        for v in 10..(10 + MAX_PENDING as u64 * 2) {
            u.apply(add(v, "z"));
        }
        assert_eq!(u.pending["web"].len(), MAX_PENDING);
    }

    #[test]
    fn refuses_malformed_payloads() {
        let mut u = updater();
        let s = "acs.backends.web";
        assert_eq!(u.on_update(s, b"{nope").unwrap_err().kind, "bad_json");
        assert_eq!(u.on_update(s, b"").unwrap_err().kind, "empty");
        let wrong_type = br#"{"service":"web","version":"seven","change":"add","backends":[]}"#;
        assert_eq!(u.on_update(s, wrong_type).unwrap_err().kind, "bad_field");
        let bad_id = br#"{"service":"web","version":1,"change":"drain","ids":["a.b"]}"#;
        let r = u.on_update(s, bad_id).unwrap_err();
        assert_eq!(r.kind, "bad_field");
        assert!(r.error.contains("replica id"), "{}", r.error);
        let bad_addr = br#"{"service":"web","version":1,"change":"add","backends":[{"id":"a","addr":"nope","worker":"w1"}]}"#;
        assert_eq!(u.on_update(s, bad_addr).unwrap_err().kind, "invalid");
        let big = vec![b' '; acs_events::MAX_PAYLOAD + 1];
        assert_eq!(u.on_update(s, &big).unwrap_err().kind, "too_large");
        let other = encode(&reset(1, &["a"]));
        let r = u.on_update("acs.backends.api", &other).unwrap_err();
        assert_eq!(r.kind, "invalid");
        assert!(r.error.contains("web"), "{}", r.error);
        assert!(u.table().is_empty());
        assert_eq!(u.on_sync_reply(b"[1,2]").unwrap_err().kind, "bad_field");
        // A good one still goes through afterwards.
        assert_eq!(
            u.on_update(s, &encode(&reset(1, &["a"]))).unwrap(),
            Outcome::Applied
        );
    }

    #[test]
    fn a_version_beyond_the_clock_is_refused_and_does_not_lock_the_service() {
        let mut u = updater();
        u.set_version_ceiling(version_ceiling(1_000));
        let forged = reset(1 << 63, &["evil"]);
        let r = u.on_update("acs.backends.web", &encode(&forged)).unwrap_err();
        assert_eq!(r.kind, "invalid");
        assert!(r.error.contains("beyond any version"), "{}", r.error);
        assert_eq!(u.table().version("web"), None, "nothing applied");
        // A legitimate update still applies afterwards.
        let honest = reset(900_000, &["a"]);
        assert_eq!(u.on_update("acs.backends.web", &encode(&honest)).unwrap(), Outcome::Applied);
        // In a sync reply the forged snapshot is refused and the honest one applied.
        let reply = SyncReply { v: 1, updates: vec![reset(u64::MAX, &["evil"]), reset(900_001, &["b"])] };
        assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap_err().kind, "invalid");
        assert_eq!(u.table().version("web"), Some(900_001));
        assert_eq!(live_ids(&u), ["b"]);
    }

    #[test]
    fn a_full_sync_drops_services_the_brain_no_longer_declares() {
        let mut u = updater();
        u.apply(reset(1, &["a"]));
        assert_eq!(live_ids(&u), ["a"]);
        // A brain warming up answers with nothing: keep what we have.
        let reply = SyncReply { v: 1, updates: vec![] };
        assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap(), 0);
        assert_eq!(live_ids(&u), ["a"]);
        // A full reply that does not name web: web is no longer declared.
        let mut api = reset(3, &[]);
        api.service = ServiceName::new("api").unwrap();
        let reply = SyncReply { v: 1, updates: vec![api] };
        assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap(), 2, "api applied, web dropped");
        assert!(u.table().get("web").is_none());
        assert!(live_ids(&u).is_empty(), "the live snapshot no longer routes it");
    }
}
