//! End to end on the real Docker engine: nats-server, vim-brain and the Pingora proxy from
//! [`LocalCluster`], two `vmm-worker --runtime docker` processes, and `web` replicas that are
//! containers of a throwaway image built here `FROM scratch` from the workspace's `demo-web`
//! (nothing is pulled).
//!
//! - scale-out: real containers with the spec's CPU/memory limits, each serving through the proxy;
//! - `docker kill`: the replica is replaced and routed around, no GET fails meanwhile;
//! - worker `kill -9` + restart: its containers are adopted, nothing is started twice;
//! - scale-in: drain, then stop, then the containers are removed.
//!
//! Every run uses its own worker ids (`<run>-w1`, `<run>-w2`; containers are labelled
//! `acs.worker=<run>-wN` and named `acs-<run>-wN-...`), image tag and network, so parallel runs
//! and leftovers of killed runs do not interfere; the [`Rig`]'s guards (`docker_rig/`) remove
//! the containers, the network and the image even when a test fails. Test names contain
//! `docker`, so `.config/nextest.toml` runs them one at a time. Without a Docker engine
//! (`docker info` fails) they fail, unless `ACS_SKIP_DOCKER_TESTS=1` skips them. The logs of a
//! failed run (or of every run with `ACS_E2E_KEEP_LOGS=1`) are kept in
//! `$TMPDIR/acs-e2e-logs-<run>`. Lines starting with `timing:` report how long containers took
//! from creation to serving through the proxy.
//!
//! [`LocalCluster`]: acs_cluster::LocalCluster

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use acs_events::{Decision, DecisionAction, ReplicaEvent, ReplicaState};
use acs_testkit::docker::docker;
use acs_testkit::poll::eventually;

use crate::common::{background_load, decoded, web, MixedLoad};
use crate::docker_rig::{
    backend_ids, now_ms, replica_ids, report_start_to_serving, settled_at, Ctr, Net, Prober, Rig,
    RigOptions, CPUS, MEMORY_MB,
};

/// Scale-out: a manual scale to 3 creates real containers (by label, on both workers) with the
/// spec's NanoCpus/Memory, and each new container's instance answers through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_scale_out_creates_limited_containers_that_serve() {
    let Some(mut rig) = Rig::start("dkout", RigOptions::default()).await else {
        return;
    };
    let before = rig.containers().await;
    assert_eq!(
        before.len(),
        1,
        "one container for min_replicas: {before:#?}"
    );
    let prober = Prober::start(rig.proxy());

    let t_cmd = now_ms();
    // Every container serves through the proxy.
    let s = rig.scale_until_serving(3, &prober).await;
    let replicas = replica_ids(&s);
    assert_eq!(backend_ids(&s), replicas);

    // Real containers: one per replica, labelled, limited, running.
    let ctrs = rig.containers().await;
    assert_eq!(ctrs.len(), 3, "{ctrs:#?}");
    let by_replica: BTreeSet<String> = ctrs.iter().map(|c| c.replica.clone()).collect();
    assert_eq!(
        by_replica, replicas,
        "container labels match the brain's replicas"
    );
    for c in &ctrs {
        assert!(c.running, "{c:?}");
        assert_eq!(c.service, "web", "{c:?}");
        assert_eq!(c.nano_cpus, (CPUS * 1e9) as i64, "NanoCpus of {c:?}");
        assert_eq!(
            c.memory,
            (MEMORY_MB * 1024 * 1024) as i64,
            "Memory of {c:?}"
        );
        assert_eq!(c.name, format!("acs-{}-{}", c.worker, c.replica), "{c:?}");
    }
    // Counted by label per worker: spread over both.
    let per_worker: Vec<usize> = (0..2)
        .map(|i| rig.container_ids_of(rig.worker_id(i)).len())
        .collect();
    assert_eq!(per_worker.iter().sum::<usize>(), 3, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|n| *n >= 1),
        "spread over both workers: {per_worker:?}"
    );
    for c in &ctrs {
        let in_status = web(&s)
            .replicas
            .iter()
            .find(|r| r.id.as_str() == c.replica)
            .unwrap();
        assert_eq!(in_status.worker.as_str(), c.worker, "{c:?}");
    }

    let first: BTreeSet<String> = before.iter().map(|c| c.replica.clone()).collect();
    let new: Vec<Ctr> = ctrs
        .into_iter()
        .filter(|c| !first.contains(&c.replica))
        .collect();
    assert_eq!(new.len(), 2);
    report_start_to_serving("the scale command", &new, &prober, Some(t_cmd));

    let (ok, failures) = prober.finish().await;
    eprintln!("prober: {ok} ok, {} failed", failures.len());
    assert!(failures.is_empty(), "no /whoami failed: {failures:#?}");
    rig.check_processes();
}

