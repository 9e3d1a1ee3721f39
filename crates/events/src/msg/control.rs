//! User requests to the brain: manual scale (`acs.cmd.scale`) and status (`acs.status`).

use serde::{Deserialize, Serialize};

use super::{v1, versioned};
use crate::codec::Validate;
use crate::id::{ReplicaId, ServiceName, WorkerId};
use crate::msg::{Backend, ReplicaState, WorkerHealth};
use crate::UnixMs;

/// Largest replica count a manual scale (and a service's `max_replicas`) may ask for: a service
/// of 10,000 replicas is what the brain is measured at (bench/brain-scale.sh); its backend
/// snapshots are chunked to stay under [`crate::MAX_PAYLOAD`].
pub const MAX_REPLICAS: i64 = 10_000;

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
///
/// `{}` asks for everything while it is small (at most [`STATUS_DETAIL_MAX`] replicas,
/// backends and workers in all), else for a summary: every service with its counts, and the
/// workers' totals ([`StatusReply::summary`]), with no lists. The lists come on request, a page
/// at a time: `{"service":"web","offset":0}` for one service's replicas and backends,
/// `{"workers":true,"offset":500}` for the workers. The fields were added after v1 (defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusRequest {
    #[serde(default = "v1")]
    pub v: u32,
    /// One service's replicas and backends, a page of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceName>,
    /// The workers list, a page of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workers: bool,
    /// First item of the page.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u32,
    /// Most items in the page (default and most: [`STATUS_PAGE_MAX`]; the brain may give fewer
    /// so the reply stays under the payload limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
versioned!(StatusRequest);

/// A status with at most this many replicas, backends and workers in all comes whole.
pub const STATUS_DETAIL_MAX: usize = 1000;
/// Most items in one status page.
pub const STATUS_PAGE_MAX: u32 = 500;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Validate for StatusRequest {
    fn validate(&self) -> Result<(), String> {
        if self.service.is_some() && self.workers {
            return Err("ask for one service's detail or for the workers, not both".into());
        }
        if self.limit == Some(0) {
            return Err("limit must be >= 1".into());
        }
        Ok(())
    }
}

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
    /// Totals over every worker (added after v1; always set by a brain that pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<StatusSummary>,
    /// Set when the lists are not whole: a summary, or a page (added after v1; absent: whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<StatusPage>,
}
versioned!(StatusReply);

/// Totals over every worker the brain knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusSummary {
    pub workers_up: u32,
    pub workers_down: u32,
    #[serde(default)]
    pub cordoned: u32,
    #[serde(default)]
    pub draining: u32,
    /// Replicas reported by live workers, and their slots.
    pub replicas: u64,
    pub max_replicas: u64,
}

/// What the lists of a [`StatusReply`] hold of the whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusPage {
    pub detail: StatusDetail,
    pub offset: u32,
    /// Items in this page.
    pub count: u32,
    /// Items in all (replicas of the service, or workers; for a summary, replicas + backends +
    /// workers, the lists left out).
    pub total: u32,
    /// `offset` of the next page, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusDetail {
    /// No replica, backend or worker lists: too many for one reply. Ask for them by page.
    Summary,
    /// One service's replicas and backends (`StatusRequest::service`), a page of them.
    Service,
    /// The workers, a page of them.
    Workers,
}

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
    /// Where the service is in its life (creating, running, partial-running, ...), with the reason.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Replicas and backends in all, also when the lists are left out or paged (added after
    /// v1; a brain that does not page leaves them at 0 and sends the whole lists).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicas_total: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub backends_total: u32,
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
        Self {
            v: v1(),
            ok: false,
            worker: None,
            action: None,
            replicas: 0,
            note: None,
            error: Some(error.into()),
        }
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
        Self {
            v: v1(),
            ok: false,
            replica: None,
            service: None,
            note: None,
            error: Some(error.into()),
        }
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
