//! Compatibility: payloads as written by v1 must keep parsing (and round-trip), and payloads that
//! break the contract must keep failing with a readable error. Add a fixture when a message
//! changes; never edit an old one.

use std::path::Path;

use acs_events::*;
use serde::{de::DeserializeOwned, Serialize};

fn read(dir: &str, name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Parses a v1 fixture, re-encodes it, and checks the re-encoding parses to the same value.
fn good<T>(name: &str) -> T
where
    T: DeserializeOwned + Serialize + Validate + codec::Versioned + PartialEq + std::fmt::Debug,
{
    let v: T = decode(&read("v1", name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again: T = decode(&encode(&v)).unwrap();
    assert_eq!(v, again, "{name} round-trips");
    v
}

fn bad<T>(name: &str) -> String
where
    T: DeserializeOwned + Validate + codec::Versioned + std::fmt::Debug,
{
    decode::<T>(&read("bad", name)).expect_err(name).to_string()
}

#[test]
fn v1_payloads_parse() {
    let m: WorkerMetrics = good("worker_metrics.json");
    assert_eq!(m.replicas[0].state, ReplicaState::Healthy);
    let e: ReplicaEvent = good("replica_event.json");
    assert_eq!(e.replica.cpu_pct, 0.0, "optional replica fields default");
    let c: WorkerCommand = good("command_start.json");
    assert!(matches!(c.action, Action::Start { ref spec, .. } if spec.cpus == Some(0.5)));
    let c: WorkerCommand = good("command_stop.json");
    assert!(matches!(
        c.action,
        Action::Stop {
            grace_ms: 10_000,
            ..
        }
    ));
    let a: CommandAck = good("command_ack.json");
    assert!(a.ok);
    let a: CommandAck = good("command_ack_error.json");
    assert_eq!(a.error.as_deref(), Some("worker w1 is full: 4/4 replicas"));
    for f in [
        "backends_reset.json",
        "backends_add.json",
        "backends_drain.json",
        "backends_remove.json",
    ] {
        let _: BackendUpdate = good(f);
    }
    let w: BackendUpdate = good("backends_withdraw.json");
    assert_eq!(w.change, BackendChange::Withdraw, "added after v1");
    assert_eq!(
        decode::<BackendUpdate>(&encode(&w)).unwrap(),
        w,
        "round-trips"
    );
    let u: BackendUpdate = good("backends_drain.json");
    assert_eq!(u.selection, Selection::RoundRobin, "selection defaults");
    let _: SyncReply = good("sync_reply.json");
    let p: ProxyMetrics = good("proxy_metrics.json");
    assert_eq!(p.services[0].backends.len(), 2);
    let d: Decision = good("decision_scale.json");
    assert_eq!(
        d.action,
        DecisionAction::Scale {
            from: 2,
            to: 4,
            manual: false
        }
    );
    let _: Decision = good("decision_place.json");
    let _: WorkerEvent = good("worker_event.json");
    let _: Rejection = good("rejection.json");
    let s: ScaleRequest = good("scale_request.json");
    assert_eq!(
        (s.v, s.replicas, s.auto),
        (1, Some(3), false),
        "v defaults to 1"
    );
    let s: ScaleRequest = good("scale_request_auto.json");
    assert!(s.auto);
    let _: ScaleReply = good("scale_reply.json");
    let st: StatusReply = good("status_reply.json");
    assert_eq!(st.services[0].backends.len(), 2);
    assert_eq!(
        (st.page.as_ref(), st.services[0].backends_total),
        (None, 0),
        "an older brain's reply is whole"
    );
    let st: StatusReply = good("status_reply_summary.json");
    let page = st.page.unwrap();
    assert_eq!(
        (page.detail, page.total, page.next),
        (StatusDetail::Summary, 21000, None)
    );
    assert_eq!(
        (
            st.summary.unwrap().workers_up,
            st.services[0].replicas_total
        ),
        (1000, 5000)
    );
    let r: StatusRequest = good("status_request_page.json");
    assert_eq!(
        (
            r.service.as_ref().map(|s| s.as_str()),
            r.workers,
            r.offset,
            r.limit
        ),
        (Some("web"), false, 500, Some(250))
    );
    let r: ReplicaRequest = good("replica_request.json");
    assert_eq!(
        (r.v, r.replica.as_str(), r.action),
        (1, "web-t5x3k2-1", ReplicaAction::Replace),
        "v defaults to 1"
    );
    let r: ReplicaReply = good("replica_reply.json");
    assert_eq!(r.service.as_deref(), Some("web"));
    let _: AlarmEvent = good("alarm_event.json");
    let _: AlarmRequest = good("alarm_request_ack.json");
    let _: AlarmReply = good("alarm_reply.json");
    let h: HistoryRequest = good("history_request.json");
    assert_eq!(
        (h.v, h.kind.as_deref(), h.limit),
        (1, Some("decision"), Some(50)),
        "v defaults to 1"
    );
    let h: HistoryReply = good("history_reply.json");
    assert_eq!(h.events[0].kind, "decision");
    let d: BackendDrained = good("backend_drained.json");
    assert_eq!(
        (d.proxy.as_str(), d.replica.as_str(), d.version),
        ("p1", "web-t5x3k2-2", 1763870358000003)
    );
}

/// A part of a split proxy report (written as version 2): read by the assembling readers, and
/// refused by a reader of whole reports, as by any reader older than parts; a v1 report is a
/// whole one to the assembling readers.
#[test]
fn proxy_report_parts_parse() {
    let bytes = read("v2", "proxy_metrics_part.json");
    let p: ProxyMetricsMsg = decode(&bytes).unwrap();
    assert_eq!(
        p.part,
        Some(MetricsPart {
            seq: 1_763_870_400_000,
            index: 1,
            count: 2
        })
    );
    assert_eq!(
        decode::<ProxyMetricsMsg>(&encode(&p)).unwrap(),
        p,
        "round-trips"
    );
    let e = decode::<ProxyMetrics>(&bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "schema version 2 is newer than this build understands (1)"
    );
    let whole: ProxyMetricsMsg = decode(&read("v1", "proxy_metrics.json")).unwrap();
    assert_eq!(
        (whole.part, whole.metrics.services[0].backends.len()),
        (None, 2)
    );
}

#[test]
fn contract_breaks_fail_readably() {
    assert!(bad::<ScaleRequest>("scale_negative.json").contains("replicas must be >= 0"));
    assert!(bad::<ScaleRequest>("scale_wrong_type.json").contains("invalid type"));
    assert!(bad::<ScaleRequest>("scale_bad_service.json").contains("service name"));
    assert!(bad::<WorkerCommand>("command_missing_id.json").contains("missing field `id`"));
    assert!(
        bad::<WorkerCommand>("command_no_runnable.json").contains("needs a command or an image")
    );
    assert!(bad::<BackendUpdate>("backends_bad_addr.json").contains("must be host:port"));
    assert!(
        bad::<BackendUpdate>("backends_missing_version.json").contains("missing field `version`")
    );
    assert!(bad::<WorkerMetrics>("metrics_future_version.json").contains("schema version 99"));
    assert!(bad::<WorkerMetrics>("metrics_nan_cpu.json").contains("host.cpu_pct"));
    assert!(
        bad::<HistoryRequest>("history_bad_kind.json").contains("kind \"deploys\" is not one of")
    );
    assert!(bad::<BackendDrained>("drained_zero_version.json").contains("version must be > 0"));
    assert!(bad::<StatusRequest>("status_request_both.json").contains("not both"));
}

#[test]
fn size_and_emptiness_bounds() {
    let big = vec![b' '; MAX_PAYLOAD + 1];
    let e = decode::<ScaleRequest>(&big).unwrap_err();
    assert_eq!(e.kind(), "too_large");
    assert_eq!(decode::<ScaleRequest>(b"  ").unwrap_err().kind(), "empty");
    assert_eq!(decode::<ScaleRequest>(b"{").unwrap_err().kind(), "bad_json");
    assert_eq!(
        decode::<ScaleRequest>(br#"{"service":1}"#)
            .unwrap_err()
            .kind(),
        "bad_field"
    );
}
