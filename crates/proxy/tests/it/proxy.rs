//! End-to-end tests: a real nats-server (acs-testkit), the real `acs-proxy` binary, tiny in-test
//! HTTP backends that answer with their own id, and a fake brain that answers sync requests.
//! Every wait polls with a generous deadline; nothing asserts on timing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acs_events::{decode, encode, BackendChange, ProxyId, Rejection, Selection, Subjects};
use std::net::SocketAddr;

use acs_testkit::http::until_status;
use acs_testkit::poll::eventually;
use acs_testkit::{free_port, wait_for_port, NatsServer};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_prefix() {
    let [web, api, api2, def] = test_backends(["web-1", "api-1", "api2-1", "def-1"]).await;
    let w = World::start(vec![
        reset(
            "web",
            10,
            route(Some("Web.Test"), None),
            vec![web.backend()],
        ),
        reset("api", 10, route(None, Some("/api")), vec![api.backend()]),
        reset(
            "apiv2",
            10,
            route(None, Some("/api/v2")),
            vec![api2.backend()],
        ),
        reset("fallback", 10, route(None, None), vec![def.backend()]),
    ])
    .await;

    w.until_served_by("web.test", "/", &["web-1"], 1).await;
    assert_eq!(
        w.get("WEB.test:8080", "/anything").await,
        (200, "web-1".into())
    );
    assert_eq!(w.get("other.test", "/api").await, (200, "api-1".into()));
    assert_eq!(
        w.get("other.test", "/api/v1/users?x=1").await,
        (200, "api-1".into())
    );
    assert_eq!(
        w.get("other.test", "/api/v2/users").await,
        (200, "api2-1".into())
    );
    assert_eq!(w.get("other.test", "/apix").await, (200, "def-1".into()));
    assert_eq!(w.get("other.test", "/").await, (200, "def-1".into()));
    // Host routes win over path routes for their host.
    assert_eq!(w.get("web.test", "/api").await, (200, "web-1".into()));

    // Take the default away (its route now needs /only): unmatched requests get a JSON 404.
    w.publish(&reset(
        "fallback",
        11,
        route(None, Some("/only")),
        vec![def.backend()],
    ))
    .await;
    w.until("the default route is gone", || async {
        w.get("other.test", "/").await.0 == 404
    })
    .await;
    let (resp, body) = w.get_json("other.test", "/nothing").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(body["error"], "no_route");
    assert_eq!(w.get("other.test", "/only/x").await, (200, "def-1".into()));

    // A service without usable backends: 503 with Retry-After.
    w.publish(&reset("web", 11, route(Some("web.test"), None), vec![]))
        .await;
    w.until("web has no backends", || async {
        w.get("web.test", "/").await.0 == 503
    })
    .await;
    let (resp, body) = w.get_json("web.test", "/").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(body["error"], "no_backend");
    // Other services are unaffected.
    assert_eq!(w.get("x", "/api").await, (200, "api-1".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_drain_remove_and_round_robin() {
    let [b1, b2, b3] = test_backends(["b1", "b2", "b3"]).await;
    let w = World::start(vec![web_reset(100, vec![b1.backend()])]).await;
    w.until_served_by("web.test", "/", &["b1"], 3).await;

    // add → both serve, round-robin spreads evenly.
    w.publish(&add(101, vec![b2.backend(), b3.backend()])).await;
    w.until("b3 is added", || async { w.get("x", "/").await.1 == "b3" })
        .await;
    let hits = w.spread("x", "/", 30).await;
    for id in ["b1", "b2", "b3"] {
        let n = hits.get(id).copied().unwrap_or(0);
        assert!((8..=12).contains(&n), "round-robin spread {hits:?}");
    }

    // Requests in flight on b1 when it is drained still finish.
    let total = || {
        [&b1, &b2, &b3]
            .iter()
            .map(|b| b.hits.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let before = total();
    let slow: Vec<_> = (0..3).map(|_| w.spawn_get("/slow?ms=5000")).collect();
    w.until("the slow requests reach the backends", || async {
        total() >= before + 3
    })
    .await;
    let mut sub = w.metrics_sub().await;
    w.publish(&update(
        "web",
        102,
        BackendChange::Drain { ids: ids(&["b1"]) },
    ))
    .await;
    w.until_served_by("x", "/", &["b2", "b3"], 12).await;
    // What the brain watches: b1 draining at version 102 with its request in flight, then none.
    let (mut seen_busy, start) = (false, Instant::now());
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "b1 never drained to zero in flight"
        );
        let m = next_metrics(&mut sub).await;
        let web = &m.services[0];
        let b = web.backends.iter().find(|b| b.id.as_str() == "b1").unwrap();
        if web.version == 102 && b.draining {
            if b.traffic.in_flight > 0 {
                seen_busy = true;
            } else if seen_busy {
                break;
            }
        }
    }
    let mut slow_bodies = vec![];
    for s in slow {
        let (status, body) = s.await.unwrap();
        assert_eq!(status, 200, "{body}");
        slow_bodies.push(body);
    }
    assert!(slow_bodies.contains(&"b1".to_string()), "{slow_bodies:?}");

    // remove → b1 is forgotten; the others keep serving.
    w.publish(&update(
        "web",
        103,
        BackendChange::Remove {
            ids: ids(&["b1", "b2"]),
        },
    ))
    .await;
    w.until_served_by("x", "/", &["b3"], 6).await;
    let m = next_metrics(&mut sub).await;
    let web = m
        .services
        .iter()
        .find(|s| s.service.as_str() == "web")
        .unwrap();
    assert_eq!(web.version, 103);
    let listed: Vec<_> = web.backends.iter().map(|b| b.id.to_string()).collect();
    assert_eq!(listed, ["b3"]);

    // A request in flight on a backend that is removed still completes.
    let before = b3.hits.load(Ordering::Relaxed);
    let slow = w.spawn_get("/slow?ms=1500");
    w.until("the slow request reaches b3", || async {
        b3.hits.load(Ordering::Relaxed) > before
    })
    .await;
    w.publish(&web_reset(104, vec![b2.backend()])).await;
    w.until_served_by("x", "/", &["b2"], 3).await;
    assert_eq!(slow.await.unwrap(), (200, "b3".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_around_a_closed_port_and_ejects_it() {
    let [b1, b2] = test_backends(["b1", "b2"]).await;
    let dead = backend("dead", &closed_addr());
    let w = World::start(vec![web_reset(
        1,
        vec![b1.backend(), dead.clone(), b2.backend()],
    )])
    .await;
    w.until_served_by("x", "/", &["b1", "b2"], 1).await;

    // Every GET succeeds although one backend in three refuses connections.
    let hits = w.spread("x", "/", 60).await;
    assert_eq!(hits.values().sum::<usize>(), 60);
    assert!(
        hits.contains_key("b1") && hits.contains_key("b2"),
        "{hits:?}"
    );

    // After repeated failures the dead backend is ejected (reported in the metrics).
    let mut sub = w.metrics_sub().await;
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "dead backend never reported as ejected"
        );
        w.get("x", "/").await;
        let m = next_metrics(&mut sub).await;
        let web = &m.services[0];
        let d = web
            .backends
            .iter()
            .find(|b| b.id.as_str() == "dead")
            .unwrap();
        if d.ejected {
            assert!(
                !web.backends
                    .iter()
                    .find(|b| b.id.as_str() == "b1")
                    .unwrap()
                    .ejected
            );
            break;
        }
    }

    // With every backend dead, GETs fail cleanly (502), nothing hangs.
    let dead2 = backend("dead2", &closed_addr());
    w.publish(&web_reset(2, vec![dead, dead2])).await;
    w.until("all-dead service answers 5xx", || async {
        let s = w.get("x", "/").await.0;
        s == 502 || s == 503
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_with_body_is_not_retried() {
    let b1 = TestBackend::start("b1").await;
    let dead = backend("dead", &closed_addr());
    let w = World::start(vec![web_reset(1, vec![dead, b1.backend()])]).await;
    w.until_served_by("x", "/", &["b1"], 1).await;
    let mut statuses = vec![];
    for _ in 0..4 {
        let req = hyper::Request::post(format!("http://127.0.0.1:{}/", w.proxy.port))
            .header("content-length", "5")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let resp = w.http.request(req).await.unwrap();
        statuses.push(resp.status().as_u16());
    }
    // Round-robin sends some of them to the dead backend, and those are not retried.
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_versions_are_ignored() {
    let [b1, b2, b3] = test_backends(["b1", "b2", "b3"]).await;
    let w = World::start(vec![web_reset(100, vec![b1.backend()])]).await;
    w.until_served_by("x", "/", &["b1"], 2).await;

    // Same version delta, older reset: both stale.
    w.publish(&add(100, vec![b2.backend()])).await;
    w.publish(&web_reset(50, vec![b2.backend()])).await;
    // A marker update at the next version proves the earlier ones were processed.
    w.publish(&add(101, vec![b3.backend()])).await;
    w.until("b3 is added", || async { w.get("x", "/").await.1 == "b3" })
        .await;
    let hits = w.spread("x", "/", 20).await;
    assert!(!hits.contains_key("b2"), "stale update applied: {hits:?}");
    assert_eq!(b2.hits.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_triggers_a_sync() {
    let [b1, b2] = test_backends(["b1", "b2"]).await;
    let w = World::start(vec![web_reset(10, vec![b1.backend()])]).await;
    w.until_served_by("x", "/", &["b1"], 2).await;
    let before = w.brain.syncs();

    // The brain moved on to version 20 (b2 only); the proxy sees version 12 and a gap.
    w.brain.set(web_reset(20, vec![b2.backend()]));
    w.publish(&add(12, vec![b2.backend()])).await;
    w.until("the proxy asks for a sync", || async {
        w.brain.syncs() > before
    })
    .await;
    w.until_served_by("x", "/", &["b2"], 5).await;

    let mut sub = w.metrics_sub().await;
    let m = next_metrics(&mut sub).await;
    assert_eq!(m.services[0].version, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_updates_are_rejected_and_the_proxy_keeps_serving() {
    let b1 = TestBackend::start("b1").await;
    let w = World::start(vec![web_reset(1, vec![b1.backend()])]).await;
    w.until_served_by("x", "/", &["b1"], 1).await;
    let mut rejections =
        w.nc.subscribe(Subjects::default().rejections("proxy"))
            .await
            .unwrap();
    w.nc.flush().await.unwrap();

    let subject = "acs.backends.web";
    let oversize = {
        let mut v =
            br#"{"service":"web","version":2,"change":"add","backends":[],"pad":""#.to_vec();
        v.extend(vec![b'x'; acs_events::MAX_PAYLOAD]);
        v.extend(br#""}"#);
        v
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (subject, b"{not json".to_vec(), "bad_json"),
        (subject, br#"{"service":"web","version":"two","change":"add","backends":[]}"#.to_vec(), "bad_field"),
        (subject, br#"{"service":"web","version":2,"change":"drain","ids":["a.b"]}"#.to_vec(), "bad_field"),
        (subject, br#"{"service":"we b","version":2,"change":"remove","ids":["b1"]}"#.to_vec(), "bad_field"),
        (subject, br#"{"service":"web","version":2,"change":"add","backends":[{"id":"x","addr":"nope","worker":"w1"}]}"#.to_vec(), "invalid"),
        (subject, oversize, "too_large"),
        ("acs.backends.other", encode(&update("web", 2, BackendChange::Remove { ids: ids(&["b1"]) })), "invalid"),
    ];
    for (i, (subj, payload, kind)) in cases.iter().enumerate() {
        w.publish_raw(subj, payload.clone()).await;
        let msg = tokio::time::timeout(DEADLINE, rejections.next())
            .await
            .unwrap_or_else(|_| panic!("no rejection for case {i} ({kind})"))
            .unwrap();
        let r: Rejection = decode(&msg.payload).unwrap();
        assert_eq!(r.component, "proxy");
        assert_eq!(r.kind, *kind, "case {i}: {}", r.error);
        assert_eq!(r.subject, *subj);
        assert_eq!(r.total, i as u64 + 1);
        assert!(!r.error.is_empty());
    }

    // Still serving, with the table untouched (the mismatched remove of b1 was refused).
    assert_eq!(w.get("x", "/").await, (200, "b1".into()));
    let mut sub = w.metrics_sub().await;
    let m = next_metrics(&mut sub).await;
    assert_eq!(m.rejected, cases.len() as u64);
    assert_eq!(m.services[0].version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_metrics_have_sane_numbers() {
    let [b1, b2] = test_backends(["b1", "b2"]).await;
    let mut idle = b2.backend();
    idle.draining = true;
    let w = World::start(vec![reset(
        "web",
        7,
        route(Some("web.test"), None),
        vec![b1.backend(), idle],
    )])
    .await;
    w.until_served_by("web.test", "/", &["b1"], 1).await;
    let mut sub = w.metrics_sub().await;
    // Let one window pass so that the warm-up request is not counted below.
    next_metrics(&mut sub).await;
    next_metrics(&mut sub).await;

    for _ in 0..40 {
        assert_eq!(w.get("web.test", "/").await.0, 200);
    }
    for _ in 0..3 {
        assert_eq!(w.get("unknown.test", "/").await.0, 404);
    }

    let (mut requests, mut unrouted, mut b1_requests) = (0, 0, 0);
    let start = Instant::now();
    while (requests < 40 || unrouted < 3) && start.elapsed() < DEADLINE {
        let m = next_metrics(&mut sub).await;
        assert_eq!(m.proxy.as_str(), "p1");
        assert!(m.interval_ms > 0);
        unrouted += m.unrouted;
        let web = &m.services[0];
        assert_eq!(web.service.as_str(), "web");
        assert_eq!(web.version, 7);
        assert_eq!(web.backends.len(), 2, "idle backends are listed too");
        let (a, b) = (&web.backends[0], &web.backends[1]);
        assert_eq!((a.id.as_str(), a.draining), ("b1", false));
        assert_eq!(
            (b.id.as_str(), b.draining, b.traffic.requests),
            ("b2", true, 0)
        );
        assert_eq!(b.traffic.in_flight, 0);
        assert_eq!(web.totals.errors, 0);
        if web.totals.requests > 0 {
            assert!(web.totals.rps > 0.0);
            assert!(web.totals.p50_ms > 0.0 && web.totals.p50_ms <= web.totals.p99_ms);
            assert!(web.totals.p99_ms < 5000.0);
            assert_eq!(a.traffic.requests, web.totals.requests);
        }
        requests += web.totals.requests;
        b1_requests += a.traffic.requests;
    }
    assert_eq!(requests, 40);
    assert_eq!(b1_requests, 40);
    assert_eq!(unrouted, 3);
}

/// A load step is reported at once, not at the end of the metrics interval: with a 30 s interval,
/// a burst of requests reaches the brain's subject as an early report over a short window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_step_is_reported_before_the_interval_is_up() {
    let [b1] = test_backends(["b1"]).await;
    let w = World::start_with(
        vec![reset(
            "web",
            3,
            route(Some("web.test"), None),
            vec![b1.backend()],
        )],
        &["--metrics-interval", "30s"],
    )
    .await;
    w.until_served_by("web.test", "/", &["b1"], 1).await;
    let mut sub = w.metrics_sub().await;
    // Open loop, well over 20 req/s and over twice the last report's 0: 8 at a time for 1.5 s.
    let load = {
        let w = &w;
        async move {
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_millis(1500) {
                let batch = (0..8).map(|_| w.get("web.test", "/"));
                for (status, _) in futures::future::join_all(batch).await {
                    assert_eq!(status, 200);
                }
                sent += 8;
            }
            sent
        }
    };
    let watch = async {
        let m = tokio::time::timeout(Duration::from_secs(10), next_metrics(&mut sub))
            .await
            .expect("an early report within 10 s of a 30 s interval");
        (m, Instant::now())
    };
    let started = Instant::now();
    let (sent, (m, seen)) = tokio::join!(load, watch);
    assert!(sent > 0);
    let web = m
        .services
        .iter()
        .find(|s| s.service.as_str() == "web")
        .expect("web is listed");
    assert!(
        m.interval_ms < 5_000,
        "a short window: {} ms",
        m.interval_ms
    );
    assert!(
        web.totals.requests > 0 && web.totals.rps > 20.0,
        "{:?}",
        web.totals
    );
    assert!(seen.duration_since(started) < Duration::from_secs(5));
}

/// A report too big for one message (4,000 backends, about 350 KB) arrives in parts, each under
/// the payload limit, and the parts reassemble to the whole report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_too_big_for_one_message_is_sent_in_parts() {
    let w = World::start(Vec::new()).await;
    let (services, per_service) = (20, 200);
    let mut sub = w.metrics_sub().await;
    for s in 0..services {
        let backends = (0..per_service)
            .map(|b| backend(&format!("svc{s:02}-backend-{b:04}"), &closed_addr()))
            .collect();
        w.publish(&reset(
            &format!("svc{s:02}"),
            1,
            route(Some(&format!("svc{s:02}.test")), None),
            backends,
        ))
        .await;
    }
    let mut assembler = acs_events::MetricsAssembler::default();
    let start = Instant::now();
    let mut parts;
    let whole = loop {
        assert!(
            start.elapsed() < DEADLINE,
            "no whole report with every backend"
        );
        let msg = tokio::time::timeout(DEADLINE, sub.next())
            .await
            .expect("metrics arrive")
            .unwrap();
        assert!(
            msg.payload.len() <= acs_events::MAX_PAYLOAD,
            "a message of {} bytes",
            msg.payload.len()
        );
        let part: acs_events::ProxyMetricsMsg =
            decode(&msg.payload).expect("a part decodes and validates");
        parts = part.part.map_or(1, |p| p.count);
        let now_ms = start.elapsed().as_millis() as u64;
        if let Some(m) = assembler.push(part, now_ms) {
            if m.services.iter().map(|s| s.backends.len()).sum::<usize>() == services * per_service
            {
                break m;
            }
        }
    };
    assert_eq!(whole.proxy.as_str(), "p1");
    assert_eq!(whole.services.len(), services);
    for (i, svc) in whole.services.iter().enumerate() {
        assert_eq!(svc.service.as_str(), format!("svc{i:02}"));
        assert_eq!(svc.version, 1);
        assert_eq!(
            svc.backends.len(),
            per_service,
            "{} arrives whole",
            svc.service
        );
    }
    assert_eq!(assembler.dropped().total(), 0);
    assert!(parts >= 2, "the whole report came in {parts} parts");
}

/// The NATS task runs in-process too: after a NATS restart it reconnects and asks for a sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_task_resyncs_after_reconnect() {
    let mut nats = NatsServer::start();
    let shared = Arc::new(acs_proxy::Shared::new(acs_proxy::Tuning::default()));
    let settings = acs_proxy::NatsSettings {
        nats: acs_node::NatsOptions::new(nats.url()),
        subjects: Subjects::default(),
        id: ProxyId::new("inproc").unwrap(),
        metrics_interval: Duration::from_millis(200),
        pressure: Default::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(acs_proxy::sync::run(settings, shared.clone(), async {
        let _ = stop_rx.await;
    }));

    let start_brain = |url: String, version: u64| async move {
        let nc = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(url)
            .await
            .unwrap();
        let brain = FakeBrain::start(&nc).await;
        brain.set(web_reset(version, vec![backend("a", "127.0.0.1:9")]));
        (nc, brain)
    };
    let (_nc, brain) = start_brain(nats.url(), 5).await;
    let version =
        |shared: &acs_proxy::Shared| shared.snapshot.load().service("web").map(|s| s.version);
    acs_testkit::poll::until("the initial sync is applied", DEADLINE, || async {
        version(&shared) == Some(5)
    })
    .await;
    assert!(brain.syncs() >= 1);

    // While NATS is down the brain moves on; nothing is published, so only the resync that
    // follows the reconnect (retried until the brain's own connection is back) can bring it.
    tokio::time::sleep(Duration::from_secs(1)).await; // let start-up syncs settle
    let before = brain.syncs();
    brain.set(web_reset(9, vec![backend("a", "127.0.0.1:9")]));
    nats.restart();
    let every = Duration::from_millis(50);
    eventually(DEADLINE, every, || async {
        match version(&shared) {
            Some(9) => Ok(()),
            _ => Err(brain.syncs()),
        }
    })
    .await
    .unwrap_or_else(|syncs| panic!("no resync after reconnect (syncs: {syncs})"));
    assert!(brain.syncs() > before);

    let _ = stop_tx.send(());
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("task stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_selection_avoids_a_busy_backend() {
    let [b1, b2] = test_backends(["b1", "b2"]).await;
    let mut r = web_reset(1, vec![b1.backend(), b2.backend()]);
    r.selection = Selection::LeastConn;
    let w = World::start(vec![r]).await;
    w.until_served_by("x", "/", &["b1", "b2"], 1).await;

    // One long request occupies one backend...
    let hits = || {
        (
            b1.hits.load(Ordering::Relaxed),
            b2.hits.load(Ordering::Relaxed),
        )
    };
    let before = hits();
    let slow = w.spawn_get("/slow?ms=3000");
    w.until("the slow request reaches a backend", || async {
        hits() != before
    })
    .await;
    let busy = if hits().0 != before.0 { "b1" } else { "b2" };
    let idle = if busy == "b1" { "b2" } else { "b1" };

    // ... so every quick request goes to the other one while it lasts.
    let spread = w.spread("x", "/", 6).await;
    assert_eq!(
        spread.get(idle),
        Some(&6),
        "least_conn picked the busy {busy}: {spread:?}"
    );
    assert_eq!(slow.await.unwrap().1, busy);
}

/// Fencing: once a newer leader's term is known (from `acs.events.leader` and its versions), an
/// update from an older term is refused with a `fenced` rejection and routing keeps the newer
/// term's backends, even if the old leader's version numbers look newer within its own term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_terms_update_is_refused_and_routing_keeps_the_new_leaders_backends() {
    let [b1, b2] = test_backends(["b1", "b2"]).await;
    let v = |term, seq| acs_events::pack_version(term, seq);
    let w = World::start(vec![web_reset(v(5, 1), vec![b1.backend()])]).await;
    w.until_served_by("x", "/", &["b1"], 2).await;
    let mut rejections =
        w.nc.subscribe(Subjects::default().rejections("proxy"))
            .await
            .unwrap();
    let leader = acs_events::LeaderEvent {
        v: 1,
        term: 5,
        brain: "brain-b".into(),
        ts_ms: 0,
        change: acs_events::LeaderChange::Elected,
        lease_ms: 1500,
    };
    w.publish_raw(&Subjects::default().leader(), encode(&leader))
        .await;

    // The paused term-4 leader wakes and sends a reset with a huge sequence.
    w.publish(&web_reset(v(4, 1_000_000), vec![b2.backend()]))
        .await;
    let msg = tokio::time::timeout(DEADLINE, rejections.next())
        .await
        .expect("a rejection")
        .unwrap();
    let r: acs_events::Rejection = acs_events::decode(&msg.payload).unwrap();
    assert_eq!(r.kind, "fenced", "{r:?}");
    let hits = w.spread("x", "/", 20).await;
    assert_eq!(
        hits.get("b1"),
        Some(&20),
        "still the term-5 backends: {hits:?}"
    );
    assert_eq!(b2.hits.load(Ordering::Relaxed), 0);

    // The term-5 leader's next delta still applies.
    w.publish(&add(v(5, 2), vec![b2.backend()])).await;
    w.until_served_by("x", "/", &["b1", "b2"], 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_nats_and_the_routes() {
    let (mut nats, nc) = nats_and_client().await;
    let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _proxy = ProxyProc::start(&nats.url(), "p1", &["--health-listen", &health.to_string()]);
    wait_for_port(health, DEADLINE).expect("health port listens");
    until_status(health, "/healthz", 200, DEADLINE)
        .await
        .unwrap();
    // Connected, but no brain has answered a sync: no routes yet.
    until_status(health, "/readyz", 503, DEADLINE)
        .await
        .unwrap();

    let _brain = FakeBrain::start(&nc).await;
    until_status(health, "/readyz", 200, DEADLINE)
        .await
        .unwrap();
    // The health port serves nothing else, and needs no token for these two.
    until_status(health, "/metrics", 404, DEADLINE)
        .await
        .unwrap();

    nats.stop();
    until_status(health, "/readyz", 503, DEADLINE)
        .await
        .unwrap();
    until_status(health, "/healthz", 200, DEADLINE)
        .await
        .unwrap();
}
