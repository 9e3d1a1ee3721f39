//! [`LocalCluster`]: a whole cluster on this machine as child processes, for `acsctl up`, demos
//! and end-to-end tests.
//!
//! Start order: nats-server → vim-brain → workers `w1..wN` → proxy, each waited for. Stop order:
//! proxy → brain → workers (SIGTERM; they stop their replicas) → nats-server, each waited for,
//! SIGKILL after a grace period. Every child runs in its own process group (so a terminal's
//! Ctrl-C reaches only `acsctl`, which then stops them in order) and gets SIGTERM if the
//! launching process dies (`PR_SET_PDEATHSIG`, armed from a spawner thread that lives as long as
//! the cluster). Logs go to `<dir>/logs/<name>.log`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use acs_events::{StatusReply, Subjects, WorkerHealth};
use tracing::{info, warn};

use crate::client;

/// Binaries `LocalCluster` starts from the bin dir.
pub const BRAIN_BIN: &str = "vim-brain";
pub const WORKER_BIN: &str = "vmm-worker";
pub const PROXY_BIN: &str = "acs-proxy";
pub const DEMO_BIN: &str = "demo-web";

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
}

impl ClusterOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            workers: 2,
            max_replicas: 4,
            services: PathBuf::from("config/services.local.toml"),
            proxy_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            nats_port: 4222,
            nats_config: None,
            dir: dir.into(),
            bin_dir: None,
            prefix: "acs".into(),
            worker_interval_ms: 1000,
            ready_timeout: Duration::from_secs(60),
            worker_stop_timeout: Duration::from_secs(20),
            env: BTreeMap::new(),
            extra_args: BTreeMap::new(),
        }
    }

    /// Defaults with a free NATS port and a free proxy port: for tests.
    pub fn with_free_ports(dir: impl Into<PathBuf>) -> Self {
        let mut o = Self::new(dir);
        o.nats_port = free_port();
        o.proxy_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        o
    }

    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nats_port)
    }
}

/// A port that was free a moment ago on 127.0.0.1 (outside the ephemeral range; see
/// `acs_testkit::free_port`).
pub fn free_port() -> u16 {
    acs_testkit::free_port()
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Nats,
    Brain,
    Worker,
    Proxy,
}

/// How to (re)start one child.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    role: Role,
    program: PathBuf,
    args: Vec<String>,
}

struct Proc {
    spec: Spec,
    child: Child,
    log: PathBuf,
    /// Exit already seen (and reported by `check_children`).
    exited: Option<ExitStatus>,
}

/// A child that exited, with the end of its log.
#[derive(Debug, Clone)]
pub struct ChildExit {
    pub name: String,
    pub status: String,
    pub log: PathBuf,
    pub tail: String,
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited ({}); last lines of {}:",
            self.name,
            self.status,
            self.log.display()
        )?;
        for line in self.tail.lines() {
            write!(f, "\n  | {line}")?;
        }
        Ok(())
    }
}

fn describe_status(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

/// The last `lines` lines of a file (reads at most the last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return "(no log)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        "(log is empty)".into()
    } else {
        tail.join("\n")
    }
}

