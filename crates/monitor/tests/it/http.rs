//! The REST stats API against a real monitor on a real nats-server: an authorized query gets the
//! same answer as the NATS one; no or a wrong token gets 401; bad queries get 400 naming the
//! problem, as problem JSON. Then the public probes, the static files (ETag, gzip, favicon) and
//! the live events (ids, resume after a reconnect, no leader renewals).

use std::net::SocketAddr;
use std::time::Duration;

use acs_events::{decode, encode, LeaderChange, LeaderEvent, StatsReply, Subjects, WorkerMetrics};
use acs_monitor::http::HttpAuth;
use acs_monitor::service::unix_ms;
use acs_testkit::msg::worker_metrics;
use acs_testkit::poll::eventually;
use acs_testkit::{free_port, NatsServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

const TOKEN: &str = "test-token-0123456789abcdef";

fn sample(ts_ms: u64, seq: u64, cpu: f64) -> WorkerMetrics {
    worker_metrics("w1", seq, ts_ms, cpu)
}

/// One HTTP/1.1 request; returns (status, headers, body as text).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, String) {
    let (status, headers, body) = send_bytes(addr, method, path, headers).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn send_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let resp = request(addr, method, path, headers).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status.as_u16(), parts.headers, body)
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> hyper::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

/// One GET with an optional bearer token; returns (status, body).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let (status, _, body) = send(addr, "GET", path, &headers).await;
    Ok((status, body))
}

/// A monitor with the REST API on a free port: its address, its stop and its task.
fn start_monitor(
    url: &str,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = acs_monitor::Config::new(acs_node::NatsOptions::new(url));
    config.http = Some((addr, HttpAuth::Bearer(TOKEN.into())));
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(acs_monitor::run(config, async move {
        let _ = rx.await;
    }));
    (addr, stop, task)
}

