//! End to end on the real Docker engine: nats-server, vim-brain and the Pingora proxy from
//! [`LocalCluster`], two `vmm-worker --runtime docker` processes, and `web` replicas that are
//! containers of a throwaway image built here `FROM scratch` from the workspace's `demo-web`
//! (nothing is pulled).
//!
//! - scale-out: real containers with the spec's CPU/memory limits, each serving through the proxy;
//! - `docker kill`: the replica is replaced and routed around, no GET fails meanwhile;
//! - worker `kill -9` + restart: its containers are adopted, nothing is started twice;
//! - scale-in: drain, then stop, then the containers are removed.
//!
//! Every run uses its own worker ids (`<run>-w1`, `<run>-w2`; containers are labelled
//! `acs.worker=<run>-wN` and named `acs-<run>-wN-...`), image tag and network, so parallel runs
//! and leftovers of killed runs do not interfere; [`Rig`]'s guards remove the containers, the
//! network and the image even when a test fails. Test names contain `docker`, so
//! `.config/nextest.toml` runs them one at a time. Without a Docker engine (`docker info`
//! fails) they print why and pass. The logs of a failed run (or of every run with
//! `ACS_E2E_KEEP_LOGS=1`) are kept in `$TMPDIR/acs-e2e-logs-<run>`. Lines starting with
//! `timing:` report how long containers took from creation to serving through the proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acs_events::{
    decode, Decision, DecisionAction, ReplicaEvent, ReplicaState, ScaleRequest, ServiceName,
    ServiceStatus, StatusReply, WorkerHealth,
};
use acs_testkit::docker::{
    docker, docker_available, sweep_stale, unique_id, ContainerGuard, NetworkGuard, TestImage,
};
use acs_testkit::TempDir;
use acsctl::cluster::{log_tail, ClusterOptions, LocalCluster};
use acsctl::load::{self, LoadOptions, LoadReport};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const CPUS: f64 = 0.5;
const MEMORY_MB: u64 = 64;

/// `web` has no scaling targets: it stays at `min_replicas` unless scaled by hand, so every
/// count below is exact. Short drain and stop windows keep each test within two minutes.
fn services_toml(image: &str) -> String {
    format!(
        r#"
[[service]]
name = "web"
image = "{image}"
port = 8000
health_path = "/healthz"
env = {{ WORK_MS = "2", RUST_LOG = "warn", DRAIN_TIMEOUT_S = "5" }}
cpus = {CPUS}
memory_mb = {MEMORY_MB}
route = {{ path_prefix = "/" }}
selection = "round_robin"

[service.policy]
min_replicas = 1
max_replicas = 6
scale_up_window_s = 0
scale_down_window_s = 3
max_step_up = 6
max_step_down = 6
drain_timeout_s = 8
stop_grace_s = 3
"#
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How workers advertise their containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    /// `--advertise host-port` on Docker's default bridge (the proxy reaches 127.0.0.1:<port>).
    HostPort,
    /// `--advertise container-ip --docker-network <run network>`.
    ContainerIp,
}

// ---------------------------------------------------------------------------------------------
// Worker processes (own ids per run, so not LocalCluster's fixed `w1..wN`)
// ---------------------------------------------------------------------------------------------

/// One `vmm-worker --runtime docker` child process; SIGTERM (then SIGKILL) on drop.
struct WorkerProc {
    id: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    /// Starts so far (the log of start `n` is `<id>.<n>.log`).
    starts: u32,
}

impl WorkerProc {
    fn spawn(id: String, program: PathBuf, args: Vec<String>, log_dir: &Path) -> WorkerProc {
        let mut w = WorkerProc {
            log: log_dir.join(format!("{id}.1.log")),
            id,
            program,
            args,
            child: None,
            starts: 0,
        };
        w.start();
        w
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.id);
        self.starts += 1;
        self.log = self
            .log
            .with_file_name(format!("{}.{}.log", self.id, self.starts));
        let out = File::create(&self.log).expect("create worker log");
        let err = out.try_clone().expect("clone log file");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // If this test process dies (e.g. killed on timeout), the worker gets SIGTERM and stops
        // its containers. Spawned from the test's own thread, which lives as long as the test.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("start vmm-worker"));
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("worker is running").id()
    }

    /// `kill -9`: the worker dies at once and leaves its containers running.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: plain syscall on a child we have not reaped.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {grace:?}; killing it", self.id);
        let _ = c.kill();
        let _ = c.wait();
    }

    /// `Err(exit status and log tail)` when the process has exited.
    fn check(&mut self) -> Result<(), String> {
        let Some(c) = self.child.as_mut() else {
            return Ok(());
        };
        match c.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Err(format!(
                    "worker {} exited ({status}); last lines of {}:\n{}",
                    self.id,
                    self.log.display(),
                    log_tail(&self.log, 30)
                ))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

// ---------------------------------------------------------------------------------------------
// The rig: cluster + workers + guards
// ---------------------------------------------------------------------------------------------

/// One container as `docker inspect` shows it.
#[derive(Debug, Clone)]
struct Ctr {
    id: String,
    name: String,
    replica: String,
    worker: String,
    service: String,
    nano_cpus: i64,
    memory: i64,
    running: bool,
    /// `acs.started_ms`: when the worker began creating it.
    created_ms: u64,
    /// `State.StartedAt`: when Docker started it.
    started_ms: Option<u64>,
}

/// Everything a test runs. Dropping it stops the cluster, then the workers (which stop their
/// containers), then removes whatever containers, network and image of this run are left.
struct Rig {
    run: String,
    cluster: LocalCluster,
    workers: Vec<WorkerProc>,
    nc: async_nats::Client,
    // Drop order after `Drop::drop`: fields in declaration order.
    containers: ContainerGuard,
    _network: Option<NetworkGuard>,
    _image: TestImage,
    _tmp: TempDir,
}

struct RigOptions {
    net: Net,
    /// Extra vim-brain flags.
    brain_args: Vec<String>,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            net: Net::HostPort,
            brain_args: Vec::new(),
        }
    }
}