/// `docker kill` of a replica under steady load: the worker reports the exit, the brain drops
/// it from the backends and places a replacement, the proxy routes around the dead one, and no
/// GET fails through the proxy meanwhile.
async fn killed_container_is_replaced(tag: &str, net: Net) {
    let Some(mut rig) = Rig::start(tag, RigOptions::on(net)).await else {
        return;
    };
    let prober = Prober::start(rig.proxy());
    let before = replica_ids(&rig.scale_until_serving(3, &prober).await);
    let decisions = rig.decisions().await;

    // Steady load: quick GETs, and GETs that take a while (so some are in flight at the kill).
    let load = MixedLoad::start(rig.proxy(), 40.0, "/work?ms=40", 15.0);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let ctrs = rig.containers().await;
    let victim = ctrs
        .iter()
        .max_by_key(|c| c.replica.clone())
        .cloned()
        .expect("a container");
    eprintln!("killing {} ({})", victim.replica, &victim.id[..12]);
    let t_kill = now_ms();
    tokio::task::block_in_place(|| docker(&["kill", &victim.id])).expect("docker kill");

    let victim_id = victim.replica.clone();
    let s = rig
        .wait(
            "a replacement healthy and in rotation",
            Duration::from_secs(90),
            |s| settled_at(s, 3) && !replica_ids(s).contains(&victim_id),
        )
        .await;
    let after = replica_ids(&s);
    assert_eq!(backend_ids(&s), after, "the proxies are told the new set");
    let replacement: Vec<String> = after.difference(&before).cloned().collect();
    assert_eq!(
        replacement.len(),
        1,
        "one replacement: before {before:?}, after {after:?}"
    );
    prober
        .wait_seen(
            &replacement.iter().cloned().collect(),
            Duration::from_secs(30),
        )
        .await;
    let seen = prober.seen(&replacement[0]).unwrap();
    eprintln!(
        "timing: replacement {} serving through the proxy {} ms after docker kill",
        replacement[0],
        seen.saturating_sub(t_kill)
    );

    // The dead container is removed, the replacement is a real container, nothing else is left.
    let ctrs = eventually(
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let ctrs = rig.containers().await;
            match ctrs.iter().any(|c| c.id == victim.id) {
                false => Ok(ctrs),
                true => Err(ctrs),
            }
        },
    )
    .await
    .unwrap_or_else(|ctrs| panic!("killed container not removed: {ctrs:#?}"));
    assert_eq!(ctrs.len(), 3, "{ctrs:#?}");
    assert!(ctrs.iter().all(|c| c.running), "{ctrs:#?}");
    let new: Vec<Ctr> = ctrs
        .iter()
        .filter(|c| c.replica == replacement[0])
        .cloned()
        .collect();
    assert_eq!(new.len(), 1, "{ctrs:#?}");
    assert_eq!(new[0].nano_cpus, (CPUS * 1e9) as i64);
    report_start_to_serving("docker kill", &new, &prober, Some(t_kill));

    // More load on the new set, then the verdict.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (a, b) = load.finish().await;
    let (ok, failures) = prober.finish().await;
    eprintln!("load /whoami: {a}");
    eprintln!("load /work?ms=40: {b}");
    eprintln!("prober: {ok} ok, {} failed", failures.len());
    let ds: Vec<Decision> = decoded(&decisions);
    assert!(
        ds.iter().any(|d| matches!(&d.action, DecisionAction::Lost { replica, .. } if replica.as_str() == victim.replica)),
        "the brain explained the loss: {ds:#?}"
    );
    assert_eq!(a.failed, 0, "no GET /whoami failed through the proxy: {a}");
    assert_eq!(b.failed, 0, "no GET /work failed through the proxy: {b}");
    assert!(failures.is_empty(), "no probe failed: {failures:#?}");
    assert!(a.counts.instances.contains_key(&replacement[0]), "{a}");
    rig.check_processes();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_killed_container_is_replaced_without_failed_gets() {
    killed_container_is_replaced("dkkill", Net::HostPort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_killed_container_on_a_network_is_replaced_without_failed_gets() {
    killed_container_is_replaced("dkkillnet", Net::ContainerIp).await;
}

/// `kill -9` of a worker, then a restart: the new process adopts the running containers (same
/// container ids by label, no second container), the brain starts nothing, and the replicas
/// keep serving through the proxy all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_worker_restart_adopts_its_containers() {
    // The brain would treat a worker silent for 3 s (the default) as down and replace its
    // replicas elsewhere, by design. This test is about adoption, not failover: give the
    // restart room on a slow machine.
    let Some(mut rig) = Rig::start(
        "dkadopt",
        RigOptions {
            brain_args: vec!["--worker-timeout".into(), "15s".into()],
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let prober = Prober::start(rig.proxy());
    let s = rig.scale_until_serving(4, &prober).await;
    let replicas = replica_ids(&s);
    let w1 = rig.worker_id(0).to_string();
    let w2 = rig.worker_id(1).to_string();
    let before_w1 = rig.container_ids_of(&w1);
    let before_w2 = rig.container_ids_of(&w2);
    assert_eq!(
        before_w1.len() + before_w2.len(),
        4,
        "{before_w1:?} {before_w2:?}"
    );
    assert!(
        !before_w1.is_empty(),
        "w1 runs some replicas: {before_w1:?} {before_w2:?}"
    );
    let w1_replicas: BTreeSet<String> = web(&s)
        .replicas
        .iter()
        .filter(|r| r.worker.as_str() == w1)
        .map(|r| r.id.to_string())
        .collect();

    let decisions = rig.decisions().await;
    let events = rig.replica_events().await;
    let (stop_load, load) = background_load(
        format!("http://{}/whoami", rig.proxy()),
        20.0,
        Duration::from_secs(150),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9: the containers outlive their worker.
    let old_pid = rig.workers[0].pid();
    rig.workers[0].kill9();
    eprintln!("killed {w1} (pid {old_pid}) with SIGKILL");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        rig.container_ids_of(&w1),
        before_w1,
        "containers outlive the worker"
    );
    let t_restart = now_ms();
    rig.workers[0].start();

    // The new process reports the same replicas, adopted, and they pass their health checks.
    let adopted = || -> BTreeSet<String> {
        decoded::<ReplicaEvent>(&events)
            .iter()
            .filter(|e| {
                e.worker.as_str() == w1
                    && e.replica.state == ReplicaState::Starting
                    && e.reason.contains("adopt")
            })
            .map(|e| e.replica.id.to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Polled by hand: each round also checks (with `&mut rig`) that no process died.
    while adopted() != w1_replicas {
        rig.check_processes();
        assert!(
            Instant::now() < deadline,
            "restarted {w1} adopted {:?}, expected {w1_replicas:?}; log {}",
            adopted(),
            rig.workers[0].log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "timing: restarted worker adopted its containers {} ms after it was started",
        now_ms().saturating_sub(t_restart)
    );
    let s = rig
        .wait(
            "the same 4 replicas healthy again",
            Duration::from_secs(60),
            |s| settled_at(s, 4) && replica_ids(s) == replicas,
        )
        .await;
    assert_eq!(backend_ids(&s), replicas);

    // A while longer: the brain must not start anything (it would show as a new container).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = rig
        .wait("still the same 4 replicas", Duration::from_secs(30), |s| {
            settled_at(s, 4)
        })
        .await;
    assert_eq!(replica_ids(&s), replicas, "the brain started nothing");
    assert_eq!(
        rig.container_ids_of(&w1),
        before_w1,
        "{w1}: no duplicate container"
    );
    assert_eq!(rig.container_ids_of(&w2), before_w2, "{w2}: untouched");
    assert_eq!(rig.containers().await.len(), 4);
    let ds: Vec<Decision> = decoded(&decisions);
    assert!(
        !ds.iter().any(|d| matches!(
            d.action,
            DecisionAction::Place { .. }
                | DecisionAction::Lost { .. }
                | DecisionAction::Stop { .. }
        )),
        "no placement, loss or stop around the restart: {ds:#?}"
    );

    let _ = stop_load.send(());
    let report = load.await.unwrap();
    let (ok, failures) = prober.finish().await;
    eprintln!("load /whoami across the worker restart: {report}");
    eprintln!("prober: {ok} ok, {} failed", failures.len());
    assert_eq!(
        report.failed, 0,
        "no GET failed across the worker restart: {report}"
    );
    assert!(failures.is_empty(), "no probe failed: {failures:#?}");
    rig.check_processes();
}

/// Scale-in under light load: each victim is drained (out of rotation) before it is stopped,
/// its container is stopped and removed (gone from `docker ps -a`), and no GET fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_scale_in_drains_stops_and_removes_containers() {
    let Some(mut rig) = Rig::start("dkin", RigOptions::on(Net::ContainerIp)).await else {
        return;
    };
    let prober = Prober::start(rig.proxy());
    let before = replica_ids(&rig.scale_until_serving(3, &prober).await);
    let ctrs_before = rig.containers().await;
    assert_eq!(ctrs_before.len(), 3, "{ctrs_before:#?}");
    let decisions = rig.decisions().await;
    let events = rig.replica_events().await;

    // Light load with requests in flight while replicas drain and stop.
    let load = MixedLoad::start(rig.proxy(), 10.0, "/work?ms=100", 8.0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    rig.scale(1).await;
    let s = rig
        .wait("web scaled in to 1", Duration::from_secs(90), |s| {
            settled_at(s, 1)
        })
        .await;
    let survivor = replica_ids(&s);
    assert!(
        survivor.is_subset(&before),
        "the survivor is an old replica: {survivor:?}"
    );
    let victims: BTreeSet<String> = before.difference(&survivor).cloned().collect();
    assert_eq!(victims.len(), 2);

    // Gone from `docker ps -a`, not merely stopped.
    let ctrs = eventually(
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let ctrs = rig.containers().await;
            let left: BTreeSet<String> = ctrs.iter().map(|c| c.replica.clone()).collect();
            if left == survivor {
                Ok(ctrs)
            } else {
                Err(ctrs)
            }
        },
    )
    .await
    .unwrap_or_else(|ctrs| panic!("victim containers still listed by `docker ps -a`: {ctrs:#?}"));
    assert!(ctrs.iter().all(|c| c.running));
    for c in ctrs_before.iter().filter(|c| victims.contains(&c.replica)) {
        let r = tokio::task::block_in_place(|| docker(&["inspect", &c.id]));
        assert!(
            r.is_err(),
            "container {} of {} still exists",
            &c.id[..12],
            c.replica
        );
    }
    for w in 0..2 {
        let ids = rig.container_ids_of(rig.worker_id(w));
        assert!(ids.len() <= 1, "{ids:?}");
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a, b) = load.finish().await;
    let (ok, failures) = prober.finish().await;
    eprintln!("load /whoami during scale-in: {a}");
    eprintln!("load /work?ms=100 during scale-in: {b}");
    eprintln!("prober: {ok} ok, {} failed", failures.len());

    // Drain, then stop, per victim; the worker reports each one gone.
    let ds: Vec<Decision> = decoded(&decisions);
    let evs: Vec<ReplicaEvent> = decoded(&events);
    assert!(
        ds.iter().any(|d| matches!(
            d.action,
            DecisionAction::Scale {
                from: 3,
                to: 1,
                manual: true
            }
        )),
        "{ds:#?}"
    );
    for v in &victims {
        let drain = ds.iter().find(
            |d| matches!(&d.action, DecisionAction::Drain { replica, .. } if replica.as_str() == v),
        );
        let stop = ds.iter().find(
            |d| matches!(&d.action, DecisionAction::Stop { replica, .. } if replica.as_str() == v),
        );
        let (Some(drain), Some(stop)) = (drain, stop) else {
            panic!("{v}: drain and stop decisions expected: {ds:#?}");
        };
        assert!(
            drain.ts_ms <= stop.ts_ms,
            "{v}: drained before stopped: {drain:?} {stop:?}"
        );
        let exited = evs
            .iter()
            .find(|e| e.replica.id.as_str() == v && e.replica.state == ReplicaState::Exited)
            .unwrap_or_else(|| panic!("{v}: no exit event: {evs:#?}"));
        eprintln!(
            "{v}: drain at +0 ms, stop at +{} ms, exited at +{} ms ({})",
            stop.ts_ms.saturating_sub(drain.ts_ms),
            exited.ts_ms.saturating_sub(drain.ts_ms),
            exited.reason
        );
    }
    assert!(!ds.iter().any(|d| matches!(d.action, DecisionAction::Stop { ref replica, .. } if survivor.contains(replica.as_str()))));
    assert_eq!(a.failed, 0, "no GET /whoami failed during scale-in: {a}");
    assert_eq!(b.failed, 0, "no GET /work failed during scale-in: {b}");
    assert!(failures.is_empty(), "no probe failed: {failures:#?}");
    rig.check_processes();
}
