//! `acs-cluster`: a whole cluster on this machine as child processes, for `acsctl up`, demos,
//! benches and end-to-end tests ([`LocalCluster`]).
//!
//! Start order: nats-server → acs-monitor (history from the first metric on) → vim-brain →
//! workers `w1..wN` → proxy, each waited for. Stop order: monitor → proxy → brain → workers
//! (SIGTERM; they stop their replicas) → nats-server, each waited for, SIGKILL after a grace
//! period. Every child runs in its own process group (so a terminal's Ctrl-C reaches only the
//! launcher, which then stops them in order) and gets SIGTERM if the launching process dies
//! (`PR_SET_PDEATHSIG`, armed from a spawner thread that lives as long as the cluster). Logs go
//! to `<dir>/logs/<name>.log`. Every component connects as its own NATS identity (`acs-auth`).
//!
//! Every component but nats-server serves Prometheus `GET /metrics` on 127.0.0.1 with the bearer
//! token in `<dir>/metrics.token`; the targets are written to `<dir>/prometheus-targets.json` for
//! `config/prometheus.yml`.
//!
//! # Layout
//!
//! - `lib.rs`: [`LocalCluster`]'s accessors, [`ClusterError`], and the status polls.
//! - `options.rs`: [`ClusterOptions`] and where things are found ([`resolve_path`]; free ports,
//!   binaries and `nats-server` come from `acs-testkit`).
//! - `start.rs`: [`LocalCluster::start`]: preflight checks, the directory lock, the start
//!   sequence and its readiness waits.
//! - `args.rs`: what each child is started with: arguments, the nats-server config, token
//!   files.
//! - `process.rs`: spawning, exits, signals, the ordered stop.
//! - `metrics.rs`: each component's `/metrics` port, `metrics.token`, the Prometheus targets
//!   file.

mod args;
mod metrics;
mod options;
mod process;
mod start;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acs_events::{StatusReply, Subjects};

pub use metrics::{MetricsTarget, METRICS_BASE};
pub use options::{resolve_path, ClusterOptions};
pub use process::{log_tail, ChildExit, Role};
use process::{Proc, Spawner};

/// Binaries `LocalCluster` starts from the bin dir.
pub const BRAIN_BIN: &str = "vim-brain";
pub const WORKER_BIN: &str = "vmm-worker";
pub const PROXY_BIN: &str = "acs-proxy";
pub const DEMO_BIN: &str = "demo-web";
pub const MONITOR_BIN: &str = "acs-monitor";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{name} not found in {dir}; build the workspace first (`cargo build --workspace --bins`) or pass --bin-dir")]
    MissingBinary { name: String, dir: PathBuf },
    #[error("nats-server not found at {0}; run scripts/install-deps.sh or set NATS_SERVER_BIN")]
    NoNatsServer(PathBuf),
    #[error("services file {0} does not exist (pass --services FILE)")]
    NoServicesFile(PathBuf),
    #[error("{what} address {addr} is already in use (another `acsctl up` or nats-server running?); pick another port")]
    PortInUse {
        what: &'static str,
        addr: SocketAddr,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the services file {file} is invalid:\n{output}")]
    BadServices { file: PathBuf, output: String },
    #[error("{0}")]
    ChildExited(ChildExit),
    #[error("{what} not ready within {timeout:?}{detail}")]
    NotReady {
        what: String,
        timeout: Duration,
        detail: String,
    },
    #[error("status request failed: {0}")]
    Status(String),
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{0} is in use by another local cluster (`acsctl up`); stop it or pass another --dir")]
    DirInUse(PathBuf),
    #[error("no process named {0:?} in this cluster")]
    UnknownProcess(String),
}

type Result<T, E = ClusterError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// A running local cluster. Dropping it stops everything (blocking, bounded by the grace
/// periods).
pub struct LocalCluster {
    opts: ClusterOptions,
    /// Every component's NATS identity; the server admits nobody else.
    auth: acs_auth::AuthDir,
    subjects: Subjects,
    bin_dir: PathBuf,
    dir: PathBuf,
    path_env: std::ffi::OsString,
    procs: Vec<Proc>,
    /// Every component's `/metrics`, in start order.
    metrics: Vec<MetricsTarget>,
    nc: Option<async_nats::Client>,
    spawner: Spawner,
    stopped: bool,
    /// `<dir>/acsctl.lock`, locked: two clusters must not share worker state dirs.
    _lock: File,
}

impl LocalCluster {
    /// `nats://127.0.0.1:<port>`.
    pub fn nats_url(&self) -> String {
        self.opts.nats_url()
    }

    /// How `role` connects to this cluster's nats-server (its nkey and inbox prefix). Tests
    /// and tools use [`acs_auth::Role::Operator`] to steer, or another role to act as it.
    pub fn nats_options(&self, role: &acs_auth::Role) -> acs_node::NatsOptions {
        self.auth.nats_options(role, &self.nats_url())
    }