/// `None` (and a loud message) when no Docker engine answers.
fn docker_or_skip(test: &str) -> Option<String> {
    match docker_available() {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!();
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            eprintln!("!!! SKIPPING {test}: no Docker engine answers `docker info`:");
            eprintln!("!!!   {e}");
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            None
        }
    }
}

impl Rig {
    async fn start(tag: &str, o: RigOptions) -> Option<Rig> {
        let test = std::thread::current().name().unwrap_or(tag).to_string();
        let version = docker_or_skip(&test)?;
        sweep_stale();
        let run = unique_id(tag);
        eprintln!("docker engine {version}; run id {run}");
        let tmp = TempDir::new(&run);
        let worker_ids: Vec<String> = (1..=2).map(|i| format!("{run}-w{i}")).collect();

        // Guards first: they must exist before anything they clean up is created.
        let mut containers = ContainerGuard::new();
        for w in &worker_ids {
            containers.label("acs.worker", w);
        }
        containers.name_prefix(&format!("acs-{run}-"));
        let image =
            TestImage::from_workspace_bin("demo-web", &format!("acs-e2e/demo-web:{run}"), 8000)
                .expect("build the test image");
        let network = match o.net {
            Net::HostPort => None,
            Net::ContainerIp => {
                Some(NetworkGuard::create(&format!("acs-e2e-{run}")).expect("create network"))
            }
        };

        let services = tmp.path().join("services.toml");
        std::fs::write(&services, services_toml(image.tag())).unwrap();
        let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
        opts.services = services;
        // Workers are started below with this run's ids.
        opts.workers = 0;
        opts.ready_timeout = Duration::from_secs(90);
        if !o.brain_args.is_empty() {
            opts.extra_args
                .insert("vim-brain".into(), o.brain_args.clone());
        }
        let cluster = LocalCluster::start(opts)
            .await
            .expect("local cluster starts");
        let nc = async_nats::connect(cluster.nats_url()).await.unwrap();

        let log_dir = cluster.dir().join("logs");
        let program = cluster.bin_dir().join("vmm-worker");
        let workers = worker_ids
            .iter()
            .map(|id| {
                let state = cluster.dir().join("workers").join(id);
                std::fs::create_dir_all(&state).unwrap();
                let mut args: Vec<String> = [
                    "--id",
                    id,
                    "--runtime",
                    "docker",
                    "--max-replicas",
                    "4",
                    "--nats",
                    &cluster.nats_url(),
                    "--interval-ms",
                    "500",
                    "--advertise-host",
                    "127.0.0.1",
                    "--state-dir",
                    state.to_str().unwrap(),
                    "--shutdown-grace-ms",
                    "3000",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if let Some(n) = &network {
                    args.extend(
                        ["--advertise", "container-ip", "--docker-network", n.name()]
                            .map(String::from),
                    );
                }
                WorkerProc::spawn(id.clone(), program.clone(), args, &log_dir)
            })
            .collect();

        let mut rig = Rig {
            run,
            cluster,
            workers,
            nc,
            containers,
            _network: network,
            _image: image,
            _tmp: tmp,
        };
        let ids = worker_ids.clone();
        rig.wait("both docker workers up", Duration::from_secs(60), |s| {
            ids.iter().all(|id| {
                s.workers
                    .iter()
                    .any(|w| w.id.as_str() == id && w.health == WorkerHealth::Up)
            })
        })
        .await;
        rig.wait("web at min_replicas (1)", Duration::from_secs(60), |s| {
            web(s).running == 1 && web(s).backends.len() == 1
        })
        .await;
        Some(rig)
    }

    fn worker_id(&self, i: usize) -> &str {
        &self.workers[i].id
    }

    fn proxy(&self) -> SocketAddr {
        self.cluster.proxy_addr()
    }

    /// Panics with the log tail when a worker or a cluster process died.
    fn check_processes(&mut self) {
        for w in &mut self.workers {
            if let Err(e) = w.check() {
                panic!("{e}");
            }
        }
        let exited = self.cluster.check_children();
        assert!(exited.is_empty(), "a cluster process died: {exited:#?}");
    }

    /// Polls the brain's status until `pred` holds; panics after `timeout` with the last one.
    async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&StatusReply) -> bool,
    ) -> StatusReply {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_processes();
            let last = match self.cluster.status().await {
                Ok(s) if pred(&s) => return s,
                Ok(s) => acsctl::status::render(&s),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "{what}: not within {timeout:?}; last status:\n{last}\nlogs: {}",
                    self.cluster.dir().join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn scale(&self, replicas: i64) {
        let req = ScaleRequest {
            v: 1,
            service: ServiceName::new("web").unwrap(),
            replicas: Some(replicas),
            auto: false,
        };
        let reply = acsctl::client::scale(
            &self.nc,
            self.cluster.subjects(),
            &req,
            Duration::from_secs(10),
        )
        .await
        .expect("scale request answered");
        assert!(reply.ok, "{reply:?}");
    }

    /// This run's containers (running or not), from `docker inspect`.
    async fn containers(&self) -> Vec<Ctr> {
        // The CLI blocks: let the runtime move other tasks (the load) off this thread meanwhile.
        let guard_ids = tokio::task::block_in_place(|| self.containers.ids()).expect("docker ps");
        if guard_ids.is_empty() {
            return Vec::new();
        }
        tokio::task::block_in_place(|| inspect(&guard_ids))
    }

    /// Ids of the containers labelled `acs.worker=<worker>` (`docker ps -a`).
    fn container_ids_of(&self, worker: &str) -> BTreeSet<String> {
        tokio::task::block_in_place(|| ContainerGuard::ids_with_label("acs.worker", worker))
            .expect("docker ps")
            .into_iter()
            .collect()
    }

    /// Collects decisions about `web` from now on.
    async fn decisions(&self) -> Arc<Mutex<Vec<Decision>>> {
        let out: Arc<Mutex<Vec<Decision>>> = Arc::default();
        let subject = self
            .cluster
            .subjects()
            .decisions(&ServiceName::new("web").unwrap());
        let mut sub = self.nc.subscribe(subject).await.unwrap();
        self.nc.flush().await.unwrap();
        let o = out.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Ok(d) = decode::<Decision>(&m.payload) {
                    o.lock().unwrap().push(d);
                }
            }
        });
        out
    }

    /// Collects replica events of every worker from now on.
    async fn replica_events(&self) -> Arc<Mutex<Vec<ReplicaEvent>>> {
        let out: Arc<Mutex<Vec<ReplicaEvent>>> = Arc::default();
        let mut sub = self
            .nc
            .subscribe(self.cluster.subjects().replica_events_all())
            .await
            .unwrap();
        self.nc.flush().await.unwrap();
        let o = out.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Ok(e) = decode::<ReplicaEvent>(&m.payload) {
                    o.lock().unwrap().push(e);
                }
            }
        });
        out
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Brain first, so nothing asks the workers for new containers while they stop theirs.
        self.cluster.stop();
        for w in &mut self.workers {
            w.stop(Duration::from_secs(15));
        }
        if std::thread::panicking() || std::env::var_os("ACS_E2E_KEEP_LOGS").is_some() {
            // The temp dir goes with the rig: keep the logs of a failed run.
            let keep = std::env::temp_dir().join(format!("acs-e2e-logs-{}", self.run));
            let _ = std::fs::create_dir_all(&keep);
            if let Ok(rd) = std::fs::read_dir(self.cluster.dir().join("logs")) {
                for e in rd.flatten() {
                    let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                }
            }
            eprintln!("logs of run {} kept in {}", self.run, keep.display());
        }
        let left = self.containers.remove_all();
        if !left.is_empty() && !std::thread::panicking() {
            eprintln!(
                "note: {} container(s) of run {} were still there after the workers stopped",
                left.len(),
                self.run
            );
        }
        // Then the network and the image (fields).
    }
}

