//! `acsctl watch`: one readable line per NATS message, a readable `nats sub 'acs.>'`.
//!
//! [`describe`] is pure: it decodes the payload with the `acs-events` type that belongs to the
//! subject and summarises it; anything it cannot decode is shown as raw text with the reason.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;

use acs_events::{
    decode, Action, BackendChange, BackendUpdate, Decision, DecisionAction, ProxyMetrics,
    Rejection, ReplicaEvent, ScaleRequest, Subjects, SyncRequest, WorkerCommand, WorkerEvent,
    WorkerHealth, WorkerMetrics,
};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::status::state_name;

/// Longest raw payload text printed for an undecodable message.
const RAW_LIMIT: usize = 300;

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub subject: String,
    /// Print `{"subject":..,"payload":..}` lines instead of descriptions.
    pub json: bool,
    /// Skip `metrics.*` subjects.
    pub no_metrics: bool,
}

/// Subscribes and prints until `shutdown` resolves.
pub async fn run(
    nc: &async_nats::Client,
    subjects: &Subjects,
    opts: &WatchOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut sub = nc
        .subscribe(opts.subject.clone())
        .await
        .map_err(|e| Error::Subscribe {
            subject: opts.subject.clone(),
            reason: e.to_string(),
        })?;
    eprintln!("-- watching {} (Ctrl-C to stop)", opts.subject);
    if nc.connection_state() != async_nats::connection::State::Connected {
        eprintln!("-- NATS is not reachable yet; retrying in the background");
    }
    tokio::pin!(shutdown);
    let stdout = std::io::stdout();
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => break,
            msg = sub.next() => match msg {
                Some(m) => m,
                None => break,
            },
        };
        let subject = msg.subject.as_str();
        if opts.no_metrics && is_metrics(subjects, subject) {
            continue;
        }
        let line = if opts.json {
            json_line(subject, &msg.payload)
        } else {
            format!(
                "{} {}",
                timestamp(),
                describe(subjects, subject, &msg.payload)
            )
        };
        let mut out = stdout.lock();
        // A closed pipe (`acsctl watch | head`) ends the watch quietly.
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}

fn is_metrics(subjects: &Subjects, subject: &str) -> bool {
    matches!(subjects.classify(subject), Some((kind, _)) if kind.starts_with("metrics"))
}

/// `{"subject": "...", "payload": <the JSON, or the text when it is not JSON>}`.
pub fn json_line(subject: &str, payload: &[u8]) -> String {
    let payload = serde_json::from_slice::<serde_json::Value>(payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
    });
    serde_json::json!({ "subject": subject, "payload": payload }).to_string()
}

/// One line for one message: a kind word, then a summary. Never panics, whatever the payload.
pub fn describe(subjects: &Subjects, subject: &str, payload: &[u8]) -> String {
    let Some((kind, last)) = subjects.classify(subject) else {
        return format!("{subject} {}", raw_text(payload, RAW_LIMIT));
    };
    let described = match (kind, last) {
        ("metrics.worker", Some(_)) => decode::<WorkerMetrics>(payload).map(|m| worker_metrics(&m)),
        ("metrics.proxy", Some(_)) => decode::<ProxyMetrics>(payload).map(|m| proxy_metrics(&m)),
        ("events.replica", Some(_)) => decode::<ReplicaEvent>(payload).map(|e| replica_event(&e)),
        ("events.decision", Some(_)) => decode::<Decision>(payload).map(|d| decision(&d)),
        ("events.worker", Some(_)) => decode::<WorkerEvent>(payload).map(|e| worker_event(&e)),
        ("events.error", Some(_)) => decode::<Rejection>(payload).map(|r| rejection(&r)),
        ("backends", Some(_)) => decode::<BackendUpdate>(payload).map(|u| backend_update(&u)),
        ("cmd.worker", Some(w)) => decode::<WorkerCommand>(payload).map(|c| worker_command(w, &c)),
        ("cmd", Some("scale")) => decode::<ScaleRequest>(payload).map(|r| scale_request(&r)),
        ("sync", Some("backends")) => {
            if payload.iter().all(u8::is_ascii_whitespace) {
                Ok("sync backends request (all services)".to_string())
            } else {
                decode::<SyncRequest>(payload).map(|r| sync_request(&r))
            }
        }
        ("status", None) => Ok("status request".to_string()),
        _ => return format!("{subject} {}", raw_text(payload, RAW_LIMIT)),
    };
    match described {
        Ok(line) => line,
        Err(e) => format!(
            "{subject} (undecodable: {}) {}",
            shorten(&e.to_string(), 160),
            raw_text(payload, RAW_LIMIT)
        ),
    }
}

