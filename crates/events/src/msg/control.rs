//! User requests to the brain: manual scale (`acs.cmd.scale`) and status (`acs.status`).

use serde::{Deserialize, Serialize};

use super::{v1, versioned};
use crate::codec::Validate;
use crate::id::{ReplicaId, ServiceName, WorkerId};
use crate::msg::{Backend, ReplicaState, WorkerHealth};
use crate::UnixMs;

/// Largest replica count a manual scale may ask for.
pub const MAX_REPLICAS: i64 = 1000;

/// `{"service":"web","replicas":3}` pins `web` at 3 replicas (autoscaling paused for it);
/// `{"service":"web","auto":true}` hands it back to its policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    #[serde(default = "v1")]
    pub v: u32,
    pub service: ServiceName,
    /// Signed so that a negative number gets a clear message rather than a type error.
    #[serde(default)]
    pub replicas: Option<i64>,
    #[serde(default)]
    pub auto: bool,
}
versioned!(ScaleRequest);

impl Validate for ScaleRequest {
    fn validate(&self) -> Result<(), String> {
        match (self.replicas, self.auto) {
            (Some(_), true) => Err("give either \"replicas\" or \"auto\":true, not both".into()),
            (None, false) => Err("missing \"replicas\" (a number >= 0) or \"auto\":true".into()),
            (Some(n), false) if n < 0 => Err(format!("replicas must be >= 0, got {n}")),
            (Some(n), false) if n > MAX_REPLICAS => {
                Err(format!("replicas must be <= {MAX_REPLICAS}, got {n}"))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleReply {
    #[serde(default = "v1")]
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceName>,
    /// Desired replicas before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ScaleMode>,
    /// What happened, in words (e.g. that the policy is now overridden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
versioned!(ScaleReply);

impl ScaleReply {
    pub fn error(error: impl Into<String>) -> Self {
        Self {
            v: v1(),
            ok: false,
            service: None,
            previous: None,
            replicas: None,
            mode: None,
            note: None,
            error: Some(error.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMode {
    /// The service's policy decides.
    Auto,
    /// Pinned by a manual scale; the policy is overridden until `auto`.
    Manual,
}

/// Request on `acs.status` (payload may be empty or `{}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusRequest {
    #[serde(default = "v1")]
    pub v: u32,
}
versioned!(StatusRequest);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    #[serde(default = "v1")]
    pub v: u32,
    #[serde(default = "yes")]
    pub ok: bool,
    pub ts_ms: UnixMs,
    pub services: Vec<ServiceStatus>,
    pub workers: Vec<WorkerStatus>,
    /// Malformed or refused messages the brain has seen since it started.
    #[serde(default)]
    pub rejected: u64,
}
versioned!(StatusReply);

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: ServiceName,
    pub mode: ScaleMode,
    pub desired: u32,
    /// Healthy replicas in rotation.
    pub running: u32,
    pub replicas: Vec<ReplicaInfo>,
    /// What the proxies are told (`version` and backends).
    pub version: u64,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    pub id: ReplicaId,
    pub worker: WorkerId,
    pub state: ReplicaState,
    #[serde(default)]
    pub addr: Option<String>,
    #[serde(default)]
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub id: WorkerId,
    pub health: WorkerHealth,
    pub last_seen_ms_ago: u64,
    pub replicas: u32,
    pub max_replicas: u32,
    pub cpu_pct: f64,
}

impl Validate for StatusRequest {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
impl Validate for StatusReply {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
impl Validate for ScaleReply {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
