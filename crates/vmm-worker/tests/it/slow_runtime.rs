//! The worker against a real nats-server with a slow runtime (the fake, whose starts take as
//! long as a test says): the heartbeat keeps flowing while starts hang, starts run side by side
//! up to the bound and are abandoned at their deadline, stale commands are refused, `/readyz`
//! follows NATS and the runtime.

use std::sync::Arc;
use std::time::Duration;

use acs_events::{ReplicaId, ReplicaState, WorkerId};
use acs_testkit::NatsServer;
use serde_json::json;
use vmm_worker::runtime::fake::{Call, FakeRuntime};
use vmm_worker::Config;

use crate::common::*;

const INTERVAL: Duration = Duration::from_millis(200);

/// A nats-server, a bus watching `w1`, a fake runtime, and the worker's config.
async fn setup() -> (NatsServer, Bus, Arc<FakeRuntime>, Config) {
    let nats = NatsServer::start();
    let bus = Bus::connect(&nats, "w1").await;
    let mut c = Config::new(WorkerId::new("w1").unwrap());
    c.nats = acs_node::NatsOptions::new(nats.url());
    c.interval = INTERVAL;
    c.health.interval = Duration::from_millis(100);
    c.policy.allow_commands = vec!["/bin/sh".into()];
    (nats, bus, Arc::new(FakeRuntime::new()), c)
}

fn start_cmd(id: &str, replica: &str) -> serde_json::Value {
    json!({
        "id": id, "action": "start", "replica": replica,
        "issued_ms": now_ms(),
        "spec": {"service": "web", "command": ["sh", "-c", "serve {port}"]}
    })
}

use acs_node::unix_ms as now_ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_coming_while_a_start_hangs() {
    let (_nats, mut bus, rt, cfg) = setup().await;
    rt.set_start_delay(INTERVAL * 20);
    let worker = Worker::spawn_with(cfg, rt.clone());
    let first = bus.metrics_where("a first heartbeat", |_| true).await;

    let ack = bus.request_later(start_cmd("c1", "r1"));
    // While the start hangs, heartbeats go on, one after the other, counting its slot.
    let mut seq = first.seq;
    for _ in 0..4 {
        let m = bus
            .metrics_where("a heartbeat during the start", |m| m.capacity.running == 1)
            .await;
        assert!(m.seq > seq, "{} after {seq}", m.seq);
        seq = m.seq;
        assert!(m.replicas.is_empty(), "no address yet: {m:?}");
    }
    assert!(!ack.is_finished(), "the start still hangs");
    assert_eq!(rt.starts(), 0);

    let ack = ack.await.unwrap();
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.replica.unwrap().state, ReplicaState::Starting);
    let m = bus
        .metrics_where("r1 in the heartbeat", |m| m.replicas.len() == 1)
        .await;
    assert_eq!(m.capacity.running, 1);
    assert_eq!(rt.starts(), 1);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_run_side_by_side_up_to_the_bound() {
    let (_nats, mut bus, rt, mut cfg) = setup().await;
    cfg.max_concurrent_starts = 2;
    rt.set_start_delay(Duration::from_millis(800));
    let worker = Worker::spawn_with(cfg, rt.clone());
    bus.metrics_where("a first heartbeat", |_| true).await;

    let acks: Vec<_> = (1..=3)
        .map(|i| bus.request_later(start_cmd(&format!("c{i}"), &format!("r{i}"))))
        .collect();
    // Three slots taken at once (two starting, one waiting for its turn).
    bus.metrics_where("three starts in flight", |m| m.capacity.running == 3)
        .await;
    // The same command again while its start is in flight (sent only now, so that it cannot
    // overtake the first): answered once it is done, as a duplicate, without a second start.
    let dup = bus.request_later(start_cmd("c1", "r1"));
    for a in acks {
        let ack = a.await.unwrap();
        assert!(ack.ok && !ack.duplicate, "{ack:?}");
    }
    let dup = dup.await.unwrap();
    assert!(dup.ok && dup.duplicate, "{dup:?}");
    assert_eq!(rt.starts(), 3);
    assert_eq!(rt.peak_concurrent_starts(), 2);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_past_its_deadline_is_abandoned_and_its_slot_freed() {
    let (_nats, mut bus, rt, mut cfg) = setup().await;
    cfg.max_replicas = 1;
    cfg.start_deadline = Duration::from_millis(600);
    // Past the deadline, but returns before as long again: then it is removed.
    rt.set_start_delay(Duration::from_millis(900));
    let worker = Worker::spawn_with(cfg, rt.clone());
    bus.metrics_where("a first heartbeat", |_| true).await;

    let ack = bus.request(start_cmd("c1", "r1")).await;
    assert!(!ack.ok);
    let err = ack.error.unwrap();
    assert!(
        err.contains("did not finish within 600 ms") && err.contains("abandoned"),
        "{err}"
    );
    let ev = bus
        .event_where("r1 exited", |e| is(e, "r1", ReplicaState::Exited))
        .await;
    assert!(ev.reason.contains("abandoned"), "{}", ev.reason);
    // What it left was removed: the runtime was told to stop it at once.
    assert!(rt.calls().contains(&Call::Stop {
        replica: ReplicaId::new("r1").unwrap(),
        grace: Duration::ZERO
    }));
    assert!(rt.running().is_empty());
    bus.metrics_where("slot free", |m| m.capacity.running == 0)
        .await;

    // The slot is free for the next start.
    rt.set_start_delay(Duration::ZERO);
    let ack = bus.request(start_cmd("c2", "r2")).await;
    assert!(ack.ok, "{ack:?}");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_command_is_refused_counted_and_runs_nothing() {
    let (_nats, mut bus, rt, cfg) = setup().await;
    let worker = Worker::spawn_with(cfg, rt.clone());
    let mut rejections = bus.watch_rejections().await;
    bus.metrics_where("a first heartbeat", |_| true).await;

    let mut cmd = start_cmd("c1", "r1");
    cmd["issued_ms"] = json!(now_ms() - 60_000);
    let ack = bus.request(cmd).await;
    assert!(!ack.ok);
    assert!(
        ack.error.as_deref().unwrap().contains("is stale"),
        "{ack:?}"
    );
    assert_eq!(next_rejection(&mut rejections).await.kind, "stale");
    bus.metrics_where("counted", |m| m.rejected == 1).await;
    assert_eq!(rt.starts(), 0);

    // A fresh one runs.
    assert!(bus.request(start_cmd("c2", "r1")).await.ok);
    assert_eq!(rt.starts(), 1);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_nats_and_the_runtime() {
    let (mut nats, _bus, rt, mut cfg) = setup().await;
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], acs_testkit::free_port()));
    cfg.health_listen = Some(health);
    let worker = Worker::spawn_with(cfg, rt.clone());
    let until =
        |path: &'static str, want| acs_testkit::http::until_status(health, path, want, WAIT);
    until("/readyz", 200).await.unwrap();
    // The runtime stops answering: not ready, though the process answers.
    rt.set_silent(true);
    until("/readyz", 503).await.unwrap();
    until("/healthz", 200).await.unwrap();
    rt.set_silent(false);
    until("/readyz", 200).await.unwrap();
    // NATS gone: not ready.
    nats.stop();
    until("/readyz", 503).await.unwrap();
    worker.shutdown().await;
}
