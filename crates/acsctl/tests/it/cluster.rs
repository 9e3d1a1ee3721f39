//! `LocalCluster`: clear errors before anything starts, and a smoke test of a real local
//! cluster (nats-server, vim-brain, one worker, proxy) serving demo-web through the proxy.
//! The scaling end-to-end tests live with the lead's e2e suite.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use acs_cluster::{ClusterError, ClusterOptions, LocalCluster};
use acs_testkit::TempDir;
use acsctl::load::{self, LoadOptions};

fn services_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("services.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const WEB: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "1"]
route = { path_prefix = "/" }
policy = { min_replicas = 1, max_replicas = 2 }
"#;

#[tokio::test]
async fn missing_binaries_are_named() {
    let tmp = TempDir::new("nobin");
    let mut o = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    o.bin_dir = Some(tmp.path().to_path_buf());
    o.services = services_file(tmp.path(), WEB);
    let err = LocalCluster::start(o).await.err().expect("must fail");
    assert!(matches!(err, ClusterError::MissingBinary { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("vim-brain not found") && msg.contains("cargo build"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_services_file_is_reported_before_anything_starts() {
    acs_testkit::workspace_bin("vim-brain");
    let tmp = TempDir::new("badsvc");
    let mut o = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    o.services = services_file(tmp.path(), "[[service]]\nname = \"web\"\nreplicas = 3\n");
    let nats_port = o.nats_port;
    let err = LocalCluster::start(o).await.err().expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, ClusterError::BadServices { .. }), "{msg}");
    assert!(msg.contains("replicas"), "{msg}");
    // Nothing was started.
    assert!(TcpListener::bind(("127.0.0.1", nats_port)).is_ok());

    let mut o = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    o.services = tmp.path().join("nope.toml");
    let err = LocalCluster::start(o).await.err().expect("must fail");
    assert!(matches!(err, ClusterError::NoServicesFile(_)), "{err}");
}

#[tokio::test]
async fn busy_ports_are_refused() {
    acs_testkit::workspace_bin("vim-brain");
    let tmp = TempDir::new("busy");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut o = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    o.services = services_file(tmp.path(), WEB);
    o.proxy_listen = busy.local_addr().unwrap();
    let err = LocalCluster::start(o).await.err().expect("must fail");
    assert!(
        matches!(err, ClusterError::PortInUse { what: "proxy", .. }),
        "{err}"
    );
}

/// Whether `pid` is still a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_serves_through_the_proxy_and_stops_cleanly() {
    for bin in ["vim-brain", "vmm-worker", "acs-proxy", "demo-web"] {
        acs_testkit::workspace_bin(bin);
    }
    let tmp = TempDir::new("up");
    let mut o = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    o.workers = 1;
    o.max_replicas = 2;
    o.services = services_file(tmp.path(), WEB);
    o.ready_timeout = Duration::from_secs(60);
    let mut cluster = LocalCluster::start(o)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));

    let status = cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            s.services
                .iter()
                .any(|svc| svc.name.as_str() == "web" && svc.running >= 1)
        })
        .await
        .unwrap_or_else(|e| panic!("web never ran: {e}"));
    let replica_addr = status.services[0].backends[0].addr.clone();

    // Secured by default: nobody without a credential gets in, and the viewer may watch but
    // not steer (its scale request is refused by the server and changes nothing).
    let anonymous = acs_node::NatsOptions::new(cluster.nats_url())
        .connect_once(Duration::from_secs(3))
        .await;
    let err = anonymous
        .expect_err("an anonymous client is refused")
        .to_string();
    assert!(err.contains("refused these credentials"), "{err}");
    let viewer = acsctl::client::connect(
        &cluster.nats_options(&acs_auth::Role::Viewer),
        Duration::from_secs(3),
    )
    .await
    .expect("the viewer connects");
    let mut watch = viewer.subscribe("acs.metrics.>").await.unwrap();
    let seen =
        tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut watch)).await;
    assert!(matches!(seen, Ok(Some(_))), "the viewer sees metrics");
    let refused = viewer
        .request("acs.cmd.scale", r#"{"service":"web","replicas":0}"#.into())
        .await;
    assert!(
        refused.is_err(),
        "a viewer's scale request gets no answer: {refused:?}"
    );
    // The CLI as the viewer: a permissions error that says so, not a time-out.
    let viewer_seed = cluster.auth_dir().seed_file(&acs_auth::Role::Viewer);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_acsctl"))
        .args([
            "--prefix",
            "acs",
            "scale",
            "web",
            "0",
            "--timeout",
            "20s",
            "--nats",
            &cluster.nats_url(),
        ])
        .arg("--nats-nkey")
        .arg(&viewer_seed)
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("NATS refused it") && stderr.contains("Permissions Violation"),
        "{stderr}"
    );
    let web = |s: &acs_events::StatusReply| {
        s.services
            .iter()
            .find(|x| x.name.as_str() == "web")
            .map(|x| (x.desired, x.mode))
    };
    let after = cluster.status().await.unwrap();
    assert_eq!(
        web(&after),
        web(&status),
        "the viewer's request changed nothing"
    );

    // Traffic through the proxy reaches a demo-web replica (poll: the proxy learns the
    // backend a moment after the brain counts it).
    let url = format!("{}/whoami", cluster.proxy_url());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let r = load::run(
            &LoadOptions::new(url.clone(), 20.0, Duration::from_secs(1)),
            std::future::pending(),
            |_| {},
        )
        .await
        .unwrap();
        if r.ok > 0 || std::time::Instant::now() > deadline {
            break r;
        }
    };
    assert!(
        report.ok > 0,
        "no request succeeded through the proxy: {report}"
    );
    assert!(!report.counts.instances.is_empty(), "{report}");

    // A second cluster on the same directory is refused (worker state must not be shared).
    let mut again = ClusterOptions::with_free_ports(cluster.dir());
    again.services = services_file(tmp.path(), WEB);
    let err = LocalCluster::start(again)
        .await
        .err()
        .expect("second cluster must fail");
    assert!(matches!(err, ClusterError::DirInUse(_)), "{err}");

    let pids: Vec<u32> = cluster
        .names()
        .iter()
        .filter_map(|n| cluster.pid(n))
        .collect();
    // nats-server, monitor, vim-brain, w1, proxy.
    assert_eq!(pids.len(), 5, "{:?}", cluster.names());
    assert!(cluster.check_children().is_empty());
    assert!(cluster.log_path("w1").is_file());

    cluster.stop();
    for pid in pids {
        assert!(!alive(pid), "child {pid} still running after stop");
    }
    // The worker stopped its replica too.
    let replica_port: u16 = replica_addr.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", replica_port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "replica on {replica_addr} still answers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
