//! Scale-in ends on the proxy's `BackendDrained` event, not on its metrics tick: a real local
//! cluster (nats-server, vim-brain, one vmm-worker on the process runtime, the Pingora proxy,
//! demo-web replicas) with the proxy's metrics interval set to 10 s. Under load with requests in
//! flight, a manual scale 2 -> 1 drains one replica; the proxy says it drained, the brain stops
//! it naming that event, no proxy metrics message comes in between, and no request fails.

use std::time::Duration;

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_events::{decode, BackendDrained, Decision, DecisionAction, ReplicaEvent, ReplicaState};
use acs_testkit::TempDir;

use crate::common::{record, web, MixedLoad};

const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "1"]
route = { path_prefix = "/" }
selection = "round_robin"
policy = { min_replicas = 1, max_replicas = 4, drain_timeout = "30s", stop_grace = "5s" }
"#;

/// Long enough that a drain ending on the metrics tick would be plain to see.
const PROXY_METRICS_INTERVAL: &str = "10s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_in_ends_on_the_drained_event_not_on_the_metrics_tick() {
    let tmp = TempDir::new("scale-in-event");
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES).unwrap();
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services;
    opts.workers = 1;
    opts.max_replicas = 4;
    opts.worker_interval_ms = 500;
    opts.ready_timeout = Duration::from_secs(90);
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    opts.extra_args.insert(
        "acs-proxy".into(),
        args(&["--metrics-interval", PROXY_METRICS_INTERVAL]),
    );
    // The proxy must stay live for the drain between its 10 s reports.
    opts.extra_args
        .insert("vim-brain".into(), args(&["--proxy-timeout", "30s"]));
    let mut cluster = LocalCluster::start(opts)
        .await
        .expect("local cluster starts");
    let client = cluster.operator_client().await.unwrap();
    let trail = record(&client, "acs.>".into()).await;
    let scale = |n: u32| {
        let client = client.clone();
        async move {
            let body = format!(r#"{{"service":"web","replicas":{n}}}"#);
            let reply = client.request("acs.cmd.scale", body.into()).await.unwrap();
            let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(reply["ok"], true, "{reply}");
        }
    };

    scale(2).await;
    cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            web(s).running == 2 && web(s).backends.len() == 2
        })
        .await
        .expect("web runs 2 replicas");
    // Quick requests and 40 ms ones, so that some may be in flight when the drain begins.
    let load = MixedLoad::start(cluster.proxy_addr(), 20.0, "/work?ms=40", 5.0);
    // The brain counts a proxy only once it has reported: wait for its first metrics.
    let proxy_reports = || {
        trail
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.subject.starts_with("acs.metrics.proxy."))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while proxy_reports() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy never reported its metrics"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    scale(1).await;
    cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            web(s).backends.len() == 1 && web(s).replicas.len() == 1
        })
        .await
        .expect("web scales in to 1");
    let (quick, slow) = load.finish().await;
    assert_eq!(quick.failed, 0, "no quick request failed: {quick}");
    assert_eq!(slow.failed, 0, "no slow request failed: {slow}");
    cluster.stop();

    let trail = trail.lock().unwrap().clone();
    let decision = |i: usize| {
        decode::<Decision>(&trail[i].payload)
            .ok()
            .filter(|_| trail[i].subject.starts_with("acs.events.decision."))
    };
    let drain_at = (0..trail.len())
        .find(|&i| {
            matches!(
                decision(i),
                Some(Decision {
                    action: DecisionAction::Drain { .. },
                    ..
                })
            )
        })
        .expect("a drain decision");
    let Some(Decision {
        action: DecisionAction::Drain {
            replica: victim, ..
        },
        ..
    }) = decision(drain_at)
    else {
        unreachable!()
    };
    let stop_at = (drain_at..trail.len())
        .find(|&i| matches!(decision(i), Some(Decision { action: DecisionAction::Stop { ref replica, .. }, .. }) if *replica == victim))
        .expect("a stop decision for the drained replica");
    let reason = decision(stop_at).unwrap().reason;
    assert!(
        reason.contains("said so in a drained event"),
        "the stop names the event: {reason}"
    );

    let between = &trail[drain_at..stop_at];
    let drained = between.iter().find_map(|m| {
        let d = decode::<BackendDrained>(&m.payload)
            .ok()
            .filter(|_| m.subject.starts_with("acs.events.drained."))?;
        (d.replica == victim).then_some(d)
    });
    let drained =
        drained.expect("the proxy published BackendDrained for the victim before the stop");
    assert!(
        drained.version > 0 && drained.service.as_str() == "web",
        "{drained:?}"
    );
    let exited = trail[stop_at..].iter().any(|m| {
        decode::<ReplicaEvent>(&m.payload)
            .is_ok_and(|e| e.replica.id == victim && e.replica.state == ReplicaState::Exited)
    });
    assert!(exited, "the drained replica exited after its stop");
}
