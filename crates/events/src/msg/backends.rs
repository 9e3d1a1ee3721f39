//! Backend changes per service (`acs.backends.<service>`), brain → proxies.
//!
//! Modelled on linkerd2-proxy's discovery updates. `version` is `(term, sequence)` packed in a
//! `u64` ([`crate::pack_version`]): it grows within a leader's term, and any newer leader's
//! versions are above every older leader's, whatever the clocks say. A proxy applies a delta only
//! when it is exactly `current + 1`; an older version is stale and ignored; a gap means a message
//! was missed and the proxy asks for a snapshot on `acs.sync.backends`. A `reset` always applies
//! when it is newer. The brain also republishes a `reset` periodically, so even a proxy that
//! never asks converges.

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
    Reset { route: Route, backends: Vec<Backend> },
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

impl Validate for BackendUpdate {
    fn validate(&self) -> Result<(), String> {
        match &self.change {
            BackendChange::Reset { route, backends } => {
                route.validate()?;
                backends.iter().try_for_each(Backend::validate)
            }
            BackendChange::Add { backends } => backends.iter().try_for_each(Backend::validate),
            BackendChange::Drain { .. } | BackendChange::Remove { .. } | BackendChange::Withdraw => Ok(()),
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