fn worker_metrics(m: &WorkerMetrics) -> String {
    let h = &m.host;
    let mut s = format!(
        "worker {} cpu {:.0}% mem {}/{} load {:.2} replicas {}/{}",
        m.worker,
        h.cpu_pct,
        gib(h.mem_used_bytes),
        gib_unit(h.mem_total_bytes),
        h.load1,
        m.capacity.running,
        m.capacity.max_replicas,
    );
    if !m.replicas.is_empty() {
        let list: Vec<String> = m
            .replicas
            .iter()
            .map(|r| format!("{} {} {:.0}%", r.id, state_name(r.state), r.cpu_pct))
            .collect();
        let _ = write!(s, " [{}]", list.join(", "));
    }
    if m.rejected > 0 {
        let _ = write!(s, " rejected {}", m.rejected);
    }
    s
}

fn proxy_metrics(m: &ProxyMetrics) -> String {
    let mut s = format!("proxy {}", m.proxy);
    if m.services.is_empty() {
        s.push_str(" no services");
    }
    let parts: Vec<String> = m
        .services
        .iter()
        .map(|svc| {
            let t = &svc.totals;
            let mut p = format!(
                "{} {:.0} rps inflight {} p99 {:.0}ms",
                svc.service, t.rps, t.in_flight, t.p99_ms
            );
            if t.errors > 0 {
                let _ = write!(p, " errors {}", t.errors);
            }
            let _ = write!(p, " v{}", svc.version);
            if !svc.backends.is_empty() {
                let list: Vec<String> = svc
                    .backends
                    .iter()
                    .map(|b| {
                        let mut x =
                            format!("{} {:.0}rps/{}", b.id, b.traffic.rps, b.traffic.in_flight);
                        if b.draining {
                            x.push_str(" draining");
                        }
                        if b.ejected {
                            x.push_str(" ejected");
                        }
                        x
                    })
                    .collect();
                let _ = write!(p, " [{}]", list.join(", "));
            }
            p
        })
        .collect();
    if !parts.is_empty() {
        s.push(' ');
        s.push_str(&parts.join("; "));
    }
    if m.unrouted > 0 {
        let _ = write!(s, " unrouted {}", m.unrouted);
    }
    if m.rejected > 0 {
        let _ = write!(s, " rejected {}", m.rejected);
    }
    s
}

fn replica_event(e: &ReplicaEvent) -> String {
    let r = &e.replica;
    let mut s = format!(
        "replica {} {} {} ({} at {})",
        e.worker,
        r.id,
        state_name(r.state),
        r.service,
        r.addr
    );
    if !e.reason.is_empty() {
        let _ = write!(s, ": {}", e.reason);
    }
    s
}

fn decision(d: &Decision) -> String {
    let what = match &d.action {
        DecisionAction::Scale { from, to, manual } => {
            format!(
                "scale {from}→{to}{}",
                if *manual { " (manual)" } else { "" }
            )
        }
        DecisionAction::Place { replica, worker } => format!("place {replica} on {worker}"),
        DecisionAction::Drain { replica, worker } => format!("drain {replica} on {worker}"),
        DecisionAction::Stop { replica, worker } => format!("stop {replica} on {worker}"),
        DecisionAction::Lost { replica, worker } => format!("lost {replica} on {worker}"),
        DecisionAction::Blocked => "blocked".to_string(),
    };
    if d.reason.is_empty() {
        format!("decision {} {what}", d.service)
    } else {
        format!("decision {} {what}: {}", d.service, d.reason)
    }
}

