//! The worker against a real nats-server, running the real `demo-web` binary through the
//! process runtime. Build it first: `cargo build -p demo-web`.

use std::path::Path;
use std::time::Duration;

use acs_events::{Rejection, ReplicaState, RuntimeKind, WorkerId};
use acs_testkit::NatsServer;
use futures::StreamExt;
use serde_json::json;
use vmm_worker::runtime::process::{pid_alive, signal_group};
use vmm_worker::Config;

use crate::common::*;

/// What every test starts with: a nats-server, a state dir, a bus watching worker `w1`, and the
/// worker's config (the test tunes it, then spawns the worker).
async fn setup(tag: &str) -> (NatsServer, StateDir, Bus, Config) {
    let nats = NatsServer::start();
    let dir = StateDir::new(tag);
    let bus = Bus::connect(&nats, "w1").await;
    let cfg = config(&nats, &dir.0);
    (nats, dir, bus, cfg)
}

fn config(nats: &NatsServer, dir: &Path) -> Config {
    let mut c = Config::new(WorkerId::new("w1").unwrap());
    c.nats = acs_node::NatsOptions::new(nats.url());
    c.state_dir = dir.to_path_buf();
    c.interval = Duration::from_millis(300);
    c.health.interval = Duration::from_millis(500);
    c.shutdown_grace = Duration::from_secs(5);
    c.policy.allow_commands = vec![acs_testkit::workspace_bin("demo-web")];
    c
}

fn demo_web() -> String {
    acs_testkit::workspace_bin("demo-web")
        .to_string_lossy()
        .into_owned()
}

fn start_cmd(id: &str, replica: &str) -> serde_json::Value {
    json!({
        "id": id, "action": "start", "replica": replica,
        "spec": {
            "service": "web",
            "command": [demo_web(), "--bind", "127.0.0.1", "--port", "{port}", "--work-ms", "1"],
            "health_path": "/healthz",
            "env": {"RUST_LOG": "warn"}
        }
    })
}

