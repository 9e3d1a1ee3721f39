//! Maintenance on a real local cluster (nats-server, vim-brain, three vmm-workers on the process
//! runtime, the Pingora proxy, demo-web replicas): `acsctl drain` moves every replica off a
//! worker make-before-break while load runs through the proxy, and not one request fails.

use std::time::Duration;

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_events::{Decision, DecisionAction};
use acs_testkit::TempDir;

use crate::common::{background_load, decoded, record, web};

const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "2"]
route = { path_prefix = "/" }

[service.policy]
min_replicas = 2
max_replicas = 2
drain_timeout = "15s"
stop_grace = "5s"
"#;

/// A local cluster of three workers serving [`SERVICES`]; the temp dir lives as long as it.
async fn three_workers(tag: &str) -> (TempDir, LocalCluster) {
    local_cluster(tag, 3, 4).await
}

/// A local cluster of `workers` workers of `slots` replicas each, serving [`SERVICES`].
async fn local_cluster(tag: &str, workers: u32, slots: u32) -> (TempDir, LocalCluster) {
    let tmp = TempDir::new(tag);
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES).unwrap();
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services;
    opts.workers = workers;
    opts.max_replicas = slots;
    opts.worker_interval_ms = 500;
    opts.ready_timeout = Duration::from_secs(90);
    let cluster = LocalCluster::start(opts)
        .await
        .expect("local cluster starts");
    (tmp, cluster)
}

/// The status once web serves its 2 replicas.
async fn serving_two(cluster: &LocalCluster) -> acs_events::StatusReply {
    cluster
        .wait_for_status(Duration::from_secs(60), |s| web(s).running == 2)
        .await
        .expect("web runs 2")
}

fn maintenance(cluster: &LocalCluster, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acsctl"))
        .args(args)
        .env("ACS_DIR", cluster.dir())
        .env("NATS_URL", cluster.nats_url())
        .env_remove("ACS_PREFIX")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_load_moves_every_replica_make_before_break_with_zero_failed_requests() {
    let (_tmp, cluster) = three_workers("drain").await;
    let client = cluster.operator_client().await.unwrap();
    let decisions = record(&client, "acs.events.decision.web".into()).await;

    let s = serving_two(&cluster).await;
    let victim = web(&s).backends[0].worker.to_string();
    let before: Vec<String> = web(&s).backends.iter().map(|b| b.id.to_string()).collect();

    let url = format!("{}/whoami", cluster.proxy_url());
    let (stop, load) = background_load(url, 20.0, Duration::from_secs(180));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (ok, out) = maintenance(&cluster, &["drain", &victim, "--wait"]);
    assert!(ok, "acsctl drain --wait: {out}");
    let s = cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            web(s).running == 2 && web(s).backends.len() == 2 && web(s).replicas.len() == 2
        })
        .await
        .expect("web back at 2 after the drain");
    assert!(
        web(&s).replicas.iter().all(|r| r.worker.as_str() != victim),
        "nothing left on {victim}: {:?}",
        web(&s).replicas
    );
    let w = s
        .workers
        .iter()
        .find(|w| w.id.as_str() == victim)
        .expect("the drained worker is known");
    assert!(w.cordoned, "a drained worker stays cordoned");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(());
    let load = load.await.unwrap();
    println!("load during the drain: {load}");
    assert_eq!(load.failed, 0, "no request failed during the drain: {load}");
    assert!(load.ok > 0);

    // Each move was announced, and the replacement was placed before its original left.
    let ds: Vec<Decision> = decoded(&decisions);
    let moved: Vec<_> = ds
        .iter()
        .filter_map(|d| match &d.action {
            DecisionAction::Relocate {
                replica,
                from,
                replacement,
                ..
            } => Some((
                replica.to_string(),
                from.to_string(),
                replacement.to_string(),
            )),
            _ => None,
        })
        .collect();
    assert!(
        !moved.is_empty() && moved.iter().all(|(_, from, _)| *from == victim),
        "relocations off {victim}: {moved:?}"
    );
    for (replica, _, replacement) in &moved {
        let placed = ds.iter().position(|d| matches!(&d.action, DecisionAction::Place { replica: r, .. } if r.as_str() == replacement));
        let relocated = ds.iter().position(|d| matches!(&d.action, DecisionAction::Relocate { replica: r, .. } if r.as_str() == replica));
        assert!(
            placed.is_some() && placed < relocated,
            "{replacement} placed before {replica} moved: {ds:?}"
        );
    }
    let on_victim = before
        .iter()
        .filter(|id| moved.iter().any(|(r, _, _)| r == *id))
        .count();
    assert!(
        on_victim >= 1,
        "the victim's replicas were the ones moved: {before:?} {moved:?}"
    );

    // Uncordon: placements may go there again.
    let (ok, out) = maintenance(&cluster, &["uncordon", &victim]);
    assert!(ok, "{out}");
    let s = cluster
        .wait_for_status(Duration::from_secs(10), |s| {
            s.workers
                .iter()
                .any(|w| w.id.as_str() == victim && !w.cordoned)
        })
        .await;
    assert!(s.is_ok(), "uncordoned");
}

