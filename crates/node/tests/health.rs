//! `/healthz` and `/readyz` against a real nats-server: ready only while NATS is connected
//! and the loop turns; the health port needs no token; `--healthcheck` reads the answer.

use std::time::{Duration, Instant};

use acs_node::health::probe_status;
use acs_node::metrics::{spawn_health, spawn_with_health, MetricsAuth, MetricsListen};
use acs_node::{NatsOptions, Readiness, ReadyWhen};
use acs_testkit::NatsServer;

const T: Duration = Duration::from_secs(3);

/// Polls `url` until it answers `want` (the status changes with the connection's state).
async fn eventually(url: &str, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let url2 = url.to_string();
        let got = tokio::task::spawn_blocking(move || probe_status(&url2, T))
            .await
            .unwrap();
        if got == Ok(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{url}: want {want}, got {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_nats_connection_and_the_loop() {
    let mut nats = NatsServer::start();
    let ready = Readiness::new(ReadyWhen {
        beat_within: Some(Duration::from_secs(2)),
        loaded: true,
    });
    let (addr, _task) = spawn_health("127.0.0.1:0".parse().unwrap(), ready.clone())
        .await
        .unwrap();
    let (healthz, readyz) = (
        format!("http://{addr}/healthz"),
        format!("http://{addr}/readyz"),
    );
    eventually(&healthz, 200, T).await;
    eventually(&readyz, 503, T).await;

    let client = NatsOptions::new(nats.url()).connect().await.unwrap();
    ready.connected(&client);
    ready.beat();
    // Connected and turning, but not loaded yet.
    eventually(&readyz, 503, T).await;
    ready.loaded();
    eventually(&readyz, 200, T).await;
    // The health-only port serves nothing else.
    eventually(&format!("http://{addr}/metrics"), 404, T).await;

    // NATS gone: not ready, though the process still answers.
    nats.stop();
    eventually(&readyz, 503, Duration::from_secs(10)).await;
    eventually(&healthz, 200, T).await;
    nats.restart();
    let beats = {
        let ready = ready.clone();
        tokio::spawn(async move {
            loop {
                ready.beat();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    eventually(&readyz, 200, Duration::from_secs(20)).await;
    // The loop stops turning: not ready within its allowance.
    beats.abort();
    eventually(&readyz, 503, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_answers_health_without_its_token() {
    let nats = NatsServer::start();
    let ready = Readiness::new(ReadyWhen::default());
    let client = NatsOptions::new(nats.url()).connect().await.unwrap();
    ready.connected(&client);
    let listen = MetricsListen {
        addr: "127.0.0.1:0".parse().unwrap(),
        auth: MetricsAuth::Bearer("0123456789abcdef0123".into()),
    };
    let registry = acs_node::metrics::prometheus_client::registry::Registry::default();
    let (addr, _task) = spawn_with_health(&listen, registry, ready).await.unwrap();
    eventually(&format!("http://{addr}/healthz"), 200, T).await;
    eventually(&format!("http://{addr}/readyz"), 200, T).await;
    // Everything else still needs the token.
    eventually(&format!("http://{addr}/metrics"), 401, T).await;
    eventually(&format!("http://{addr}/readyzx"), 401, T).await;
}