fn stop_cmd(id: &str, replica: &str) -> serde_json::Value {
    json!({"id": id, "action": "stop", "replica": replica, "grace_ms": 3000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_becomes_healthy_serves_and_stops() {
    let (_nats, dir, mut bus, cfg) = setup("basic").await;
    let worker = Worker::spawn(cfg);

    let ack = bus.request(start_cmd("c1", "r1")).await;
    assert!(ack.ok, "{ack:?}");
    let st = ack.replica.expect("status in the ack");
    assert_eq!(st.state, ReplicaState::Starting);
    assert!(st.addr.starts_with("127.0.0.1:"), "{}", st.addr);

    let ev = bus
        .event_where("r1 healthy", |e| {
            e.replica.id.as_str() == "r1" && e.replica.state != ReplicaState::Starting
        })
        .await;
    assert_eq!(ev.replica.state, ReplicaState::Healthy, "{ev:?}");
    assert_eq!(ev.reason, "health check passed");
    assert_eq!(ev.replica.addr, st.addr);

    // The request reaches the replica, which knows its id from ACS_REPLICA.
    let who = whoami(&st.addr).await;
    assert_eq!(who["instance"], "r1");
    let pid = who["pid"].as_u64().unwrap() as u32;
    let (status, body) = http_get(&st.addr, "/work?ms=5").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "r1 did 5 ms of work\n"));

    let m = bus
        .metrics_where("r1 healthy with memory", |m| {
            m.replicas.iter().any(|r| {
                r.id.as_str() == "r1" && r.state == ReplicaState::Healthy && r.mem_bytes > 0
            })
        })
        .await;
    assert_eq!(m.capacity.running, 1);
    assert_eq!(m.capacity.max_replicas, 4);
    assert_eq!(m.runtime, RuntimeKind::Process);
    assert!(m.host.cpus >= 1 && m.host.mem_total_bytes > 0);
    let m2 = bus.metrics_where("next", |_| true).await;
    assert!(m2.seq > m.seq && m2.started_ms == m.started_ms);

    let ack = bus.request(stop_cmd("c2", "r1")).await;
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.replica.unwrap().state, ReplicaState::Stopping);
    let ev = bus
        .event_where("r1 exited", |e| is(e, "r1", ReplicaState::Exited))
        .await;
    assert!(ev.reason.starts_with("stopped"), "{}", ev.reason);
    assert!(!pid_alive(pid));
    assert!(http_get(&st.addr, "/healthz").await.is_err());
    assert!(dir.pids().is_empty(), "state file removed");
    bus.metrics_where("no replicas", |m| {
        m.replicas.is_empty() && m.capacity.running == 0
    })
    .await;

    // Stopping it again (new id) is fine.
    assert!(bus.request(stop_cmd("c3", "r1")).await.ok);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_and_duplicate_command_ids() {
    let (_nats, dir, mut bus, mut cfg) = setup("cap").await;
    cfg.max_replicas = 1;
    let worker = Worker::spawn(cfg);

    let first = bus.request(start_cmd("c1", "r1")).await;
    assert!(first.ok, "{first:?}");
    let full = bus.request(start_cmd("c2", "r2")).await;
    assert!(!full.ok);
    assert_eq!(
        full.error.as_deref(),
        Some("worker w1 is full: 1/1 replicas")
    );

    let dup = bus.request(start_cmd("c1", "r1")).await;
    assert!(dup.duplicate && dup.ok);
    assert_eq!(
        dup.replica.as_ref().unwrap().addr,
        first.replica.as_ref().unwrap().addr
    );

    bus.event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    // A retried start with a new id finds it running.
    let again = bus.request(start_cmd("c3", "r1")).await;
    assert!(again.ok && !again.duplicate);
    assert_eq!(again.replica.unwrap().state, ReplicaState::Healthy);
    let m = bus
        .metrics_where("one healthy replica", |m| m.replicas.len() == 1)
        .await;
    assert_eq!(m.capacity.running, 1);
    assert_eq!(dir.pids().len(), 1, "exactly one process");

    worker.shutdown().await;
    // Without --keep-replicas the replica goes with the worker.
    let pids = dir.pids();
    assert!(pids.is_empty(), "state files left: {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_get_error_acks_and_the_worker_keeps_serving() {
    let (_nats, _dir, mut bus, cfg) = setup("bad").await;
    let worker = Worker::spawn(cfg);
    let mut rejections = bus
        .client
        .subscribe(bus.subjects.rejections("vmm-worker"))
        .await
        .unwrap();
    bus.client.flush().await.unwrap();

    let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
        (b"{not json".to_vec(), None, "invalid JSON"),
        (br#"{"id":"c1","action":"start","replica":7,"spec":{}}"#.to_vec(), Some("c1"), "invalid type"),
        (br#"{"id":"c2","action":"stop","replica":"r.1"}"#.to_vec(), Some("c2"), "replica id"),
        (br#"{"id":"c3","action":"stop","replica":"r1","grace_ms":-1}"#.to_vec(), Some("c3"), "-1"),
        (br#"{"id":"c4","action":"launch","replica":"r1"}"#.to_vec(), Some("c4"), "unknown variant"),
        (br#"{"id":"a b","action":"stop","replica":"r1"}"#.to_vec(), None, "command id"),
        (format!("{{\"id\":\"c5\",\"pad\":\"{}\"}}", "x".repeat(300 * 1024)).into_bytes(), None, "limit"),
        (
            serde_json::to_vec(&json!({"id":"c6","action":"start","replica":"r1","spec":{"service":"web","command":["x"],"memory_mb":0}})).unwrap(),
            Some("c6"),
            "memory_mb",
        ),
    ];
    let n = cases.len() as u64;
    for (payload, id, needle) in cases {
        let ack = bus.raw_request(payload).await;
        assert!(!ack.ok, "{ack:?}");
        assert_eq!(ack.id.as_ref().map(|i| i.as_str()), id, "{ack:?}");
        let err = ack.error.unwrap();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
    // A start whose program does not exist: a clear error, nothing runs.
    let mut bad = start_cmd("c7", "r9");
    bad["spec"]["command"] = json!(["no-such-program-xyz"]);
    let ack = bus.request(bad).await;
    assert!(
        !ack.ok && ack.error.as_deref().unwrap().contains("not found in PATH"),
        "{ack:?}"
    );

    // A command nobody waits for: a Rejection event.
    bus.client
        .publish(
            bus.subjects.worker_command(&WorkerId::new("w1").unwrap()),
            serde_json::to_vec(&stop_cmd("c8", "r1")).unwrap().into(),
        )
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, rejections.next())
        .await
        .expect("a rejection")
        .unwrap();
    let rej: Rejection = acs_events::decode(&msg.payload).unwrap();
    assert_eq!(rej.kind, "no_reply");
    assert_eq!(rej.total, n + 1);

    let m = bus
        .metrics_where("rejected counted", |m| m.rejected > n)
        .await;
    assert_eq!(m.rejected, n + 1);

    // Still serving.
    bus.start_healthy(start_cmd("c9", "r1")).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_worker_adopts_running_replicas() {
    let (_nats, dir, mut bus, mut cfg) = setup("adopt").await;
    cfg.keep_replicas = true;

    let worker = Worker::spawn(cfg.clone());
    let addr = bus.start_healthy(start_cmd("c1", "r1")).await;
    let pid = whoami(&addr).await["pid"].as_u64().unwrap();
    worker.shutdown().await;

    // The replica outlived its worker.
    assert_eq!(whoami(&addr).await["pid"].as_u64().unwrap(), pid);
    assert_eq!(dir.pids(), vec![pid as u32]);

    let worker = Worker::spawn(cfg);
    let ev = bus
        .event_where("r1 adopted", |e| is(e, "r1", ReplicaState::Starting))
        .await;
    assert!(ev.reason.contains("adopted"), "{}", ev.reason);
    let ev = bus
        .event_where("r1 healthy again", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    assert_eq!(ev.replica.addr, addr);

    // The brain retries the start: no second process.
    let again = bus.request(start_cmd("c2", "r1")).await;
    assert!(again.ok, "{again:?}");
    assert_eq!(again.replica.unwrap().addr, addr);
    let m = bus
        .metrics_where("one replica", |m| {
            m.replicas.len() == 1 && m.replicas[0].mem_bytes > 0
        })
        .await;
    assert_eq!(m.replicas[0].id.as_str(), "r1");
    assert_eq!(whoami(&addr).await["pid"].as_u64().unwrap(), pid);
    assert_eq!(dir.pids().len(), 1);

    // The adopted replica can be stopped, and its exit is seen.
    assert!(bus.request(stop_cmd("c3", "r1")).await.ok);
    bus.event_where("r1 exited", |e| is(e, "r1", ReplicaState::Exited))
        .await;
    wait_until("pid gone", || !pid_alive(pid as u32)).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_replica_is_reported_exited_and_forgotten() {
    let (_nats, dir, mut bus, cfg) = setup("crash").await;
    let worker = Worker::spawn(cfg);
    let addr = bus.start_healthy(start_cmd("c1", "r1")).await;
    let pid = whoami(&addr).await["pid"].as_u64().unwrap() as u32;
    signal_group(pid, libc::SIGKILL);
    let ev = bus
        .event_where("r1 exited", |e| is(e, "r1", ReplicaState::Exited))
        .await;
    assert_eq!(ev.reason, "killed by signal 9");
    bus.metrics_where("forgotten", |m| m.replicas.is_empty())
        .await;
    assert!(dir.pids().is_empty());
    // The id can be started again.
    bus.start_healthy(start_cmd("c2", "r1")).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_that_never_gets_healthy_is_stopped() {
    let (_nats, dir, mut bus, mut cfg) = setup("unhealthy").await;
    cfg.health.start_timeout = Duration::from_secs(2);
    let worker = Worker::spawn(cfg);
    let mut cmd = start_cmd("c1", "r1");
    cmd["spec"]["health_path"] = json!("/nope"); // demo-web answers 404
    let ack = bus.request(cmd).await;
    assert!(ack.ok, "{ack:?}");
    let ev = bus
        .event_where("r1 gave up", |e| {
            e.replica.id.as_str() == "r1" && e.replica.state != ReplicaState::Starting
        })
        .await;
    assert_eq!(
        ev.replica.state,
        ReplicaState::Exited,
        "never healthy: {ev:?}"
    );
    assert!(ev.reason.contains("did not pass"), "{}", ev.reason);
    wait_until("process stopped", || dir.pids().is_empty()).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_keeps_replicas_and_metrics_resume() {
    let (mut nats, _dir, mut bus, cfg) = setup("outage").await;
    let worker = Worker::spawn(cfg);
    let addr = bus.start_healthy(start_cmd("c1", "r1")).await;
    let before = bus.metrics_where("a heartbeat", |_| true).await;

    nats.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        whoami(&addr).await["instance"],
        "r1",
        "replica keeps serving during the outage"
    );
    assert!(!worker.task.is_finished(), "worker survives the outage");
    let restarted_ms = acs_node::unix_ms();
    nats.restart();

    // Same worker (same started_ms), later seq, replica still there.
    let m = bus
        .metrics_where("heartbeats after reconnect", |m| {
            m.ts_ms > restarted_ms && m.replicas.len() == 1
        })
        .await;
    assert!(m.seq > before.seq);
    assert_eq!(m.started_ms, before.started_ms);
    // Commands work again.
    let ack = bus.request(start_cmd("c2", "r1")).await;
    assert!(ack.ok, "{ack:?}");
    worker.shutdown().await;
}

/// A replica whose process dies at once (here: a flag demo-web does not know) may exit before
/// its start is recorded; the exit must still be reported, not left `starting` until the
/// start timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_exits_at_once_is_reported_exited() {
    let (_nats, _dir, mut bus, cfg) = setup("exit-at-once").await;
    let worker = Worker::spawn(cfg);
    for i in 0..3 {
        let (id, replica) = (format!("x{i}"), format!("rx{i}"));
        let cmd = json!({
            "id": id, "action": "start", "replica": replica,
            "spec": {"service": "web", "command": [demo_web(), "--no-such-flag"], "health_path": "/healthz"}
        });
        let ack = bus.request(cmd).await;
        assert!(ack.ok, "the start itself is accepted: {ack:?}");
        let ev = bus
            .event_where("exited", |e| is(e, &replica, ReplicaState::Exited))
            .await;
        assert!(ev.reason.contains("exited with status"), "{}", ev.reason);
    }
    worker.shutdown().await;
}
