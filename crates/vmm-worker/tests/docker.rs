//! The worker with `--runtime docker` against a real nats-server and the real Docker engine.
//!
//! Each test builds its replica image from the workspace's `demo-web` binary (plus the glibc
//! files it links, so `FROM scratch` works without pulling anything) and removes it on drop. Every test name contains
//! `docker`, so `.config/nextest.toml` runs them one at a time. Without a reachable Docker engine
//! the tests print why and pass (skipped).

mod common;

use std::path::Path;
use std::time::Duration;

use acs_events::{ReplicaState, RuntimeKind, WorkerId};
use acs_testkit::docker::{docker, docker_available, unique_id, TestImage};
use acs_testkit::NatsServer;
use common::*;
use serde_json::json;
use vmm_worker::Config;

/// Builds a throwaway `FROM scratch` image of the workspace's `demo-web` (removed on drop);
/// `None` (skip) without a Docker engine.
fn test_image() -> Option<TestImage> {
    if let Err(e) = docker_available() {
        eprintln!("skipping: no Docker engine ({e})");
        return None;
    }
    let tag = format!("acs-test/demo-web:{}", unique_id("vmmw"));
    Some(TestImage::from_workspace_bin("demo-web", &tag, 8000).expect("build the test image"))
}

/// Removes every container of `worker` on drop.
struct Containers(String);

impl Containers {
    fn ids(&self) -> Vec<String> {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=acs.worker={}", self.0),
        ])
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = docker(&["rm", "-f", &id]);
        }
    }
}

fn worker_id(tag: &str) -> String {
    format!("dk{tag}{}", std::process::id())
}

fn config(nats: &NatsServer, worker: &str, dir: &Path) -> Config {
    let mut c = Config::new(WorkerId::new(worker).unwrap());
    c.runtime = RuntimeKind::Docker;
    c.nats_url = nats.url();
    c.state_dir = dir.to_path_buf();
    c.interval = Duration::from_millis(300);
    c.health.interval = Duration::from_millis(500);
    c.shutdown_grace = Duration::from_secs(3);
    c
}

fn start_cmd(id: &str, replica: &str, image: &str) -> serde_json::Value {
    json!({
        "id": id, "action": "start", "replica": replica,
        "spec": {
            "service": "web", "image": image, "port": 8000, "health_path": "/healthz",
            "env": {"WORK_MS": "1", "RUST_LOG": "warn"}, "cpus": 0.5, "memory_mb": 64
        }
    })
}