fn inspect(ids: &[String]) -> Vec<Ctr> {
    const FORMAT: &str = concat!(
        "{{.Id}}|{{.Name}}|{{index .Config.Labels \"acs.replica\"}}|",
        "{{index .Config.Labels \"acs.worker\"}}|{{index .Config.Labels \"acs.service\"}}|",
        "{{.HostConfig.NanoCpus}}|{{.HostConfig.Memory}}|{{.State.Running}}|",
        "{{index .Config.Labels \"acs.started_ms\"}}|{{.State.StartedAt}}"
    );
    let parse = |line: &str| -> Option<Ctr> {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 10 {
            return None;
        }
        Some(Ctr {
            id: f[0].to_string(),
            name: f[1].trim_start_matches('/').to_string(),
            replica: f[2].to_string(),
            worker: f[3].to_string(),
            service: f[4].to_string(),
            nano_cpus: f[5].parse().ok()?,
            memory: f[6].parse().ok()?,
            running: f[7] == "true",
            created_ms: f[8].parse().unwrap_or(0),
            started_ms: rfc3339_ms(f[9]),
        })
    };
    // One call for all; a container removed meanwhile fails the batch: then one by one.
    let mut args = vec!["inspect", "-f", FORMAT];
    args.extend(ids.iter().map(String::as_str));
    if let Ok(out) = docker(&args) {
        return out.lines().filter_map(parse).collect();
    }
    ids.iter()
        .filter_map(|id| docker(&["inspect", "-f", FORMAT, id]).ok())
        .filter_map(|out| parse(out.trim()))
        .collect()
}

