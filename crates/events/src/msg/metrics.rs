//! Worker metrics (`acs.metrics.worker.<id>`), which double as the worker's heartbeat, and replica
//! state events (`acs.events.replica.<id>`).

use serde::{Deserialize, Serialize};

use super::{sane, v1, versioned};
use crate::codec::Validate;
use crate::id::{ReplicaId, ServiceName, WorkerId};
use crate::UnixMs;

/// Which runtime a worker uses to run replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    Process,
    Docker,
}

/// Published by each worker every interval (1 s by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerMetrics {
    #[serde(default = "v1")]
    pub v: u32,
    pub worker: WorkerId,
    /// Grows by one per publication; a reset means the worker restarted.
    pub seq: u64,
    pub ts_ms: UnixMs,
    /// When this worker process started; changes across restarts.
    pub started_ms: UnixMs,
    /// A random id this worker process drew at start. Two processes that claim the same worker
    /// id differ here, so the brain can tell them apart and refuse the second.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// Publication interval, so a reader knows when a heartbeat is late.
    pub interval_ms: u64,
    pub runtime: RuntimeKind,
    pub host: HostMetrics,
    pub capacity: Capacity,
    #[serde(default)]
    pub replicas: Vec<ReplicaStatus>,
    /// Malformed or refused messages this worker has seen since it started.
    #[serde(default)]
    pub rejected: u64,
}
versioned!(WorkerMetrics);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostMetrics {
    /// Whole-host CPU use, 0..=100 (percent of all cores).
    pub cpu_pct: f64,
    pub cpus: u32,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub net_rx_bytes_per_s: f64,
    pub net_tx_bytes_per_s: f64,
    /// Bytes read/written per second on this host's physical disks (`/proc/diskstats`).
    pub disk_read_bytes_per_s: f64,
    pub disk_write_bytes_per_s: f64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub max_replicas: u32,
    pub running: u32,
}

/// Lifecycle of one replica as its worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Started, health check not yet passed. Not routable.
    Starting,
    /// Health check passes. Routable.
    Healthy,
    /// Was healthy, health check now fails.
    Unhealthy,
    /// Stop requested, shutting down.
    Stopping,
    /// Process/container is gone (crashed or stopped).
    Exited,
}

impl ReplicaState {
    /// Whether a replica in this state occupies one of its worker's `max_replicas` slots.
    ///
    /// The one definition the brain (placement, free slots) and the worker (capacity checks)
    /// share. A `Stopping` replica still holds its process or container, and so its slot,
    /// until it has `Exited`.
    pub fn takes_slot(self) -> bool {
        !matches!(self, ReplicaState::Exited)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: ReplicaId,
    pub service: ServiceName,
    /// `host:port` where the proxy reaches this replica.
    pub addr: String,
    pub state: ReplicaState,
    /// CPU use in percent of one core (200 = two cores busy).
    #[serde(default)]
    pub cpu_pct: f64,
    #[serde(default)]
    pub mem_bytes: u64,
    #[serde(default)]
    pub started_ms: UnixMs,
    /// Restarts the worker did for this replica after crashes.
    #[serde(default)]
    pub restarts: u32,
}

/// `acs.events.replica.<worker>`: a replica changed state. Sent at once, not on the next tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaEvent {
    #[serde(default = "v1")]
    pub v: u32,
    pub worker: WorkerId,
    pub ts_ms: UnixMs,
    pub replica: ReplicaStatus,
    /// Human-readable cause: "health check passed", "exited with status 137", ...
    #[serde(default)]
    pub reason: String,
}
versioned!(ReplicaEvent);

impl Validate for WorkerMetrics {
    fn validate(&self) -> Result<(), String> {
        let h = &self.host;
        for (name, x) in [
            ("host.cpu_pct", h.cpu_pct),
            ("host.load1", h.load1),
            ("host.net_rx_bytes_per_s", h.net_rx_bytes_per_s),
            ("host.net_tx_bytes_per_s", h.net_tx_bytes_per_s),
        ] {
            if !sane(x) {
                return Err(format!("{name} must be a finite number >= 0, got {x}"));
            }
        }
        if self.interval_ms == 0 {
            return Err("interval_ms must be > 0".into());
        }
        for r in &self.replicas {
            r.validate()?;
        }
        Ok(())
    }
}

impl Validate for ReplicaStatus {
    fn validate(&self) -> Result<(), String> {
        if !sane(self.cpu_pct) {
            return Err(format!(
                "replica {}: cpu_pct must be finite and >= 0",
                self.id
            ));
        }
        validate_addr(&self.addr).map_err(|e| format!("replica {}: {e}", self.id))
    }
}

impl Validate for ReplicaEvent {
    fn validate(&self) -> Result<(), String> {
        self.replica.validate()
    }
}

/// `host:port` with a non-empty host and a port in 1..=65535.
pub fn validate_addr(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("address {addr:?} must be host:port"))?;
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(format!("address {addr:?} has an empty or invalid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("address {addr:?} has an invalid port")),
    }
}
