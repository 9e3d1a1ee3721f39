//! Durable rollups against a real nats-server with JetStream: two monitors close the same
//! buckets and ACS_ROLLUPS keeps one copy of each; after a restart with a raw stream shorter
//! than the data, a query for the old window is answered from ACS_ROLLUPS, exactly.

use std::net::SocketAddr;
use std::time::Duration;

use acs_events::{decode, encode, StatsReply, Subjects, WorkerMetrics};
use acs_monitor::rollup::TierSpec;
use acs_monitor::service::unix_ms;
use acs_node::metrics::{MetricsAuth, MetricsListen};
use acs_testkit::msg::worker_metrics;
use acs_testkit::poll::eventually;
use acs_testkit::{free_port, NatsServer};
use tokio::sync::oneshot;

fn sample(ts_ms: u64, seq: u64, cpu: f64) -> WorkerMetrics {
    let mut m = worker_metrics("w1", seq, ts_ms, cpu);
    m.host.mem_used_bytes = 1000 + seq;
    m
}

/// Short tiers so the test is fast: raw 1 s slots kept 6 s, 5 s buckets kept 10 s in memory,
/// 10 s buckets kept 10 s; the rollups durable for an hour.
const TIERS: [TierSpec; 3] = [
    TierSpec {
        width_ms: 1_000,
        keep_ms: 6_000,
        durable_ms: 3_600_000,
    },
    TierSpec {
        width_ms: 5_000,
        keep_ms: 10_000,
        durable_ms: 3_600_000,
    },
    TierSpec {
        width_ms: 10_000,
        keep_ms: 10_000,
        durable_ms: 3_600_000,
    },
];

/// A monitor in this process with its Prometheus endpoint on `metrics`; dropping the sender
/// stops it.
fn start_monitor(
    url: &str,
    stream_max_age: Duration,
    metrics: SocketAddr,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (tx, rx) = oneshot::channel::<()>();
    let mut config = acs_monitor::Config::new(acs_node::NatsOptions::new(url));
    config.tiers = TIERS.to_vec();
    config.tiers[0].durable_ms = stream_max_age.as_millis() as u64;
    config.stream_max_age = stream_max_age;
    config.grace_ms = 0;
    config.metrics = Some(MetricsListen {
        addr: metrics,
        auth: MetricsAuth::Insecure,
    });
    let task = tokio::spawn(acs_monitor::run(config, async move {
        let _ = rx.await;
    }));
    (tx, task)
}

/// One counter from a monitor's `GET /metrics`.
async fn counter(addr: SocketAddr, name: &str) -> Result<u64, String> {
    let (_, body) = acs_testkit::http::get(addr, "/metrics").await?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no {name} in {body}"))
}

