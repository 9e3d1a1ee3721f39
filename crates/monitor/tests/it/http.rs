//! The REST stats API against a real monitor on a real nats-server: an authorized query gets the
//! same answer as the NATS one; no or a wrong token gets 401; bad queries get 400 naming the
//! problem.

use std::net::SocketAddr;
use std::time::Duration;

use acs_events::{decode, encode, StatsReply, Subjects, WorkerMetrics};
use acs_monitor::http::HttpAuth;
use acs_monitor::service::unix_ms;
use acs_testkit::msg::worker_metrics;
use acs_testkit::poll::eventually;
use acs_testkit::{free_port, NatsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "test-token-0123456789abcdef";

fn sample(ts_ms: u64, seq: u64, cpu: f64) -> WorkerMetrics {
    worker_metrics("w1", seq, ts_ms, cpu)
}

/// One HTTP/1.1 GET; returns (status, body).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(format!("no status in {out:?}"))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_answers_like_nats_and_wants_a_token() {
    let nats = NatsServer::start();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = acs_monitor::Config::new(acs_node::NatsOptions::new(nats.url()));
    config.http = Some((addr, HttpAuth::Bearer(TOKEN.into())));
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(acs_monitor::run(config, async move {
        let _ = rx.await;
    }));
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            js.get_stream(acs_monitor::service::STREAM)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await
    .unwrap();
    let now = unix_ms();
    let subject = Subjects::default().worker_metrics(&"w1".parse().unwrap());
    for i in 0..30u64 {
        let m = sample(now - (29 - i) * 1000, i + 1, (i % 10) as f64);
        js.publish(subject.clone(), encode(&m).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // A fixed window, so both answers cover the same buckets.
    let (from, to) = (now - 60_000, now + 1_000);
    let nats_q = format!(
        r#"{{"scope":"worker","id":"w1","metric":"cpu","from_ms":{from},"to_ms":{to},"step_ms":10000}}"#
    );
    let by_nats = eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let m = client
                .request(Subjects::default().monitor_stats(), nats_q.clone().into())
                .await
                .map_err(|e| e.to_string())?;
            let r: StatsReply = decode(&m.payload).map_err(|e| e.to_string())?;
            match &r.summary {
                Some(s) if s.count == 30 => Ok(r),
                _ => Err(format!("not yet: {r:?}")),
            }
        },
    )
    .await
    .unwrap();
    let path = format!("/api/v1/stats?scope=worker&id=w1&metric=cpu&from={from}&to={to}&step=10s");
    let (status, body) = get(addr, &path, Some(TOKEN)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let by_rest: StatsReply = decode(body.as_bytes()).unwrap();
    assert_eq!(by_rest, by_nats);
    // The seed-001 shape: hourly averages over a day.
    let (status, body) = get(
        addr,
        "/api/v1/stats?scope=worker&id=w1&metric=cpu&window=1d&step=1h",
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");

    for token in [None, Some("wrong-token-0123456789abcdef")] {
        let (status, body) = get(addr, &path, token).await.unwrap();
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("bearer token"), "{body}");
    }
    for (query, names) in [
        (
            "scope=worker&id=w1&metric=bogus&window=1h",
            "unknown metric \"bogus\"",
        ),
        (
            "scope=worker&id=w1&metric=cpu&window=1fortnight",
            "unknown unit",
        ),
        ("scope=host&id=w1&metric=cpu&window=1h", "scope"),
        ("id=w1&metric=cpu&window=1h", "missing parameter scope"),
    ] {
        let (status, body) = get(addr, &format!("/api/v1/stats?{query}"), Some(TOKEN))
            .await
            .unwrap();
        assert_eq!(status, 400, "{query}: {body}");
        let r: StatsReply = decode(body.as_bytes()).unwrap();
        assert!(
            !r.ok && r.error.as_deref().unwrap_or("").contains(names),
            "{query}: {body}"
        );
    }
    let (status, _) = get(addr, "/api/v1/nope", Some(TOKEN)).await.unwrap();
    assert_eq!(status, 404);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
