//! The brain against a real nats-server. The test plays a worker and a proxy over NATS (it
//! answers commands and publishes metrics) so it can check what the brain sends and how it
//! answers bad input.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::*;
use acs_testkit::NatsServer;
use futures::StreamExt;
use vim_brain::{Config, Services, Settings};

const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}"]
route = { path_prefix = "/" }
policy = { min_replicas = 1, max_replicas = 4, target_rps_per_replica = 20, scale_down_window_s = 1, drain_timeout_s = 5 }
"#;

fn start_brain(url: &str) -> tokio::sync::oneshot::Sender<()> {
    start_brain_task(url).0
}

fn start_brain_task(url: &str) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        nats_url: url.to_string(),
        settings: Settings { warmup_ms: 300, ..Settings::default() },
        tick: Duration::from_millis(100),
        ..Config::default()
    };
    let services = Services::parse(SERVICES).unwrap();
    let task = tokio::spawn(async move {
        vim_brain::run(config, services, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (tx, task)
}

fn metrics(seq: u64, replicas: Vec<ReplicaStatus>) -> WorkerMetrics {
    WorkerMetrics {
        v: 1,
        worker: "w1".parse().unwrap(),
        seq,
        ts_ms: 0,
        started_ms: 0,
        interval_ms: 200,
        runtime: RuntimeKind::Process,
        host: HostMetrics { cpus: 2, ..Default::default() },
        capacity: Capacity { max_replicas: 4, running: replicas.len() as u32 },
        replicas,
        rejected: 0,
    }
}

/// A pretend worker over real NATS: answers start/stop and reports what it "runs".
fn fake_worker(client: async_nats::Client) -> Arc<Mutex<Vec<ReplicaStatus>>> {
    let running: Arc<Mutex<Vec<ReplicaStatus>>> = Arc::default();
    let s = Subjects::default();
    let w: WorkerId = "w1".parse().unwrap();
    {
        let (client, running, s, w) = (client.clone(), running.clone(), s.clone(), w.clone());
        tokio::spawn(async move {
            let mut seq = 0;
            loop {
                seq += 1;
                let m = metrics(seq, running.lock().unwrap().clone());
                let _ = client.publish(s.worker_metrics(&w), encode(&m).into()).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    {
        let running = running.clone();
        tokio::spawn(async move {
            let mut cmds = client.subscribe(s.worker_command(&w)).await.unwrap();
            let mut port = 41000;
            while let Some(m) = cmds.next().await {
                let cmd: WorkerCommand = decode(&m.payload).unwrap();
                let ack = match cmd.action {
                    Action::Start { replica, spec } => {
                        port += 1;
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
                        running.lock().unwrap().push(r.clone());
                        let ev = ReplicaEvent { v: 1, worker: w.clone(), ts_ms: 0, replica: r.clone(), reason: "health check passed".into() };
                        let _ = client.publish(s.replica_events(&w), encode(&ev).into()).await;
                        CommandAck { v: 1, id: Some(cmd.id), ok: true, error: None, replica: Some(r), duplicate: false }
                    }
                    Action::Stop { replica, .. } => {
                        running.lock().unwrap().retain(|r| r.id != replica);
                        CommandAck { v: 1, id: Some(cmd.id), ok: true, error: None, replica: None, duplicate: false }
                    }
                };
                let _ = client.publish(m.reply.unwrap(), encode(&ack).into()).await;
            }
        });
    }
    running
}

async fn request(client: &async_nats::Client, subject: String, payload: Vec<u8>) -> serde_json::Value {
    let m = tokio::time::timeout(Duration::from_secs(10), client.request(subject, payload.into()))
        .await
        .expect("answer within 10 s")
        .expect("request");
    serde_json::from_slice(&m.payload).unwrap()
}

async fn status(client: &async_nats::Client) -> StatusReply {
    let v = request(client, Subjects::default().status(), b"{}".to_vec()).await;
    serde_json::from_value(v).unwrap()
}

/// Status, or `None` while the brain is not yet subscribed.
async fn try_status(client: &async_nats::Client) -> Option<StatusReply> {
    let m = tokio::time::timeout(Duration::from_secs(2), client.request("acs.status", "{}".into())).await.ok()?.ok()?;
    serde_json::from_slice(&m.payload).ok()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_publishes_backends_and_scales_by_hand() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut backends = client.subscribe("acs.backends.web").await.unwrap();
    let mut decisions = client.subscribe("acs.events.decision.web").await.unwrap();
    let running = fake_worker(client.clone());
    let _stop = start_brain(&nats.url());

    // min_replicas 1: the brain places one replica and publishes it once healthy.
    eventually("one backend in status", || async {
        try_status(&client).await.is_some_and(|s| s.services[0].running == 1)
    })
    .await;
    let first: BackendUpdate = decode(&backends.next().await.unwrap().payload).unwrap();
    assert!(matches!(first.change, BackendChange::Reset { .. } | BackendChange::Add { .. }));
    let place: Decision = decode(&decisions.next().await.unwrap().payload).unwrap();
    assert!(matches!(place.action, DecisionAction::Place { .. }), "{place:?}");

    // Manual scale to 3.
    let reply = request(&client, "acs.cmd.scale".into(), br#"{"service":"web","replicas":3}"#.to_vec()).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["mode"], "manual");
    assert!(reply["note"].as_str().unwrap().contains("overridden"), "{reply}");
    eventually("3 running", || async {
        let s = status(&client).await;
        s.services[0].running == 3 && s.services[0].desired == 3 && s.services[0].mode == ScaleMode::Manual
    })
    .await;
    assert_eq!(running.lock().unwrap().len(), 3);

    // Back to 1 by hand: drains (no proxy is running, so drains finish at once), stops, removes.
    let reply = request(&client, "acs.cmd.scale".into(), br#"{"service":"web","replicas":1}"#.to_vec()).await;
    assert_eq!(reply["ok"], true);
    eventually("1 running", || async {
        status(&client).await.services[0].backends.len() == 1 && running.lock().unwrap().len() == 1
    })
    .await;
    let s = status(&client).await;
    assert_eq!(s.workers[0].health, WorkerHealth::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_is_counted() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut rejections = client.subscribe("acs.events.error.brain").await.unwrap();
    let _stop = start_brain(&nats.url());
    let scale = |body: &'static str| {
        let client = client.clone();
        async move { request(&client, "acs.cmd.scale".into(), body.as_bytes().to_vec()).await }
    };
    eventually("brain answers", || async {
        matches!(tokio::time::timeout(Duration::from_millis(500), client.request("acs.status", "".into())).await, Ok(Ok(_)))
    })
    .await;

    let cases = [
        ("{not json", "invalid JSON"),
        (r#"{"service":"web","replicas":"three"}"#, "invalid type"),
        (r#"{"service":"web","replicas":-2}"#, "replicas must be >= 0"),
        (r#"{"service":"nope","replicas":2}"#, "unknown service \"nope\""),
        (r#"{"service":"we.b","replicas":2}"#, "service name"),
        (r#"{"service":"web"}"#, "missing \"replicas\""),
        (r#"{"service":"web","replicas":1,"colour":"red"}"#, "unknown field"),
        ("", "empty"),
    ];
    for (body, expect) in cases {
        let r = scale(body).await;
        assert_eq!(r["ok"], false, "{body} -> {r}");
        let err = r["error"].as_str().unwrap();
        assert!(err.contains(expect), "{body} -> {err}");
    }
    let big = format!(r#"{{"service":"web","replicas":1,"pad":"{}"}}"#, "x".repeat(300_000));
    let r = request(&client, "acs.cmd.scale".into(), big.into_bytes()).await;
    assert!(r["error"].as_str().unwrap().contains("limit"), "{r}");

    // Garbage on subjects nobody replies to: a Rejection event, a counter, and the brain lives on.
    client.publish("acs.metrics.worker.w9", "garbage".into()).await.unwrap();
    let ok = encode(&metrics(1, vec![]));
    client.publish("acs.metrics.worker.w9", ok.into()).await.unwrap(); // payload says w1
    client.publish("acs.metrics.proxy.p1", r#"{"proxy":"p1"}"#.into()).await.unwrap();
    client.publish("acs.events.replica.w1", b"[1,2]".to_vec().into()).await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let m = tokio::time::timeout(Duration::from_secs(10), rejections.next()).await.unwrap().unwrap();
        let r: Rejection = decode(&m.payload).unwrap();
        kinds.push((r.subject, r.error));
    }
    assert!(kinds.iter().any(|(_, e)| e.contains("subject names \"w9\" but payload names \"w1\"")), "{kinds:?}");
    let s = status(&client).await;
    assert!(s.rejected >= 13, "every refusal counted: {}", s.rejected);
    assert!(s.workers.is_empty(), "nothing bad was folded in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_nats_outage() {
    let mut nats = NatsServer::start();
    let (stop, task) = start_brain_task(&nats.url());
    let client = async_nats::connect(nats.url()).await.unwrap();
    eventually("brain answers", || async { try_status(&client).await.is_some() }).await;

    nats.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.restart();
    // The brain reconnects and resubscribes by itself.
    eventually("brain answers after the outage", || async { try_status(&client).await.is_some() }).await;

    // And it still shuts down promptly when told to, even right after an outage.
    nats.stop();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("brain stops within 10 s with NATS down")
        .unwrap();
}
