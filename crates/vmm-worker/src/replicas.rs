//! The replica table: every replica this worker runs, with the lifecycle state the worker owns
//! (a runtime only knows "running" and "gone") and its last CPU / memory sample.
//!
//! The run loop owns the table; [`Commands`](crate::commands::Commands) adds and marks replicas
//! in it while handling a command.

use std::collections::BTreeMap;

use acs_events::{ReplicaId, ReplicaState, ReplicaStatus};

use crate::runtime::RunningReplica;

/// One replica as the worker tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub info: RunningReplica,
    pub state: ReplicaState,
    pub cpu_pct: f64,
    pub mem_bytes: u64,
}

impl Replica {
    pub fn new(info: RunningReplica) -> Self {
        Self {
            info,
            state: ReplicaState::Starting,
            cpu_pct: 0.0,
            mem_bytes: 0,
        }
    }

    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            id: self.info.id.clone(),
            service: self.info.service.clone(),
            addr: self.info.addr.clone(),
            state: self.state,
            cpu_pct: if self.cpu_pct.is_finite() && self.cpu_pct >= 0.0 {
                self.cpu_pct
            } else {
                0.0
            },
            mem_bytes: self.mem_bytes,
            started_ms: self.info.started_ms,
            restarts: 0,
        }
    }
}

pub type Replicas = BTreeMap<ReplicaId, Replica>;

/// Replicas that occupy one of the worker's `max_replicas` slots, by the contract's one rule
/// ([`ReplicaState::takes_slot`]), so the brain and the worker agree on the room left.
pub fn running(replicas: &Replicas) -> u32 {
    replicas.values().filter(|r| r.state.takes_slot()).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::ServiceName;

    fn replica(id: &str, state: ReplicaState) -> (ReplicaId, Replica) {
        let id = ReplicaId::new(id).unwrap();
        let info = RunningReplica {
            id: id.clone(),
            service: ServiceName::new("web").unwrap(),
            addr: "10.0.0.1:1".into(),
            health_addr: "127.0.0.1:1".into(),
            health_path: "/healthz".into(),
            pid: None,
            container_id: None,
            started_ms: 1,
            adopted: false,
        };
        (
            id,
            Replica {
                state,
                ..Replica::new(info)
            },
        )
    }

    #[test]
    fn every_state_but_exited_takes_a_slot() {
        use ReplicaState::*;
        let table: Replicas = [
            replica("a", Starting),
            replica("b", Healthy),
            replica("c", Unhealthy),
            replica("d", Stopping),
            replica("e", Exited),
        ]
        .into_iter()
        .collect();
        assert_eq!(running(&table), 4);
    }

    #[test]
    fn status_never_reports_a_negative_or_nan_cpu() {
        let (_, mut r) = replica("a", ReplicaState::Healthy);
        r.cpu_pct = f64::NAN;
        assert_eq!(r.status().cpu_pct, 0.0);
        r.cpu_pct = -1.0;
        assert_eq!(r.status().cpu_pct, 0.0);
        r.cpu_pct = 12.5;
        assert_eq!(r.status().cpu_pct, 12.5);
    }
}
