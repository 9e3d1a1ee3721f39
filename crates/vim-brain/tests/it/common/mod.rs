//! What the brain's NATS tests share: the brain started in-process with `vim_brain::run`, and
//! a pretend worker and proxy that talk to it over a real nats-server. The worker and proxy are
//! fakes (no processes, no Pingora): they answer commands and publish the metrics a test sets.
#![allow(dead_code)] // each test file uses a part

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::*;
use acs_testkit::msg::proxy_metrics;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vim_brain::{Config, Services, Settings};

pub const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}"]
route = { path_prefix = "/" }
policy = { min_replicas = 1, max_replicas = 4, target_rps_per_replica = 20, scale_down_window_s = 1, drain_timeout_s = 5 }
"#;

/// A brain running in this process.
pub struct Brain {
    stop: oneshot::Sender<()>,
    pub task: JoinHandle<()>,
}

impl Brain {
    pub fn start(url: &str) -> Self {
        Self::start_as(url, "brain-1", 1500)
    }

    /// As brain instance `instance`, with a lease of `lease_ms`.
    pub fn start_as(url: &str, instance: &str, lease_ms: u64) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let config = Config {
            nats: acs_node::NatsOptions::new(url),
            settings: Settings {
                warmup_ms: 300,
                ..Settings::default()
            },
            tick: Duration::from_millis(100),
            lease: vim_brain::lease::LeaseConfig {
                instance: instance.into(),
                lease_ms,
                ..Default::default()
            },
            ..Config::default()
        };
        let services = Services::parse(SERVICES).unwrap();
        let task = tokio::spawn(async move {
            vim_brain::run(config, services, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self { stop, task }
    }

    /// Asks it to stop and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("brain stops within 10 s")
            .unwrap();
    }

    /// Asks it to stop, and hands back its task to wait on.
    pub fn signal_stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(());
        self.task
    }
}

pub fn metrics(seq: u64, replicas: Vec<ReplicaStatus>) -> WorkerMetrics {
    WorkerMetrics {
        v: 1,
        worker: "w1".parse().unwrap(),
        seq,
        ts_ms: 0,
        started_ms: 0,
        instance: String::new(),
        interval_ms: 200,
        runtime: RuntimeKind::Process,
        host: HostMetrics {
            cpus: 2,
            ..Default::default()
        },
        capacity: Capacity {
            max_replicas: 4,
            running: replicas.len() as u32,
        },
        replicas,
        rejected: 0,
    }
}

/// A pretend worker `w1` over real NATS: answers start/stop, reports what it "runs".
#[derive(Clone, Default)]
pub struct FakeWorker {
    pub running: Arc<Mutex<Vec<ReplicaStatus>>>,
    /// Every start command it was sent.
    pub starts: Arc<Mutex<Vec<ReplicaId>>>,
}

impl FakeWorker {
    /// Ids of what it runs, sorted.
    pub fn running_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .running
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        ids.sort();
        ids
    }

    pub fn start_count(&self) -> usize {
        self.starts.lock().unwrap().len()
    }
}

pub fn fake_worker(client: async_nats::Client) -> FakeWorker {
    let fake = FakeWorker::default();
    let s = Subjects::default();
    let w: WorkerId = "w1".parse().unwrap();
    {
        let (client, running, s, w) = (client.clone(), fake.running.clone(), s.clone(), w.clone());
        tokio::spawn(async move {
            let mut seq = 0;
            loop {
                seq += 1;
                let m = metrics(seq, running.lock().unwrap().clone());
                let _ = client
                    .publish(s.worker_metrics(&w), encode(&m).into())
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    {
        let fake = fake.clone();
        tokio::spawn(async move {
            let mut cmds = client.subscribe(s.worker_command(&w)).await.unwrap();
            let mut port = 41000;
            while let Some(m) = cmds.next().await {
                let cmd: WorkerCommand = decode(&m.payload).unwrap();
                let ack = match cmd.action {
                    Action::Start { replica, spec } => {
                        port += 1;
                        fake.starts.lock().unwrap().push(replica.clone());
                        let r = ReplicaStatus {
                            id: replica,
                            service: spec.service,
                            addr: format!("127.0.0.1:{port}"),
                            state: ReplicaState::Healthy,
                            cpu_pct: 0.0,
                            mem_bytes: 0,
                            started_ms: port,
                            restarts: 0,
                        };
                        fake.running.lock().unwrap().push(r.clone());
                        let ev = ReplicaEvent {
                            v: 1,
                            worker: w.clone(),
                            ts_ms: 0,
                            replica: r.clone(),
                            reason: "health check passed".into(),
                        };
                        let _ = client
                            .publish(s.replica_events(&w), encode(&ev).into())
                            .await;
                        CommandAck {
                            v: 1,
                            id: Some(cmd.id),
                            ok: true,
                            error: None,
                            replica: Some(r),
                            duplicate: false,
                        }
                    }
                    Action::Stop { replica, .. } => {
                        fake.running.lock().unwrap().retain(|r| r.id != replica);
                        CommandAck {
                            v: 1,
                            id: Some(cmd.id),
                            ok: true,
                            error: None,
                            replica: None,
                            duplicate: false,
                        }
                    }
                };
                let _ = client.publish(m.reply.unwrap(), encode(&ack).into()).await;
            }
        });
    }
    fake
}

/// A pretend proxy `p1` reporting `rps` requests per second to `web`, every 200 ms. It reports
/// the newest backend version, so drains finish as soon as nothing is in flight (nothing is).
pub fn fake_proxy(client: async_nats::Client) -> Arc<Mutex<f64>> {
    let rps = Arc::new(Mutex::new(0.0));
    let load = rps.clone();
    tokio::spawn(async move {
        let proxy: ProxyId = "p1".parse().unwrap();
        loop {
            let totals = Traffic {
                rps: *load.lock().unwrap(),
                ..Default::default()
            };
            let web = ServiceTraffic {
                service: "web".parse().unwrap(),
                version: u64::MAX,
                totals,
                backends: vec![],
            };
            let m = proxy_metrics(proxy.as_str(), 0, 200, vec![web]);
            let _ = client
                .publish(Subjects::default().proxy_metrics(&proxy), encode(&m).into())
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    rps
}

pub async fn request(
    client: &async_nats::Client,
    subject: String,
    payload: Vec<u8>,
) -> serde_json::Value {
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject, payload.into()),
    )
    .await
    .expect("answer within 10 s")
    .expect("request");
    serde_json::from_slice(&m.payload).unwrap()
}

pub async fn status(client: &async_nats::Client) -> StatusReply {
    let v = request(client, Subjects::default().status(), b"{}".to_vec()).await;
    serde_json::from_value(v).unwrap()
}

/// Status, or `None` while the brain is not yet subscribed.
pub async fn try_status(client: &async_nats::Client) -> Option<StatusReply> {
    let m = tokio::time::timeout(
        Duration::from_secs(2),
        client.request("acs.status", "{}".into()),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice(&m.payload).ok()
}

/// `acs.cmd.scale` with `body`; the reply must say ok.
pub async fn scale(client: &async_nats::Client, body: &str) -> serde_json::Value {
    let reply = request(client, "acs.cmd.scale".into(), body.as_bytes().to_vec()).await;
    assert_eq!(reply["ok"], true, "{body} -> {reply}");
    reply
}

pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    acs_testkit::poll::until(what, Duration::from_secs(20), f).await;
}
