//! The worker with `--runtime docker` against a real nats-server and the real Docker engine.
//!
//! Each test builds its replica image from the workspace's `demo-web` binary (plus the glibc
//! files it links, so `FROM scratch` works without pulling anything) and removes it on drop.
//! Every test name contains `docker`, so `.config/nextest.toml` runs them one at a time. Without
//! a reachable Docker engine the tests fail, unless `ACS_SKIP_DOCKER_TESTS=1` skips them
//! ([`require_docker`]).

use std::path::Path;
use std::time::Duration;

use acs_events::{ReplicaState, RuntimeKind, WorkerId};
use acs_testkit::docker::{
    docker, require_docker, unique_id, ContainerGuard, NetworkGuard, TestImage,
};
use acs_testkit::NatsServer;
use futures::StreamExt;
use serde_json::json;
use vmm_worker::Config;

use crate::common::*;

/// What every test starts with: the image, a nats-server, a state dir, a worker id of its own
/// whose containers are removed on drop, and a bus watching that worker. Fields drop in order:
/// the containers go before the image they run.
struct Setup {
    containers: ContainerGuard,
    nats: NatsServer,
    dir: StateDir,
    worker: String,
    bus: Bus,
    /// The tag of `_image`.
    image: String,
    _image: TestImage,
}

/// `None` when `ACS_SKIP_DOCKER_TESTS=1` skips the test; panics when no Docker engine answers.
async fn setup(tag: &str) -> Option<Setup> {
    require_docker()?;
    let image_tag = format!("acs-test/demo-web:{}", unique_id("vmmw"));
    let image =
        TestImage::from_workspace_bin("demo-web", &image_tag, 8000).expect("build the test image");
    let nats = NatsServer::start();
    let dir = StateDir::new(&format!("docker-{tag}"));
    let worker = format!("dk{tag}{}", std::process::id());
    let mut containers = ContainerGuard::new();
    containers.label("acs.worker", &worker);
    let bus = Bus::connect(&nats, &worker).await;
    Some(Setup {
        containers,
        nats,
        dir,
        worker,
        bus,
        image: image.tag().to_string(),
        _image: image,
    })
}

impl Setup {
    fn config(&self) -> Config {
        config(&self.nats, &self.worker, &self.dir.0)
    }

    /// Stops `worker` and waits until none of its containers is left.
    async fn shut_down_and_clean_up(&self, worker: Worker) {
        worker.shutdown().await;
        wait_until("containers removed", || self.container_ids().is_empty()).await;
    }

    /// Every container of this worker, running or not.
    fn container_ids(&self) -> Vec<String> {
        self.containers.ids().expect("docker ps")
    }
}