/// Spawns children from one long-lived thread, so that `PR_SET_PDEATHSIG` (which fires when
/// the *thread* that forked dies) fires exactly when the cluster or the whole process goes away.
struct Spawner {
    tx: Option<std_mpsc::Sender<(Command, std_mpsc::Sender<std::io::Result<Child>>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    fn new() -> Self {
        let (tx, rx) = std_mpsc::channel::<(Command, std_mpsc::Sender<std::io::Result<Child>>)>();
        let thread = std::thread::Builder::new()
            .name("acs-cluster-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn thread");
        Self {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (rtx, rrx) = std_mpsc::channel();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("cluster stopped"))?;
        tx.send((cmd, rtx))
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
        rrx.recv()
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running local cluster. Dropping it stops everything (blocking, bounded by the grace
/// periods).
pub struct LocalCluster {
    opts: ClusterOptions,
    subjects: Subjects,
    bin_dir: PathBuf,
    dir: PathBuf,
    path_env: std::ffi::OsString,
    procs: Vec<Proc>,
    nc: Option<async_nats::Client>,
    spawner: Spawner,
    stopped: bool,
    /// `flock`ed `<dir>/acsctl.lock`: two clusters must not share worker state dirs.
    _lock: File,
}

impl LocalCluster {
    /// Starts nats-server, the brain, the workers and the proxy, and waits until the brain
    /// reports every worker up and the proxy accepts connections. On error, whatever was
    /// started is stopped again.
    pub async fn start(opts: ClusterOptions) -> Result<LocalCluster> {
        let subjects = Subjects::new(opts.prefix.clone()).map_err(|e| ClusterError::Io {
            what: "prefix".into(),
            source: std::io::Error::other(e),
        })?;
        let bin_dir = opts.bin_dir.clone().unwrap_or_else(default_bin_dir);
        for name in [BRAIN_BIN, WORKER_BIN, PROXY_BIN] {
            if !bin_dir.join(name).is_file() {
                return Err(ClusterError::MissingBinary {
                    name: name.into(),
                    dir: bin_dir,
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
        for (what, addr) in [("NATS", nats_addr), ("proxy", opts.proxy_listen)] {
            if TcpListener::bind(addr).is_err() {
                return Err(ClusterError::PortInUse { what, addr });
            }
        }

        let dir = std::path::absolute(&opts.dir).unwrap_or_else(|_| opts.dir.clone());
        fs::create_dir_all(dir.join("logs")).map_err(io(format!("create {}", dir.display())))?;

        let lock_path = dir.join("acsctl.lock");
        let lock =
            File::create(&lock_path).map_err(io(format!("create {}", lock_path.display())))?;
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(ClusterError::DirInUse(dir));
        }

        let mut path_env = std::ffi::OsString::from(bin_dir.as_os_str());
        if let Some(p) = std::env::var_os("PATH") {
            path_env.push(":");
            path_env.push(p);
        }

        let mut cluster = LocalCluster {
            subjects,
            bin_dir: bin_dir.clone(),
            dir: dir.clone(),
            path_env,
            procs: Vec::new(),
            nc: None,
            spawner: Spawner::new(),
            stopped: false,
            _lock: lock,
            opts,
        };
        let deadline = Instant::now() + cluster.opts.ready_timeout;
        let nats_url = cluster.nats_url();
        let prefix = cluster.opts.prefix.clone();

        // 0. The services file must parse before anything starts.
        cluster.check_services(&services).await?;

        // 1. nats-server.
        let mut nats_args = Vec::new();
        if let Some(conf) = &cluster.opts.nats_config {
            let conf = resolve_path(conf);
            nats_args.extend(["-c".to_string(), conf.display().to_string()]);
        }
        nats_args.extend([
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            cluster.opts.nats_port.to_string(),
        ]);
        cluster.spawn(Spec {
            name: "nats-server".into(),
            role: Role::Nats,
            program: nats_bin,
            args: nats_args,
        })?;
        cluster
            .wait_port("nats-server", nats_addr, deadline)
            .await?;
        let nc = client::connect(&nats_url, Duration::from_secs(5))
            .await
            .map_err(|e| ClusterError::Status(e.to_string()))?;
        cluster.nc = Some(nc);

        // 2. vim-brain.
        let brain_args = vec![
            "--services".into(),
            services.display().to_string(),
            "--nats".into(),
            nats_url.clone(),
            "--prefix".into(),
            prefix.clone(),
            "--state-file".into(),
            dir.join("brain-state.json").display().to_string(),
        ];
        cluster.spawn(Spec {
            name: "vim-brain".into(),
            role: Role::Brain,
            program: bin_dir.join(BRAIN_BIN),
            args: brain_args,
        })?;
        cluster
            .wait_status("vim-brain answering on status", deadline, |_| true)
            .await?;

        // 3. workers.
        for i in 1..=cluster.opts.workers {
            let id = format!("w{i}");
            let state = dir.join("workers").join(&id);
            fs::create_dir_all(&state).map_err(io(format!("create {}", state.display())))?;
            let args = vec![
                "--id".into(),
                id.clone(),
                "--max-replicas".into(),
                cluster.opts.max_replicas.to_string(),
                "--runtime".into(),
                "process".into(),
                "--nats".into(),
                nats_url.clone(),
                "--prefix".into(),
                prefix.clone(),
                "--interval-ms".into(),
                cluster.opts.worker_interval_ms.to_string(),
                "--advertise-host".into(),
                "127.0.0.1".into(),
                "--state-dir".into(),
                state.display().to_string(),
            ];
            cluster.spawn(Spec {
                name: id,
                role: Role::Worker,
                program: bin_dir.join(WORKER_BIN),
                args,
            })?;
        }
        let n = cluster.opts.workers as usize;
        let ids: Vec<String> = (1..=n).map(|i| format!("w{i}")).collect();
        cluster
            .wait_status(&format!("{n} worker(s) up"), deadline, |s| {
                ids.iter().all(|id| {
                    s.workers
                        .iter()
                        .any(|w| w.id.as_str() == id && w.health == WorkerHealth::Up)
                })
            })
            .await?;

        // 4. proxy.
        let proxy_args = vec![
            "--listen".into(),
            cluster.opts.proxy_listen.to_string(),
            "--nats".into(),
            nats_url.clone(),
            "--prefix".into(),
            prefix,
            "--id".into(),
            "p1".into(),
        ];
        cluster.spawn(Spec {
            name: "proxy".into(),
            role: Role::Proxy,
            program: bin_dir.join(PROXY_BIN),
            args: proxy_args,
        })?;
        let proxy_addr = cluster.opts.proxy_listen;
        cluster.wait_port("proxy", proxy_addr, deadline).await?;
        info!(nats = %nats_url, proxy = %proxy_addr, dir = %dir.display(), "local cluster ready");
        Ok(cluster)
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

    fn spawn(&mut self, spec: Spec) -> Result<()> {
        let log = self.dir.join("logs").join(format!("{}.log", spec.name));
        let file = File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = file.try_clone().map_err(io("clone log file"))?;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .args(
                self.opts
                    .extra_args
                    .get(
                        spec.program
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or(""),
                    )
                    .into_iter()
                    .flatten(),
            )
            .env("PATH", &self.path_env)
            // Logs go to files: no colour codes in them.
            .env("NO_COLOR", "1")
            .envs(&self.opts.env)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                }
                Ok(())
            });
        }
        let child = self.spawner.spawn(cmd).map_err(io(format!(
            "start {} ({})",
            spec.name,
            spec.program.display()
        )))?;
        info!(name = %spec.name, pid = child.id(), log = %log.display(), "started");
        self.procs.push(Proc {
            spec,
            child,
            log,
            exited: None,
        });
        Ok(())
    }

    /// Fails with the child's log tail if one of the children has exited.
    fn fail_on_exit(&mut self) -> Result<()> {
        match self.check_children().into_iter().next() {
            Some(exit) => Err(ClusterError::ChildExited(exit)),
            None => Ok(()),
        }
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

    async fn wait_status(
        &mut self,
        what: &str,
        deadline: Instant,
        pred: impl Fn(&StatusReply) -> bool,
    ) -> Result<StatusReply> {
        loop {
            self.fail_on_exit()?;
            let last = match self.status().await {
                Ok(s) if pred(&s) => return Ok(s),
                Ok(s) => crate::status::render(&s),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: what.to_string(),
                    timeout: self.opts.ready_timeout,
                    detail: format!(
                        "; last status:\n{last}\nlogs are in {}",
                        self.dir.join("logs").display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn nats_url(&self) -> String {
        self.opts.nats_url()
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
        self.procs
            .iter()
            .find(|p| p.spec.name == name && p.exited.is_none())
            .map(|p| p.child.id())
    }

    /// A NATS client connected to the cluster's server.
    pub fn client(&self) -> Option<&async_nats::Client> {
        self.nc.as_ref()
    }

    /// Asks the brain for its status.
    pub async fn status(&self) -> Result<StatusReply> {
        let nc = self
            .nc
            .as_ref()
            .ok_or_else(|| ClusterError::Status("not connected".into()))?;
        client::status(nc, &self.subjects, Duration::from_secs(2))
            .await
            .map_err(|e| ClusterError::Status(e.to_string()))
    }

    /// Polls the status until `pred` holds or `timeout` passes; the error carries the last status.
    pub async fn wait_for_status(
        &self,
        timeout: Duration,
        pred: impl Fn(&StatusReply) -> bool,
    ) -> Result<StatusReply> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.status().await {
                Ok(s) if pred(&s) => return Ok(s),
                Ok(s) => crate::status::render(&s),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: "status condition".into(),
                    timeout,
                    detail: format!("; last status:\n{last}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Children that exited since the last call, each with its log tail.
    pub fn check_children(&mut self) -> Vec<ChildExit> {
        let mut out = Vec::new();
        for p in &mut self.procs {
            if p.exited.is_some() {
                continue;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                p.exited = Some(status);
                out.push(ChildExit {
                    name: p.spec.name.clone(),
                    status: describe_status(status),
                    log: p.log.clone(),
                    tail: log_tail(&p.log, 20),
                });
            }
        }
        out
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`) to a child: for failover tests and demos.
    pub fn signal(&mut self, name: &str, signal: i32) -> Result<()> {
        let p = self
            .procs
            .iter()
            .find(|p| p.spec.name == name && p.exited.is_none())
            .ok_or_else(|| ClusterError::UnknownProcess(name.to_string()))?;
        // SAFETY: plain syscall on a pid we own (not yet reaped, so it cannot be reused).
        let rc = unsafe { libc::kill(p.child.id() as libc::pid_t, signal) };
        if rc != 0 {
            return Err(ClusterError::Io {
                what: format!("signal {signal} to {name}"),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Stops one child (SIGTERM, then SIGKILL after `grace`) and waits for it.
    pub fn stop_process(&mut self, name: &str, grace: Duration) -> Result<()> {
        let idx = self
            .procs
            .iter()
            .position(|p| p.spec.name == name && p.exited.is_none())
            .ok_or_else(|| ClusterError::UnknownProcess(name.to_string()))?;
        terminate(std::slice::from_mut(&mut self.procs[idx]), grace);
        Ok(())
    }

    /// Starts a child again with the same arguments (its log is overwritten), e.g. a worker
    /// after [`signal`](Self::signal) killed it. Does not wait for readiness.
    pub fn restart_process(&mut self, name: &str) -> Result<()> {
        let idx = self
            .procs
            .iter()
            .rposition(|p| p.spec.name == name)
            .ok_or_else(|| ClusterError::UnknownProcess(name.to_string()))?;
        if self.procs[idx].exited.is_none() {
            terminate(
                std::slice::from_mut(&mut self.procs[idx]),
                Duration::from_secs(10),
            );
        }
        let spec = self.procs.remove(idx).spec;
        self.spawn(spec)
    }

    /// Stops everything in order (proxy, brain, workers, nats-server) and waits. Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.nc = None;
        let worker_grace = self.opts.worker_stop_timeout;
        for (role, grace) in [
            (Role::Proxy, Duration::from_secs(5)),
            (Role::Brain, Duration::from_secs(5)),
            (Role::Worker, worker_grace),
            (Role::Nats, Duration::from_secs(5)),
        ] {
            let mut group: Vec<&mut Proc> = self
                .procs
                .iter_mut()
                .filter(|p| p.spec.role == role)
                .collect();
            terminate_refs(&mut group, grace);
        }
        info!("local cluster stopped");
    }
}

fn terminate(procs: &mut [Proc], grace: Duration) {
    let mut refs: Vec<&mut Proc> = procs.iter_mut().collect();
    terminate_refs(&mut refs, grace);
}

/// SIGTERM to every live process of the group, wait up to `grace`, SIGKILL the rest, reap all.
fn terminate_refs(procs: &mut [&mut Proc], grace: Duration) {
    for p in procs.iter_mut() {
        if p.exited.is_none() {
            if let Ok(Some(s)) = p.child.try_wait() {
                p.exited = Some(s);
                continue;
            }
            // SAFETY: plain syscall on a child we have not reaped.
            unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        let mut alive = false;
        for p in procs.iter_mut() {
            if p.exited.is_none() {
                match p.child.try_wait() {
                    Ok(Some(s)) => p.exited = Some(s),
                    _ => alive = true,
                }
            }
        }
        if !alive {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in procs.iter_mut() {
        if p.exited.is_none() {
            warn!(name = %p.spec.name, "did not stop in time; killing");
            let _ = p.child.kill();
            if let Ok(s) = p.child.wait() {
                p.exited = Some(s);
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
