//! The simulator against a real nats-server: 50 simulated workers publish metrics that decode
//! and validate, once per interval each; the query tool gets answers from a real monitor.

use std::collections::BTreeMap;
use std::time::Duration;

use acs_events::{check_sender, decode, ReplicaState, ServiceName, Subjects, WorkerMetrics};
use acs_sim::query::QueryConfig;
use acs_sim::workers::{run_workers, FleetConfig};
use acs_testkit::NatsServer;
use futures::StreamExt;
use tokio::sync::oneshot;

fn services() -> Vec<ServiceName> {
    vec!["web".parse().unwrap(), "api".parse().unwrap()]
}

#[tokio::test]
async fn fifty_workers_publish_valid_metrics_spread_over_the_interval() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subjects = Subjects::default();
    let mut sub = client
        .subscribe(subjects.worker_metrics_all())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let cfg = FleetConfig {
        interval: Duration::from_millis(500),
        ..FleetConfig::new(50, 3, services())
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let sim_client = client.clone();
    let sim = tokio::spawn(async move {
        run_workers(&sim_client, &cfg, async move {
            let _ = stopped.await;
        })
        .await
    });

    // Two full rounds: every worker twice.
    let mut by_worker: BTreeMap<String, Vec<WorkerMetrics>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while by_worker.values().map(|v| v.len().min(2)).sum::<usize>() < 100 {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("two rounds within 20 s")
            .unwrap();
        let m: WorkerMetrics =
            decode(&msg.payload).unwrap_or_else(|e| panic!("{}: {e}", msg.subject));
        check_sender(msg.subject.as_str(), m.worker.as_str()).unwrap();
        by_worker.entry(m.worker.to_string()).or_default().push(m);
    }
    stop.send(()).unwrap();
    let tally = sim.await.unwrap().unwrap();
    assert_eq!(tally.errors, 0);
    assert!(tally.sent >= 100);

    assert_eq!(by_worker.len(), 50);
    for (id, ms) in &by_worker {
        assert_eq!(ms[0].seq, 1, "{id}");
        assert_eq!(ms[1].seq, 2, "{id}");
        assert_eq!(ms[0].started_ms, ms[1].started_ms, "{id}: one process");
        assert_eq!(ms[0].interval_ms, 500);
        assert_eq!(ms[0].replicas.len(), 3);
        assert!(ms
            .iter()
            .all(|m| m.replicas.iter().all(|r| r.state == ReplicaState::Healthy)));
    }
    // Spread, not a burst: the first round's messages cover most of the 500 ms interval.
    let first: Vec<u64> = by_worker.values().map(|v| v[0].ts_ms).collect();
    let span = first.iter().max().unwrap() - first.iter().min().unwrap();
    assert!(
        span >= 250,
        "first round spans {span} ms of a 500 ms interval"
    );
}

#[tokio::test]
async fn query_load_gets_answers_from_a_real_monitor() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let (stop_monitor, monitor_stopped) = oneshot::channel::<()>();
    let monitor = tokio::spawn(acs_monitor::run(
        acs_monitor::Config::new(acs_node::NatsOptions::new(nats.url())),
        async move {
            let _ = monitor_stopped.await;
        },
    ));

    let cfg = FleetConfig {
        interval: Duration::from_millis(500),
        ..FleetConfig::new(20, 2, services())
    };
    let (stop_sim, sim_stopped) = oneshot::channel::<()>();
    let sim_client = client.clone();
    let sim = tokio::spawn(async move {
        run_workers(&sim_client, &cfg, async move {
            let _ = sim_stopped.await;
        })
        .await
    });

    let qcfg = QueryConfig {
        rate: 40.0,
        duration: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        workers: 20,
        replicas: 2,
        services: services(),
        subjects: Subjects::default(),
    };
    // Until the monitor has seen every worker, some queries name one it does not know yet.
    let report = acs_testkit::poll::eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let r = acs_sim::query::run(&client, &qcfg)
                .await
                .map_err(|e| e.to_string())?;
            if r.errors == 0 && r.answered == r.sent {
                Ok(r)
            } else {
                Err(r.text())
            }
        },
    )
    .await
    .unwrap_or_else(|last| panic!("the monitor never answered every query; last run: {last}"));
    assert_eq!(report.sent, 40);
    assert_eq!(report.latency.len(), 40);
    assert_eq!(report.age.len(), 4, "every 10th query is a freshness probe");
    assert!(report.age.max().unwrap() < Duration::from_secs(30));

    stop_sim.send(()).unwrap();
    assert_eq!(sim.await.unwrap().unwrap().errors, 0);
    stop_monitor.send(()).unwrap();
    monitor.await.unwrap().unwrap();
}

#[tokio::test]
async fn simulated_proxies_publish_valid_traffic_for_the_fleet() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client
        .subscribe(Subjects::default().proxy_metrics_all())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let cfg = FleetConfig {
        interval: Duration::from_millis(500),
        ..FleetConfig::new(10, 4, services())
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let sim_client = client.clone();
    let sim = tokio::spawn(async move {
        acs_sim::workers::run_proxies(&sim_client, 2, &cfg, async move {
            let _ = stopped.await;
        })
        .await
    });
    let mut proxies = std::collections::BTreeSet::new();
    while proxies.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("proxy metrics")
            .unwrap();
        let m: acs_events::ProxyMetrics =
            decode(&msg.payload).unwrap_or_else(|e| panic!("{}: {e}", msg.subject));
        check_sender(msg.subject.as_str(), m.proxy.as_str()).unwrap();
        assert_eq!(m.services.len(), 2);
        // 10 workers x 4 replicas over two services: 20 backends each, the workers' replica ids.
        for s in &m.services {
            assert_eq!(s.backends.len(), 20);
            assert!(s
                .backends
                .iter()
                .all(|b| b.id.as_str().starts_with("sim000")));
        }
        proxies.insert(m.proxy.to_string());
    }
    stop.send(()).unwrap();
    assert_eq!(sim.await.unwrap().unwrap().errors, 0);
}
