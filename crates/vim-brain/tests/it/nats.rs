//! The brain against a real nats-server. The test plays a worker and a proxy over NATS (it
//! answers commands and publishes metrics) so it can check what the brain sends and how it
//! answers bad input.

use std::time::Duration;

use acs_events::*;
use acs_testkit::msg::proxy_metrics;
use acs_testkit::NatsServer;
use futures::StreamExt;

use crate::common::*;

fn start_brain(url: &str) -> Brain {
    Brain::start(url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_publishes_backends_and_scales_by_hand() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut backends = client.subscribe("acs.backends.web").await.unwrap();
    let mut decisions = client.subscribe("acs.events.decision.web").await.unwrap();
    let worker = fake_worker(client.clone());
    let _brain = start_brain(&nats.url());

    // min_replicas 1: the brain places one replica and publishes it once healthy.
    eventually("one backend in status", || async {
        try_status(&client)
            .await
            .is_some_and(|s| s.services[0].running == 1)
    })
    .await;
    let first: BackendUpdate = decode(&backends.next().await.unwrap().payload).unwrap();
    assert!(matches!(
        first.change,
        BackendChange::Reset { .. } | BackendChange::Add { .. }
    ));
    let place: Decision = decode(&decisions.next().await.unwrap().payload).unwrap();
    assert!(
        matches!(place.action, DecisionAction::Place { .. }),
        "{place:?}"
    );

    // Manual scale to 3.
    let reply = request(
        &client,
        "acs.cmd.scale".into(),
        br#"{"service":"web","replicas":3}"#.to_vec(),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["mode"], "manual");
    assert!(
        reply["note"].as_str().unwrap().contains("overridden"),
        "{reply}"
    );
    eventually("3 running", || async {
        let s = status(&client).await;
        s.services[0].running == 3
            && s.services[0].desired == 3
            && s.services[0].mode == ScaleMode::Manual
    })
    .await;
    assert_eq!(worker.running.lock().unwrap().len(), 3);

    // Back to 1 by hand: drains (no proxy is running, so each drain waits for its 5 s deadline), stops, removes.
    let reply = request(
        &client,
        "acs.cmd.scale".into(),
        br#"{"service":"web","replicas":1}"#.to_vec(),
    )
    .await;
    assert_eq!(reply["ok"], true);
    eventually("1 running", || async {
        status(&client).await.services[0].backends.len() == 1
            && worker.running.lock().unwrap().len() == 1
    })
    .await;
    let s = status(&client).await;
    assert_eq!(s.workers[0].health, WorkerHealth::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_is_counted() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut rejections = client.subscribe("acs.events.error.brain").await.unwrap();
    let _brain = start_brain(&nats.url());
    let scale = |body: &'static str| {
        let client = client.clone();
        async move { request(&client, "acs.cmd.scale".into(), body.as_bytes().to_vec()).await }
    };
    eventually("brain answers", || async {
        matches!(
            tokio::time::timeout(
                Duration::from_millis(500),
                client.request("acs.status", "".into())
            )
            .await,
            Ok(Ok(_))
        )
    })
    .await;

    let cases = [
        ("{not json", "invalid JSON"),
        (r#"{"service":"web","replicas":"three"}"#, "invalid type"),
        (
            r#"{"service":"web","replicas":-2}"#,
            "replicas must be >= 0",
        ),
        (
            r#"{"service":"nope","replicas":2}"#,
            "unknown service \"nope\"",
        ),
        (r#"{"service":"we.b","replicas":2}"#, "service name"),
        (r#"{"service":"web"}"#, "missing \"replicas\""),
        (
            r#"{"service":"web","replicas":1,"colour":"red"}"#,
            "unknown field",
        ),
        ("", "empty"),
    ];
    for (body, expect) in cases {
        let r = scale(body).await;
        assert_eq!(r["ok"], false, "{body} -> {r}");
        let err = r["error"].as_str().unwrap();
        assert!(err.contains(expect), "{body} -> {err}");
    }
    let big = format!(
        r#"{{"service":"web","replicas":1,"pad":"{}"}}"#,
        "x".repeat(300_000)
    );
    let r = request(&client, "acs.cmd.scale".into(), big.into_bytes()).await;
    assert!(r["error"].as_str().unwrap().contains("limit"), "{r}");

    // Garbage on subjects nobody replies to: a Rejection event, a counter, and the brain lives on.
    client
        .publish("acs.metrics.worker.w9", "garbage".into())
        .await
        .unwrap();
    let ok = encode(&metrics(1, vec![]));
    client
        .publish("acs.metrics.worker.w9", ok.into())
        .await
        .unwrap(); // payload says w1
    client
        .publish("acs.metrics.proxy.p1", r#"{"proxy":"p1"}"#.into())
        .await
        .unwrap();
    client
        .publish("acs.events.replica.w1", b"[1,2]".to_vec().into())
        .await
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let m = tokio::time::timeout(Duration::from_secs(10), rejections.next())
            .await
            .unwrap()
            .unwrap();
        let r: Rejection = decode(&m.payload).unwrap();
        kinds.push((r.subject, r.error));
    }
    assert!(
        kinds
            .iter()
            .any(|(_, e)| e.contains("names \"w9\" but the payload names \"w1\"")),
        "{kinds:?}"
    );
    let s = status(&client).await;
    assert!(s.rejected >= 13, "every refusal counted: {}", s.rejected);
    assert!(s.workers.is_empty(), "nothing bad was folded in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_status_and_sync_requests_get_error_replies_and_are_counted() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let _brain = start_brain(&nats.url());
    eventually("brain answers", || async {
        try_status(&client).await.is_some()
    })
    .await;

    let cases = [
        ("acs.status", "{not json", "invalid JSON"),
        ("acs.status", r#"{"v":"one"}"#, "invalid type"),
        ("acs.status", r#"{"v":99}"#, "schema version 99"),
        ("acs.sync.backends", "[1,2", "invalid JSON"),
        ("acs.sync.backends", r#"{"services":"web"}"#, "invalid type"),
        (
            "acs.sync.backends",
            r#"{"services":["we.b"]}"#,
            "service name",
        ),
    ];
    for (subject, body, expect) in cases {
        let r = request(&client, subject.into(), body.as_bytes().to_vec()).await;
        assert_eq!(r["ok"], false, "{subject} {body} -> {r}");
        let err = r["error"].as_str().unwrap_or_default();
        assert!(err.contains(expect), "{subject} {body} -> {err}");
    }
    // Empty payloads mean the defaults, and a good request still gets its answer.
    let sync = request(&client, "acs.sync.backends".into(), Vec::new()).await;
    assert!(sync["updates"].is_array(), "{sync}");
    let s = status(&client).await;
    assert_eq!(s.rejected, cases.len() as u64, "each refusal counted once");
}

/// A brain, the fake worker and proxy, and min_replicas placed: the start of an outage test.
async fn before_an_outage() -> (
    NatsServer,
    Brain,
    async_nats::Client,
    FakeWorker,
    std::sync::Arc<std::sync::Mutex<f64>>,
) {
    let nats = NatsServer::start();
    let brain = start_brain(&nats.url());
    let client = async_nats::connect(nats.url()).await.unwrap();
    let worker = fake_worker(client.clone());
    let load = fake_proxy(client.clone());
    eventually("min_replicas placed before the outage", || async {
        try_status(&client)
            .await
            .is_some_and(|s| s.services[0].running == 1)
    })
    .await;
    (nats, brain, client, worker, load)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_nats_outage() {
    let (mut nats, brain, client, worker, load) = before_an_outage().await;
    let mut decisions = client.subscribe("acs.events.decision.web").await.unwrap();

    nats.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.restart();
    // The brain reconnects and resubscribes by itself: it answers requests again...
    eventually("brain answers after the outage", || async {
        try_status(&client).await.is_some()
    })
    .await;
    // ...hears the worker's metrics again...
    eventually("worker metrics arrive again", || async {
        try_status(&client).await.is_some_and(|s| {
            s.workers
                .first()
                .is_some_and(|w| w.health == WorkerHealth::Up && w.last_seen_ms_ago < 1_000)
        })
    })
    .await;
    // ...and acts on load reported only after the outage: 70 rps over a target of 20 per
    // replica is 4 replicas.
    *load.lock().unwrap() = 70.0;
    eventually("scaled out to 4 on fresh proxy metrics", || async {
        try_status(&client)
            .await
            .is_some_and(|s| s.services[0].running == 4 && s.services[0].desired == 4)
    })
    .await;
    assert_eq!(worker.running.lock().unwrap().len(), 4);
    let scale = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = decisions.next().await {
            let d: Decision = decode(&m.payload).unwrap();
            if let DecisionAction::Scale {
                to: 4,
                manual: false,
                ..
            } = d.action
            {
                return d;
            }
        }
        panic!("decision subscription ended");
    })
    .await
    .expect("a scale decision published after the outage");
    assert!(scale.reason.starts_with("rps 70.0"), "{}", scale.reason);

    // And it still shuts down promptly when told to, even right after an outage.
    nats.stop();
    let task = brain.signal_stop();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("brain stops within 10 s with NATS down")
        .unwrap();
}

/// A client that reconnects within 50 ms of the server coming back: it sees what the brain
/// publishes right after its own (slower, default) reconnect.
async fn quick_observer(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_worker_timeout_marks_no_worker_down() {
    let (mut nats, brain, client, worker, _load) = before_an_outage().await;
    let observer = quick_observer(&nats.url()).await;
    let mut health = observer.subscribe("acs.events.worker.>").await.unwrap();
    let mut decisions = observer.subscribe("acs.events.decision.web").await.unwrap();
    observer.flush().await.unwrap();
    let (before, starts_before) = (worker.running_ids(), worker.start_count());

    // Longer than the 3 s worker timeout: on the brain's clock every worker looks dead.
    nats.stop();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    nats.restart();
    eventually("brain answers after the outage", || async {
        try_status(&client).await.is_some()
    })
    .await;
    // Past the reconnect grace (one worker timeout), and then some.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut seen = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), health.next()).await {
        let ev: WorkerEvent = decode(&m.payload).unwrap();
        seen.push((ev.health, ev.reason));
    }
    assert!(
        seen.iter().all(|(h, _)| *h == WorkerHealth::Up),
        "no worker marked down: {seen:?}"
    );
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), decisions.next()).await
    {
        let d: Decision = decode(&m.payload).unwrap();
        assert!(
            !matches!(
                d.action,
                DecisionAction::Lost { .. } | DecisionAction::Place { .. }
            ),
            "{d:?}"
        );
    }
    assert_eq!(worker.start_count(), starts_before, "no replacement");
    assert_eq!(
        worker.running_ids(),
        before,
        "the same replica runs, routed"
    );
    let s = status(&client).await;
    assert_eq!(
        (s.services[0].running, s.workers[0].health),
        (1, WorkerHealth::Up)
    );
    brain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_no_longer_declared_is_withdrawn_from_the_proxies() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut old = client.subscribe("acs.backends.old").await.unwrap();
    let _worker = fake_worker(client.clone());
    let _brain = start_brain(&nats.url());
    // A proxy still routing `old`, left over from a brain that ran with another services file.
    let reporter = client.clone();
    tokio::spawn(async move {
        let proxy: ProxyId = "p9".parse().unwrap();
        loop {
            let backend = BackendTraffic {
                id: "old-a".parse().unwrap(),
                traffic: Traffic::default(),
                draining: false,
                ejected: false,
            };
            let svc = ServiceTraffic {
                service: "old".parse().unwrap(),
                version: 3,
                totals: Traffic::default(),
                backends: vec![backend],
            };
            let m = proxy_metrics(proxy.as_str(), 0, 200, vec![svc]);
            let _ = reporter
                .publish(Subjects::default().proxy_metrics(&proxy), encode(&m).into())
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let m = tokio::time::timeout(Duration::from_secs(10), old.next())
        .await
        .expect("a withdrawal within 10 s")
        .unwrap();
    let u: BackendUpdate = decode(&m.payload).unwrap();
    assert!(
        u.change == BackendChange::Withdraw && u.version > 3,
        "{u:?}"
    );
    let sync = request(&client, "acs.sync.backends".into(), b"{}".to_vec()).await;
    let names: Vec<&str> = sync["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["service"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| *n == "web"),
        "declared services only: {sync}"
    );
}
