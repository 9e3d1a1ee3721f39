//! End to end: a real local cluster (nats-server, vim-brain, two vmm-workers on the process
//! runtime, the Pingora proxy, demo-web replicas). Load through the proxy scales `web` out, the
//! new backends take traffic, the load drops and `web` scales in with drain, and not one request
//! fails through the proxy at any point.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{decode, Decision, DecisionAction, StatusReply};
use acs_testkit::TempDir;
use acsctl::cluster::{ClusterOptions, LocalCluster};
use acsctl::load::{self, LoadOptions, LoadReport};
use futures::StreamExt;
use tokio::sync::oneshot;


/// Scales on requests/s only (CPU is too noisy on shared CI machines to assert counts on),
/// with a short scale-down window so the test sees scale-in within seconds.
const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "2"]
route = { path_prefix = "/" }
selection = "round_robin"

[service.policy]
min_replicas = 1
max_replicas = 4
target_rps_per_replica = 10
scale_up_window_s = 0
scale_down_window_s = 4
max_step_up = 4
max_step_down = 4
drain_timeout_s = 15
stop_grace_s = 5
"#;

fn web(s: &StatusReply) -> &acs_events::ServiceStatus {
    s.services.iter().find(|x| x.name.as_str() == "web").expect("web in status")
}

/// Runs load in the background until the returned sender fires (or `max` passes).
fn background_load(url: String, rps: f64, max: Duration) -> (oneshot::Sender<()>, tokio::task::JoinHandle<LoadReport>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut opts = LoadOptions::new(url, rps, max);
        opts.request_timeout = Duration::from_secs(20);
        load::run(&opts, async { let _ = rx.await; }, |_| {}).await.expect("load options are valid")
    });
    (tx, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_scales_out_and_in_with_zero_failed_requests() {
    let tmp = TempDir::new("scale");
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES).unwrap();
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services;
    opts.workers = 2;
    opts.max_replicas = 4;
    opts.worker_interval_ms = 500;
    opts.ready_timeout = Duration::from_secs(90);
    let mut cluster = LocalCluster::start(opts).await.expect("local cluster starts");

    let client = async_nats::connect(cluster.nats_url()).await.unwrap();
    let decisions: Arc<Mutex<Vec<Decision>>> = Arc::default();
    {
        let mut sub = client.subscribe("acs.events.decision.web").await.unwrap();
        let decisions = decisions.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Ok(d) = decode::<Decision>(&m.payload) {
                    decisions.lock().unwrap().push(d);
                }
            }
        });
    }

    cluster
        .wait_for_status(Duration::from_secs(60), |s| web(s).running == 1)
        .await
        .expect("web starts with min_replicas 1");

    // 1. Load: 45 requests/s against a target of 10 per replica asks for 4 replicas (the max).
    let url = format!("{}/whoami", cluster.proxy_url());
    let (stop_heavy, heavy) = background_load(url.clone(), 45.0, Duration::from_secs(180));
    let out = cluster
        .wait_for_status(Duration::from_secs(90), |s| web(s).running >= 4 && web(s).backends.len() >= 4)
        .await
        .expect("web scales out to 4 replicas under load");
    let new_backends: Vec<String> = web(&out).backends.iter().map(|b| b.id.to_string()).collect();
    let workers: std::collections::BTreeSet<_> = web(&out).backends.iter().map(|b| b.worker.to_string()).collect();
    assert_eq!(workers.len(), 2, "replicas are spread over both workers: {new_backends:?}");
    // Let the new backends take traffic for a while.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop_heavy.send(());
    let heavy = heavy.await.unwrap();
    println!("heavy load: {heavy}");
    assert_eq!(heavy.failed, 0, "no request failed during scale-out: {heavy}");
    for id in &new_backends {
        assert!(heavy.counts.instances.contains_key(id), "backend {id} received traffic: {:?}", heavy.counts.instances);
    }

    // 2. Light load: 3 requests/s keeps requests in flight while replicas drain and stop.
    let (stop_light, light) = background_load(url.clone(), 3.0, Duration::from_secs(180));
    cluster
        .wait_for_status(Duration::from_secs(90), |s| web(s).running == 1 && web(s).backends.len() == 1 && web(s).replicas.len() == 1)
        .await
        .expect("web scales back in to 1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_light.send(());
    let light = light.await.unwrap();
    println!("light load during scale-in: {light}");
    assert_eq!(light.failed, 0, "no request failed during scale-in: {light}");
    assert!(light.ok > 0);

    // 3. Every step was explained.
    let ds = decisions.lock().unwrap().clone();
    let has = |f: &dyn Fn(&DecisionAction) -> bool| ds.iter().any(|d| f(&d.action));
    assert!(has(&|a| matches!(a, DecisionAction::Scale { from: 1, to, manual: false } if *to >= 3)), "scale-out decision: {ds:#?}");
    assert!(has(&|a| matches!(a, DecisionAction::Scale { to: 1, .. })), "scale-in decision");
    assert!(has(&|a| matches!(a, DecisionAction::Place { .. })));
    assert!(has(&|a| matches!(a, DecisionAction::Drain { .. })));
    assert!(has(&|a| matches!(a, DecisionAction::Stop { .. })));
    let exited = cluster.check_children();
    assert!(exited.is_empty(), "no component died: {exited:?}");
    cluster.stop();
}

/// A manual scale through `acs.cmd.scale` takes effect, shows in `acs.status`, and the new
/// replicas serve through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_manual_scale_shows_in_status_and_serves() {
    let tmp = TempDir::new("manual");
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES).unwrap();
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services;
    opts.worker_interval_ms = 500;
    opts.ready_timeout = Duration::from_secs(90);
    let mut cluster = LocalCluster::start(opts).await.expect("local cluster starts");
    cluster.wait_for_status(Duration::from_secs(60), |s| web(s).running == 1).await.unwrap();

    let client = async_nats::connect(cluster.nats_url()).await.unwrap();
    let reply = client.request("acs.cmd.scale", r#"{"service":"web","replicas":3}"#.into()).await.unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["mode"], "manual");
    let s = cluster
        .wait_for_status(Duration::from_secs(60), |s| web(s).running == 3 && web(s).desired == 3)
        .await
        .expect("3 replicas after a manual scale");
    assert_eq!(web(&s).mode, acs_events::ScaleMode::Manual);

    // All three answer through the proxy.
    let url = format!("{}/whoami", cluster.proxy_url());
    let (stop, load) = background_load(url, 30.0, Duration::from_secs(3));
    let report = load.await.unwrap();
    drop(stop);
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.counts.instances.len(), 3, "{:?}", report.counts.instances);

    // Unknown service: a clear error, nothing changes.
    let reply = client.request("acs.cmd.scale", r#"{"service":"api","replicas":3}"#.into()).await.unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["ok"], false);
    assert!(reply["error"].as_str().unwrap().contains("unknown service"), "{reply}");
    cluster.stop();
}
