//! [`describe`]: decode a payload with the `acs-events` type that belongs to its subject and
//! hand it to its formatter in `lines.rs`; anything undecodable is shown as raw text.

use std::fmt::Write as _;

use acs_events::{
    decode, BackendUpdate, Decision, LeaderEvent, MaintenanceRequest, ProxyMetricsMsg, Rejection,
    ReplicaEvent, ScaleRequest, Subjects, SyncRequest, WorkerCommand, WorkerEvent, WorkerMetrics,
};

use super::lines::{
    backend_update, decision, leader_event, maintenance_request, proxy_metrics, rejection,
    replica_event, scale_request, sync_request, worker_command, worker_event, worker_metrics,
};

/// Longest raw payload text printed for an undecodable message.
const RAW_LIMIT: usize = 300;

/// One line for one message: a kind word, then a summary. Never panics, whatever the payload.
pub fn describe(subjects: &Subjects, subject: &str, payload: &[u8]) -> String {
    let Some((kind, last)) = subjects.classify(subject) else {
        return format!("{subject} {}", raw_text(payload, RAW_LIMIT));
    };
    let described = match (kind, last) {
        ("metrics.worker", Some(_)) => decode::<WorkerMetrics>(payload).map(|m| worker_metrics(&m)),
        ("metrics.proxy", Some(_)) => decode::<ProxyMetricsMsg>(payload).map(|m| match m.part {
            // A report too big for one message comes in parts; each lists its own services.
            Some(p) => format!(
                "{} (part {}/{})",
                proxy_metrics(&m.metrics),
                p.index + 1,
                p.count
            ),
            None => proxy_metrics(&m.metrics),
        }),
        ("events.replica", Some(_)) => decode::<ReplicaEvent>(payload).map(|e| replica_event(&e)),
        ("events.decision", Some(_)) => decode::<Decision>(payload).map(|d| decision(&d)),
        ("events.worker", Some(_)) => decode::<WorkerEvent>(payload).map(|e| worker_event(&e)),
        ("events.error", Some(_)) => decode::<Rejection>(payload).map(|r| rejection(&r)),
        ("backends", Some(_)) => decode::<BackendUpdate>(payload).map(|u| backend_update(&u)),
        ("cmd.worker", Some(w)) => decode::<WorkerCommand>(payload).map(|c| worker_command(w, &c)),
        ("cmd", Some("scale")) => decode::<ScaleRequest>(payload).map(|r| scale_request(&r)),
        ("cmd", Some("maintenance")) => {
            decode::<MaintenanceRequest>(payload).map(|r| maintenance_request(&r))
        }
        ("events", Some("leader")) => decode::<LeaderEvent>(payload).map(|e| leader_event(&e)),
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
