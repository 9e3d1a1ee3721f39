//! End to end: a real local cluster (nats-server, vim-brain, two vmm-workers on the process
//! runtime, the Pingora proxy, demo-web replicas). Load through the proxy scales `web` out, the
//! new backends take traffic, the load drops and `web` scales in with drain, and not one request
//! fails through the proxy at any point. Each replica that scale-in stops is drained first.

use std::collections::BTreeMap;
use std::time::Duration;

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_events::{
    decode, Action, BackendChange, BackendUpdate, Decision, DecisionAction, ReplicaEvent,
    ReplicaState, WorkerCommand,
};
use acs_testkit::TempDir;

use crate::common::{background_load, decoded, record, web, Recording};

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
scale_up_window = "0s"
scale_down_window = "4s"
max_step_up = 4
max_step_down = 4
drain_timeout = "15s"
stop_grace = "5s"
"#;

/// A local cluster serving [`SERVICES`] from `tmp`, with workers that report every 500 ms and
/// `tune` applied to the options; the temp dir lives as long as the cluster needs it.
async fn start_cluster(
    tag: &str,
    tune: impl FnOnce(&mut ClusterOptions),
) -> (TempDir, LocalCluster) {
    let tmp = TempDir::new(tag);
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES).unwrap();
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services;
    opts.worker_interval_ms = 500;
    opts.ready_timeout = Duration::from_secs(90);
    tune(&mut opts);
    let cluster = LocalCluster::start(opts)
        .await
        .expect("local cluster starts");
    (tmp, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_scales_out_and_in_with_zero_failed_requests() {
    let (_tmp, mut cluster) = start_cluster("scale", |o| {
        o.workers = 2;
        o.max_replicas = 4;
    })
    .await;

    let client = cluster.operator_client().await.unwrap();
    let decisions = record(&client, "acs.events.decision.web".into()).await;
    // Backend updates, worker commands and replica events on one subscription, in the order
    // they happened: the brain publishes updates and commands on one connection, and a worker
    // reports an exit only after it got the stop.
    let trail = record(&client, "acs.>".into()).await;

    cluster
        .wait_for_status(Duration::from_secs(60), |s| web(s).running == 1)
        .await
        .expect("web starts with min_replicas 1");

    // 1. Load: 45 requests/s against a target of 10 per replica asks for 4 replicas (the max).
    let url = format!("{}/whoami", cluster.proxy_url());
    // `web` is held at 1 while the load ramps up, then handed back to its policy: the first
    // automatic decision then reads full seconds of load. A proxy window that caught only the
    // start of the load reads low (17 req/s of 45), and acting on it alone would take two
    // steps (1 -> 2 -> 4) where the load asks for one.
    let scale = |body: &'static str| {
        let client = client.clone();
        async move {
            let reply = client.request("acs.cmd.scale", body.into()).await.unwrap();
            let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(reply["ok"], true, "{reply}");
        }
    };
    scale(r#"{"service":"web","replicas":1}"#).await;
    let (stop_heavy, heavy) = background_load(url.clone(), 45.0, Duration::from_secs(180));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    scale(r#"{"service":"web","auto":true}"#).await;
    let out = cluster
        .wait_for_status(Duration::from_secs(90), |s| {
            web(s).running >= 4 && web(s).backends.len() >= 4
        })
        .await
        .expect("web scales out to 4 replicas under load");
    let new_backends: Vec<String> = web(&out)
        .backends
        .iter()
        .map(|b| b.id.to_string())
        .collect();
    let workers: std::collections::BTreeSet<_> = web(&out)
        .backends
        .iter()
        .map(|b| b.worker.to_string())
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "replicas are spread over both workers: {new_backends:?}"
    );
    // Let the new backends take traffic for a while.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop_heavy.send(());
    let heavy = heavy.await.unwrap();
    println!("heavy load: {heavy}");
    assert_eq!(
        heavy.failed, 0,
        "no request failed during scale-out: {heavy}"
    );
    for id in &new_backends {
        assert!(
            heavy.counts.instances.contains_key(id),
            "backend {id} received traffic: {:?}",
            heavy.counts.instances
        );
    }

    // 2. Light load: 3 requests/s keeps requests in flight while replicas drain and stop.
    let (stop_light, light) = background_load(url.clone(), 3.0, Duration::from_secs(180));
    cluster
        .wait_for_status(Duration::from_secs(90), |s| {
            web(s).running == 1 && web(s).backends.len() == 1 && web(s).replicas.len() == 1
        })
        .await
        .expect("web scales back in to 1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_light.send(());
    let light = light.await.unwrap();
    println!("light load during scale-in: {light}");
    assert_eq!(
        light.failed, 0,
        "no request failed during scale-in: {light}"
    );
    assert!(light.ok > 0);

    // 3. Every step was explained.
    let ds: Vec<Decision> = decoded(&decisions);
    let has = |f: &dyn Fn(&DecisionAction) -> bool| ds.iter().any(|d| f(&d.action));
    assert!(
        has(&|a| matches!(a, DecisionAction::Scale { from: 1, to, manual: false } if *to >= 3)),
        "scale-out decision: {ds:#?}"
    );
    assert!(
        has(&|a| matches!(a, DecisionAction::Scale { to: 1, .. })),
        "scale-in decision"
    );
    assert!(has(&|a| matches!(a, DecisionAction::Place { .. })));
    assert!(has(&|a| matches!(a, DecisionAction::Drain { .. })));
    assert!(has(&|a| matches!(a, DecisionAction::Stop { .. })));

    // 4. Each victim left the rotation (drained) before its worker was told to stop it, and
    //    before it exited.
    let stops = drained_before_stopped(&trail);
    assert!(
        stops >= 3,
        "scale-in from 4 to 1 stops at least 3 replicas, saw {stops}"
    );
    let exited = cluster.check_children();
    assert!(exited.is_empty(), "no component died: {exited:?}");
    cluster.stop();
}

/// A manual scale through `acs.cmd.scale` takes effect, shows in `acs.status`, and the new
/// replicas serve through the proxy.
/// Checks, for every replica in rotation that a worker was told to stop in `trail` (a victim):
/// a backend update drained it (a `drain` naming it, or a `reset` listing it as draining)
/// before the first stop command, and its exit event came after that drain. The number of
/// victims. A replica stopped before it was ever in rotation needs no drain and is not counted.
fn drained_before_stopped(trail: &Recording) -> usize {
    let trail = trail.lock().unwrap().clone();
    let mut first_stop: BTreeMap<String, usize> = BTreeMap::new();
    for (i, m) in trail.iter().enumerate() {
        if !m.subject.starts_with("acs.cmd.worker.") {
            continue;
        }
        if let Ok(WorkerCommand {
            action: Action::Stop { replica, .. },
            ..
        }) = decode(&m.payload)
        {
            first_stop.entry(replica.to_string()).or_insert(i);
        }
    }
    let change = |m: &async_nats::Message| {
        (m.subject.as_str() == "acs.backends.web")
            .then(|| decode::<BackendUpdate>(&m.payload).ok())
            .flatten()
            .map(|u| u.change)
    };
    let drains = |m: &async_nats::Message, victim: &str| match change(m) {
        Some(BackendChange::Drain { ids }) => ids.iter().any(|id| id.as_str() == victim),
        Some(BackendChange::Reset { backends, .. }) => backends
            .iter()
            .any(|b| b.id.as_str() == victim && b.draining),
        _ => false,
    };
    let serves = |m: &async_nats::Message, victim: &str| match change(m) {
        Some(BackendChange::Add { backends } | BackendChange::Reset { backends, .. }) => backends
            .iter()
            .any(|b| b.id.as_str() == victim && !b.draining),
        _ => false,
    };
    let exits = |m: &async_nats::Message, victim: &str| {
        m.subject.starts_with("acs.events.replica.")
            && decode::<ReplicaEvent>(&m.payload).is_ok_and(|e| {
                e.replica.id.as_str() == victim && e.replica.state == ReplicaState::Exited
            })
    };
    first_stop.retain(|victim, stop_at| trail[..*stop_at].iter().any(|m| serves(m, victim)));
    for (victim, &stop_at) in &first_stop {
        let drained_at = trail[..stop_at].iter().position(|m| drains(m, victim));
        let Some(drained_at) = drained_at else {
            panic!(
                "{victim}: stopped (message {stop_at}) without being drained first: {:#?}",
                subjects(&trail)
            );
        };
        let exited_at = trail.iter().position(|m| exits(m, victim));
        assert!(
            exited_at.is_some_and(|e| e > drained_at),
            "{victim}: drained at message {drained_at}, exit at {exited_at:?}: {:#?}",
            subjects(&trail)
        );
    }
    first_stop.len()
}

/// The subjects of `trail` (without the metrics), for a readable panic message.
fn subjects(trail: &[async_nats::Message]) -> Vec<String> {
    trail
        .iter()
        .filter(|m| !m.subject.starts_with("acs.metrics."))
        .map(|m| format!("{} {}", m.subject, String::from_utf8_lossy(&m.payload)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_manual_scale_shows_in_status_and_serves() {
    let (_tmp, mut cluster) = start_cluster("manual", |_| {}).await;
    cluster
        .wait_for_status(Duration::from_secs(60), |s| web(s).running == 1)
        .await
        .unwrap();

    let client = cluster.operator_client().await.unwrap();
    let reply = client
        .request("acs.cmd.scale", r#"{"service":"web","replicas":3}"#.into())
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["mode"], "manual");
    let s = cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            web(s).running == 3 && web(s).desired == 3
        })
        .await
        .expect("3 replicas after a manual scale");
    assert_eq!(web(&s).mode, acs_events::ScaleMode::Manual);

    // All three answer through the proxy.
    let url = format!("{}/whoami", cluster.proxy_url());
    let (stop, load) = background_load(url, 30.0, Duration::from_secs(3));
    let report = load.await.unwrap();
    drop(stop);
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(
        report.counts.instances.len(),
        3,
        "{:?}",
        report.counts.instances
    );

    // Unknown service: a clear error, nothing changes.
    let reply = client
        .request("acs.cmd.scale", r#"{"service":"api","replicas":3}"#.into())
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"].as_str().unwrap().contains("unknown service"),
        "{reply}"
    );
    cluster.stop();
}