fn stop_cmd(id: &str, replica: &str) -> serde_json::Value {
    json!({"id": id, "action": "stop", "replica": replica, "grace_ms": 3000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_replica_lifecycle() {
    let Some(image) = test_image() else { return };
    let image = image.tag();
    let nats = NatsServer::start();
    let dir = StateDir::new("docker-life");
    let w = worker_id("life");
    let containers = Containers(w.clone());
    let mut bus = Bus::connect(&nats, &w).await;
    let worker = Worker::spawn(config(&nats, &w, &dir.0));

    let ack = bus.request(start_cmd("c1", "r1", image)).await;
    assert!(ack.ok, "{ack:?}");
    let st = ack.replica.unwrap();
    assert_eq!(st.state, ReplicaState::Starting);
    assert!(st.addr.starts_with("127.0.0.1:"), "{}", st.addr);
    bus.event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    assert_eq!(whoami(&st.addr).await["instance"], "r1");

    // Labels and limits.
    let ids = containers.ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let limits = docker(&["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{index .Config.Labels \"acs.replica\"}} {{index .Config.Labels \"acs.service\"}}", &ids[0]]).unwrap();
    assert_eq!(limits, format!("500000000 {} r1 web", 64 * 1024 * 1024));

    // Stats from the Docker stats stream.
    bus.metrics_where("r1 memory from docker stats", |m| {
        m.runtime == RuntimeKind::Docker
            && m.replicas
                .iter()
                .any(|r| r.id.as_str() == "r1" && r.mem_bytes > 0)
    })
    .await;

    // A crash (docker kill) is reported from the event stream, and the container is removed.
    docker(&["kill", &ids[0]]).unwrap();
    let ev = bus
        .event_where("r1 exited", |e| is(e, "r1", ReplicaState::Exited))
        .await;
    assert_eq!(ev.reason, "exited with status 137");
    wait_until("container removed", || containers.ids().is_empty()).await;

    // Start and stop by command.
    let ack = bus.request(start_cmd("c2", "r2", image)).await;
    assert!(ack.ok, "{ack:?}");
    bus.event_where("r2 healthy", |e| is(e, "r2", ReplicaState::Healthy))
        .await;
    let ack = bus.request(stop_cmd("c3", "r2")).await;
    assert!(ack.ok, "{ack:?}");
    let ev = bus
        .event_where("r2 exited", |e| is(e, "r2", ReplicaState::Exited))
        .await;
    assert!(ev.reason.starts_with("stopped"), "{}", ev.reason);
    wait_until("container removed", || containers.ids().is_empty()).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_restart_adopts_containers_by_label() {
    let Some(image) = test_image() else { return };
    let image = image.tag();
    let nats = NatsServer::start();
    let dir = StateDir::new("docker-adopt");
    let w = worker_id("adopt");
    let containers = Containers(w.clone());
    let mut bus = Bus::connect(&nats, &w).await;
    let mut cfg = config(&nats, &w, &dir.0);
    cfg.keep_replicas = true;

    let worker = Worker::spawn(cfg.clone());
    let ack = bus.request(start_cmd("c1", "r1", image)).await;
    let addr = ack.replica.expect("status").addr;
    bus.event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    worker.shutdown().await;
    assert_eq!(
        whoami(&addr).await["instance"],
        "r1",
        "the container outlived its worker"
    );
    let before = containers.ids();
    assert_eq!(before.len(), 1);

    let worker = Worker::spawn(cfg.clone());
    let ev = bus
        .event_where("r1 adopted", |e| is(e, "r1", ReplicaState::Starting))
        .await;
    assert!(ev.reason.contains("adopted"), "{}", ev.reason);
    bus.event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    let again = bus.request(start_cmd("c2", "r1", image)).await;
    assert!(again.ok, "{again:?}");
    assert_eq!(again.replica.unwrap().addr, addr);
    assert_eq!(containers.ids(), before, "no second container");
    worker.shutdown().await;

    // Without --keep-replicas the worker takes its containers down.
    cfg.keep_replicas = false;
    let worker = Worker::spawn(cfg);
    bus.event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    worker.shutdown().await;
    wait_until("containers removed", || containers.ids().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_bad_specs_get_clear_errors() {
    let Some(image) = test_image() else { return };
    let image = image.tag();
    let nats = NatsServer::start();
    let dir = StateDir::new("docker-bad");
    let w = worker_id("bad");
    let containers = Containers(w.clone());
    let bus = Bus::connect(&nats, &w).await;
    let worker = Worker::spawn(config(&nats, &w, &dir.0));

    let ack = bus
        .request(start_cmd("c1", "r1", "acs-test/no-such-image:nope"))
        .await;
    assert!(!ack.ok);
    assert!(
        ack.error.as_deref().unwrap().contains("not found locally"),
        "{ack:?}"
    );

    let mut cmd = start_cmd("c2", "r1", image);
    cmd["spec"]["port"] = json!(0);
    let ack = bus.request(cmd).await;
    assert!(
        ack.error.as_deref().unwrap_or("").contains("spec.port"),
        "{ack:?}"
    );

    let mut cmd = start_cmd("c3", "r1", image);
    cmd["spec"]["image"] = serde_json::Value::Null;
    cmd["spec"]["command"] = json!(["demo-web"]);
    let ack = bus.request(cmd).await;
    assert!(
        ack.error.as_deref().unwrap_or("").contains("no image"),
        "{ack:?}"
    );

    assert!(containers.ids().is_empty());
    worker.shutdown().await;
}

/// Removes a Docker network on drop.
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_container_ip_on_a_network() {
    let Some(image) = test_image() else { return };
    let image = image.tag();
    let nats = NatsServer::start();
    let dir = StateDir::new("docker-net");
    let w = worker_id("net");
    let net = Network(format!("acs-test-{w}"));
    docker(&["network", "create", &net.0]).expect("create network");
    let containers = Containers(w.clone());
    let mut bus = Bus::connect(&nats, &w).await;
    let mut cfg = config(&nats, &w, &dir.0);
    cfg.advertise = vmm_worker::config::Advertise::ContainerIp;
    cfg.docker_network = Some(net.0.clone());
    let worker = Worker::spawn(cfg);

    let ack = bus.request(start_cmd("c1", "r1", image)).await;
    assert!(ack.ok, "{ack:?}");
    let addr = ack.replica.unwrap().addr;
    let ids = containers.ids();
    let ip = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            net.0
        ),
        &ids[0],
    ])
    .unwrap();
    assert_eq!(addr, format!("{ip}:8000"));
    let ports = docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.PortBindings}}",
        &ids[0],
    ])
    .unwrap();
    assert!(
        ports == "{}" || ports == "null",
        "nothing published on the host: {ports}"
    );
    // Health-checked (and reachable) on the container IP.
    bus.event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    worker.shutdown().await;
    wait_until("containers removed", || containers.ids().is_empty()).await;
}
