//! `drain --wait` and `replace --wait` against a test brain whose whole status would be a
//! summary: the waits follow the worker's page and the service's pages, fail when the brain
//! publishes a `blocked` decision about them, and fail when `--timeout` passes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::*;

const DRAINING: &str = r#"{"v":1,"ok":true,"worker":"w7","action":"drain","replicas":2,"note":"w7 drains: 2 replicas move"}"#;

/// A workers page: page 0 holds other workers only (and points at 500), page 500 holds w7
/// with `left` replicas. No other request is answered.
fn workers_page(payload: &[u8], left: u32) -> Option<Vec<u8>> {
    let req: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if req["workers"] != true {
        return None;
    }
    let w = |id: &str, n: u32| serde_json::json!({"id": id, "health": "up", "draining": id == "w7", "cordoned": id == "w7", "last_seen_ms_ago": 100, "replicas": n, "max_replicas": 4, "cpu_pct": 1.0});
    let (workers, next) = match req["offset"].as_u64().unwrap_or(0) {
        0 => (vec![w("w1", 3)], Some(500)),
        _ => (vec![w("w7", left)], None),
    };
    let reply = serde_json::json!({"v": 1, "ok": true, "ts_ms": 1, "services": [], "workers": workers,
        "page": {"detail": "workers", "offset": req["offset"].as_u64().unwrap_or(0), "count": 1, "total": 501, "next": next}});
    Some(reply.to_string().into_bytes())
}

#[tokio::test]
async fn drain_wait_follows_the_workers_page_when_status_is_a_summary() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    responder(&nc, "acs.cmd.maintenance", |_| Some(DRAINING.into())).await;
    // Two replicas, then one, then none: one fewer each time the page is asked for.
    let asked = Arc::new(AtomicU32::new(0));
    let a = asked.clone();
    responder(&nc, "acs.status", move |p| {
        let req: serde_json::Value = serde_json::from_slice(p).ok()?;
        let left = match req["offset"].as_u64() {
            Some(500) => 2u32.saturating_sub(a.fetch_add(1, Ordering::SeqCst)),
            _ => 2,
        };
        workers_page(p, left)
    })
    .await;
    let out = acsctl(&["drain", "w7", "--wait", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_has(
        &stdout,
        &[
            "w7 drains: 2 replicas move",
            "w7: 2 replicas left",
            "w7: 0 replicas left",
            "drain of w7 complete",
        ],
    );

    let out = acsctl(&["drain", "w7", "--wait", "-o", "json", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(v["done"], true, "{v}");
    assert_eq!(v["reply"]["worker"], "w7", "{v}");
    assert_eq!(v["replicas_left"].as_array().unwrap().last().unwrap(), 0);
}

#[tokio::test]
async fn a_blocked_drain_exits_non_zero_with_the_brains_reason() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    let seen = responder(&nc, "acs.cmd.maintenance", |_| Some(DRAINING.into())).await;
    responder(&nc, "acs.status", |p| workers_page(p, 1)).await;
    let url = nats.url();
    let run = tokio::spawn(async move { acsctl(&["drain", "w7", "--wait", "--nats", &url]).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no drain request came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let blocked = r#"{"v":1,"service":"web","ts_ms":1,"action":"blocked","reason":"cannot move web-3 off draining worker w7: no other worker can take it (no live worker has room); it keeps serving"}"#;
    nc.publish("acs.events.decision.web", blocked.into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let out = run.await.unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the drain of w7 is blocked: cannot move web-3 off draining worker w7"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_drain_wait_gives_up_after_its_timeout() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    responder(&nc, "acs.cmd.maintenance", |_| Some(DRAINING.into())).await;
    responder(&nc, "acs.status", |p| workers_page(p, 1)).await;
    let started = std::time::Instant::now();
    let out = acsctl(&[
        "drain",
        "w7",
        "--wait",
        "--timeout",
        "1s",
        "--nats",
        &nats.url(),
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("w7: 1 replicas left"), "{stdout}");
    assert!(
        stderr.contains("the drain of w7 not done after 1s"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn replace_wait_follows_the_services_pages() {
    let nats = NatsServer::start();
    let nc = connect(&nats).await;
    let replacing =
        r#"{"v":1,"ok":true,"replica":"web-9","service":"web","note":"web-9 is replaced"}"#;
    responder(&nc, "acs.cmd.replica", |_| Some(replacing.into())).await;
    // web-9 is on the second page while draining, then gone.
    let asked = Arc::new(AtomicU32::new(0));
    let a = asked.clone();
    responder(&nc, "acs.status", move |p| {
        let req: serde_json::Value = serde_json::from_slice(p).ok()?;
        assert_eq!(req["service"], "web", "the wait asks for the service's pages");
        let offset = req["offset"].as_u64().unwrap_or(0);
        let n = a.fetch_add(1, Ordering::SeqCst);
        let rep = |id: &str| serde_json::json!({"id": id, "worker": "w1", "state": "healthy", "draining": true});
        let (replicas, next) = match offset {
            0 => (vec![rep("web-1")], Some(1)),
            _ if n < 4 => (vec![rep("web-9")], None),
            _ => (vec![], None),
        };
        let reply = serde_json::json!({"v": 1, "ok": true, "ts_ms": 1, "workers": [],
            "services": [{"name": "web", "mode": "auto", "desired": 2, "running": 2, "version": 1,
                          "lifecycle": {"state": "running"}, "replicas": replicas, "backends": []}],
            "page": {"detail": "service", "offset": offset, "count": 1, "total": 2, "next": next}});
        Some(reply.to_string().into_bytes())
    })
    .await;
    let out = acsctl(&["replace", "web-9", "--wait", "--nats", &nats.url()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("web-9: healthy (draining)"), "{stdout}");
    assert!(
        stdout.contains("web-9 is gone; its replacement serves"),
        "{stdout}"
    );
}
