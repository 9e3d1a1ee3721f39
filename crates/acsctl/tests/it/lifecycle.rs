//! Service lifecycle and crash-loop backoff on a real local cluster (nats-server, vim-brain, a
//! vmm-worker on the process runtime): `web` (demo-web) goes Creating -> Running; `crash` runs
//! `sh -c 'sleep 1; exit 1'`, is shown Failed with the exit reason, and is restarted ever more
//! slowly instead of every second. (The `sleep 1`: a process that exits before the worker has
//! recorded its start is today missed by the worker until its health start timeout.)

use std::time::Duration;

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_events::{Decision, DecisionAction, LifecycleState, StatusReply};
use acs_testkit::TempDir;

use crate::common::{decoded, record};

const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1"]
route = { path_prefix = "/" }
policy = { min_replicas = 1, max_replicas = 1 }

[[service]]
name = "crash"
command = ["sh", "-c", "sleep 1; echo boom >&2; exit 1"]
route = { path_prefix = "/crash" }
policy = { min_replicas = 1, max_replicas = 1 }
"#;

use acs_node::unix_ms;

fn lifecycle_of(s: &StatusReply, name: &str) -> (LifecycleState, String) {
    let svc = s
        .services
        .iter()
        .find(|x| x.name.as_str() == name)
        .expect("service in status");
    (
        svc.lifecycle.state,
        svc.lifecycle.reason.clone().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_service_is_failed_and_backs_off_while_a_healthy_one_runs() {
    let tmp = TempDir::new("lifecycle");
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES).unwrap();
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services;
    opts.workers = 1;
    opts.max_replicas = 4;
    opts.worker_interval_ms = 500;
    opts.ready_timeout = Duration::from_secs(90);
    // The worker may run `sh` too (canonical, as its allow-list wants).
    let sh = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    opts.extra_args.insert(
        "vmm-worker".into(),
        vec!["--allow-command".into(), sh.display().to_string()],
    );
    let web_decisions;
    let crash_decisions;
    let cluster = {
        let cluster = LocalCluster::start(opts)
            .await
            .expect("local cluster starts");
        let client = cluster.operator_client().await.unwrap();
        web_decisions = record(&client, "acs.events.decision.web".into()).await;
        crash_decisions = record(&client, "acs.events.decision.crash".into()).await;
        cluster
    };

    // `crash` shows Failed with its exit reason.
    let s = cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            let (state, reason) = lifecycle_of(s, "crash");
            state == LifecycleState::Failed && reason.contains("exited with status 1")
        })
        .await
        .expect("crash is Failed with the exit reason");
    let (_, reason) = lifecycle_of(&s, "crash");
    assert!(reason.starts_with("crash loop: crash-"), "{reason}");

    // `web` runs; it was Creating before.
    cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            lifecycle_of(s, "web").0 == LifecycleState::Running
        })
        .await
        .expect("web Running");
    let changes = |rec| {
        let ds: Vec<Decision> = decoded(rec);
        ds.into_iter()
            .filter_map(|d| match d.action {
                DecisionAction::Lifecycle { from, to } => Some((from, to)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        changes(&web_decisions),
        [(LifecycleState::Creating, LifecycleState::Running)]
    );

    // Watch `crash` for 30 s after its first start. Without the backoff it would be restarted
    // as soon as each exit is seen (about 15 times, each living 1 s); with it: at once, then
    // after 1, 2, 4, 8 s, each plus its 1 s of life: 6, so at most 7 on a slow machine.
    let places = || {
        let ds: Vec<Decision> = decoded(&crash_decisions);
        ds.into_iter()
            .filter(|d| matches!(d.action, DecisionAction::Place { .. }))
            .map(|d| d.ts_ms)
            .collect::<Vec<_>>()
    };
    let first = places()[0];
    acs_testkit::poll::until("30 s of crash loop", Duration::from_secs(50), || async {
        places().last().is_some_and(|_| unix_ms() >= first + 30_000)
    })
    .await;
    let starts: Vec<u64> = places()
        .into_iter()
        .filter(|t| *t < first + 30_000)
        .collect();
    assert!((4..=7).contains(&starts.len()), "starts at {starts:?}");
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "crash: {} starts in 30 s, gaps {gaps:?} ms; status reason: {reason}",
        starts.len()
    );
    assert!(gaps.last() > gaps.get(1), "the waits grow: {gaps:?}");
    let ds: Vec<Decision> = decoded(&crash_decisions);
    let explained = ds
        .iter()
        .filter(|d| d.action == DecisionAction::Blocked && d.reason.starts_with("crash loop:"))
        .count();
    assert!(
        explained >= starts.len() - 2 && explained <= starts.len(),
        "one per step: {explained} for {} starts",
        starts.len()
    );
    assert!(
        ds.iter().all(|d| d.lifecycle.is_some()),
        "every decision carries the lifecycle"
    );
    assert!(changes(&crash_decisions)
        .iter()
        .any(|(_, to)| *to == LifecycleState::Failed));
    drop(tmp);
}
