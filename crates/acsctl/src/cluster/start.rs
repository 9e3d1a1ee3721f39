//! [`LocalCluster::start`]: preflight checks, then nats-server → acs-monitor → vim-brain →
//! workers → proxy, each waited for.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use acs_events::{StatsReply, StatusReply, Subjects, WorkerHealth};
use tracing::{info, warn};

use super::process::{fail_on_exit, Role, Spawner, Spec};
use super::{
    default_bin_dir, io, nats_server_bin, poll_status, resolve_path, ClusterError, ClusterOptions,
    LocalCluster, Result, BRAIN_BIN, DEMO_BIN, MONITOR_BIN, PROXY_BIN, WORKER_BIN,
};
use crate::auth::{AuthDir, InitOptions, Role as AuthRole};
use crate::client;
use acs_events::{ProxyId, WorkerId};

impl LocalCluster {
    /// Starts nats-server, the brain, the workers and the proxy, and waits until the brain
    /// reports every worker up and the proxy accepts connections. On error, whatever was
    /// started is stopped again (by `Drop`).
    pub async fn start(opts: ClusterOptions) -> Result<LocalCluster> {
        let subjects = Subjects::new(opts.prefix.clone()).map_err(|e| ClusterError::Io {
            what: "prefix".into(),
            source: std::io::Error::other(e),
        })?;
        let bin_dir = opts.bin_dir.clone().unwrap_or_else(default_bin_dir);
        let Preflight { nats_bin, services } = preflight(&opts, &bin_dir)?;
        let (dir, lock) = lock_dir(&opts.dir)?;
        let path_env = path_with(&bin_dir);
        let auth = init_auth(&opts, &dir, &subjects)?;
        let mut cluster = LocalCluster {
            auth,
            subjects,
            bin_dir,
            dir,
            path_env,
            procs: Vec::new(),
            metrics: Vec::new(),
            nc: None,
            spawner: Spawner::new(),
            stopped: false,
            _lock: lock,
            opts,
        };
        let deadline = Instant::now() + cluster.opts.ready_timeout;

        // The services file must parse before anything starts.
        cluster.check_services(&services).await?;
        cluster.start_nats(nats_bin, deadline).await?;
        cluster.start_monitor(deadline).await?;
        cluster.start_brain(&services, deadline).await?;
        cluster.start_workers(deadline).await?;
        cluster.start_proxy(deadline).await?;
        let targets = super::metrics::write_targets(&cluster.dir, &cluster.metrics)?;
        info!(metrics = ?cluster.metrics.iter().map(|t| format!("{} {}", t.name, t.addr)).collect::<Vec<_>>(),
            targets = %targets.display(), "Prometheus /metrics (token in {})", cluster.metrics_token_file().display());
        info!(nats = %cluster.nats_url(), proxy = %cluster.proxy_addr(),
            dir = %cluster.dir.display(), "local cluster ready");
        Ok(cluster)
    }

    /// 1. nats-server, then a client connected to it.
    async fn start_nats(&mut self, program: PathBuf, deadline: Instant) -> Result<()> {
        let conf = write_nats_conf(&self.opts, &self.dir)?;
        self.spawn(Spec {
            name: "nats-server".into(),
            role: Role::Nats,
            program,
            args: nats_args(&self.opts, &conf),
            env: Vec::new(),
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.opts.nats_port));
        self.wait_port("nats-server", addr, deadline).await?;
        let nc = client::connect(
            &self.nats_options(&AuthRole::Operator),
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| ClusterError::Status(e.to_string()))?;
        self.nc = Some(nc);
        Ok(())
    }

