//! The worker's settings, built by `main.rs` from flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

use acs_events::{RuntimeKind, Subjects, WorkerId};

use crate::health::HealthConfig;
use crate::policy::Policy;

#[derive(Debug, Clone)]
pub struct Config {
    pub worker_id: WorkerId,
    /// Most replicas this worker runs at once (`starting`, `healthy`, `unhealthy`).
    pub max_replicas: u32,
    pub runtime: RuntimeKind,
    pub nats: acs_node::NatsOptions,
    pub subjects: Subjects,
    /// Metrics (heartbeat) period.
    pub interval: Duration,
    /// Host part of the addresses handed to proxies (process runtime, and Docker with
    /// [`Advertise::HostPort`]).
    pub advertise_host: String,
    /// Docker runtime: how replicas are reached.
    pub advertise: Advertise,
    /// Docker runtime: network the replica containers join (default: Docker's default bridge).
    pub docker_network: Option<String>,
    /// State files and replica logs.
    pub state_dir: PathBuf,
    /// On shutdown, leave replicas running for the next worker to adopt.
    pub keep_replicas: bool,
    /// Grace period for replicas stopped at shutdown.
    pub shutdown_grace: Duration,
    pub health: HealthConfig,
    /// What this host allows replicas to run, and where their secrets are. The default allows
    /// nothing: every start is refused until an allow-list names what may run.
    pub policy: Policy,
    /// Docker runtime: most processes per container (`PidsLimit`); 0 = no limit.
    pub pids_limit: u32,
    /// Most starts run by the runtime at once; more wait for a free one (within their deadline).
    pub max_concurrent_starts: u32,
    /// A start not done within this (waiting for a slot, remove, create, start, inspect) is
    /// abandoned: what it left is removed, the replica is reported exited, the ack says so.
    pub start_deadline: Duration,
    /// A command issued longer ago than this (its `issued_ms` against this host's wall clock)
    /// is refused as stale; zero: never refused.
    pub command_max_age: Duration,
    /// Where `GET /metrics` is served (`--metrics-listen`); `None`: not at all.
    pub metrics: Option<acs_node::MetricsListen>,
    /// Where `/healthz` and `/readyz` alone are served (`--health-listen`).
    pub health_listen: Option<std::net::SocketAddr>,
}

/// How the Docker runtime advertises a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertise {
    /// Publish the container port on a free host port: `<advertise_host>:<host port>`.
    HostPort,
    /// The container's IP on its network and the container port: `<container ip>:<port>`
    /// (proxies on the same Docker network; nothing is published on the host).
    ContainerIp,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--max-replicas must be >= 1")]
    MaxReplicas,
    #[error("--interval must be at least 10ms, got {0} ms")]
    Interval(u128),
    #[error("--docker-network {0:?} is not a valid network name")]
    Network(String),
    #[error("{0}")]
    Policy(String),
    #[error("--max-concurrent-starts must be >= 1")]
    MaxConcurrentStarts,
    #[error("--start-deadline must be at least 1ms")]
    StartDeadline,
    #[error("--advertise-host must not be empty or contain whitespace or ':' (got {0:?}); use an IP or host name")]
    AdvertiseHost(String),
}

impl Config {
    /// Defaults: 4 replicas, process runtime, 1 s interval, `127.0.0.1`,
    /// state in `.acs/worker-<id>`, nothing allowed, 256 pids per container, 4 starts at once
    /// with 30 s each, commands older than 10 s refused.
    pub fn new(worker_id: WorkerId) -> Self {
        Self {
            state_dir: PathBuf::from(format!(".acs/worker-{worker_id}")),
            worker_id,
            max_replicas: 4,
            runtime: RuntimeKind::Process,
            nats: acs_node::NatsOptions::new(acs_node::nats::DEFAULT_URL),
            subjects: Subjects::default(),
            interval: Duration::from_secs(1),
            advertise_host: "127.0.0.1".into(),
            advertise: Advertise::HostPort,
            docker_network: None,
            keep_replicas: false,
            shutdown_grace: Duration::from_secs(5),
            health: HealthConfig::default(),
            policy: Policy::default(),
            pids_limit: 256,
            max_concurrent_starts: 4,
            start_deadline: Duration::from_secs(30),
            command_max_age: Duration::from_secs(10),
            metrics: None,
            health_listen: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_replicas == 0 {
            return Err(ConfigError::MaxReplicas);
        }
        if self.max_concurrent_starts == 0 {
            return Err(ConfigError::MaxConcurrentStarts);
        }
        if self.start_deadline.is_zero() {
            return Err(ConfigError::StartDeadline);
        }
        if self.interval < Duration::from_millis(10) {
            return Err(ConfigError::Interval(self.interval.as_millis()));
        }
        let h = &self.advertise_host;
        // IPv6 literals would need brackets in host:port; not supported for now.
        if h.is_empty() || h.contains(':') || h.chars().any(char::is_whitespace) {
            return Err(ConfigError::AdvertiseHost(h.clone()));
        }
        if let Some(n) = &self.docker_network {
            if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(ConfigError::Network(n.clone()));
            }
        }
        self.policy.validate().map_err(ConfigError::Policy)
    }
}
