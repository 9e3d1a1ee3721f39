//! Tests of `describe` (one line per subject), `json_line` and `timestamp`.

use super::*;

fn d(subject: &str, payload: &str) -> String {
    describe(&Subjects::default(), subject, payload.as_bytes())
}

#[test]
fn decisions() {
    assert_eq!(
        d(
            "acs.events.decision.web",
            r#"{"service":"web","ts_ms":1,"action":"scale","from":2,"to":4,"manual":false,"reason":"cpu 91% > target 60%","inputs":{"cpu_pct":91.0}}"#
        ),
        "decision web scale 2→4: cpu 91% > target 60%"
    );
    assert_eq!(
        d(
            "acs.events.decision.web",
            r#"{"service":"web","ts_ms":1,"action":"scale","from":4,"to":1,"manual":true,"reason":"pinned by acsctl"}"#
        ),
        "decision web scale 4→1 (manual): pinned by acsctl"
    );
    assert_eq!(
        d(
            "acs.events.decision.web",
            r#"{"service":"web","ts_ms":1,"action":"place","replica":"web-abc","worker":"w2","reason":"fewest replicas"}"#
        ),
        "decision web place web-abc on w2: fewest replicas"
    );
    assert_eq!(
        d(
            "acs.events.decision.web",
            r#"{"service":"web","ts_ms":1,"action":"blocked","reason":"no capacity"}"#
        ),
        "decision web blocked: no capacity"
    );
}

#[test]
fn backends() {
    assert_eq!(
        d(
            "acs.backends.web",
            r#"{"service":"web","version":123,"change":"add","backends":[{"id":"web-abc","addr":"127.0.0.1:40001","worker":"w1"}]}"#
        ),
        "backends web v123 add web-abc@127.0.0.1:40001"
    );
    assert_eq!(
        d(
            "acs.backends.web",
            r#"{"service":"web","version":124,"change":"drain","ids":["web-abc","web-d"]}"#
        ),
        "backends web v124 drain web-abc, web-d"
    );
    assert_eq!(
        d(
            "acs.backends.web",
            r#"{"service":"web","version":125,"change":"remove","ids":["web-abc"]}"#
        ),
        "backends web v125 remove web-abc"
    );
    assert_eq!(
        d(
            "acs.backends.web",
            r#"{"service":"web","version":7,"change":"reset","route":{"path_prefix":"/"},"backends":[{"id":"a","addr":"h:1","worker":"w1"},{"id":"b","addr":"h:2","worker":"w1","draining":true}]}"#
        ),
        "backends web v7 reset [a@h:1, b@h:2 (draining)] prefix /"
    );
}

#[test]
fn worker_metrics_line() {
    let json = r#"{"worker":"w1","seq":5,"ts_ms":1,"started_ms":0,"interval_ms":1000,"runtime":"process",
        "host":{"cpu_pct":34.2,"cpus":2,"mem_used_bytes":2254857830,"mem_total_bytes":25125558681,"load1":0.5,"load5":0,"load15":0,
                "net_rx_bytes_per_s":0,"net_tx_bytes_per_s":0,"disk_read_bytes_per_s":0,"disk_write_bytes_per_s":0,"disk_used_bytes":0,"disk_total_bytes":0},
        "capacity":{"max_replicas":4,"running":2},
        "replicas":[{"id":"web-a","service":"web","addr":"127.0.0.1:1","state":"healthy","cpu_pct":12.0},
                    {"id":"web-b","service":"web","addr":"127.0.0.1:2","state":"starting"}]}"#;
    assert_eq!(
        d("acs.metrics.worker.w1", json),
        "worker w1 cpu 34% mem 2.1/23.4G load 0.50 replicas 2/4 [web-a healthy 12%, web-b starting 0%]"
    );
}

#[test]
fn proxy_metrics_line() {
    let json = r#"{"proxy":"p1","ts_ms":1,"interval_ms":1000,"services":[{"service":"web","version":9,
        "requests":120,"rps":120.0,"in_flight":3,"p50_ms":4.0,"p99_ms":12.4,"errors":0,
        "backends":[{"id":"web-a","requests":60,"rps":60.0,"in_flight":1,"p50_ms":4,"p99_ms":12,"errors":0},
                    {"id":"web-b","requests":60,"rps":60.0,"in_flight":2,"p50_ms":4,"p99_ms":12,"errors":0,"draining":true}]}]}"#;
    assert_eq!(
        d("acs.metrics.proxy.p1", json),
        "proxy p1 web 120 rps inflight 3 p99 12ms v9 [web-a 60rps/1, web-b 60rps/2 draining]"
    );
    assert_eq!(
        d(
            "acs.metrics.proxy.p1",
            r#"{"proxy":"p1","ts_ms":1,"interval_ms":1000,"unrouted":4}"#
        ),
        "proxy p1 no services unrouted 4"
    );
    // One part of a report too big for one message (schema v2), and a v1 reader's view of it.
    let part = r#"{"v":2,"proxy":"p1","ts_ms":7,"interval_ms":1000,"services":[{"service":"web","version":9,
        "requests":1,"rps":1.0,"in_flight":0,"p50_ms":1.0,"p99_ms":1.0,"errors":0}],"part":{"seq":7,"index":1,"count":3}}"#;
    assert_eq!(
        d("acs.metrics.proxy.p1", part),
        "proxy p1 web 1 rps inflight 0 p99 1ms v9 (part 2/3)"
    );
    let bad =
        r#"{"v":2,"proxy":"p1","ts_ms":7,"interval_ms":1000,"part":{"seq":7,"index":3,"count":3}}"#;
    assert!(
        d("acs.metrics.proxy.p1", bad).contains("part.index 3 must be below"),
        "{}",
        d("acs.metrics.proxy.p1", bad)
    );
}