/// `2024-11-23T05:25:01.123456789Z` → Unix milliseconds (UTC only, as Docker writes it).
fn rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1000 + ms).ok()
}

fn web(s: &StatusReply) -> &ServiceStatus {
    s.services
        .iter()
        .find(|x| x.name.as_str() == "web")
        .expect("web in status")
}

fn replica_ids(s: &StatusReply) -> BTreeSet<String> {
    web(s).replicas.iter().map(|r| r.id.to_string()).collect()
}

fn healthy_ids(s: &StatusReply) -> BTreeSet<String> {
    web(s)
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Healthy)
        .map(|r| r.id.to_string())
        .collect()
}

fn backend_ids(s: &StatusReply) -> BTreeSet<String> {
    web(s).backends.iter().map(|b| b.id.to_string()).collect()
}

/// `running` replicas, all healthy, all in the backend set, none draining.
fn settled_at(s: &StatusReply, n: usize) -> bool {
    let w = web(s);
    w.running as usize == n
        && w.replicas.len() == n
        && healthy_ids(s).len() == n
        && w.backends.len() == n
        && w.backends.iter().all(|b| !b.draining)
}

// ---------------------------------------------------------------------------------------------
// Traffic through the proxy
// ---------------------------------------------------------------------------------------------

/// One `GET` on a fresh connection: `(status, body)`.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("no status line in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

/// Asks the proxy's `/whoami` every 25 ms and notes when each instance answered first.
struct Prober {
    first_seen: Arc<Mutex<BTreeMap<String, u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
    ok: Arc<std::sync::atomic::AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(proxy: SocketAddr) -> Prober {
        let first_seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let ok: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let (tx, mut rx) = oneshot::channel::<()>();
        let (fs, fl, okc) = (first_seen.clone(), failures.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut rx => return,
                    _ = tick.tick() => {}
                }
                match http_get(proxy, "/whoami").await {
                    Ok((200, body)) => {
                        okc.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Some(i) = load::instance_of(body.trim().as_bytes()) {
                            fs.lock().unwrap().entry(i).or_insert_with(now_ms);
                        }
                    }
                    Ok((status, body)) => fl.lock().unwrap().push(format!(
                        "{} HTTP {status}: {}",
                        now_ms(),
                        body.trim()
                    )),
                    Err(e) => fl.lock().unwrap().push(format!("{} {e}", now_ms())),
                }
            }
        });
        Prober {
            first_seen,
            failures,
            ok,
            stop: Some(tx),
            task,
        }
    }

    fn seen(&self, instance: &str) -> Option<u64> {
        self.first_seen.lock().unwrap().get(instance).copied()
    }

    /// Waits until every one of `instances` answered through the proxy.
    async fn wait_seen(&self, instances: &BTreeSet<String>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let missing: Vec<&String> = instances
                .iter()
                .filter(|i| self.seen(i).is_none())
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not seen through the proxy's /whoami within {timeout:?}: {missing:?}; seen: {:?}",
                self.first_seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops probing; `(ok, failures)`.
    async fn finish(mut self) -> (u64, Vec<String>) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
        let ok = self.ok.load(std::sync::atomic::Ordering::Relaxed);
        let f = self.failures.lock().unwrap().clone();
        (ok, f)
    }
}