    /// 2. acs-monitor, ready once it answers `acs.monitor.stats` (only after its replay).
    async fn start_monitor(&mut self, deadline: Instant) -> Result<()> {
        let token = monitor_token(&self.dir)?;
        let mut args = monitor_args(&self.opts, &token);
        args.extend(self.metrics_args("monitor", MONITOR_BIN)?);
        self.spawn(Spec {
            name: "monitor".into(),
            role: Role::Monitor,
            program: self.bin_dir.join(MONITOR_BIN),
            args,
            env: self.auth.connect_env(&AuthRole::Monitor, self.auth.root()),
        })?;
        let nc = self
            .nc
            .clone()
            .ok_or_else(|| ClusterError::Status("not connected".into()))?;
        // Any well-formed query will do: an empty history still gets an answer.
        let query = r#"{"scope":"worker","id":"w1","metric":"cpu","last_ms":60000}"#;
        loop {
            fail_on_exit(&mut self.procs)?;
            let asked = nc.request(self.subjects.monitor_stats(), query.into());
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), asked).await {
                if acs_events::decode::<StatsReply>(&m.payload).is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: "acs-monitor answering on stats".into(),
                    timeout: self.opts.ready_timeout,
                    detail: format!("; logs are in {}", self.dir.join("logs").display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// 3. vim-brain, ready once it answers status requests.
    async fn start_brain(&mut self, services: &Path, deadline: Instant) -> Result<()> {
        let metrics = self.metrics_args("vim-brain", BRAIN_BIN)?;
        self.spawn(Spec {
            name: "vim-brain".into(),
            role: Role::Brain,
            program: self.bin_dir.join(BRAIN_BIN),
            args: [brain_args(&self.opts, services), metrics].concat(),
            env: self.auth.connect_env(&AuthRole::Brain, self.auth.root()),
        })?;
        self.wait_status("vim-brain answering on status", deadline, |_| true)
            .await?;
        Ok(())
    }

    /// 4. workers `w1..wN`, ready once the brain reports every one of them up.
    async fn start_workers(&mut self, deadline: Instant) -> Result<()> {
        let n = self.opts.workers as usize;
        let ids: Vec<String> = (1..=n).map(|i| format!("w{i}")).collect();
        for id in &ids {
            let role = AuthRole::Worker(WorkerId::new(id.clone()).expect("w<N> is a valid id"));
            let state = self.dir.join("workers").join(id);
            fs::create_dir_all(&state).map_err(io(format!("create {}", state.display())))?;
            let metrics = self.metrics_args(id, WORKER_BIN)?;
            self.spawn(Spec {
                name: id.clone(),
                role: Role::Worker,
                program: self.bin_dir.join(WORKER_BIN),
                args: [worker_args(&self.opts, id, &state, &self.bin_dir), metrics].concat(),
                env: self.auth.connect_env(&role, self.auth.root()),
            })?;
        }
        self.wait_status(&format!("{n} worker(s) up"), deadline, |s| {
            ids.iter().all(|id| {
                s.workers
                    .iter()
                    .any(|w| w.id.as_str() == id && w.health == WorkerHealth::Up)
            })
        })
        .await?;
        Ok(())
    }

    /// 5. the proxy, ready once it accepts connections.
    async fn start_proxy(&mut self, deadline: Instant) -> Result<()> {
        let metrics = self.metrics_args("proxy", PROXY_BIN)?;
        self.spawn(Spec {
            name: "proxy".into(),
            role: Role::Proxy,
            program: self.bin_dir.join(PROXY_BIN),
            args: [proxy_args(&self.opts), metrics].concat(),
            env: self
                .auth
                .connect_env(&AuthRole::Proxy(proxy_id()), self.auth.root()),
        })?;
        let addr = self.opts.proxy_listen;
        self.wait_port("proxy", addr, deadline).await
    }

    /// `--metrics-listen` / `--metrics-token-file` for the child `name`, recorded as a target.
    fn metrics_args(&mut self, name: &str, component: &str) -> Result<Vec<String>> {
        let token = token_file(&self.dir.join(super::metrics::TOKEN_FILE))?;
        let addr = super::metrics::addr_for(&self.opts, name);
        self.metrics.retain(|t| t.name != name);
        self.metrics.push(super::MetricsTarget {
            name: name.into(),
            component: component.into(),
            addr,
        });
        Ok(super::metrics::args(addr, &token))
    }

    async fn check_services(&self, services: &Path) -> Result<()> {
        let out = tokio::process::Command::new(self.bin_dir.join(BRAIN_BIN))
            .arg("--services")
            .arg(services)
            .arg("--check")
            .env("PATH", &self.path_env)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .map_err(|_| ClusterError::NotReady {
                what: "vim-brain --check".into(),
                timeout: Duration::from_secs(30),
                detail: String::new(),
            })?
            .map_err(io("run vim-brain --check"))?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(ClusterError::BadServices {
            file: services.to_path_buf(),
            output: output.trim().to_string(),
        })
    }

    async fn wait_port(&mut self, what: &str, addr: SocketAddr, deadline: Instant) -> Result<()> {
        loop {
            self.fail_on_exit()?;
            let connect = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), connect).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: format!("{what} listening on {addr}"),
                    timeout: self.opts.ready_timeout,
                    detail: format!("; see {}", self.dir.join("logs").display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the status until `pred` holds; fails early when a child exits.
    async fn wait_status(
        &mut self,
        what: &str,
        deadline: Instant,
        pred: impl Fn(&StatusReply) -> bool,
    ) -> Result<StatusReply> {
        let timeout = self.opts.ready_timeout;
        let logs = self.dir.join("logs");
        let timed_out = |last| ClusterError::NotReady {
            what: what.to_string(),
            timeout,
            detail: format!("; last status:\n{last}\nlogs are in {}", logs.display()),
        };
        let procs = &mut self.procs;
        let check = || fail_on_exit(procs);
        poll_status(
            self.nc.as_ref(),
            &self.subjects,
            deadline,
            pred,
            check,
            timed_out,
        )
        .await
    }
}

/// What [`preflight`] found.
struct Preflight {
    nats_bin: PathBuf,
    /// The services file, absolute.
    services: PathBuf,
}

/// Everything that can be checked before a process starts: binaries, nats-server, the services
/// file, free ports.
fn preflight(opts: &ClusterOptions, bin_dir: &Path) -> Result<Preflight> {
    for name in [BRAIN_BIN, WORKER_BIN, PROXY_BIN, MONITOR_BIN] {
        if !bin_dir.join(name).is_file() {
            return Err(ClusterError::MissingBinary {
                name: name.into(),
                dir: bin_dir.to_path_buf(),
            });
        }
    }
    if !bin_dir.join(DEMO_BIN).is_file() {
        warn!(dir = %bin_dir.display(), "demo-web is not built; services that run it will fail to start");
    }
    let nats_bin = nats_server_bin();
    if !nats_bin.is_file() {
        return Err(ClusterError::NoNatsServer(nats_bin));
    }
    let services = resolve_path(&opts.services);
    if !services.is_file() {
        return Err(ClusterError::NoServicesFile(services));
    }
    let services = std::path::absolute(&services).unwrap_or(services);
    let nats_addr = SocketAddr::from(([127, 0, 0, 1], opts.nats_port));
    for (what, addr) in [
        ("NATS", nats_addr),
        ("proxy", opts.proxy_listen),
        ("monitor HTTP", opts.monitor_http),
    ] {
        if TcpListener::bind(addr).is_err() {
            return Err(ClusterError::PortInUse { what, addr });
        }
    }
    for addr in super::metrics::fixed_addrs(opts) {
        if TcpListener::bind(addr).is_err() {
            return Err(ClusterError::PortInUse {
                what: "metrics",
                addr,
            });
        }
    }
    Ok(Preflight { nats_bin, services })
}

/// Creates `<dir>/logs` and takes `<dir>/acsctl.lock`; returns the absolute dir and the lock.
fn lock_dir(dir: &Path) -> Result<(PathBuf, File)> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    fs::create_dir_all(dir.join("logs")).map_err(io(format!("create {}", dir.display())))?;
    let lock_path = dir.join("acsctl.lock");
    let lock = File::create(&lock_path).map_err(io(format!("create {}", lock_path.display())))?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(ClusterError::DirInUse(dir));
    }
    Ok((dir, lock))
}

/// `PATH` for the children: the bin dir first, so the worker finds `demo-web`.
fn path_with(bin_dir: &Path) -> std::ffi::OsString {
    let mut path_env = std::ffi::OsString::from(bin_dir.as_os_str());
    if let Some(p) = std::env::var_os("PATH") {
        path_env.push(":");
        path_env.push(p);
    }
    path_env
}

/// The cluster's identities (`<dir>/auth`, made on first start and kept after): the brain,
/// operator, viewer, monitor, `w1..wN` and the proxy `p1`, each with its own nkey and
/// least-privilege permissions (`acsctl auth`, docs/SECURITY.md).
fn init_auth(opts: &ClusterOptions, dir: &Path, subjects: &Subjects) -> Result<AuthDir> {
    let auth = AuthDir::new(dir.join("auth"), subjects.clone());
    let workers = (1..=opts.workers)
        .map(|i| WorkerId::new(format!("w{i}")).expect("w<N> is a valid id"))
        .chain(opts.extra_worker_ids.iter().cloned())
        .collect();
    auth.init(&InitOptions {
        workers,
        proxies: vec![proxy_id()],
        ..InitOptions::default()
    })
    .map_err(|e| ClusterError::Io {
        what: format!("credentials in {}", dir.join("auth").display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(auth)
}

fn proxy_id() -> ProxyId {
    ProxyId::new("p1").expect("p1 is a valid id")
}

/// `<dir>/nats.conf`: the user's nats-server config (`--nats-config`, default
/// `nats/local.conf`) followed by `include "auth/auth.conf"`. nats-server resolves `include`
/// relative to the including file, so the generated file sits beside the auth folder.
fn write_nats_conf(opts: &ClusterOptions, dir: &Path) -> Result<PathBuf> {
    let mut text =
        String::from("# Generated by acsctl up on every start; edit --nats-config instead.\n");
    if let Some(conf) = &opts.nats_config {
        let conf = resolve_path(conf);
        let user = fs::read_to_string(&conf).map_err(io(format!("read {}", conf.display())))?;
        text.push_str(&format!("# --- from {} ---\n{user}\n", conf.display()));
    }
    text.push_str(
        "# --- credentials and permissions (acsctl auth) ---\ninclude \"auth/auth.conf\"\n",
    );
    let path = dir.join("nats.conf");
    fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
    Ok(path)
}

/// JetStream on, stored in `<dir>/jetstream` (beside the generated config), whatever the
/// user's config says: the brains' lease and pins live in its KV.
fn nats_args(opts: &ClusterOptions, conf: &Path) -> Vec<String> {
    let store = conf.parent().unwrap_or(Path::new(".")).join("jetstream");
    let mut args = vec![
        "-c".to_string(),
        conf.display().to_string(),
        "-js".into(),
        "-sd".into(),
        store.display().to_string(),
    ];
    args.extend([
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        opts.nats_port.to_string(),
    ]);
    args
}

/// The brain keeps its lease and pins in the server's JetStream KV (bucket `acs_brain`).
fn brain_args(opts: &ClusterOptions, services: &Path) -> Vec<String> {
    vec![
        "--services".into(),
        services.display().to_string(),
        "--nats".into(),
        opts.nats_url(),
        "--prefix".into(),
        opts.prefix.clone(),
    ]
}

/// The workers may run the cluster's `demo-web` and nothing else (`--allow-command`).
fn worker_args(opts: &ClusterOptions, id: &str, state_dir: &Path, bin_dir: &Path) -> Vec<String> {
    vec![
        "--id".into(),
        id.into(),
        "--max-replicas".into(),
        opts.max_replicas.to_string(),
        "--runtime".into(),
        "process".into(),
        "--nats".into(),
        opts.nats_url(),
        "--nats-insecure".into(),
        "--prefix".into(),
        opts.prefix.clone(),
        "--interval".into(),
        format!("{}ms", opts.worker_interval_ms),
        "--advertise-host".into(),
        "127.0.0.1".into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        "--allow-command".into(),
        // Absolute, as the worker wants it (a relative --bin-dir would be refused).
        std::path::absolute(bin_dir.join(DEMO_BIN))
            .unwrap_or_else(|_| bin_dir.join(DEMO_BIN))
            .display()
            .to_string(),
    ]
}

/// The monitor keeps its history in the server's JetStream (stream `ACS_METRICS`).
fn monitor_args(opts: &ClusterOptions, token_file: &Path) -> Vec<String> {
    let mut args = vec![
        "--nats".into(),
        opts.nats_url(),
        "--prefix".into(),
        opts.prefix.clone(),
        "--http".into(),
        opts.monitor_http.to_string(),
        "--token-file".into(),
        token_file.display().to_string(),
    ];
    // The repository's alarm rules, when acsctl runs in (or under) a checkout.
    let alarms = super::resolve_path(Path::new("config/alarms.local.toml"));
    if alarms.is_file() {
        args.extend(["--alarms".into(), alarms.display().to_string()]);
    }
    args
}

/// `<dir>/monitor.token`: the REST API's bearer token, 32 random bytes in hex, mode 0600, made
/// on first start and kept after.
pub(super) fn monitor_token(dir: &Path) -> Result<PathBuf> {
    token_file(&dir.join("monitor.token"))
}

/// A bearer token file (32 random bytes in hex, mode 0600), made when missing and kept after.
pub(super) fn token_file(path: &Path) -> Result<PathBuf> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.to_path_buf();
    if path.is_file() {
        return Ok(path);
    }
    let mut raw = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(io("read /dev/urandom"))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{hex}\n").as_bytes()))
        .map_err(io(format!("write {}", path.display())))?;
    Ok(path)
}

fn proxy_args(opts: &ClusterOptions) -> Vec<String> {
    vec![
        "--listen".into(),
        opts.proxy_listen.to_string(),
        "--nats".into(),
        opts.nats_url(),
        "--prefix".into(),
        opts.prefix.clone(),
        "--id".into(),
        "p1".into(),
    ]
}