#[test]
fn replica_and_worker_events() {
    assert_eq!(
        d(
            "acs.events.replica.w1",
            r#"{"worker":"w1","ts_ms":1,"replica":{"id":"web-abc","service":"web","addr":"127.0.0.1:40001","state":"healthy"},"reason":"health check passed"}"#
        ),
        "replica w1 web-abc healthy (web at 127.0.0.1:40001): health check passed"
    );
    assert_eq!(
        d(
            "acs.events.worker.w2",
            r#"{"worker":"w2","ts_ms":1,"health":"down","reason":"no metrics for 3s"}"#
        ),
        "worker w2 DOWN: no metrics for 3s"
    );
}

#[test]
fn rejections_and_requests() {
    assert_eq!(
        d(
            "acs.events.error.proxy",
            r#"{"component":"proxy","subject":"acs.backends.web","ts_ms":1,"kind":"bad_json","error":"invalid JSON: x","total":3}"#
        ),
        "error proxy: bad_json on acs.backends.web: invalid JSON: x (total 3)"
    );
    assert_eq!(
        d("acs.cmd.scale", r#"{"service":"web","replicas":3}"#),
        "scale request web → 3"
    );
    assert_eq!(
        d("acs.cmd.scale", r#"{"service":"web","auto":true}"#),
        "scale request web → auto"
    );
    assert_eq!(d("acs.status", "{}"), "status request");
    assert_eq!(d("acs.status", ""), "status request");
    assert_eq!(
        d("acs.sync.backends", ""),
        "sync backends request (all services)"
    );
    assert_eq!(
        d(
            "acs.cmd.worker.w1",
            r#"{"id":"c1","action":"start","replica":"web-a","spec":{"service":"web","command":["demo-web"]}}"#
        ),
        "command w1 start web-a (web) id c1"
    );
    assert_eq!(
        d(
            "acs.cmd.worker.w1",
            r#"{"id":"c2","action":"stop","replica":"web-a"}"#
        ),
        "command w1 stop web-a grace 5000ms id c2"
    );
}

#[test]
fn undecodable_payloads_show_raw_text() {
    let out = d("acs.metrics.worker.w1", "not json");
    assert!(
        out.starts_with("acs.metrics.worker.w1 (undecodable: invalid JSON"),
        "{out}"
    );
    assert!(out.ends_with("not json"), "{out}");
    let out = d(
        "acs.backends.web",
        r#"{"service":"web","version":1,"change":"add","backends":[{"id":"a","addr":"nope","worker":"w1"}]}"#,
    );
    assert!(out.contains("undecodable: backend a: address"), "{out}");
    let out = d("acs.events.decision.web", "");
    assert!(out.contains("(empty payload)"), "{out}");
    // Unknown subjects, other prefixes, binary junk, multi-line text: one line, no panic.
    assert_eq!(d("acs.something.new", "hello"), "acs.something.new hello");
    assert_eq!(d("other.subject", "x"), "other.subject x");
    let out = describe(
        &Subjects::default(),
        "acs.metrics.proxy.p1",
        &[0xff, 0xfe, b'\n', 0],
    );
    assert!(!out.contains('\n'), "{out}");
    let big = "x".repeat(10_000);
    assert!(d("acs.zzz", &big).len() < 400);
    let huge = format!("{{\"pad\":\"{}\"}}", "y".repeat(300_000));
    let out = d("acs.metrics.worker.w1", &huge);
    assert!(out.contains("limit") && out.len() < 700, "{}", &out[..200]);
}

#[test]
fn dotted_prefixes() {
    let s = Subjects::new("prod.acs").unwrap();
    let out = describe(
        &s,
        "prod.acs.events.worker.w1",
        br#"{"worker":"w1","ts_ms":1,"health":"up","reason":"metrics resumed"}"#,
    );
    assert_eq!(out, "worker w1 up: metrics resumed");
    assert!(is_metrics(&s, "prod.acs.metrics.proxy.p1"));
    assert!(!is_metrics(&s, "prod.acs.events.worker.w1"));
}

#[test]
fn json_lines() {
    let v: serde_json::Value = serde_json::from_str(&json_line("acs.status", b"{}")).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"subject": "acs.status", "payload": {}})
    );
    let v: serde_json::Value = serde_json::from_str(&json_line("a.b", b"oops")).unwrap();
    assert_eq!(v, serde_json::json!({"subject": "a.b", "payload": "oops"}));
}

#[test]
fn timestamp_shape() {
    let t = timestamp();
    assert_eq!(t.len(), 12, "{t}");
    assert_eq!(&t[2..3], ":");
}

#[test]
fn leadership_and_maintenance() {
    assert_eq!(
        d(
            "acs.events.leader",
            r#"{"term":7,"brain":"brain-a","ts_ms":1,"change":"elected","lease_ms":1500}"#
        ),
        "leader brain-a elected (term 7, lease 1500 ms)"
    );
    assert_eq!(
        d(
            "acs.events.leader",
            r#"{"term":7,"brain":"brain-a","ts_ms":1,"change":"stepped_down","lease_ms":1500}"#
        ),
        "leader brain-a STEPPED DOWN (term 7, lease 1500 ms)"
    );
    assert_eq!(
        d("acs.cmd.maintenance", r#"{"worker":"w2","action":"drain"}"#),
        "maintenance request: drain w2"
    );
    assert!(d(
        "acs.events.leader",
        r#"{"term":0,"brain":"b","ts_ms":1,"change":"elected","lease_ms":1}"#
    )
    .contains("undecodable"));
}
