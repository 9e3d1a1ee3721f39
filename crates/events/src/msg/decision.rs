//! Explanations (`acs.events.decision.<service>`, `acs.events.worker.<worker>`): the brain says
//! what it decided and why, with the numbers it decided on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{v1, versioned};
use crate::codec::Validate;
use crate::id::{ReplicaId, ServiceName, WorkerId};
use crate::UnixMs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(default = "v1")]
    pub v: u32,
    pub service: ServiceName,
    pub ts_ms: UnixMs,
    #[serde(flatten)]
    pub action: DecisionAction,
    /// One sentence a user can read: "cpu 91% > target 60% over 3 replicas: 3 -> 5".
    pub reason: String,
    /// The figures the decision used (`cpu_pct`, `rps_per_replica`, `target`, ...).
    #[serde(default)]
    pub inputs: BTreeMap<String, f64>,
    /// The service's lifecycle state after this decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<crate::msg::Lifecycle>,
    /// The leader term the deciding brain held.
    #[serde(default)]
    pub term: u64,
}
versioned!(Decision);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DecisionAction {
    /// The desired replica count changed.
    Scale { from: u32, to: u32, manual: bool },
    /// A new replica goes to `worker`.
    Place {
        replica: ReplicaId,
        worker: WorkerId,
    },
    /// A replica leaves rotation before it stops.
    Drain {
        replica: ReplicaId,
        worker: WorkerId,
    },
    /// A replica is being stopped.
    Stop {
        replica: ReplicaId,
        worker: WorkerId,
    },
    /// A replica was lost (its worker died or it exited) and will be replaced.
    Lost {
        replica: ReplicaId,
        worker: WorkerId,
    },
    /// A replica is moved make-before-break (worker drain or rebalance): `replacement` starts on
    /// `to`; `replica` on `from` is drained and stopped only once the replacement serves.
    Relocate {
        replica: ReplicaId,
        from: WorkerId,
        replacement: ReplicaId,
        to: WorkerId,
    },
    /// The brain wanted to act but could not (no capacity, worker refused, ...).
    Blocked,
    /// The service's lifecycle state changed (`reason` says why: `2/3: no worker has a free slot`).
    Lifecycle {
        from: crate::msg::LifecycleState,
        to: crate::msg::LifecycleState,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEvent {
    #[serde(default = "v1")]
    pub v: u32,
    pub worker: WorkerId,
    pub ts_ms: UnixMs,
    pub health: WorkerHealth,
    pub reason: String,
}
versioned!(WorkerEvent);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerHealth {
    Up,
    Down,
    /// A second process reported under a worker id another instance already holds; the brain
    /// refuses it (`reason` names both instances) and keeps the first.
    Duplicate,
}

/// `acs.events.error.<component>`: a message was refused and nobody was waiting for a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    #[serde(default = "v1")]
    pub v: u32,
    pub component: String,
    pub subject: String,
    pub ts_ms: UnixMs,
    pub kind: String,
    pub error: String,
    /// Running count of rejections by this component.
    pub total: u64,
}
versioned!(Rejection);

impl Rejection {
    /// A rejection by `component` of a message that arrived on `subject`; `total` is the
    /// component's running count, kept by whoever owns the receiving loop.
    pub fn new(
        component: impl Into<String>,
        subject: impl Into<String>,
        kind: impl Into<String>,
        error: impl Into<String>,
        ts_ms: UnixMs,
        total: u64,
    ) -> Self {
        Rejection {
            v: crate::SCHEMA_VERSION,
            component: component.into(),
            subject: subject.into(),
            ts_ms,
            kind: kind.into(),
            error: error.into(),
            total,
        }
    }
}

impl Validate for Decision {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
impl Validate for WorkerEvent {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
impl Validate for Rejection {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
