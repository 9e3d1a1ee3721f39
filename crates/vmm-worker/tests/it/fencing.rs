//! Fencing by leader term and by instance, through a real nats-server and the fake runtime.

use std::sync::Arc;
use std::time::Duration;

use acs_events::WorkerId;
use acs_testkit::NatsServer;
use serde_json::json;
use vmm_worker::runtime::fake::FakeRuntime;
use vmm_worker::Config;

use crate::common::*;

async fn setup() -> (NatsServer, Bus, Arc<FakeRuntime>, Config) {
    let nats = NatsServer::start();
    let bus = Bus::connect(&nats, "w1").await;
    let mut c = Config::new(WorkerId::new("w1").unwrap());
    c.nats = acs_node::NatsOptions::new(nats.url());
    c.interval = Duration::from_millis(200);
    c.health.interval = Duration::from_millis(100);
    c.policy.allow_commands = vec!["/bin/sh".into()];
    (nats, bus, Arc::new(FakeRuntime::new()), c)
}

fn start_cmd(id: &str, replica: &str, term: u64) -> serde_json::Value {
    json!({
        "id": id, "action": "start", "replica": replica, "term": term,
        "spec": {"service": "web", "command": ["sh", "-c", "serve {port}"]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_term_is_fenced_and_a_wrong_instance_refused() {
    let (_nats, mut bus, rt, cfg) = setup().await;
    let worker = Worker::spawn_with(cfg, rt.clone());
    let mut rejections = bus.watch_rejections().await;
    let m = bus
        .metrics_where("a heartbeat with an instance", |m| !m.instance.is_empty())
        .await;
    assert_eq!(m.instance.len(), 16, "{:?}", m.instance);

    assert!(bus.request(start_cmd("c1", "r1", 5)).await.ok);
    let ack = bus.request(start_cmd("c2", "r2", 4)).await;
    assert!(!ack.ok);
    assert!(
        ack.error
            .as_deref()
            .unwrap()
            .contains("from term 4, but term 5 leads"),
        "{ack:?}"
    );
    assert_eq!(next_rejection(&mut rejections).await.kind, "fenced");
    assert_eq!(rt.starts(), 1, "the fenced start ran nothing");
    assert!(bus.request(start_cmd("c3", "r3", 5)).await.ok);
    assert!(bus.request(start_cmd("c4", "r4", 6)).await.ok);

    let mut other = start_cmd("c5", "r5", 6);
    other["instance"] = json!("0000000000000000");
    let ack = bus.request(other).await;
    assert!(!ack.ok);
    let err = ack.error.unwrap();
    assert!(
        err.contains("0000000000000000") && err.contains(&m.instance),
        "{err}"
    );
    assert_eq!(next_rejection(&mut rejections).await.kind, "wrong_instance");
    let mut mine = start_cmd("c6", "r6", 6);
    mine["instance"] = json!(m.instance);
    assert!(bus.request(mine).await.ok);
    bus.metrics_where("both counted", |m| m.rejected == 2).await;
    assert_eq!(rt.starts(), 4);
    worker.shutdown().await;
}
