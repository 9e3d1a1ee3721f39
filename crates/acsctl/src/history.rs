//! `acsctl history [--kind K] [--id ID] [--last 1h] [--limit N]`: kept events (decisions, replica
//! and worker events, leader changes, alarm states, rejections) from the monitor's `ACS_EVENTS`
//! stream, asked on `acs.monitor.history`. One line per event, oldest first ([`render`], pure).

use std::fmt::Write as _;
use std::time::Duration;

use jiff::tz::TimeZone;

use acs_events::{HistoryEntry, HistoryReply, HistoryRequest, Subjects, SCHEMA_VERSION};

use crate::client;
use crate::clock::date_time_ms;
use crate::error::Result;
use crate::output::{print_json, Format};

#[derive(Debug, Clone, Default)]
pub struct HistoryArgs {
    pub kind: Option<String>,
    pub id: Option<String>,
    pub last: Option<Duration>,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub limit: Option<u32>,
}

impl HistoryArgs {
    pub fn request(&self) -> HistoryRequest {
        HistoryRequest {
            v: SCHEMA_VERSION,
            kind: self.kind.clone(),
            id: self.id.clone(),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            last_ms: self.last.map(|d| d.as_millis() as u64),
            limit: self.limit,
        }
    }
}

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: Duration,
    subjects: &Subjects,
    args: HistoryArgs,
    format: Format,
) -> Result<()> {
    let req = args.request();
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let reply: HistoryReply = client::unless_refused(
        &refusals,
        client::ask(&nc, subjects, subjects.monitor_history(), &req, timeout),
    )
    .await?;
    match format {
        Format::Json => print_json(&reply),
        Format::Table => print!("{}", render(&reply, &TimeZone::system(), false)),
        Format::Wide => print!("{}", render(&reply, &TimeZone::system(), true)),
    }
    Ok(())
}

/// `2026-12-07 12:04:05.120  decision  web  scale 2 → 4: rps 60.0 ...`, oldest first, the
/// date and time in `tz` (the system's time zone when printed); `wide` adds each event's
/// stream sequence and subject.
pub fn render(r: &HistoryReply, tz: &TimeZone, wide: bool) -> String {
    let mut out = String::new();
    if r.events.is_empty() {
        return "HISTORY: no event in the window\n".into();
    }
    if r.truncated {
        let _ = writeln!(
            out,
            "(older events in the window left out; narrow --kind/--id/--last or raise --limit)"
        );
    }
    for e in &r.events {
        let when = date_time_ms(e.ts_ms, tz);
        if wide {
            let _ = write!(out, "{when}  #{}  {}  ", e.seq, e.subject);
        } else {
            let _ = write!(out, "{when}  ");
        }
        let _ = writeln!(out, "{:<8}  {}", e.kind, summary(e));
    }
    out
}

fn field<'a>(e: &'a HistoryEntry, k: &str) -> &'a str {
    e.data.get(k).and_then(|v| v.as_str()).unwrap_or("")
}

/// The event in words: its own reason or message where it has one.
fn summary(e: &HistoryEntry) -> String {
    let d = &e.data;
    let num = |k: &str| {
        d.get(k)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    };
    match e.kind.as_str() {
        "decision" => {
            let action = field(e, "action");
            let what = match action {
                "scale" => format!("scale {} → {}", num("from"), num("to")),
                _ => action.to_string(),
            };
            format!("{}  {what}: {}", field(e, "service"), field(e, "reason"))
        }
        "alarm" => format!(
            "{} {} {}: {}",
            field(e, "rule"),
            field(e, "state"),
            field(e, "severity"),
            field(e, "message")
        ),
        "replica" => {
            let r = d.get("replica");
            let get = |k: &str| {
                r.and_then(|r| r.get(k))
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
            };
            format!(
                "{} ({}) on {}: {} {}",
                get("id"),
                get("service"),
                field(e, "worker"),
                get("state"),
                field(e, "reason")
            )
        }
        "worker" => format!(
            "{} is {}: {}",
            field(e, "worker"),
            field(e, "health"),
            field(e, "reason")
        ),
        "leader" => format!(
            "{} {} (term {})",
            field(e, "brain"),
            field(e, "change"),
            num("term")
        ),
        "drained" => format!(
            "{} ({}) has nothing in flight at proxy {} (version {})",
            field(e, "replica"),
            field(e, "service"),
            field(e, "proxy"),
            num("version")
        ),
        _ => match d {
            serde_json::Value::String(s) => format!("{}: {s}", e.subject),
            _ => format!("{}: {}", e.subject, field(e, "error")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, data: serde_json::Value) -> HistoryEntry {
        HistoryEntry {
            seq: 1,
            ts_ms: 3_723_004,
            subject: format!("acs.events.{kind}.x"),
            kind: kind.into(),
            data,
        }
    }

    #[test]
    fn each_kind_reads_as_a_sentence() {
        let r = HistoryReply {
            v: 1,
            ok: true,
            error: None,
            from_ms: 0,
            to_ms: 1,
            truncated: true,
            events: vec![
                entry(
                    "decision",
                    serde_json::json!({"service":"web","action":"scale","from":2,"to":4,"reason":"rps high"}),
                ),
                entry(
                    "alarm",
                    serde_json::json!({"rule":"cpu_high","state":"firing","severity":"critical","message":"w1 cpu = 95"}),
                ),
                entry(
                    "replica",
                    serde_json::json!({"worker":"w1","replica":{"id":"web-1","service":"web","state":"healthy"},"reason":""}),
                ),
                entry("error", serde_json::json!("not json")),
            ],
        };
        let text = render(&r, &TimeZone::UTC, false);
        assert!(text.starts_with("(older events"), "{text}");
        assert!(
            text.contains("1970-01-01 01:02:03.004  decision  web  scale 2 → 4: rps high"),
            "{text}"
        );
        assert!(
            text.contains("alarm     cpu_high firing critical: w1 cpu = 95"),
            "{text}"
        );
        assert!(text.contains("web-1 (web) on w1: healthy"), "{text}");
        assert!(text.contains("acs.events.error.x: not json"), "{text}");
        let wide = render(&r, &TimeZone::UTC, true);
        assert!(
            wide.contains("1970-01-01 01:02:03.004  #1  acs.events.decision.x  decision  web"),
            "{wide}"
        );
        let empty = HistoryReply {
            events: vec![],
            truncated: false,
            ..r
        };
        assert_eq!(
            render(&empty, &TimeZone::UTC, false),
            "HISTORY: no event in the window\n"
        );
    }
}
