//! The worker's own policy with the process runtime, against a real nats-server: a program or an
//! environment the host does not allow is refused before anything runs (ack, `Rejection`,
//! counter), and secrets are resolved from the worker's secrets dir into the replica's
//! environment without ever being on the bus. (Docker: `tests/it/docker.rs`.)

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use acs_events::{Rejection, ReplicaState, WorkerId};
use acs_testkit::{NatsServer, TempDir};
use futures::StreamExt;
use serde_json::json;
use vmm_worker::policy::Policy;
use vmm_worker::runtime::process::read_record;
use vmm_worker::Config;

use crate::common::*;

const SECRET: &str = "s3cret-value-7f2a";

fn demo_web() -> PathBuf {
    acs_testkit::workspace_bin("demo-web")
}

/// Worker `w1` that may run `demo-web` only, with secrets from `secrets`.
fn allowing_demo_web(nats: &NatsServer, dir: &Path, secrets: &Path) -> Config {
    let mut c = Config::new(WorkerId::new("w1").unwrap());
    c.nats = acs_node::NatsOptions::new(nats.url());
    c.state_dir = dir.to_path_buf();
    c.interval = Duration::from_millis(300);
    c.health.interval = Duration::from_millis(300);
    c.policy = Policy {
        allow_commands: vec![demo_web()],
        secrets_dir: Some(secrets.to_path_buf()),
        ..Policy::default()
    };
    c
}

fn start(
    id: &str,
    replica: &str,
    command: serde_json::Value,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut spec = json!({"service": "web", "command": command, "health_path": "/healthz", "env": {"RUST_LOG": "warn"}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"id": id, "action": "start", "replica": replica, "spec": spec})
}

fn demo_web_cmd() -> serde_json::Value {
    json!([demo_web(), "--bind", "127.0.0.1", "--port", "{port}"])
}

/// A bus watching `w1`, and a subscription to the worker's rejections.
async fn bus_and_rejections(nats: &NatsServer) -> (Bus, async_nats::Subscriber) {
    let bus = Bus::connect(nats, "w1").await;
    let subject = bus.subjects.rejections("vmm-worker");
    let rejections = bus.client.subscribe(subject).await.unwrap();
    bus.client.flush().await.unwrap();
    (bus, rejections)
}

