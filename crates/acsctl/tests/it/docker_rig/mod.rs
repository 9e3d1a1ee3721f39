//! The rig of the Docker end-to-end tests: [`LocalCluster`] (nats-server, vim-brain, proxy)
//! plus two `vmm-worker --runtime docker` processes with this run's own ids, image and network,
//! and the guards that remove them.
//!
//! - [`Rig`]: start, wait on the brain's status, scale, read containers, record events.
//! - [`worker`]: the worker processes ([`WorkerProc`]).
//! - [`containers`]: what `docker inspect` says about a container ([`Ctr`]).
//! - [`prober`]: traffic through the proxy ([`Prober`]) and start-to-serving timings.

mod containers;
mod prober;
mod worker;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_events::{ReplicaState, ScaleRequest, ServiceName, StatusReply, WorkerHealth};
use acs_testkit::docker::{
    require_docker, sweep_stale, unique_id, ContainerGuard, NetworkGuard, TestImage,
};
use acs_testkit::TempDir;

use containers::inspect;
pub use containers::Ctr;
pub use prober::{report_start_to_serving, Prober};
use worker::WorkerProc;

use crate::common::{record, web, Recording};

pub const CPUS: f64 = 0.5;
pub const MEMORY_MB: u64 = 64;

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
env = {{ WORK_MS = "2", RUST_LOG = "warn", DRAIN_TIMEOUT = "5s" }}
cpus = {CPUS}
memory_mb = {MEMORY_MB}
route = {{ path_prefix = "/" }}
selection = "round_robin"

[service.policy]
min_replicas = 1
max_replicas = 6
scale_up_window = "0s"
scale_down_window = "3s"
max_step_up = 6
max_step_down = 6
drain_timeout = "8s"
stop_grace = "3s"
"#
    )
}

pub use acs_node::unix_ms as now_ms;

/// How workers advertise their containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// `--advertise host-port` on Docker's default bridge (the proxy reaches 127.0.0.1:<port>).
    HostPort,
    /// `--advertise container-ip --docker-network <run network>`.
    ContainerIp,
}

/// Everything a test runs. Dropping it stops the cluster, then the workers (which stop their
/// containers), then removes whatever containers, network and image of this run are left.
pub struct Rig {
    run: String,
    pub cluster: LocalCluster,
    pub workers: Vec<WorkerProc>,
    nc: async_nats::Client,
    // Drop order after `Drop::drop`: fields in declaration order.
    containers: ContainerGuard,
    _network: Option<NetworkGuard>,
    _image: TestImage,
    _tmp: TempDir,
}

pub struct RigOptions {
    pub net: Net,
    /// Extra vim-brain flags.
    pub brain_args: Vec<String>,
}

impl RigOptions {
    /// The defaults, with workers advertising their containers by `net`.
    pub fn on(net: Net) -> Self {
        Self {
            net,
            ..Self::default()
        }
    }
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            net: Net::HostPort,
            brain_args: Vec::new(),
        }
    }
}

