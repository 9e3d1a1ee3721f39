//! The monitor against a real nats-server with JetStream: history from real WorkerMetrics,
//! answered over NATS; survives a restart; a second monitor answers the same; bad queries and
//! bad metrics get errors naming the problem.

use std::time::Duration;

use acs_events::{decode, encode, StatsReply, Subjects, WorkerMetrics};
use acs_monitor::service::{unix_ms, STREAM};
use acs_testkit::msg::worker_metrics;
use acs_testkit::poll::eventually;
use acs_testkit::NatsServer;
use tokio::sync::oneshot;

fn sample(ts_ms: u64, seq: u64, cpu: f64) -> WorkerMetrics {
    let mut m = worker_metrics("w1", seq, ts_ms, cpu);
    m.host.mem_used_bytes = 1000 + seq;
    m
}

/// Starts a monitor in this process; dropping the sender stops it.
fn start_monitor(
    url: &str,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (tx, rx) = oneshot::channel::<()>();
    let config = acs_monitor::Config::new(acs_node::NatsOptions::new(url));
    let task = tokio::spawn(acs_monitor::run(config, async move {
        let _ = rx.await;
    }));
    (tx, task)
}

async fn ask(client: &async_nats::Client, body: &str) -> Result<StatsReply, String> {
    let msg = client
        .request(Subjects::default().monitor_stats(), body.to_string().into())
        .await
        .map_err(|e| e.to_string())?;
    decode::<StatsReply>(&msg.payload).map_err(|e| e.to_string())
}

/// Polls until a monitor answers with all `n` samples, then returns that answer.
async fn full_answer(client: &async_nats::Client, body: &str, n: u64) -> StatsReply {
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let r = ask(client, body).await?;
            match &r.summary {
                Some(s) if s.count == n => Ok(r),
                _ => Err(format!("not yet: {r:?}")),
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_answered_after_restart_and_by_a_second_monitor() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let (stop_a, task_a) = start_monitor(&nats.url());
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

    // 60 samples, one per second ending now, cpu cycling 0..=9; plus one bad message.
    let now = unix_ms();
    let subject = Subjects::default().worker_metrics(&"w1".parse().unwrap());
    for i in 0..60u64 {
        let m = sample(now - (59 - i) * 1000, i + 1, (i % 10) as f64);
        js.publish(subject.clone(), encode(&m).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut rejections = client
        .subscribe(Subjects::default().rejections("monitor"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    js.publish(subject.clone(), "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let q = r#"{"scope":"worker","id":"w1","metric":"cpu","last_ms":300000,"step_ms":10000}"#;
    let check = |r: &StatsReply| {
        let s = r.summary.as_ref().unwrap();
        assert_eq!(
            (s.count, s.min, s.max, s.last),
            (60, 0.0, 9.0, 9.0),
            "{r:?}"
        );
        assert!((s.avg - 4.5).abs() < 1e-9);
        assert!((s.p95 - 9.0).abs() <= 9.0 * 0.03, "p95 {}", s.p95);
        assert_eq!(r.resolution_ms, 1000);
        assert_eq!(r.series.iter().map(|p| p.count).sum::<u64>(), 60);
        assert!(r.series.len() >= 6 && r.series.len() <= 7, "{:?}", r.series);
    };
    check(&full_answer(&client, q, 60).await);

    let rej = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut rejections),
    )
    .await
    .expect("a rejection for the bad metrics")
    .unwrap();
    assert!(String::from_utf8_lossy(&rej.payload).contains("invalid JSON"));

    // Bad queries: the reply names the problem.
    let bad = ask(
        &client,
        r#"{"scope":"worker","id":"w1","metric":"bogus","last_ms":1000}"#,
    )
    .await
    .unwrap();
    assert!(
        !bad.ok
            && bad
                .error
                .as_deref()
                .unwrap()
                .contains("unknown metric \"bogus\""),
        "{bad:?}"
    );
    let bad = ask(
        &client,
        r#"{"scope":"worker","id":"w404","metric":"cpu","last_ms":1000}"#,
    )
    .await
    .unwrap();
    assert!(
        bad.error
            .as_deref()
            .unwrap()
            .contains("unknown worker \"w404\""),
        "{bad:?}"
    );
    let bad = ask(&client, r#"{"scope":"worker","id":"w1","metric":"cpu"}"#)
        .await
        .unwrap();
    assert!(
        bad.error.as_deref().unwrap().contains("window missing"),
        "{bad:?}"
    );

    // A second monitor reads the stream with its own consumer: with A gone, B answers the same.
    let (stop_b, task_b) = start_monitor(&nats.url());
    drop(stop_a);
    task_a.await.unwrap().unwrap();
    check(&full_answer(&client, q, 60).await);

    // Restart: a fresh monitor replays the durable stream and answers the history.
    let (stop_c, task_c) = start_monitor(&nats.url());
    drop(stop_b);
    task_b.await.unwrap().unwrap();
    check(&full_answer(&client, q, 60).await);
    drop(stop_c);
    task_c.await.unwrap().unwrap();
}
