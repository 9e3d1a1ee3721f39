//! The seam between the worker and whatever runs replicas.
//!
//! A [`Runtime`] starts and stops replicas, says which replicas already run (so a restarted
//! worker adopts them instead of starting duplicates), and reports exits on a channel. The worker
//! owns the lifecycle states (starting / healthy / ...); a runtime only knows "running" and
//! "gone".
//!
//! - [`process::ProcessRuntime`]: local processes on free ports, one process group each, a state
//!   file per replica for adoption.
//! - [`docker::DockerRuntime`]: containers through the Docker engine (bollard), adopted by
//!   label, exits from the Docker event stream.
//! - [`fake::FakeRuntime`]: records calls, for unit tests of the command logic.

use std::time::Duration;

use acs_events::{ReplicaId, ReplicaSpec, RuntimeKind, ServiceName, UnixMs};
use async_trait::async_trait;
use tokio::sync::mpsc;

pub mod docker;
pub mod fake;
pub mod process;

/// What a runtime knows about one replica it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningReplica {
    pub id: ReplicaId,
    pub service: ServiceName,
    /// `host:port` advertised to the proxies (the worker's `--advertise-host`).
    pub addr: String,
    /// `host:port` the worker itself uses for health checks (usually loopback).
    pub health_addr: String,
    pub health_path: String,
    /// Process runtime: the pid (also the process group id). Docker: the container's host pid
    /// when known. The worker samples CPU/memory by pid when [`Runtime::stats`] says nothing.
    pub pid: Option<u32>,
    /// Docker runtime: the container id.
    pub container_id: Option<String>,
    pub started_ms: UnixMs,
    /// True when this replica was found running at worker start rather than started by us.
    pub adopted: bool,
}

/// CPU and memory of one replica, when the runtime measures them itself (Docker stats).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplicaStats {
    /// Percent of one core.
    pub cpu_pct: f64,
    pub mem_bytes: u64,
}

/// Something happened to a replica without the worker asking.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// The process/container is gone. The runtime has already forgotten it.
    Exited {
        replica: ReplicaId,
        /// Exit code when known.
        code: Option<i32>,
        /// "exited with status 1", "killed by signal 9", ...
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    InvalidSpec(String),
    #[error("cannot start replica {replica}: {message}")]
    Start { replica: ReplicaId, message: String },
    #[error("cannot stop replica {replica}: {message}")]
    Stop { replica: ReplicaId, message: String },
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Replicas in id order, as [`Runtime::adopt`] and [`Runtime::list`] return them.
fn by_id(mut replicas: Vec<RunningReplica>) -> Vec<RunningReplica> {
    replicas.sort_by(|a, b| a.id.cmp(&b.id));
    replicas
}

/// Runs replicas. Object-safe (`Arc<dyn Runtime>`); every method is cheap to call concurrently.
#[async_trait]
pub trait Runtime: Send + Sync {
    fn kind(&self) -> RuntimeKind;

    /// Launches `replica` and returns as soon as it runs (not when it is healthy). The caller
    /// makes sure the replica id does not already run.
    async fn start(&self, replica: &ReplicaId, spec: &ReplicaSpec) -> Result<RunningReplica>;

    /// Asks `replica` to stop (SIGTERM / `docker stop`), kills it after `grace`, and returns
    /// once it is gone. Stopping an unknown replica succeeds. The exit is also reported as a
    /// [`RuntimeEvent::Exited`].
    async fn stop(&self, replica: &ReplicaId, grace: Duration) -> Result<()>;

    /// A start of `replica` was given up part-way (its deadline passed and its future was
    /// dropped): remove whatever it may have left (a process, a created or running container),
    /// tracked or not. Like [`Runtime::stop`] with no grace by default.
    async fn abandon(&self, replica: &ReplicaId) -> Result<()> {
        self.stop(replica, Duration::ZERO).await
    }

    /// Finds replicas left running by an earlier worker (state files, container labels), takes
    /// them over and returns them; forgets records of replicas that are gone. Called once at start.
    async fn adopt(&self) -> Result<Vec<RunningReplica>>;

    /// Every replica this runtime currently runs.
    async fn list(&self) -> Vec<RunningReplica>;

    /// CPU/memory of a replica when the runtime measures them itself; `None` means "sample the
    /// pid" (the process runtime). Answers from what the runtime already has (the heartbeat
    /// calls it every interval), never with a call to the engine.
    async fn stats(&self, _replica: &ReplicaId) -> Option<ReplicaStats> {
        None
    }

    /// Whether the runtime answers (the Docker engine replies to a ping), for `/readyz`. The
    /// process runtime has nothing to ask.
    async fn ping(&self) -> bool {
        true
    }

    /// The stream of exits. Returns the receiver once; later calls get `None`.
    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<RuntimeEvent>>;

    /// The worker stops without stopping its replicas (`--keep-replicas`): drop background
    /// watchers, keep the replicas and whatever the next worker needs to adopt them.
    async fn detach(&self) {}
}
