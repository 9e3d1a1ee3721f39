//! P5 in docs/PERFORMANCE.md: a load spike -> the brain's first scale decision -> a new replica
//! serving, on a real local cluster (process runtime, or Docker with `docker` as the second argument).
//!
//! `web` has `target_rps_per_replica = 50` and runs at 1 replica under a steady 10 req/s
//! open-loop load through the proxy. Each round adds 190 req/s at once (the step to 200 req/s)
//! and times, from the step, what it sees on `acs.>` and through the proxy:
//! - `report`: the proxy's first metrics report (its 1 s tick) showing the spike, and its rate;
//! - `decision`: the first `Scale { to > from }` on `acs.events.decision.web` (automatic);
//! - `healthy`: the first new replica's `healthy` replica event from its worker;
//! - `routed`: that replica in an `add` (or `reset`) on `acs.backends.web`;
//! - `serving`: a replica that was not there before the step first answers `GET /whoami`
//!   through the proxy (a prober asks every ~2 ms besides the load, from the decision on).
//!
//! Then the extra load stops and the round waits until `web` is back to 1 replica.
//!
//! ```text
//! cargo build --release -p vim-brain -p vmm-worker -p acs-proxy -p demo-web -p acs-monitor -p acsctl --bins
//! cargo build --release -p acsctl --example spike_latency
//! target/release/examples/spike_latency [ROUNDS] [process|docker] [IMAGE]
//! ```
//!
//! `bench/spike.sh` wraps it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_events::{
    decode, BackendChange, BackendUpdate, Decision, DecisionAction, ProxyMetrics, ReplicaEvent,
    ReplicaId, ReplicaState,
};
use acs_testkit::TempDir;
use acsctl::load::{self, LoadOptions};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const BASE_RPS: f64 = 10.0;
const SPIKE_RPS: f64 = 200.0;

/// Scale-up at once (window 0); back down 3 s after the spike ends, all the way in one step.
const POLICY: &str = r#"
[service.policy]
min_replicas = 1
max_replicas = 4
target_rps_per_replica = 50
scale_up_window = "0s"
scale_down_window = "3s"
step_interval = "1s"
max_step_up = 4
max_step_down = 4
drain_timeout = "5s"
stop_grace = "3s"
"#;

fn services(docker_image: Option<&str>) -> String {
    let head = match docker_image {
        None => r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "2"]
route = { path_prefix = "/" }
selection = "round_robin"
"#
        .to_string(),
        Some(image) => format!(
            r#"
[[service]]
name = "web"
image = "{image}"
port = 8000
health_path = "/healthz"
env = {{ WORK_MS = "2", RUST_LOG = "warn" }}
route = {{ path_prefix = "/" }}
selection = "round_robin"
"#
        ),
    };
    head + POLICY
}

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("dir");
    if dir.ends_with("examples") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The nearest-rank percentile `q` of `v` (NaN when empty).
fn pct(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    acs_node::percentile(&v, q).unwrap_or(f64::NAN)
}

/// A `vmm-worker --runtime docker` of this run; SIGTERM on drop (it stops its containers), then
/// whatever containers it labelled are removed.
struct DockerWorker {
    id: String,
    child: Child,
}

impl Drop for DockerWorker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=acs.worker={}", self.id),
            ])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

fn spawn_docker_worker(
    cluster: &LocalCluster,
    id: &str,
    image: &str,
) -> anyhow::Result<DockerWorker> {
    let state = cluster.dir().join("workers").join(id);
    std::fs::create_dir_all(&state)?;
    let log = std::fs::File::create(cluster.dir().join("logs").join(format!("{id}.log")))?;
    let mut cmd = Command::new(cluster.bin_dir().join("vmm-worker"));
    cmd.args([
        "--id",
        id,
        "--runtime",
        "docker",
        "--max-replicas",
        "4",
        "--nats",
        &cluster.nats_url(),
    ])
    .args([
        "--interval",
        "1s",
        "--advertise-host",
        "127.0.0.1",
        "--shutdown-grace",
        "3s",
    ])
    .arg("--state-dir")
    .arg(&state)
    .args(["--allow-image", image])
    .stdin(Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log);
    for (k, v) in cluster.worker_env(&acs_events::WorkerId::new(id.to_string())?) {
        cmd.env(k, v);
    }
    Ok(DockerWorker {
        id: id.to_string(),
        child: cmd.spawn()?,
    })
}