fn worker_event(e: &WorkerEvent) -> String {
    let health = match e.health {
        WorkerHealth::Up => "up",
        WorkerHealth::Down => "DOWN",
    };
    format!("worker {} {health}: {}", e.worker, e.reason)
}

fn rejection(r: &Rejection) -> String {
    format!(
        "error {}: {} on {}: {} (total {})",
        r.component, r.kind, r.subject, r.error, r.total
    )
}

fn backend_update(u: &BackendUpdate) -> String {
    let head = format!("backends {} v{}", u.service, u.version);
    let list = |bs: &[acs_events::Backend]| -> String {
        bs.iter()
            .map(|b| {
                format!(
                    "{}@{}{}",
                    b.id,
                    b.addr,
                    if b.draining { " (draining)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ids = |ids: &[acs_events::ReplicaId]| -> String {
        ids.iter()
            .map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &u.change {
        BackendChange::Reset { route, backends } => {
            let mut s = format!("{head} reset [{}]", list(backends));
            if let Some(h) = &route.host {
                let _ = write!(s, " host {h}");
            }
            if let Some(p) = &route.path_prefix {
                let _ = write!(s, " prefix {p}");
            }
            s
        }
        BackendChange::Add { backends } => format!("{head} add {}", list(backends)),
        BackendChange::Drain { ids: i } => format!("{head} drain {}", ids(i)),
        BackendChange::Remove { ids: i } => format!("{head} remove {}", ids(i)),
    }
}

fn worker_command(worker: &str, c: &WorkerCommand) -> String {
    match &c.action {
        Action::Start { replica, spec } => {
            format!(
                "command {worker} start {replica} ({}) id {}",
                spec.service, c.id
            )
        }
        Action::Stop { replica, grace_ms } => {
            format!(
                "command {worker} stop {replica} grace {grace_ms}ms id {}",
                c.id
            )
        }
    }
}

fn scale_request(r: &ScaleRequest) -> String {
    match (r.replicas, r.auto) {
        (_, true) => format!("scale request {} → auto", r.service),
        (Some(n), _) => format!("scale request {} → {n}", r.service),
        (None, false) => format!("scale request {} (no target)", r.service),
    }
}

fn sync_request(r: &SyncRequest) -> String {
    if r.services.is_empty() {
        "sync backends request (all services)".to_string()
    } else {
        let names: Vec<&str> = r.services.iter().map(|s| s.as_str()).collect();
        format!("sync backends request ({})", names.join(", "))
    }
}

/// `2.1` (GiB, one decimal).
fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

fn gib_unit(bytes: u64) -> String {
    format!("{}G", gib(bytes))
}

/// The payload as one line of text: lossy UTF-8, control characters escaped, cut at `limit`.
pub fn raw_text(payload: &[u8], limit: usize) -> String {
    if payload.is_empty() {
        return "(empty payload)".to_string();
    }
    let text = String::from_utf8_lossy(payload);
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= limit {
            let _ = write!(out, "… ({} bytes)", payload.len());
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn shorten(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        s.to_string()
    } else {
        s.chars().take(limit).chain("…".chars()).collect()
    }
}

/// Local wall-clock time, `HH:MM:SS.mmm`.
pub fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r writes only into the `tm` we pass; a zeroed `tm` is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if ok {
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
            now.subsec_millis()
        )
    } else {
        let s = now.as_secs() % 86_400;
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            s / 3600,
            s / 60 % 60,
            s % 60,
            now.subsec_millis()
        )
    }
}

#[cfg(test)]
mod tests {
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
}
