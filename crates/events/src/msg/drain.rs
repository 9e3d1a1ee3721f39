//! A proxy's word that a draining backend has nothing in flight (`acs.events.drained.<proxy>`),
//! sent the moment it is true rather than on the next metrics tick, so the brain can stop the
//! replica at once.

use serde::{Deserialize, Serialize};

use super::{v1, versioned};
use crate::codec::Validate;
use crate::id::{ProxyId, ReplicaId, ServiceName};
use crate::UnixMs;

/// Published when a draining backend's in-flight count reaches 0, or at once when the proxy
/// applies a drain and nothing is in flight. A draining backend gets no new requests, so 0 stays
/// 0; the brain still needs one from every live proxy, at `version` or later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendDrained {
    #[serde(default = "v1")]
    pub v: u32,
    pub proxy: ProxyId,
    pub service: ServiceName,
    pub replica: ReplicaId,
    /// The service's backend-set version the proxy had applied (the drain's, or a later one).
    pub version: u64,
    pub ts_ms: UnixMs,
}
versioned!(BackendDrained);

impl Validate for BackendDrained {
    fn validate(&self) -> Result<(), String> {
        if self.version == 0 {
            return Err("version must be > 0 (the backend-set version that drained it)".into());
        }
        Ok(())
    }
}
