//! [`ClusterOptions`] and where config files are found. Free ports, the bin dir and
//! `nats-server` come from `acs-testkit`, which tests use too: one implementation of each.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use acs_testkit::free_port;

/// Settings of a local cluster. [`ClusterOptions::new`] has the `acsctl up` defaults;
/// [`ClusterOptions::with_free_ports`] suits tests.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub workers: u32,
    pub max_replicas: u32,
    /// The brain's services file (relative paths are also tried from the workspace root).
    pub services: PathBuf,
    pub proxy_listen: SocketAddr,
    pub nats_port: u16,
    /// Where the monitor's REST stats API listens (token in `<dir>/monitor.token`).
    pub monitor_http: SocketAddr,
    /// First port of the components' Prometheus `/metrics` (layout in `cluster/metrics.rs`:
    /// brain +0, proxy +1, monitor +2, `wN` +9+N); `None`: a free port each (tests).
    pub metrics_base: Option<u16>,
    /// Optional nats-server config; `-a 127.0.0.1 -p <nats_port>` override its address.
    pub nats_config: Option<PathBuf>,
    /// Logs (`logs/<name>.log`) and worker state (`workers/<id>`).
    pub dir: PathBuf,
    /// Where vim-brain, vmm-worker, acs-proxy and demo-web are; default: next to the running
    /// executable (`target/<profile>` for tests).
    pub bin_dir: Option<PathBuf>,
    pub prefix: String,
    /// Worker metrics interval.
    pub worker_interval_ms: u64,
    /// How long [`crate::LocalCluster::start`] waits for everything to be ready.
    pub ready_timeout: Duration,
    /// How long workers get to stop their replicas on shutdown before SIGKILL.
    pub worker_stop_timeout: Duration,
    /// Extra environment for every child (e.g. `RUST_LOG`).
    pub env: BTreeMap<String, String>,
    /// Extra arguments per binary name (`vim-brain`, `vmm-worker`, `acs-proxy`, `nats-server`),
    /// appended after the launcher's own.
    pub extra_args: BTreeMap<String, Vec<String>>,
    /// Credentials to make for workers the caller starts itself (besides `w1..wN`); their
    /// environment comes from [`crate::LocalCluster::worker_env`].
    pub extra_worker_ids: Vec<acs_events::WorkerId>,
}

impl ClusterOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            workers: 2,
            max_replicas: 4,
            services: PathBuf::from("config/services.local.toml"),
            proxy_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            nats_port: 4222,
            monitor_http: SocketAddr::from(([127, 0, 0, 1], 9470)),
            metrics_base: Some(super::metrics::METRICS_BASE),
            nats_config: None,
            dir: dir.into(),
            bin_dir: None,
            prefix: "acs".into(),
            worker_interval_ms: 1000,
            ready_timeout: Duration::from_secs(60),
            worker_stop_timeout: Duration::from_secs(20),
            env: BTreeMap::new(),
            extra_args: BTreeMap::new(),
            extra_worker_ids: Vec::new(),
        }
    }

    /// Defaults with a free NATS port and a free proxy port: for tests.
    pub fn with_free_ports(dir: impl Into<PathBuf>) -> Self {
        let mut o = Self::new(dir);
        o.nats_port = free_port();
        o.proxy_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        o.monitor_http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        o.metrics_base = None;
        o
    }

    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nats_port)
    }
}

/// `p` as given when it exists (or is absolute); otherwise relative to this workspace's root,
/// so `acsctl up` finds `config/` and `nats/` from any directory of a checkout.
pub fn resolve_path(p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    let cand = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p);
    match cand.canonicalize() {
        Ok(c) => c,
        Err(_) => p.to_path_buf(),
    }
}