fn problem(body: &str) -> serde_json::Value {
    let p: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(p["type"], "about:blank", "{body}");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_answers_like_nats_and_wants_a_token() {
    let nats = NatsServer::start();
    let (addr, stop, task) = start_monitor(&nats.url());
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
        ("scope=worker&id=w1&metric=cpu&windw=1h", "windw"),
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
        let p = problem(&body);
        assert_eq!(
            (p["status"].as_u64(), p["title"].as_str()),
            (Some(400), Some("Bad Request"))
        );
        assert!(
            p["detail"].as_str().unwrap().contains(names),
            "{query}: {body}"
        );
        assert_eq!(
            (&p["ok"], &p["error"]),
            (&false.into(), &p["detail"]),
            "{body}"
        );
    }
    let (status, body) = get(addr, "/api/v1/nope", Some(TOKEN)).await.unwrap();
    assert_eq!(status, 404);
    let detail = problem(&body)["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("no such endpoint GET /api/v1/nope"),
        "{detail}"
    );
    // Unknown paths and wrong methods under /api ask for a token first.
    assert_eq!(get(addr, "/api/v1/nope", None).await.unwrap().0, 401);
    for (method, path, status, names) in [
        (
            "POST",
            "/api/v1/stats",
            405,
            "POST is not allowed on /api/v1/stats",
        ),
        (
            "DELETE",
            "/api/v1/alarms",
            405,
            "DELETE is not allowed on /api/v1/alarms",
        ),
        (
            "GET",
            "/api/v1/alarms/cpu_hot/ack",
            405,
            "GET is not allowed on /api/v1/alarms/cpu_hot/ack",
        ),
        ("GET", "/api/v1/alarms?colour=red", 400, "colour"),
        ("POST", "/api/v1/workers/w1/reboot", 400, "unknown action"),
    ] {
        let r = send(
            addr,
            method,
            path,
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await;
        assert_eq!(r.0, status, "{method} {path}: {}", r.2);
        assert_eq!(r.1["content-type"], "application/problem+json");
        let detail = problem(&r.2)["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(names), "{method} {path}: {detail}");
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// SSE frames as (id, event, data), skipping comments and the `retry:` line.
fn frames(text: &str) -> Vec<(String, String, String)> {
    text.split("\n\n")
        .filter_map(|f| {
            let field = |name: &str| {
                f.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_string()))
            };
            Some((field("id:")?, field("event:")?, field("data:")?))
        })
        .collect()
}

/// Reads the event stream until `done` holds for what came so far (or 10 s pass).
async fn read_until(
    body: &mut hyper::body::Incoming,
    text: &mut String,
    done: impl Fn(&[(String, String, String)]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(&frames(text)) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("the stream stopped short: {text}"));
        if let Some(Ok(f)) = frame {
            if let Some(d) = f.data_ref() {
                text.push_str(&String::from_utf8_lossy(d));
            }
        }
    }
}

fn leader(change: LeaderChange, term: u64) -> Vec<u8> {
    encode(&LeaderEvent {
        v: 1,
        term,
        brain: "b1".into(),
        ts_ms: unix_ms(),
        change,
        lease_ms: 1500,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_assets_and_live_events_with_ids() {
    let mut nats = NatsServer::start();
    let (addr, stop, task) = start_monitor(&nats.url());
    // Health and readiness need no token; ready once the streams exist.
    acs_testkit::wait_for_port(addr, Duration::from_secs(10)).unwrap();
    let ready = || async {
        let (status, body) = get(addr, "/readyz", None).await?;
        (status == 200)
            .then_some(())
            .ok_or(format!("{status} {body}"))
    };
    eventually(Duration::from_secs(20), Duration::from_millis(100), ready)
        .await
        .unwrap();
    assert_eq!(get(addr, "/healthz", None).await.unwrap().0, 200);

    // The favicon, and static files with an ETag (304 on a match) and gzip.
    let (status, headers, body) = send(addr, "GET", "/favicon.ico", &[]).await;
    assert_eq!(
        (status, headers["content-type"].to_str().ok()),
        (200, Some("image/svg+xml"))
    );
    assert!(body.starts_with("<svg"), "{body}");
    let (status, _, raw) = send_bytes(addr, "GET", "/vendor/chart.umd.js", &[]).await;
    assert_eq!(status, 200);
    let (status, headers, gz) = send_bytes(
        addr,
        "GET",
        "/vendor/chart.umd.js",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(
        (status, headers["content-encoding"].to_str().ok()),
        (200, Some("gzip"))
    );
    assert!(
        gz.len() * 2 < raw.len(),
        "gzip: {} of {} bytes",
        gz.len(),
        raw.len()
    );
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (status, _, body) = send(
        addr,
        "GET",
        "/vendor/chart.umd.js",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!((status, body.as_str()), (304, ""));
    let stale = [("if-none-match", "W/\"0000\"")];
    assert_eq!(send(addr, "GET", "/app.js", &stale).await.0, 200);

    // Live events: every one has an id; leader renewals stay out, elections come in.
    let auth = format!("Bearer {TOKEN}");
    let resp = request(addr, "GET", "/api/v1/events", &[("authorization", &auth)]).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let s = Subjects::default();
    client
        .publish(s.leader(), leader(LeaderChange::Renewed, 4).into())
        .await
        .unwrap();
    client
        .publish(s.leader(), leader(LeaderChange::Elected, 5).into())
        .await
        .unwrap();
    let decision = "acs.events.decision.web";
    client.publish(decision, r#"{"n":1}"#.into()).await.unwrap();
    let mut text = String::new();
    read_until(&mut body, &mut text, |f| {
        f.iter().any(|e| e.2 == r#"{"n":1}"#) && f.iter().any(|e| e.1 == "leader")
    })
    .await;
    let seen = frames(&text);
    assert!(!text.contains("renewed"), "{text}");
    assert!(
        seen.iter()
            .any(|e| e.1 == "leader" && e.2.contains("elected")),
        "{text}"
    );
    assert_eq!(
        text.matches("\nevent:").count() + usize::from(text.starts_with("event:")),
        seen.len(),
        "an event without an id: {text}"
    );
    let first = seen.iter().find(|e| e.2 == r#"{"n":1}"#).unwrap().0.clone();
    drop(body);

    // Missed while away: replayed after Last-Event-ID; a foreign id is a gap said in the stream.
    client.publish(decision, r#"{"n":2}"#.into()).await.unwrap();
    client.flush().await.unwrap();
    let resume = |last: String| {
        let auth = auth.clone();
        async move {
            let headers = [
                ("authorization", auth.as_str()),
                ("last-event-id", last.as_str()),
            ];
            let mut body = request(addr, "GET", "/api/v1/events", &headers)
                .await
                .into_body();
            let mut text = String::new();
            read_until(&mut body, &mut text, |f| {
                f.iter().any(|e| e.2 == r#"{"n":2}"#)
            })
            .await;
            frames(&text)
        }
    };
    let again = resume(first).await;
    assert!(
        again.iter().all(|e| e.2 != r#"{"n":1}"#),
        "sent twice: {again:?}"
    );
    let gap = resume("1-1".into()).await;
    assert_eq!(gap[0].1, "gap", "{gap:?}");

    // Not ready without NATS; still alive.
    nats.stop();
    // At once a stream does not answer; once the client sees the loss, NATS itself is named.
    let not_ready = || async {
        let (status, body) = get(addr, "/readyz", None).await?;
        let named = body.contains("NATS is not connected");
        (status == 503 && named)
            .then_some(body)
            .ok_or(format!("{status}"))
    };
    let body = eventually(
        Duration::from_secs(20),
        Duration::from_millis(200),
        not_ready,
    )
    .await
    .unwrap();
    assert_eq!(problem(&body)["status"], 503, "{body}");
    assert_eq!(get(addr, "/healthz", None).await.unwrap().0, 200);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