/// Milliseconds since the round's step at which each step was seen.
#[derive(Default, Debug)]
struct Round {
    /// The proxy's first metrics report after the step, and the rate it reports for `web`.
    report: Option<(f64, f64)>,
    decision: Option<f64>,
    healthy: Option<f64>,
    routed: Option<f64>,
    serving: Option<f64>,
    scale: String,
}

fn load_task(
    url: String,
    rps: f64,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<load::LoadReport, load::LoadError>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(async move {
        let opts = LoadOptions::new(url, rps, Duration::from_secs(3600));
        load::run(
            &opts,
            async {
                let _ = rx.await;
            },
            |_| {},
        )
        .await
    });
    (tx, h)
}

/// The one service of this bench.
fn web(s: &acs_events::StatusReply) -> acs_events::ServiceStatus {
    s.services[0].clone()
}

/// `web` back at one replica, running and routed.
fn back_to_one(s: &acs_events::StatusReply) -> bool {
    let w = web(s);
    w.running == 1 && w.backends.len() == 1 && w.replicas.len() == 1
}

/// Starts the cluster (one process worker, or a Docker worker of this run) and waits until `web`
/// runs one replica.
async fn start_cluster(
    tmp: &TempDir,
    docker: bool,
    image: &str,
) -> anyhow::Result<(LocalCluster, Option<DockerWorker>)> {
    let services_path = tmp.path().join("services.toml");
    std::fs::write(&services_path, services(docker.then_some(image)))?;
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services_path;
    opts.bin_dir = Some(bin_dir());
    opts.max_replicas = 4;
    let docker_id = format!("spike-d-{}", std::process::id());
    if docker {
        opts.workers = 0;
        opts.extra_worker_ids = vec![acs_events::WorkerId::new(docker_id.clone())?];
        opts.ready_timeout = Duration::from_secs(90);
    } else {
        opts.workers = 1;
    }
    let cluster = LocalCluster::start(opts).await?;
    let worker = if docker {
        Some(spawn_docker_worker(&cluster, &docker_id, image)?)
    } else {
        None
    };
    cluster
        .wait_for_status(Duration::from_secs(90), back_to_one)
        .await?;
    Ok((cluster, worker))
}

