//! Backend changes per service (`acs.backends.<service>`), brain → proxies.
//!
//! Modelled on linkerd2-proxy's discovery updates. `version` is `(term, sequence)` packed in a
//! `u64` ([`crate::pack_version`]): it grows within a leader's term, and any newer leader's
//! versions are above every older leader's, whatever the clocks say. A proxy applies a delta only
//! when it is exactly `current + 1`; an older version is stale and ignored; a gap means a message
//! was missed and the proxy asks for a snapshot on `acs.sync.backends`. A `reset` always applies
//! when it is newer. The brain also republishes a `reset` periodically, so even a proxy that
//! never asks converges.
//!
//! # Size
//!
//! No update is over [`crate::MAX_PAYLOAD`], which every subscriber enforces: [`split_change`]
//! cuts a large change into parts of at most [`CHUNK_BYTES`] of backends or ids, sent with
//! consecutive versions. A large `reset` becomes a `reset` with the first part followed by
//! `add`s with the rest, so a proxy that applies them in order (as it applies any delta) holds
//! the whole set after the last one; in between it routes to a part of it. At 10,000 backends a
//! snapshot is about 5 parts.

use serde::{Deserialize, Serialize};

use super::{v1, validate_addr, versioned};
use crate::codec::Validate;
use crate::id::{ReplicaId, ServiceName, WorkerId};
use crate::UnixMs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendUpdate {
    #[serde(default = "v1")]
    pub v: u32,
    pub service: ServiceName,
    pub version: u64,
    #[serde(default)]
    pub ts_ms: UnixMs,
    /// How the proxy picks among this service's backends.
    #[serde(default)]
    pub selection: Selection,
    #[serde(flatten)]
    pub change: BackendChange,
}
versioned!(BackendUpdate);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum BackendChange {
    /// The full set; replaces whatever the proxy had. Also carries the route.
    Reset {
        route: Route,
        backends: Vec<Backend>,
    },
    /// Add these backends, or replace them if their id is known.
    Add { backends: Vec<Backend> },
    /// Stop sending new requests to these backends; in-flight requests finish.
    Drain { ids: Vec<ReplicaId> },
    /// Forget these backends.
    Remove { ids: Vec<ReplicaId> },
    /// The service is no longer declared: drop its route and backends (added after v1; a
    /// proxy that does not know it refuses the update with a `Rejection`).
    Withdraw,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Backend {
    pub id: ReplicaId,
    pub addr: String,
    pub worker: WorkerId,
    #[serde(default)]
    pub draining: bool,
}

/// How requests reach a service: by `Host` header, by path prefix, or both. A route with
/// neither matches every request (a default service).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

/// Backend selection algorithm, chosen per service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    #[default]
    RoundRobin,
    LeastConn,
    /// Power of two random choices on in-flight count.
    P2c,
}

/// Request on `acs.sync.backends` (payload may be empty or `{}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncRequest {
    #[serde(default = "v1")]
    pub v: u32,
    /// Only these services; empty = all.
    #[serde(default)]
    pub services: Vec<ServiceName>,
}
versioned!(SyncRequest);

/// Reply on `acs.sync.backends`: one `reset` per service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReply {
    #[serde(default = "v1")]
    pub v: u32,
    pub updates: Vec<BackendUpdate>,
}
versioned!(SyncReply);

/// Most bytes of backends (or ids) one update carries; the rest of the message (service,
/// route, version, ...) is far under the remaining room to [`crate::MAX_PAYLOAD`].
pub const CHUNK_BYTES: usize = 192 * 1024;

/// `change` as parts of at most `chunk_bytes` of backends or ids each (at least one item per
/// part), to be sent in order with consecutive versions: a `reset` becomes a `reset` with the
/// first part and `add`s with the rest; `add`, `drain` and `remove` become several of their kind.
pub fn split_change(change: BackendChange, chunk_bytes: usize) -> Vec<BackendChange> {
    match change {
        BackendChange::Reset { route, backends } => {
            let mut parts = chunks(backends, chunk_bytes, backend_bytes).into_iter();
            let first = parts.next().unwrap_or_default();
            let mut out = vec![BackendChange::Reset {
                route,
                backends: first,
            }];
            out.extend(parts.map(|backends| BackendChange::Add { backends }));
            out
        }
        BackendChange::Add { backends } => chunks(backends, chunk_bytes, backend_bytes)
            .into_iter()
            .map(|backends| BackendChange::Add { backends })
            .collect(),
        BackendChange::Drain { ids } => chunks(ids, chunk_bytes, id_bytes)
            .into_iter()
            .map(|ids| BackendChange::Drain { ids })
            .collect(),
        BackendChange::Remove { ids } => chunks(ids, chunk_bytes, id_bytes)
            .into_iter()
            .map(|ids| BackendChange::Remove { ids })
            .collect(),
        BackendChange::Withdraw => vec![BackendChange::Withdraw],
    }
}

/// A backend's encoded size, with its separating comma.
pub fn backend_bytes(b: &Backend) -> usize {
    serde_json::to_vec(b).map_or(0, |v| v.len()) + 1
}

fn id_bytes(id: &ReplicaId) -> usize {
    id.as_str().len() + 3
}

/// Splits `items` in order into runs of at most `budget` bytes each (a lone item bigger than the
/// budget gets a run of its own). An empty list gives no run.
fn chunks<T>(items: Vec<T>, budget: usize, size: fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        if !run.is_empty() && used + n > budget {
            out.push(std::mem::take(&mut run));
            used = 0;
        }
        used += n;
        run.push(item);
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

impl Validate for BackendUpdate {
    fn validate(&self) -> Result<(), String> {
        match &self.change {
            BackendChange::Reset { route, backends } => {
                route.validate()?;
                backends.iter().try_for_each(Backend::validate)
            }
            BackendChange::Add { backends } => backends.iter().try_for_each(Backend::validate),
            BackendChange::Drain { .. }
            | BackendChange::Remove { .. }
            | BackendChange::Withdraw => Ok(()),
        }
    }
}

impl Backend {
    fn validate(&self) -> Result<(), String> {
        validate_addr(&self.addr).map_err(|e| format!("backend {}: {e}", self.id))
    }
}

impl Validate for Route {
    fn validate(&self) -> Result<(), String> {
        if let Some(p) = &self.path_prefix {
            if !p.starts_with('/') {
                return Err(format!("route.path_prefix {p:?} must start with '/'"));
            }
        }
        if let Some(h) = &self.host {
            if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(format!("route.host {h:?} is not a host name"));
            }
        }
        Ok(())
    }
}

impl Validate for SyncRequest {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

impl Validate for SyncReply {
    fn validate(&self) -> Result<(), String> {
        self.updates.iter().try_for_each(Validate::validate)
    }
}
