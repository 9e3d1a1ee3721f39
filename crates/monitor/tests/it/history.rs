//! The event history against a real nats-server with JetStream: events published while no
//! monitor runs are kept, read back by kind, id, window and limit over NATS and REST; bad
//! requests get an error naming the problem.

use std::net::SocketAddr;
use std::time::Duration;

use acs_events::{decode, HistoryReply, Subjects};
use acs_monitor::history::STREAM;
use acs_monitor::http::HttpAuth;
use acs_monitor::service::unix_ms;
use acs_testkit::poll::eventually;
use acs_testkit::{free_port, NatsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const TOKEN: &str = "history-token-0123456789abcdef";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../events/tests/fixtures/v1/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn start_monitor(
    url: &str,
    http: Option<SocketAddr>,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (tx, rx) = oneshot::channel::<()>();
    let mut config = acs_monitor::Config::new(acs_node::NatsOptions::new(url));
    // The second start keeps events 2 days instead of 7: the existing stream follows.
    if http.is_some() {
        config.events_max_age = Duration::from_secs(2 * 86_400);
    }
    config.http = http.map(|a| (a, HttpAuth::Bearer(TOKEN.into())));
    let task = tokio::spawn(acs_monitor::run(config, async move {
        let _ = rx.await;
    }));
    (tx, task)
}

async fn ask(client: &async_nats::Client, body: &str) -> HistoryReply {
    let msg = client
        .request(
            Subjects::default().monitor_history(),
            body.to_string().into(),
        )
        .await
        .unwrap();
    decode::<HistoryReply>(&msg.payload).unwrap()
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_kept_across_restarts_and_read_back_by_kind_and_window() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let (stop, task) = start_monitor(&nats.url(), None);
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

    let t0 = unix_ms();
    let decision = fixture("decision_scale.json");
    for _ in 0..3 {
        js.publish("acs.events.decision.web", decision.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    js.publish("acs.events.decision.api", decision.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish(
        "acs.events.alarm.cpu_high",
        fixture("alarm_event.json").into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    js.publish(
        "acs.events.replica.w1",
        fixture("replica_event.json").into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // Not JSON: kept, as a string.
    js.publish("acs.events.error.proxy", "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();

    // The monitor goes away; what is published meanwhile is still kept.
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    js.publish("acs.events.decision.web", decision.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (stop, task) = start_monitor(&nats.url(), Some(addr));

    let web = eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            match client
                .request(
                    Subjects::default().monitor_history(),
                    r#"{"kind":"decision","id":"web"}"#.into(),
                )
                .await
            {
                Ok(m) => decode::<HistoryReply>(&m.payload).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .unwrap();
    assert!(web.ok, "{web:?}");
    assert_eq!(web.events.len(), 4, "{web:?}");
    assert!(
        web.events.windows(2).all(|w| w[0].seq < w[1].seq),
        "oldest first"
    );
    assert!(web.events.iter().all(|e| e.kind == "decision"
        && e.subject == "acs.events.decision.web"
        && e.ts_ms >= t0 - 1000));
    assert_eq!(
        web.events[0].data["to"], 4,
        "the decision itself: {:?}",
        web.events[0].data
    );
    assert!(!web.truncated);
    let kept = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .max_age;
    assert_eq!(
        kept,
        Duration::from_secs(2 * 86_400),
        "the new retention was applied"
    );

    let all = ask(&client, "{}").await;
    assert_eq!(all.events.len(), 8, "{all:?}");
    let kinds: Vec<&str> = all.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["decision", "decision", "decision", "decision", "alarm", "replica", "error", "decision"]
    );
    assert_eq!(all.events[6].data, serde_json::json!("not json"));

    let alarm = ask(&client, r#"{"kind":"alarm"}"#).await;
    assert_eq!(alarm.events.len(), 1);
    assert_eq!(alarm.events[0].subject, "acs.events.alarm.cpu_high");

    // The newest two, and the reply says older ones were left out.
    let two = ask(&client, r#"{"kind":"decision","limit":2}"#).await;
    assert_eq!(two.events.len(), 2);
    assert!(two.truncated);
    assert_eq!(two.events[1].seq, all.events[7].seq);

    // A window before everything is empty; a window from now on too.
    let before = ask(
        &client,
        &format!(r#"{{"from_ms":{},"to_ms":{}}}"#, t0 - 60_000, t0 - 30_000),
    )
    .await;
    assert!(before.ok && before.events.is_empty(), "{before:?}");
    let after = ask(&client, &format!(r#"{{"from_ms":{}}}"#, unix_ms() + 60_000)).await;
    assert!(after.ok && after.events.is_empty(), "{after:?}");

    // Bad requests name the problem.
    let bad = ask(&client, r#"{"kind":"deploys"}"#).await;
    assert!(
        !bad.ok && bad.error.as_deref().unwrap().contains("deploys"),
        "{bad:?}"
    );
    let bad = ask(&client, "{not json").await;
    assert!(!bad.ok, "{bad:?}");

    // REST: the same answer with the token; 401 without; 400 for a bad parameter.
    let (status, body) = get(
        addr,
        "/api/v1/history?kind=decision&id=web&window=1h",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rest: HistoryReply = decode(body.as_bytes()).unwrap();
    assert_eq!(rest.events.len(), 4);
    assert_eq!(get(addr, "/api/v1/history", None).await.0, 401);
    let (status, body) = get(addr, "/api/v1/history?kind=decision&limit=0", Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("limit must be positive"), "{body}");

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