/// `replace --wait` follows the replica in its service's status pages until it is gone, and the
/// service is back at its desired count with the replacement in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_wait_returns_once_the_replica_is_gone() {
    let (_tmp, cluster) = three_workers("replace").await;
    let s = serving_two(&cluster).await;
    let old = web(&s).backends[0].id.to_string();
    let (ok, out) = maintenance(&cluster, &["replace", &old, "--wait", "--timeout", "90s"]);
    assert!(ok, "acsctl replace --wait: {out}");
    assert!(out.contains(&format!("{old} is gone")), "{out}");
    let s = cluster
        .wait_for_status(Duration::from_secs(30), |s| web(s).running == 2)
        .await
        .expect("web back at 2");
    assert!(
        web(&s).replicas.iter().all(|r| r.id.as_str() != old),
        "{old} is gone: {:?}",
        web(&s).replicas
    );
}

/// A drain with nowhere to go: two workers of one slot each, both full. `drain --wait` exits
/// non-zero with the brain's reason instead of waiting for ever, and the replica keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_drain_wait_exits_non_zero_and_the_replica_keeps_serving() {
    let (_tmp, cluster) = local_cluster("blocked", 2, 1).await;
    let s = serving_two(&cluster).await;
    let victim = web(&s).backends[0].worker.to_string();
    let started = std::time::Instant::now();
    let (ok, out) = maintenance(&cluster, &["drain", &victim, "--wait", "--timeout", "60s"]);
    assert!(!ok, "a blocked drain must exit non-zero: {out}");
    assert!(
        out.contains(&format!("the drain of {victim} is blocked: cannot move")),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "it failed on the blocked decision, not the timeout: {out}"
    );
    let s = cluster
        .wait_for_status(Duration::from_secs(10), |s| web(s).running == 2)
        .await
        .expect("web still serves 2");
    assert!(
        web(&s).replicas.iter().any(|r| r.worker.as_str() == victim),
        "the blocked replica stays on {victim}: {:?}",
        web(&s).replicas
    );
}

/// A worker that goes silent (SIGSTOP: no heartbeat, no answers, while its replicas keep
/// serving, as behind a cut network link) is marked down and its replicas replaced elsewhere.
/// When it comes back (SIGCONT), the surplus is drained and stopped: the service ends at exactly
/// its desired count, and no request fails through the proxy at any point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_is_replaced_and_when_it_heals_the_surplus_is_drained_without_loss() {
    let (_tmp, cluster) = three_workers("partition").await;

    let s = serving_two(&cluster).await;
    let victim = web(&s).backends[0].worker.to_string();
    let pid = cluster.pid(&victim).expect("the worker's pid") as i32;

    let url = format!("{}/whoami", cluster.proxy_url());
    let (stop, load) = background_load(url, 20.0, Duration::from_secs(180));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // SAFETY: plain signals to a child process of this test's cluster.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let replaced = cluster
        .wait_for_status(Duration::from_secs(30), |s| {
            s.workers
                .iter()
                .any(|w| w.id.as_str() == victim && w.health == acs_events::WorkerHealth::Down)
                && web(s)
                    .backends
                    .iter()
                    .filter(|b| b.worker.as_str() != victim && !b.draining)
                    .count()
                    >= 2
        })
        .await;
    unsafe { libc::kill(pid, libc::SIGCONT) };
    replaced.expect("while silent, its replicas are replaced on the other workers");

    let healed = cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            s.workers
                .iter()
                .any(|w| w.id.as_str() == victim && w.health == acs_events::WorkerHealth::Up)
                && web(s).replicas.len() == 2
                && web(s).backends.len() == 2
                && web(s).running == 2
        })
        .await
        .expect("after healing: exactly 2 replicas, no surplus");
    println!(
        "healed: {:?}",
        web(&healed)
            .replicas
            .iter()
            .map(|r| (r.id.to_string(), r.worker.to_string()))
            .collect::<Vec<_>>()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(());
    let load = load.await.unwrap();
    println!("load through the partition: {load}");
    assert_eq!(
        load.failed, 0,
        "no request failed while the worker was silent or healing: {load}"
    );
}
