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
    /// The answering brain: its instance, term and role (only the leader answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brain: Option<BrainInfo>,
}
versioned!(StatusReply);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrainInfo {
    pub instance: String,
    pub term: u64,
    pub leader: bool,
}

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
    /// Where the service is in its life (seed 004's Partial-Running), with the reason.
    #[serde(default)]
    pub lifecycle: Lifecycle,
}

/// A service's lifecycle state, with why when it is not plainly `running`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub state: LifecycleState,
    /// Why (`"1 of 3 replicas starting on w2"`, `"no worker has a free slot"`, the last error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleState {
    /// Declared, no replica has served yet.
    #[default]
    Creating,
    /// As many healthy replicas as desired, and nothing changing.
    Running,
    /// Some replicas serve, fewer than desired, and the brain is not (or cannot be) adding more
    /// right now; shown as `Partial-Running 2/3`.
    PartialRunning,
    /// The desired count changed and replicas are starting or draining toward it.
    Scaling,
    /// Pinned at 0 replicas.
    Suspended,
    /// Cannot be placed, or keeps crashing (with the last error).
    Failed,
}

impl LifecycleState {
    /// As people read it: `Creating`, `Running`, `Partial-Running`, `Scaling`, `Suspended`, `Failed`.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleState::Creating => "Creating",
            LifecycleState::Running => "Running",
            LifecycleState::PartialRunning => "Partial-Running",
            LifecycleState::Scaling => "Scaling",
            LifecycleState::Suspended => "Suspended",
            LifecycleState::Failed => "Failed",
        }
    }
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
    /// No new replicas are placed here (cordon or drain).
    #[serde(default)]
    pub cordoned: bool,
    /// Its replicas are being moved off, make-before-break.
    #[serde(default)]
    pub draining: bool,
    pub last_seen_ms_ago: u64,
    pub replicas: u32,
    pub max_replicas: u32,
    pub cpu_pct: f64,
}

/// `acs.cmd.maintenance`: cordon, uncordon or drain a worker (request-reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    #[serde(default = "v1")]
    pub v: u32,
    pub worker: WorkerId,
    pub action: MaintenanceAction,
}
versioned!(MaintenanceRequest);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceAction {
    /// No new placements on the worker; what runs there stays.
    Cordon,
    /// Placements allowed again (also ends a drain).
    Uncordon,
    /// Cordon, then move every replica off, each make-before-break.
    Drain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceReply {
    #[serde(default = "v1")]
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<MaintenanceAction>,
    /// Replicas that will move (drain) or that stay (cordon).
    #[serde(default)]
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
versioned!(MaintenanceReply);

impl MaintenanceReply {
    pub fn error(error: impl Into<String>) -> Self {
        Self { v: v1(), ok: false, worker: None, action: None, replicas: 0, note: None, error: Some(error.into()) }
    }
}

/// `acs.cmd.replica` request: an operator asks the brain to replace one replica. The brain starts
/// a replacement first (make-before-break, as a drain does), then drains and stops the old one,
/// so the service never runs short. Used by `acsctl replace` and the dashboard's stop button.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRequest {
    #[serde(default = "v1")]
    pub v: u32,
    pub replica: String,
    pub action: ReplicaAction,
}
versioned!(ReplicaRequest);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaAction {
    /// Start a replacement, then drain and stop this replica.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReply {
    #[serde(default = "v1")]
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
versioned!(ReplicaReply);

impl ReplicaReply {
    pub fn error(error: impl Into<String>) -> Self {
        Self { v: v1(), ok: false, replica: None, service: None, note: None, error: Some(error.into()) }
    }
}

impl Validate for ReplicaRequest {
    fn validate(&self) -> Result<(), String> {
        if self.replica.is_empty() || self.replica.len() > 128 {
            return Err("replica must be 1..=128 characters".into());
        }
        Ok(())
    }
}
impl Validate for ReplicaReply {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

impl Validate for MaintenanceRequest {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
impl Validate for MaintenanceReply {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
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