    /// The monitor's REST stats API, `http://127.0.0.1:<port>/api/v1/stats`.
    pub fn monitor_stats_url(&self) -> String {
        format!("http://{}/api/v1/stats", self.opts.monitor_http)
    }

    /// The file holding the bearer token of [`Self::monitor_stats_url`] (mode 0600).
    pub fn monitor_token_file(&self) -> PathBuf {
        self.dir.join("monitor.token")
    }

    /// Every component's Prometheus `/metrics` address, in start order.
    pub fn metrics_targets(&self) -> &[MetricsTarget] {
        &self.metrics
    }

    /// The bearer token file every `/metrics` scrape needs (mode 0600).
    pub fn metrics_token_file(&self) -> PathBuf {
        self.dir.join(metrics::TOKEN_FILE)
    }

    /// `<dir>/prometheus-targets.json`, the targets in Prometheus `file_sd_configs` format.
    pub fn metrics_targets_file(&self) -> PathBuf {
        self.dir.join(metrics::TARGETS_FILE)
    }

    /// A client connected as the operator (steer and watch), failing fast.
    pub async fn operator_client(&self) -> Result<async_nats::Client> {
        connect(&self.nats_options(&acs_auth::Role::Operator)).await
    }

    /// The environment (`NATS_NKEY`, ...) that makes a worker process started outside the
    /// launcher connect as `id`, which must be `w1..wN` or in `extra_worker_ids`.
    pub fn worker_env(&self, id: &acs_events::WorkerId) -> Vec<(&'static str, String)> {
        let role = acs_auth::Role::Worker(id.clone());
        self.auth.connect_env(&role, self.auth.root())
    }

    /// The folder of credentials (`<dir>/auth`).
    pub fn auth_dir(&self) -> &acs_auth::AuthDir {
        &self.auth
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.opts.proxy_listen
    }

    /// `http://<proxy_addr>`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.opts.proxy_listen)
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The (absolute) directory holding `logs/` and `workers/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The log file of a child (`nats-server`, `vim-brain`, `w1`.., `proxy`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Names of the children, in start order.
    pub fn names(&self) -> Vec<String> {
        self.procs.iter().map(|p| p.spec.name.clone()).collect()
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.live(name).map(|i| self.procs[i].child.id())
    }

    /// A NATS client connected to the cluster's server.
    pub fn client(&self) -> Option<&async_nats::Client> {
        self.nc.as_ref()
    }

    /// Asks the brain for its status.
    pub async fn status(&self) -> Result<StatusReply> {
        fetch_status(self.nc.as_ref(), &self.subjects).await
    }

    /// Polls the status until `pred` holds or `timeout` passes; the error carries the last status.
    pub async fn wait_for_status(
        &self,
        timeout: Duration,
        pred: impl Fn(&StatusReply) -> bool,
    ) -> Result<StatusReply> {
        let deadline = Instant::now() + timeout;
        let timed_out = |last| ClusterError::NotReady {
            what: "status condition".into(),
            timeout,
            detail: format!("; last status:\n{last}"),
        };
        poll_status(
            self.nc.as_ref(),
            &self.subjects,
            deadline,
            pred,
            || Ok(()),
            timed_out,
        )
        .await
    }
}

/// Connects once, failing fast: a cluster's own server is local and already listening.
async fn connect(nats: &acs_node::NatsOptions) -> Result<async_nats::Client> {
    nats.connect_once(Duration::from_secs(5))
        .await
        .map_err(|e| ClusterError::Connect {
            url: nats.servers_display(),
            reason: e.to_string(),
        })
}

async fn fetch_status(nc: Option<&async_nats::Client>, subjects: &Subjects) -> Result<StatusReply> {
    let nc = nc.ok_or_else(|| ClusterError::Status("not connected".into()))?;
    let asked = nc.request(subjects.status(), "{}".into());
    let reply = tokio::time::timeout(Duration::from_secs(2), asked)
        .await
        .map_err(|_| ClusterError::Status("no reply within 2s".into()))?
        .map_err(|e| ClusterError::Status(e.to_string()))?;
    acs_events::decode(&reply.payload).map_err(|e| ClusterError::Status(e.to_string()))
}

/// Polls the status every 250 ms until `pred` holds. `check` runs before every poll and may end
/// the wait with its error; once `deadline` has passed, `timed_out` turns the last status
/// (rendered, or why the request failed) into the error.
async fn poll_status(
    nc: Option<&async_nats::Client>,
    subjects: &Subjects,
    deadline: Instant,
    pred: impl Fn(&StatusReply) -> bool,
    mut check: impl FnMut() -> Result<()>,
    timed_out: impl FnOnce(String) -> ClusterError,
) -> Result<StatusReply> {
    loop {
        check()?;
        let last = match fetch_status(nc, subjects).await {
            Ok(s) if pred(&s) => return Ok(s),
            // The whole reply: the tables are `acsctl status`'s, and a test's failure message
            // needs every field.
            Ok(s) => serde_json::to_string_pretty(&s).unwrap_or_else(|e| e.to_string()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(timed_out(last));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