impl Rig {
    /// Starts the run: `None` when `ACS_SKIP_DOCKER_TESTS=1` skips the test; panics when no
    /// Docker engine answers. Returns once both workers are up and `web` runs one replica.
    pub async fn start(tag: &str, o: RigOptions) -> Option<Rig> {
        let version = require_docker()?;
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
        opts.extra_worker_ids = worker_ids
            .iter()
            .map(|w| acs_events::WorkerId::new(w.clone()).unwrap())
            .collect();
        opts.ready_timeout = Duration::from_secs(90);
        if !o.brain_args.is_empty() {
            opts.extra_args
                .insert("vim-brain".into(), o.brain_args.clone());
        }
        let cluster = LocalCluster::start(opts)
            .await
            .expect("local cluster starts");
        let nc = cluster.operator_client().await.unwrap();

        let workers = spawn_workers(&cluster, &worker_ids, network.as_ref());

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

    pub fn worker_id(&self, i: usize) -> &str {
        &self.workers[i].id
    }

    pub fn proxy(&self) -> SocketAddr {
        self.cluster.proxy_addr()
    }

    /// Panics with the log tail when a worker or a cluster process died.
    pub fn check_processes(&mut self) {
        for w in &mut self.workers {
            if let Err(e) = w.check() {
                panic!("{e}");
            }
        }
        let exited = self.cluster.check_children();
        assert!(exited.is_empty(), "a cluster process died: {exited:#?}");
    }

    /// Polls the brain's status until `pred` holds; panics after `timeout` with the last one.
    pub async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&StatusReply) -> bool,
    ) -> StatusReply {
        // A loop of its own rather than `poll::eventually`: every round also checks, with
        // `&mut self`, that no process died.
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

    /// Scales `web` to `n` by hand, waits until `n` healthy replicas are in rotation and each
    /// of them answered `prober` through the proxy; the status then.
    pub async fn scale_until_serving(&mut self, n: usize, prober: &Prober) -> StatusReply {
        self.scale(n as i64).await;
        let what = format!("{n} healthy replicas in rotation");
        let s = self
            .wait(&what, Duration::from_secs(90), |s| settled_at(s, n))
            .await;
        prober
            .wait_seen(&replica_ids(&s), Duration::from_secs(30))
            .await;
        s
    }

    pub async fn scale(&self, replicas: i64) {
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
    pub async fn containers(&self) -> Vec<Ctr> {
        // The CLI blocks: let the runtime move other tasks (the load) off this thread meanwhile.
        let guard_ids = tokio::task::block_in_place(|| self.containers.ids()).expect("docker ps");
        if guard_ids.is_empty() {
            return Vec::new();
        }
        tokio::task::block_in_place(|| inspect(&guard_ids))
    }

    /// Ids of the containers labelled `acs.worker=<worker>` (`docker ps -a`).
    pub fn container_ids_of(&self, worker: &str) -> BTreeSet<String> {
        tokio::task::block_in_place(|| ContainerGuard::ids_with_label("acs.worker", worker))
            .expect("docker ps")
            .into_iter()
            .collect()
    }

    /// Records decisions about `web` from now on.
    pub async fn decisions(&self) -> Recording {
        let web = ServiceName::new("web").unwrap();
        record(&self.nc, self.cluster.subjects().decisions(&web)).await
    }

    /// Records replica events of every worker from now on.
    pub async fn replica_events(&self) -> Recording {
        record(&self.nc, self.cluster.subjects().replica_events_all()).await
    }
}

/// One `vmm-worker --runtime docker` per id, on the cluster's NATS, advertising its containers
/// on `network` when there is one (host ports otherwise).
fn spawn_workers(
    cluster: &LocalCluster,
    ids: &[String],
    network: Option<&NetworkGuard>,
) -> Vec<WorkerProc> {
    let log_dir = cluster.dir().join("logs");
    let program = cluster.bin_dir().join("vmm-worker");
    ids.iter()
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
                "--interval",
                "500ms",
                "--advertise-host",
                "127.0.0.1",
                "--state-dir",
                state.to_str().unwrap(),
                "--shutdown-grace",
                "3s",
                // The run's test images (`acs-e2e/demo-web:<run>`) and nothing else.
                "--allow-image",
                "acs-e2e/demo-web:*",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if let Some(n) = network {
                args.extend(
                    ["--advertise", "container-ip", "--docker-network", n.name()].map(String::from),
                );
            }
            let env = cluster.worker_env(&acs_events::WorkerId::new(id.clone()).unwrap());
            WorkerProc::spawn(id.clone(), program.clone(), args, env, &log_dir)
        })
        .collect()
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

pub fn replica_ids(s: &StatusReply) -> BTreeSet<String> {
    web(s).replicas.iter().map(|r| r.id.to_string()).collect()
}

pub fn healthy_ids(s: &StatusReply) -> BTreeSet<String> {
    web(s)
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Healthy)
        .map(|r| r.id.to_string())
        .collect()
}

pub fn backend_ids(s: &StatusReply) -> BTreeSet<String> {
    web(s).backends.iter().map(|b| b.id.to_string()).collect()
}

/// `running` replicas, all healthy, all in the backend set, none draining.
pub fn settled_at(s: &StatusReply, n: usize) -> bool {
    let w = web(s);
    w.running as usize == n
        && w.replicas.len() == n
        && healthy_ids(s).len() == n
        && w.backends.len() == n
        && w.backends.iter().all(|b| !b.draining)
}