/// Asks the proxy (every ~2 ms) until a replica that was not in `before` answers; the ms since
/// `t0`.
fn spawn_prober(
    http: Client<HttpConnector, Empty<Bytes>>,
    uri: hyper::Uri,
    before: BTreeSet<String>,
    t0: Instant,
) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        loop {
            if let Ok(resp) = http.get(uri.clone()).await {
                if let Ok(body) = resp.into_body().collect().await {
                    if let Some(id) = load::instance_of(&body.to_bytes()) {
                        if !before.contains(&id) {
                            return t0.elapsed().as_secs_f64() * 1000.0;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// Folds one message of the trail into the round (`at` ms after the step); true at the first
/// automatic scale-up decision, when the prober is to start.
fn note(
    out: &mut Round,
    new: &mut BTreeSet<ReplicaId>,
    before: &BTreeSet<String>,
    m: &async_nats::Message,
    at: f64,
) -> bool {
    let s = m.subject.as_str();
    if s.starts_with("acs.metrics.proxy.") && out.report.is_none() {
        if let Ok(pm) = decode::<ProxyMetrics>(&m.payload) {
            let rps = pm
                .services
                .iter()
                .filter(|t| t.service.as_str() == "web")
                .map(|t| t.totals.rps)
                .sum();
            // The first report that shows the spike (one in flight at the step does not).
            if rps > 1.5 * BASE_RPS {
                out.report = Some((at, rps));
            }
        }
    } else if s.starts_with("acs.events.decision.") {
        let Ok(d) = decode::<Decision>(&m.payload) else {
            return false;
        };
        match d.action {
            DecisionAction::Scale {
                from,
                to,
                manual: false,
            } if to > from && out.decision.is_none() => {
                out.decision = Some(at);
                out.scale = format!("{from}->{to}: {}", d.reason);
                return true;
            }
            DecisionAction::Place { replica, .. } => {
                new.insert(replica);
            }
            _ => {}
        }
    } else if s.starts_with("acs.events.replica.") {
        if let Ok(e) = decode::<ReplicaEvent>(&m.payload) {
            if e.replica.state == ReplicaState::Healthy
                && !before.contains(&e.replica.id.to_string())
                && out.healthy.is_none()
            {
                out.healthy = Some(at);
            }
        }
    } else if s.starts_with("acs.backends.") && out.routed.is_none() {
        if let Ok(u) = decode::<BackendUpdate>(&m.payload) {
            let added = match &u.change {
                BackendChange::Add { backends } | BackendChange::Reset { backends, .. } => {
                    backends.iter().any(|b| !before.contains(&b.id.to_string()))
                }
                _ => false,
            };
            if added {
                out.routed = Some(at);
            }
        }
    }
    false
}

/// One round: back at one replica, the step up, each step timed until a new replica serves, then
/// the step ends. Returns the round and the report of the spike's load.
async fn spike_round(
    cluster: &LocalCluster,
    trail: &mut async_nats::Subscriber,
    http: &Client<HttpConnector, Empty<Bytes>>,
    whoami: &str,
    round: usize,
) -> anyhow::Result<(Round, load::LoadReport)> {
    cluster
        .wait_for_status(Duration::from_secs(90), back_to_one)
        .await?;
    // A few seconds at the base rate, so the brain's windows hold only the base load.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before: BTreeSet<String> = web(&cluster.status().await?)
        .backends
        .iter()
        .map(|b| b.id.to_string())
        .collect();
    while futures::FutureExt::now_or_never(trail.next())
        .flatten()
        .is_some()
    {}

    let t0 = Instant::now();
    let (stop_spike, spike) = load_task(whoami.to_string(), SPIKE_RPS - BASE_RPS);
    // Once the decision is seen, ask the proxy (every ~2 ms) until a replica that was not there
    // before the step answers. Not earlier: the prober's requests would add to the spike.
    let uri: hyper::Uri = whoami.parse()?;
    let mut prober = None;
    let mut out = Round::default();
    let mut new: BTreeSet<ReplicaId> = BTreeSet::new();
    let deadline = t0 + Duration::from_secs(60);
    while out.healthy.is_none() || out.routed.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, trail.next())
            .await
            .map_err(|_| anyhow::anyhow!("round {round}: no new replica in 60 s: {out:?}"))?;
        let Some(m) = m else {
            anyhow::bail!("trail ended")
        };
        let at = t0.elapsed().as_secs_f64() * 1000.0;
        if note(&mut out, &mut new, &before, &m, at) {
            prober = Some(spawn_prober(http.clone(), uri.clone(), before.clone(), t0));
        }
    }
    let Some(prober) = prober else {
        anyhow::bail!("round {round}: a new replica without a scale decision")
    };
    let left = deadline.saturating_duration_since(Instant::now());
    out.serving = Some(tokio::time::timeout(left, prober).await.map_err(|_| {
        anyhow::anyhow!("round {round}: new replica never answered through the proxy")
    })??);
    // Let the new replicas take some of the spike, then end it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_spike.send(());
    let spike_report = spike.await??;
    eprintln!(
        "round {round}: report {:.1} ({:.0} rps) decision {:.1} healthy-event {:.1} routed {:.1} serving {:.1} ms ({}; {} placed)",
        out.report.map_or(f64::NAN, |r| r.0),
        out.report.map_or(f64::NAN, |r| r.1),
        out.decision.unwrap_or(f64::NAN),
        out.healthy.unwrap_or(f64::NAN),
        out.routed.unwrap_or(f64::NAN),
        out.serving.unwrap_or(f64::NAN),
        out.scale,
        new.len()
    );
    Ok((out, spike_report))
}

/// The table of every step's latency, each round's first report and decision, and the loads'
/// figures.
fn print_report(
    results: &[Round],
    spike_reports: &[load::LoadReport],
    base_report: &load::LoadReport,
    runtime: &str,
    rounds: usize,
) {
    let col =
        |f: &dyn Fn(&Round) -> Option<f64>| -> Vec<f64> { results.iter().filter_map(f).collect() };
    let rows: [(&str, Vec<f64>); 5] = [
        (
            "proxy's first metrics report showing the spike",
            col(&|r| Some(r.report?.0)),
        ),
        (
            "first scale decision (acs.events.decision.web)",
            col(&|r| r.decision),
        ),
        (
            "new replica's `healthy` event (worker)",
            col(&|r| r.healthy),
        ),
        (
            "new replica in the proxies' backends (add)",
            col(&|r| r.routed),
        ),
        (
            "new replica answers /whoami through the proxy",
            col(&|r| r.serving),
        ),
    ];
    println!();
    println!(
        "P5 spike {BASE_RPS} -> {SPIKE_RPS} req/s, {runtime} runtime, {rounds} rounds, target 50 req/s per replica"
    );
    println!();
    println!("| ms after the step | n | p50 | p90 | max |");
    println!("|---|---|---|---|---|");
    for (name, v) in &rows {
        if v.is_empty() {
            println!("| {name} | 0 | - | - | - |");
        } else {
            println!(
                "| {name} | {} | {:.1} | {:.1} | {:.1} |",
                v.len(),
                pct(v, 0.5),
                pct(v, 0.9),
                pct(v, 1.0)
            );
        }
    }
    println!();
    for (i, r) in results.iter().enumerate() {
        let (at, rps) = r.report.unwrap_or((f64::NAN, f64::NAN));
        println!(
            "round {}: first report at {at:.0} ms said {rps:.0} req/s; decision {}",
            i + 1,
            r.scale
        );
    }
    let spike_failed: u64 = spike_reports.iter().map(|r| r.failed).sum();
    let spike_total: u64 = spike_reports.iter().map(|r| r.sent).sum();
    println!("base load ({BASE_RPS} req/s): {base_report}");
    println!(
        "failed requests: {} of the base load, {spike_failed} of {spike_total} spike requests",
        base_report.failed
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let runtime = args.next().unwrap_or_else(|| "process".into());
    let image = args.next().unwrap_or_else(|| "acs/demo-web:dev".into());
    let docker = match runtime.as_str() {
        "process" => false,
        "docker" => true,
        other => anyhow::bail!("runtime {other:?}: expected process or docker"),
    };

    let tmp = TempDir::new("spike-bench");
    let (mut cluster, _worker) = start_cluster(&tmp, docker, &image).await?;
    let nats = cluster.operator_client().await?;
    let mut trail = nats.subscribe("acs.>").await?;
    nats.flush().await?;
    let whoami = format!("{}/whoami", cluster.proxy_url());

    let (stop_base, base) = load_task(whoami.clone(), BASE_RPS);
    let http: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut spike_reports = Vec::new();
    let mut results = Vec::new();
    for round in 1..=rounds {
        let (out, spike_report) = spike_round(&cluster, &mut trail, &http, &whoami, round).await?;
        spike_reports.push(spike_report);
        results.push(out);
    }
    cluster
        .wait_for_status(Duration::from_secs(90), back_to_one)
        .await?;
    let _ = stop_base.send(());
    let base_report = base.await??;
    cluster.stop();
    print_report(&results, &spike_reports, &base_report, &runtime, rounds);
    Ok(())
}