async fn ask(client: &async_nats::Client, body: &str) -> Result<StatsReply, String> {
    let msg = client
        .request(Subjects::default().monitor_stats(), body.to_string().into())
        .await
        .map_err(|e| e.to_string())?;
    decode::<StatsReply>(&msg.payload).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_are_stored_once_and_answer_old_windows_after_a_restart() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let (ma, mb) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    let (stop_a, task_a) = start_monitor(&nats.url(), Duration::from_secs(3600), ma);
    eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        counter(ma, "acs_monitor_rollups_published")
    })
    .await
    .unwrap();
    let (stop_b, task_b) = start_monitor(&nats.url(), Duration::from_secs(3600), mb);
    eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        counter(mb, "acs_monitor_rollups_published")
    })
    .await
    .unwrap();

    // 20 samples, one a second, two minutes ago (cpu cycling 0..=9), then one now: that one
    // moves the watermark past them, so both monitors close 4 buckets of 5 s and 2 of 10 s.
    let now = unix_ms();
    let t0 = now - 120_000 - now % 10_000;
    let subject = Subjects::default().worker_metrics(&"w1".parse().unwrap());
    for i in 0..20u64 {
        js.publish(
            subject.clone(),
            encode(&sample(t0 + i * 1000, i + 1, (i % 10) as f64)).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    js.publish(subject.clone(), encode(&sample(now, 21, 50.0)).into())
        .await
        .unwrap()
        .await
        .unwrap();

    // Each monitor published all 6; JetStream kept the first copy of each and refused the rest.
    let rollups = eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let (pa, pb) = (
                counter(ma, "acs_monitor_rollups_published").await?,
                counter(mb, "acs_monitor_rollups_published").await?,
            );
            let (da, db) = (
                counter(ma, "acs_monitor_rollups_duplicate").await?,
                counter(mb, "acs_monitor_rollups_duplicate").await?,
            );
            match (pa + pb, da + db) {
                (6, 6) => Ok(()),
                other => Err(format!("stored, duplicates: {other:?}")),
            }
        },
    );
    rollups.await.unwrap();
    let mut stream = js.get_stream(acs_monitor::durable::STREAM).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.state.messages, 6,
        "one message per tier and bucket, not per monitor"
    );
    assert_eq!(counter(ma, "acs_monitor_rollups_failed").await.unwrap(), 0);
    let last = stream
        .get_last_raw_message_by_subject("acs.rollup.10s.worker.w1")
        .await
        .unwrap();
    let m: acs_monitor::durable::RollupMsg = decode(&last.payload).unwrap();
    assert_eq!(
        (m.start_ms, m.width_ms, m.bucket("cpu").unwrap().count),
        (t0 + 10_000, 10_000, 10)
    );

    // Restart with a raw stream of 6 s: the old samples are gone from ACS_METRICS, and from memory.
    drop(stop_a);
    drop(stop_b);
    task_a.await.unwrap().unwrap();
    task_b.await.unwrap().unwrap();
    let (stop_c, task_c) = start_monitor(&nats.url(), Duration::from_secs(6), ma);
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let mut raw = js
                .get_stream(acs_monitor::service::STREAM)
                .await
                .map_err(|e| e.to_string())?;
            match raw.info().await.map_err(|e| e.to_string())?.state.messages {
                0 => Ok(()),
                n => Err(format!("{n} raw messages left")),
            }
        },
    )
    .await
    .unwrap();

    // The old window, answered from ACS_ROLLUPS: exact count, min, max, avg, last.
    let q = format!(
        r#"{{"scope":"worker","id":"w1","metric":"cpu","from_ms":{t0},"to_ms":{},"step_ms":5000}}"#,
        t0 + 20_000
    );
    let r = eventually(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let r = ask(&client, &q).await?;
            r.summary
                .as_ref()
                .filter(|s| s.count == 20)
                .map(|_| r.clone())
                .ok_or(format!("not yet: {r:?}"))
        },
    )
    .await
    .unwrap();
    let s = r.summary.clone().unwrap();
    assert_eq!(
        (s.count, s.min, s.max, s.last, s.avg),
        (20, 0.0, 9.0, 9.0, 4.5),
        "{r:?}"
    );
    assert_eq!(r.resolution_ms, 5_000);
    assert_eq!(
        r.series
            .iter()
            .map(|p| (p.ts_ms - t0, p.count, p.min, p.max))
            .collect::<Vec<_>>(),
        vec![
            (0, 5, 0.0, 4.0),
            (5_000, 5, 5.0, 9.0),
            (10_000, 5, 0.0, 4.0),
            (15_000, 5, 5.0, 9.0),
        ]
    );
    assert!(counter(ma, "acs_monitor_rollup_fetches").await.unwrap() >= 1);
    // Memory: the raw ring alone for a short window, nothing there from two minutes ago.
    let bad = ask(
        &client,
        r#"{"scope":"worker","id":"w404","metric":"cpu","last_ms":600000}"#,
    )
    .await
    .unwrap();
    assert!(
        bad.error
            .as_deref()
            .unwrap_or("")
            .contains("unknown worker \"w404\""),
        "{bad:?}"
    );
    // The replay published nothing again.
    assert_eq!(stream.info().await.unwrap().state.messages, 6);
    drop(stop_c);
    task_c.await.unwrap().unwrap();
}