/// Open-loop load through the proxy until the returned sender fires (or `max` passes).
fn background_load(
    url: String,
    rps: f64,
    max: Duration,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<LoadReport>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut opts = LoadOptions::new(url, rps, max);
        opts.request_timeout = Duration::from_secs(20);
        load::run(
            &opts,
            async {
                let _ = rx.await;
            },
            |_| {},
        )
        .await
        .expect("load options are valid")
    });
    (tx, handle)
}

/// Prints when each container of `ctrs` began, started, and first answered through the proxy.
fn report_start_to_serving(what: &str, ctrs: &[Ctr], prober: &Prober, since_ms: Option<u64>) {
    for c in ctrs {
        let Some(seen) = prober.seen(&c.replica) else {
            continue;
        };
        let from_create = seen.saturating_sub(c.created_ms);
        let from_start = c
            .started_ms
            .map(|s| format!("{} ms", seen.saturating_sub(s)))
            .unwrap_or_else(|| "?".into());
        let from_cmd = since_ms
            .map(|t| format!(", {} ms after {what}", seen.saturating_sub(t)))
            .unwrap_or_default();
        eprintln!(
            "timing: {} serving through the proxy {from_create} ms after the worker began creating it, {from_start} after Docker started it{from_cmd}",
            c.replica
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Scale-out: a manual scale to 3 creates real containers (by label, on both workers) with the
/// spec's NanoCpus/Memory, and each new container's instance answers through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_scale_out_creates_limited_containers_that_serve() {
    let Some(mut rig) = Rig::start("dkout", RigOptions::default()).await else {
        return;
    };
    let before = rig.containers().await;
    assert_eq!(
        before.len(),
        1,
        "one container for min_replicas: {before:#?}"
    );
    let prober = Prober::start(rig.proxy());

    let t_cmd = now_ms();
    rig.scale(3).await;
    let s = rig
        .wait(
            "3 healthy replicas in rotation",
            Duration::from_secs(90),
            |s| settled_at(s, 3),
        )
        .await;
    let replicas = replica_ids(&s);
    assert_eq!(backend_ids(&s), replicas);

    // Real containers: one per replica, labelled, limited, running.
    let ctrs = rig.containers().await;
    assert_eq!(ctrs.len(), 3, "{ctrs:#?}");
    let by_replica: BTreeSet<String> = ctrs.iter().map(|c| c.replica.clone()).collect();
    assert_eq!(
        by_replica, replicas,
        "container labels match the brain's replicas"
    );
    for c in &ctrs {
        assert!(c.running, "{c:?}");
        assert_eq!(c.service, "web", "{c:?}");
        assert_eq!(c.nano_cpus, (CPUS * 1e9) as i64, "NanoCpus of {c:?}");
        assert_eq!(
            c.memory,
            (MEMORY_MB * 1024 * 1024) as i64,
            "Memory of {c:?}"
        );
        assert_eq!(c.name, format!("acs-{}-{}", c.worker, c.replica), "{c:?}");
    }
    // Counted by label per worker: spread over both.
    let per_worker: Vec<usize> = (0..2)
        .map(|i| rig.container_ids_of(rig.worker_id(i)).len())
        .collect();
    assert_eq!(per_worker.iter().sum::<usize>(), 3, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|n| *n >= 1),
        "spread over both workers: {per_worker:?}"
    );
    for c in &ctrs {
        let in_status = web(&s)
            .replicas
            .iter()
            .find(|r| r.id.as_str() == c.replica)
            .unwrap();
        assert_eq!(in_status.worker.as_str(), c.worker, "{c:?}");
    }

    // Every container serves through the proxy.
    prober.wait_seen(&replicas, Duration::from_secs(30)).await;
    let first: BTreeSet<String> = before.iter().map(|c| c.replica.clone()).collect();
    let new: Vec<Ctr> = ctrs
        .into_iter()
        .filter(|c| !first.contains(&c.replica))
        .collect();
    assert_eq!(new.len(), 2);
    report_start_to_serving("the scale command", &new, &prober, Some(t_cmd));

    let (ok, failures) = prober.finish().await;
    eprintln!("prober: {ok} ok, {} failed", failures.len());
    assert!(failures.is_empty(), "no /whoami failed: {failures:#?}");
    rig.check_processes();
}

/// `docker kill` of a replica under steady load: the worker reports the exit, the brain drops
/// it from the backends and places a replacement, the proxy routes around the dead one, and no
/// GET fails through the proxy meanwhile.
async fn killed_container_is_replaced(tag: &str, net: Net) {
    let Some(mut rig) = Rig::start(
        tag,
        RigOptions {
            net,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let prober = Prober::start(rig.proxy());
    rig.scale(3).await;
    let s = rig
        .wait(
            "3 healthy replicas in rotation",
            Duration::from_secs(90),
            |s| settled_at(s, 3),
        )
        .await;
    let before = replica_ids(&s);
    prober.wait_seen(&before, Duration::from_secs(30)).await;
    let decisions = rig.decisions().await;

    // Steady load: quick GETs, and GETs that take a while (so some are in flight at the kill).
    let base = format!("http://{}", rig.proxy());
    let (stop_a, load_a) =
        background_load(format!("{base}/whoami"), 40.0, Duration::from_secs(150));
    let (stop_b, load_b) =
        background_load(format!("{base}/work?ms=40"), 15.0, Duration::from_secs(150));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let ctrs = rig.containers().await;
    let victim = ctrs
        .iter()
        .max_by_key(|c| c.replica.clone())
        .cloned()
        .expect("a container");
    eprintln!("killing {} ({})", victim.replica, &victim.id[..12]);
    let t_kill = now_ms();
    tokio::task::block_in_place(|| docker(&["kill", &victim.id])).expect("docker kill");

    let victim_id = victim.replica.clone();
    let s = rig
        .wait(
            "a replacement healthy and in rotation",
            Duration::from_secs(90),
            |s| settled_at(s, 3) && !replica_ids(s).contains(&victim_id),
        )
        .await;
    let after = replica_ids(&s);
    assert_eq!(backend_ids(&s), after, "the proxies are told the new set");
    let replacement: Vec<String> = after.difference(&before).cloned().collect();
    assert_eq!(
        replacement.len(),
        1,
        "one replacement: before {before:?}, after {after:?}"
    );
    prober
        .wait_seen(
            &replacement.iter().cloned().collect(),
            Duration::from_secs(30),
        )
        .await;
    let seen = prober.seen(&replacement[0]).unwrap();
    eprintln!(
        "timing: replacement {} serving through the proxy {} ms after docker kill",
        replacement[0],
        seen.saturating_sub(t_kill)
    );

    // The dead container is removed, the replacement is a real container, nothing else is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ctrs = loop {
        let ctrs = rig.containers().await;
        if !ctrs.iter().any(|c| c.id == victim.id) {
            break ctrs;
        }
        assert!(
            Instant::now() < deadline,
            "killed container not removed: {ctrs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(ctrs.len(), 3, "{ctrs:#?}");
    assert!(ctrs.iter().all(|c| c.running), "{ctrs:#?}");
    let new: Vec<Ctr> = ctrs
        .iter()
        .filter(|c| c.replica == replacement[0])
        .cloned()
        .collect();
    assert_eq!(new.len(), 1, "{ctrs:#?}");
    assert_eq!(new[0].nano_cpus, (CPUS * 1e9) as i64);
    report_start_to_serving("docker kill", &new, &prober, Some(t_kill));

    // More load on the new set, then the verdict.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_a.send(());
    let _ = stop_b.send(());
    let (a, b) = (load_a.await.unwrap(), load_b.await.unwrap());
    let (ok, failures) = prober.finish().await;
    eprintln!("load /whoami: {a}");
    eprintln!("load /work?ms=40: {b}");
    eprintln!("prober: {ok} ok, {} failed", failures.len());
    let ds = decisions.lock().unwrap().clone();
    assert!(
        ds.iter().any(|d| matches!(&d.action, DecisionAction::Lost { replica, .. } if replica.as_str() == victim.replica)),
        "the brain explained the loss: {ds:#?}"
    );
    assert_eq!(a.failed, 0, "no GET /whoami failed through the proxy: {a}");
    assert_eq!(b.failed, 0, "no GET /work failed through the proxy: {b}");
    assert!(failures.is_empty(), "no probe failed: {failures:#?}");
    assert!(a.counts.instances.contains_key(&replacement[0]), "{a}");
    rig.check_processes();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_killed_container_is_replaced_without_failed_gets() {
    killed_container_is_replaced("dkkill", Net::HostPort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_killed_container_on_a_network_is_replaced_without_failed_gets() {
    killed_container_is_replaced("dkkillnet", Net::ContainerIp).await;
}

/// `kill -9` of a worker, then a restart: the new process adopts the running containers (same
/// container ids by label, no second container), the brain starts nothing, and the replicas
/// keep serving through the proxy all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_worker_restart_adopts_its_containers() {
    // The brain would treat a worker silent for 3 s (the default) as down and replace its
    // replicas elsewhere, by design. This test is about adoption, not failover: give the
    // restart room on a slow machine.
    let Some(mut rig) = Rig::start(
        "dkadopt",
        RigOptions {
            brain_args: vec!["--worker-timeout-ms".into(), "15000".into()],
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    rig.scale(4).await;
    let s = rig
        .wait(
            "4 healthy replicas in rotation",
            Duration::from_secs(90),
            |s| settled_at(s, 4),
        )
        .await;
    let replicas = replica_ids(&s);
    let w1 = rig.worker_id(0).to_string();
    let w2 = rig.worker_id(1).to_string();
    let before_w1 = rig.container_ids_of(&w1);
    let before_w2 = rig.container_ids_of(&w2);
    assert_eq!(
        before_w1.len() + before_w2.len(),
        4,
        "{before_w1:?} {before_w2:?}"
    );
    assert!(
        !before_w1.is_empty(),
        "w1 runs some replicas: {before_w1:?} {before_w2:?}"
    );
    let w1_replicas: BTreeSet<String> = web(&s)
        .replicas
        .iter()
        .filter(|r| r.worker.as_str() == w1)
        .map(|r| r.id.to_string())
        .collect();

    let prober = Prober::start(rig.proxy());
    prober.wait_seen(&replicas, Duration::from_secs(30)).await;
    let decisions = rig.decisions().await;
    let events = rig.replica_events().await;
    let (stop_load, load) = background_load(
        format!("http://{}/whoami", rig.proxy()),
        20.0,
        Duration::from_secs(150),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9: the containers outlive their worker.
    let old_pid = rig.workers[0].pid();
    rig.workers[0].kill9();
    eprintln!("killed {w1} (pid {old_pid}) with SIGKILL");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        rig.container_ids_of(&w1),
        before_w1,
        "containers outlive the worker"
    );
    let t_restart = now_ms();
    rig.workers[0].start();

    // The new process reports the same replicas, adopted, and they pass their health checks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let adopted: BTreeSet<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                e.worker.as_str() == w1
                    && e.replica.state == ReplicaState::Starting
                    && e.reason.contains("adopt")
            })
            .map(|e| e.replica.id.to_string())
            .collect();
        if adopted == w1_replicas {
            break;
        }
        rig.check_processes();
        assert!(
            Instant::now() < deadline,
            "restarted {w1} adopted {adopted:?}, expected {w1_replicas:?}; log {}",
            rig.workers[0].log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "timing: restarted worker adopted its containers {} ms after it was started",
        now_ms().saturating_sub(t_restart)
    );
    let s = rig
        .wait(
            "the same 4 replicas healthy again",
            Duration::from_secs(60),
            |s| settled_at(s, 4) && replica_ids(s) == replicas,
        )
        .await;
    assert_eq!(backend_ids(&s), replicas);

    // A while longer: the brain must not start anything (it would show as a new container).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = rig
        .wait("still the same 4 replicas", Duration::from_secs(30), |s| {
            settled_at(s, 4)
        })
        .await;
    assert_eq!(replica_ids(&s), replicas, "the brain started nothing");
    assert_eq!(
        rig.container_ids_of(&w1),
        before_w1,
        "{w1}: no duplicate container"
    );
    assert_eq!(rig.container_ids_of(&w2), before_w2, "{w2}: untouched");
    assert_eq!(rig.containers().await.len(), 4);
    let ds = decisions.lock().unwrap().clone();
    assert!(
        !ds.iter().any(|d| matches!(
            d.action,
            DecisionAction::Place { .. }
                | DecisionAction::Lost { .. }
                | DecisionAction::Stop { .. }
        )),
        "no placement, loss or stop around the restart: {ds:#?}"
    );

    let _ = stop_load.send(());
    let report = load.await.unwrap();
    let (ok, failures) = prober.finish().await;
    eprintln!("load /whoami across the worker restart: {report}");
    eprintln!("prober: {ok} ok, {} failed", failures.len());
    assert_eq!(
        report.failed, 0,
        "no GET failed across the worker restart: {report}"
    );
    assert!(failures.is_empty(), "no probe failed: {failures:#?}");
    rig.check_processes();
}

/// Scale-in under light load: each victim is drained (out of rotation) before it is stopped,
/// its container is stopped and removed (gone from `docker ps -a`), and no GET fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_scale_in_drains_stops_and_removes_containers() {
    let Some(mut rig) = Rig::start(
        "dkin",
        RigOptions {
            net: Net::ContainerIp,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let prober = Prober::start(rig.proxy());
    rig.scale(3).await;
    let s = rig
        .wait(
            "3 healthy replicas in rotation",
            Duration::from_secs(90),
            |s| settled_at(s, 3),
        )
        .await;
    let before = replica_ids(&s);
    prober.wait_seen(&before, Duration::from_secs(30)).await;
    let ctrs_before = rig.containers().await;
    assert_eq!(ctrs_before.len(), 3, "{ctrs_before:#?}");
    let decisions = rig.decisions().await;
    let events = rig.replica_events().await;

    // Light load with requests in flight while replicas drain and stop.
    let base = format!("http://{}", rig.proxy());
    let (stop_a, load_a) =
        background_load(format!("{base}/whoami"), 10.0, Duration::from_secs(150));
    let (stop_b, load_b) =
        background_load(format!("{base}/work?ms=100"), 8.0, Duration::from_secs(150));
    tokio::time::sleep(Duration::from_secs(2)).await;

    rig.scale(1).await;
    let s = rig
        .wait("web scaled in to 1", Duration::from_secs(90), |s| {
            settled_at(s, 1)
        })
        .await;
    let survivor = replica_ids(&s);
    assert!(
        survivor.is_subset(&before),
        "the survivor is an old replica: {survivor:?}"
    );
    let victims: BTreeSet<String> = before.difference(&survivor).cloned().collect();
    assert_eq!(victims.len(), 2);

    // Gone from `docker ps -a`, not merely stopped.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ctrs = rig.containers().await;
        let left: BTreeSet<String> = ctrs.iter().map(|c| c.replica.clone()).collect();
        if left == survivor {
            assert!(ctrs.iter().all(|c| c.running));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "victim containers still listed by `docker ps -a`: {ctrs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for c in ctrs_before.iter().filter(|c| victims.contains(&c.replica)) {
        let r = tokio::task::block_in_place(|| docker(&["inspect", &c.id]));
        assert!(
            r.is_err(),
            "container {} of {} still exists",
            &c.id[..12],
            c.replica
        );
    }
    for w in 0..2 {
        let ids = rig.container_ids_of(rig.worker_id(w));
        assert!(ids.len() <= 1, "{ids:?}");
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_a.send(());
    let _ = stop_b.send(());
    let (a, b) = (load_a.await.unwrap(), load_b.await.unwrap());
    let (ok, failures) = prober.finish().await;
    eprintln!("load /whoami during scale-in: {a}");
    eprintln!("load /work?ms=100 during scale-in: {b}");
    eprintln!("prober: {ok} ok, {} failed", failures.len());

    // Drain, then stop, per victim; the worker reports each one gone.
    let ds = decisions.lock().unwrap().clone();
    let evs = events.lock().unwrap().clone();
    assert!(
        ds.iter().any(|d| matches!(
            d.action,
            DecisionAction::Scale {
                from: 3,
                to: 1,
                manual: true
            }
        )),
        "{ds:#?}"
    );
    for v in &victims {
        let drain = ds.iter().find(
            |d| matches!(&d.action, DecisionAction::Drain { replica, .. } if replica.as_str() == v),
        );
        let stop = ds.iter().find(
            |d| matches!(&d.action, DecisionAction::Stop { replica, .. } if replica.as_str() == v),
        );
        let (Some(drain), Some(stop)) = (drain, stop) else {
            panic!("{v}: drain and stop decisions expected: {ds:#?}");
        };
        assert!(
            drain.ts_ms <= stop.ts_ms,
            "{v}: drained before stopped: {drain:?} {stop:?}"
        );
        let exited = evs
            .iter()
            .find(|e| e.replica.id.as_str() == v && e.replica.state == ReplicaState::Exited)
            .unwrap_or_else(|| panic!("{v}: no exit event: {evs:#?}"));
        eprintln!(
            "{v}: drain at +0 ms, stop at +{} ms, exited at +{} ms ({})",
            stop.ts_ms.saturating_sub(drain.ts_ms),
            exited.ts_ms.saturating_sub(drain.ts_ms),
            exited.reason
        );
    }
    assert!(!ds.iter().any(|d| matches!(d.action, DecisionAction::Stop { ref replica, .. } if survivor.contains(replica.as_str()))));
    assert_eq!(a.failed, 0, "no GET /whoami failed during scale-in: {a}");
    assert_eq!(b.failed, 0, "no GET /work failed during scale-in: {b}");
    assert!(failures.is_empty(), "no probe failed: {failures:#?}");
    rig.check_processes();
}

#[test]
fn docker_timestamps_parse() {
    assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
    // date -u -d 2024-11-23T05:25:01Z +%s = 1732339501
    assert_eq!(
        rfc3339_ms("2024-11-23T05:25:01.123456789Z"),
        Some(1_732_339_501_123)
    );
    assert_eq!(rfc3339_ms("0001-01-01T00:00:00Z"), None);
    assert_eq!(rfc3339_ms("garbage"), None);
}