fn config(nats: &NatsServer, worker: &str, dir: &Path) -> Config {
    let mut c = Config::new(WorkerId::new(worker).unwrap());
    c.runtime = RuntimeKind::Docker;
    c.nats = acs_node::NatsOptions::new(nats.url());
    c.state_dir = dir.to_path_buf();
    c.interval = Duration::from_millis(300);
    c.health.interval = Duration::from_millis(500);
    c.shutdown_grace = Duration::from_secs(3);
    // The tests' images (`acs-test/demo-web:<id>`, and a missing `acs-test/no-such-image`).
    c.policy.allow_images = vec!["acs-test/*".into()];
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
    let Some(mut t) = setup("life").await else {
        return;
    };
    let worker = Worker::spawn(t.config());

    let ack = t.bus.request(start_cmd("c1", "r1", &t.image)).await;
    assert!(ack.ok, "{ack:?}");
    let st = ack.replica.unwrap();
    assert_eq!(st.state, ReplicaState::Starting);
    assert!(st.addr.starts_with("127.0.0.1:"), "{}", st.addr);
    t.bus
        .event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    assert_eq!(whoami(&st.addr).await["instance"], "r1");

    // Labels and limits.
    let ids = t.container_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let limits = docker(&["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{index .Config.Labels \"acs.replica\"}} {{index .Config.Labels \"acs.service\"}}", &ids[0]]).unwrap();
    assert_eq!(limits, format!("500000000 {} r1 web", 64 * 1024 * 1024));
    // Hardened: no new privileges, no capabilities, a pids limit, the port bound to the
    // advertise address only (and demo-web still serves, above).
    let hardening = docker(&["inspect", "-f", "{{json .HostConfig.SecurityOpt}} {{json .HostConfig.CapDrop}} {{json .HostConfig.CapAdd}} {{.HostConfig.PidsLimit}} {{(index (index .HostConfig.PortBindings \"8000/tcp\") 0).HostIp}}", &ids[0]]).unwrap();
    assert_eq!(
        hardening,
        r#"["no-new-privileges"] ["ALL"] null 256 127.0.0.1"#
    );

    // Stats from the Docker stats stream.
    t.bus
        .metrics_where("r1 memory from docker stats", |m| {
            m.runtime == RuntimeKind::Docker
                && m.replicas
                    .iter()
                    .any(|r| r.id.as_str() == "r1" && r.mem_bytes > 0)
        })
        .await;

    // A crash (docker kill) is reported from the event stream, and the container is removed.
    docker(&["kill", &ids[0]]).unwrap();
    let ev = t
        .bus
        .event_where("r1 exited", |e| is(e, "r1", ReplicaState::Exited))
        .await;
    assert_eq!(ev.reason, "exited with status 137");
    wait_until("container removed", || t.container_ids().is_empty()).await;

    // Start and stop by command.
    t.bus.start_healthy(start_cmd("c2", "r2", &t.image)).await;
    let ack = t.bus.request(stop_cmd("c3", "r2")).await;
    assert!(ack.ok, "{ack:?}");
    let ev = t
        .bus
        .event_where("r2 exited", |e| is(e, "r2", ReplicaState::Exited))
        .await;
    assert!(ev.reason.starts_with("stopped"), "{}", ev.reason);
    wait_until("container removed", || t.container_ids().is_empty()).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_restart_adopts_containers_by_label() {
    let Some(mut t) = setup("adopt").await else {
        return;
    };
    let mut cfg = t.config();
    cfg.keep_replicas = true;

    let worker = Worker::spawn(cfg.clone());
    let addr = t.bus.start_healthy(start_cmd("c1", "r1", &t.image)).await;
    worker.shutdown().await;
    assert_eq!(
        whoami(&addr).await["instance"],
        "r1",
        "the container outlived its worker"
    );
    let before = t.container_ids();
    assert_eq!(before.len(), 1);

    let worker = Worker::spawn(cfg.clone());
    let ev = t
        .bus
        .event_where("r1 adopted", |e| is(e, "r1", ReplicaState::Starting))
        .await;
    assert!(ev.reason.contains("adopted"), "{}", ev.reason);
    t.bus
        .event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    let again = t.bus.request(start_cmd("c2", "r1", &t.image)).await;
    assert!(again.ok, "{again:?}");
    assert_eq!(again.replica.unwrap().addr, addr);
    assert_eq!(t.container_ids(), before, "no second container");
    worker.shutdown().await;

    // Without --keep-replicas the worker takes its containers down.
    cfg.keep_replicas = false;
    let worker = Worker::spawn(cfg);
    t.bus
        .event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    t.shut_down_and_clean_up(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_bad_specs_get_clear_errors() {
    let Some(t) = setup("bad").await else {
        return;
    };
    let worker = Worker::spawn(t.config());

    let ack = t
        .bus
        .request(start_cmd("c1", "r1", "acs-test/no-such-image:nope"))
        .await;
    assert!(!ack.ok);
    assert!(
        ack.error.as_deref().unwrap().contains("not found locally"),
        "{ack:?}"
    );

    let mut cmd = start_cmd("c2", "r1", &t.image);
    cmd["spec"]["port"] = json!(0);
    let ack = t.bus.request(cmd).await;
    assert!(
        ack.error.as_deref().unwrap_or("").contains("spec.port"),
        "{ack:?}"
    );

    let mut cmd = start_cmd("c3", "r1", &t.image);
    cmd["spec"]["image"] = serde_json::Value::Null;
    cmd["spec"]["command"] = json!(["demo-web"]);
    let ack = t.bus.request(cmd).await;
    assert!(
        ack.error.as_deref().unwrap_or("").contains("no image"),
        "{ack:?}"
    );

    assert!(t.container_ids().is_empty());
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_container_ip_on_a_network() {
    let Some(mut t) = setup("net").await else {
        return;
    };
    // Declared after the setup, so dropped before it: its guard forces any container still
    // attached off the network first.
    let net = NetworkGuard::create(&format!("acs-test-{}", t.worker)).expect("create network");
    let mut cfg = t.config();
    cfg.advertise = vmm_worker::config::Advertise::ContainerIp;
    cfg.docker_network = Some(net.name().to_string());
    let worker = Worker::spawn(cfg);

    let ack = t.bus.request(start_cmd("c1", "r1", &t.image)).await;
    assert!(ack.ok, "{ack:?}");
    let addr = ack.replica.unwrap().addr;
    let ids = t.container_ids();
    let ip = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            net.name()
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
    t.bus
        .event_where("r1 healthy", |e| is(e, "r1", ReplicaState::Healthy))
        .await;
    t.shut_down_and_clean_up(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_refuses_images_and_env_not_allowed_and_creates_nothing() {
    let Some(t) = setup("deny").await else {
        return;
    };
    let image = t.image.clone();
    let mut rejections = t
        .bus
        .client
        .subscribe(t.bus.subjects.rejections("vmm-worker"))
        .await
        .unwrap();
    t.bus.client.flush().await.unwrap();
    let worker = Worker::spawn(t.config());

    let mut env = start_cmd("c2", "r1", &image);
    env["spec"]["env"]["LD_PRELOAD"] = json!("/tmp/evil.so");
    let cases = [
        (
            start_cmd("c1", "r1", "evil:latest"),
            "image \"evil:latest\" is not on this worker's allow-list (--allow-image acs-test/*)",
        ),
        (env, "environment variable LD_PRELOAD is refused"),
    ];
    for (cmd, needle) in cases {
        let ack = t.bus.request(cmd).await;
        assert!(!ack.ok, "{ack:?}");
        assert!(ack.error.as_deref().unwrap().contains(needle), "{ack:?}");
        let msg = tokio::time::timeout(WAIT, rejections.next())
            .await
            .expect("a rejection")
            .unwrap();
        let rej: acs_events::Rejection = acs_events::decode(&msg.payload).unwrap();
        assert_eq!(rej.kind, "forbidden");
    }
    assert!(
        t.container_ids().is_empty(),
        "no container for a refused start"
    );
    worker.shutdown().await;

    // Secure by default: with no allow-list even the test image is refused.
    let mut cfg = t.config();
    cfg.policy.allow_images.clear();
    let worker = Worker::spawn(cfg);
    let ack = t.bus.request(start_cmd("c3", "r1", &image)).await;
    assert!(
        ack.error
            .as_deref()
            .unwrap()
            .contains("allows no images (set --allow-image"),
        "{ack:?}"
    );
    assert!(
        t.container_ids().is_empty(),
        "no container for a refused start"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_starts_cut_short_by_their_deadline_leave_no_container() {
    let Some(t) = setup("deadline").await else {
        return;
    };
    // Deadlines that cut a start short at different points: before, during and after
    // remove / create / start / inspect.
    for (n, ms) in [5u64, 40, 100, 200, 400].into_iter().enumerate() {
        let mut cfg = t.config();
        cfg.start_deadline = Duration::from_millis(ms);
        let worker = Worker::spawn(cfg);
        let id = format!("c{n}");
        let replica = format!("r{n}");
        let ack = t.bus.request(start_cmd(&id, &replica, &t.image)).await;
        if !ack.ok {
            let err = ack.error.as_deref().unwrap_or("");
            assert!(
                err.contains(&format!("did not finish within {ms} ms")),
                "{ack:?}"
            );
        }
        // Started ones go with the worker; abandoned ones must not have left anything.
        t.shut_down_and_clean_up(worker).await;
    }
}
