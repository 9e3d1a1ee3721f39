//! A proxy report too big for one message (10,000 backends) arrives as parts through a real
//! nats-server and is taken whole: one sample per metric, every backend counted once.

use std::time::Duration;

use acs_events::{
    decode, encode, split_metrics, BackendTraffic, ServiceTraffic, StatsReply, Subjects, Traffic,
    CHUNK_BYTES, MAX_PAYLOAD,
};
use acs_monitor::service::{unix_ms, STREAM};
use acs_testkit::msg::proxy_metrics;
use acs_testkit::poll::eventually;
use acs_testkit::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_report_of_10000_backends_is_ingested_whole() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let config = acs_monitor::Config::new(acs_node::NatsOptions::new(nats.url()));
    let task = tokio::spawn(acs_monitor::run(config, async move {
        let _ = rx.await;
    }));
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            js.get_stream(STREAM)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await
    .unwrap();

    let t = Traffic {
        requests: 10,
        rps: 10.0,
        in_flight: 1,
        p50_ms: 2.0,
        p99_ms: 9.0,
        errors: 0,
    };
    let backends = (0..10_000)
        .map(|i| BackendTraffic {
            id: format!("web-t5x3k2-{i}").parse().unwrap(),
            traffic: t,
            draining: false,
            ejected: false,
        })
        .collect();
    let web = ServiceTraffic {
        service: "web".parse().unwrap(),
        version: 3,
        totals: t,
        backends,
    };
    let m = proxy_metrics("p1", unix_ms(), 1000, vec![web]);
    assert!(encode(&m).len() > MAX_PAYLOAD);
    let parts = split_metrics(m.clone(), CHUNK_BYTES);
    assert!(parts.len() > 1);
    let subject = Subjects::default().proxy_metrics(&m.proxy);
    for p in &parts {
        js.publish(subject.clone(), encode(p).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let q = r#"{"scope":"service","id":"web","metric":"replicas","last_ms":60000}"#;
    let r: StatsReply = eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let msg = client
                .request(Subjects::default().monitor_stats(), q.into())
                .await
                .map_err(|e| e.to_string())?;
            let r = decode::<StatsReply>(&msg.payload).map_err(|e| e.to_string())?;
            r.summary
                .as_ref()
                .map(|_| ())
                .ok_or_else(|| format!("not yet: {r:?}"))?;
            Ok::<_, String>(r)
        },
    )
    .await
    .unwrap();
    let s = r.summary.unwrap();
    assert_eq!(
        (s.count, s.last),
        (1, 10_000.0),
        "one whole sample of all backends: {s:?}"
    );
    drop(stop);
    let _ = task.await;
}