/// No process anywhere has `needle` in its command line.
fn no_process_mentions(needle: &str) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return true;
    };
    !rd.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(needle))
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_environments_not_allowed_are_refused_and_nothing_runs() {
    let nats = NatsServer::start();
    let dir = StateDir::new("allow-refused");
    let secrets = TempDir::new("allow-secrets");
    let (mut bus, mut rejections) = bus_and_rejections(&nats).await;
    let worker = Worker::spawn(allowing_demo_web(&nats, &dir.0, secrets.path()));

    let marker = dir.0.join("pwned");
    let marker_s = marker.to_str().unwrap().to_string();
    let shell = json!(["/bin/sh", "-c", format!("touch {marker_s}")]);
    // A symlink that looks like the allowed program leads to a shell.
    let fake = secrets.path().join("demo-web");
    symlink("/bin/sh", &fake).unwrap();
    let via_link = json!([fake, "-c", format!("touch {marker_s}")]);
    let dotted = format!(
        "{}/../../../../../../../../bin/sh",
        demo_web().parent().unwrap().display()
    );
    let via_dots = json!([dotted, "-c", format!("touch {marker_s}")]);
    let cases = [
        (
            start("c1", "r1", shell, json!({})),
            "forbidden",
            "\"/bin/sh\"",
        ),
        (
            start("c2", "r1", via_link, json!({})),
            "forbidden",
            "is not on this worker's allow-list (--allow-command ",
        ),
        (
            start("c3", "r1", via_dots, json!({})),
            "forbidden",
            "is not on this worker's allow-list",
        ),
        (
            start(
                "c4",
                "r1",
                demo_web_cmd(),
                json!({"env": {"LD_PRELOAD": "/tmp/evil.so"}}),
            ),
            "forbidden",
            "environment variable LD_PRELOAD is refused",
        ),
        (
            start(
                "c5",
                "r1",
                demo_web_cmd(),
                json!({"secrets": {"TOKEN": "nope"}}),
            ),
            "secret",
            "secret \"nope\": not found in",
        ),
    ];
    let n = cases.len() as u64;
    for (i, (cmd, kind, needle)) in cases.into_iter().enumerate() {
        let ack = bus.request(cmd).await;
        assert!(!ack.ok, "{ack:?}");
        let err = ack.error.clone().unwrap();
        assert!(
            err.starts_with("worker w1: ") && err.contains(needle),
            "{err:?} should mention {needle:?}"
        );
        let msg = tokio::time::timeout(WAIT, rejections.next())
            .await
            .expect("a rejection")
            .unwrap();
        let rej: Rejection = acs_events::decode(&msg.payload).unwrap();
        assert_eq!(
            (rej.kind.as_str(), rej.error.as_str(), rej.total),
            (kind, err.as_str(), i as u64 + 1)
        );
        assert_eq!(rej.subject, "acs.cmd.worker.w1");
    }
    let m = bus
        .metrics_where("refusals counted", |m| m.rejected >= n)
        .await;
    assert_eq!(m.rejected, n);
    assert!(m.replicas.is_empty(), "{:?}", m.replicas);

    // Nothing ran: two heartbeats later (the worker has gone on past the refusals), still no
    // state file, no process, no marker.
    let seen = m.seq;
    bus.metrics_where("two more heartbeats", |later| later.seq >= seen + 2)
        .await;
    assert!(dir.pids().is_empty());
    assert!(no_process_mentions(&marker_s));
    assert!(!marker.exists(), "a refused command ran");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_replica_environment_and_nothing_else() {
    let nats = NatsServer::start();
    let dir = StateDir::new("allow-secrets");
    let secrets = TempDir::new("allow-secrets");
    std::fs::write(secrets.path().join("web-token"), format!("{SECRET}\n")).unwrap();
    let mut bus = Bus::connect(&nats, "w1").await;
    // Everything on the bus, to check the value never travels.
    let mut all = bus.client.subscribe(">").await.unwrap();
    bus.client.flush().await.unwrap();
    let worker = Worker::spawn(allowing_demo_web(&nats, &dir.0, secrets.path()));

    // `demo-web` through PATH is the allowed program too.
    let cmd = start(
        "c1",
        "r1",
        demo_web_cmd(),
        json!({"secrets": {"ACS_TOKEN": "web-token"}}),
    );
    let addr = bus.start_healthy(cmd).await;
    assert_eq!(whoami(&addr).await["instance"], "r1");

    let records: Vec<_> = std::fs::read_dir(dir.0.join("replicas"))
        .unwrap()
        .flatten()
        .map(|e| (e.path(), read_record(&e.path()).unwrap()))
        .collect();
    assert_eq!(records.len(), 1);
    let (path, record) = &records[0];
    assert_eq!(
        record.argv[0],
        std::fs::canonicalize(demo_web()).unwrap().to_str().unwrap()
    );
    let environ = std::fs::read(format!("/proc/{}/environ", record.pid)).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ
            .split('\0')
            .any(|kv| kv == format!("ACS_TOKEN={SECRET}")),
        "{environ}"
    );
    assert!(
        !std::fs::read_to_string(path).unwrap().contains(SECRET),
        "the state file holds no secret value"
    );
    assert_eq!(
        record.spec.secrets.get("ACS_TOKEN").map(String::as_str),
        Some("web-token")
    );

    bus.request(json!({"id": "c2", "action": "stop", "replica": "r1", "grace_ms": 3000}))
        .await;
    bus.event_where("r1 exited", |e| is(e, "r1", ReplicaState::Exited))
        .await;
    worker.shutdown().await;
    let mut seen = 0;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), all.next()).await {
        seen += 1;
        assert!(
            !String::from_utf8_lossy(&msg.payload).contains(SECRET),
            "{} carries the secret",
            msg.subject
        );
    }
    assert!(seen > 3, "the bus was watched ({seen} messages)");
}
