//! [`LocalCluster::start`]: preflight checks, then nats-server → acs-monitor → vim-brain →
//! workers → proxy, each waited for.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use acs_auth::{AuthDir, InitOptions, Role as AuthRole};
use acs_events::{ProxyId, StatsReply, StatusReply, Subjects, WorkerHealth, WorkerId};
use acs_testkit::{bin_dir as default_bin_dir, nats_server_bin};
use tracing::{info, warn};

use super::args::{
    brain_args, monitor_args, monitor_token, nats_args, proxy_args, token_file, worker_args,
    write_nats_conf,
};
use super::process::{fail_on_exit, Role, Spawner, Spec};
use super::{
    connect, io, poll_status, resolve_path, ClusterError, ClusterOptions, LocalCluster, Result,
    BRAIN_BIN, DEMO_BIN, MONITOR_BIN, PROXY_BIN, WORKER_BIN,
};

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
        let nc = connect(&self.nats_options(&AuthRole::Operator)).await?;
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
    // Released when the file is closed, so also when this process dies.
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(ClusterError::DirInUse(dir)),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(io(format!("lock {}", lock_path.display()))(e))
        }
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
