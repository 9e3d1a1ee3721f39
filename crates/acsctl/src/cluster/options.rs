//! [`ClusterOptions`] and where things are found: binaries, `nats-server`, config paths, free
//! ports.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// How long [`LocalCluster::start`] waits for everything to be ready.
    pub ready_timeout: Duration,
    /// How long workers get to stop their replicas on shutdown before SIGKILL.
    pub worker_stop_timeout: Duration,
    /// Extra environment for every child (e.g. `RUST_LOG`).
    pub env: BTreeMap<String, String>,
    /// Extra arguments per binary name (`vim-brain`, `vmm-worker`, `acs-proxy`, `nats-server`),
    /// appended after the launcher's own.
    pub extra_args: BTreeMap<String, Vec<String>>,
    /// Credentials to make for workers the caller starts itself (besides `w1..wN`); their
    /// environment comes from [`crate::cluster::LocalCluster::worker_env`].
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

/// Ports [`free_port`] picks from: below Linux's ephemeral range (32768..61000), so a port the
/// kernel hands out for an outgoing connection cannot take it between our check and the child's
/// bind (a port-0 listener's port could be).
const FREE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port from [`FREE_PORTS`] that was free a moment ago on 127.0.0.1. Walks the range from a
/// start that differs per process and call time, so parallel test processes spread out; within a
/// process no port is handed out twice (until the range wraps).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let len = u32::from(FREE_PORTS.end - FREE_PORTS.start);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let start = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % len;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..len {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % len;
        let port = FREE_PORTS.start + n as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
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

/// Where `nats-server` is: `$NATS_SERVER_BIN`, then `PATH`, then Debian's `/usr/sbin`.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("nats-server");
            if cand.is_file() {
                return cand;
            }
        }
    }
    PathBuf::from("/usr/sbin/nats-server")
}

/// The directory of the running executable (`target/<profile>` for test binaries in `deps/`).
pub fn default_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_outside_the_ephemeral_range_and_distinct() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        assert!(ports.iter().all(|p| FREE_PORTS.contains(p)), "{ports:?}");
        let mut uniq = ports.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), ports.len(), "{ports:?}");
    }
}
