//! Monitor statistics (`acs.monitor.stats`, request-reply): one query for one metric of one
//! scope over a window, answered with summary numbers and an optional series.

use serde::{Deserialize, Serialize};

use super::{v1, versioned};
use crate::codec::Validate;
use crate::UnixMs;

/// What a stats query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsScope {
    Worker,
    Replica,
    Service,
    Proxy,
}

impl StatsScope {
    pub fn as_str(self) -> &'static str {
        match self {
            StatsScope::Worker => "worker",
            StatsScope::Replica => "replica",
            StatsScope::Service => "service",
            StatsScope::Proxy => "proxy",
        }
    }
}

/// Longest window or step a query may name (30 days), and the most series points it may ask for.
pub const MAX_WINDOW_MS: u64 = 30 * 24 * 3600 * 1000;
pub const MAX_POINTS: u64 = 10_000;

/// `acs.monitor.stats` request. The window is either `from_ms`..`to_ms` or the last `last_ms`
/// before now; `step_ms` asks for a series of that resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRequest {
    #[serde(default = "v1")]
    pub v: u32,
    pub scope: StatsScope,
    pub id: String,
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<u64>,
}
versioned!(StatsRequest);

impl Validate for StatsRequest {
    fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > 128 {
            return Err("id must be 1..=128 characters".into());
        }
        if self.metric.is_empty() || self.metric.len() > 64 {
            return Err("metric must be 1..=64 characters".into());
        }
        if self.from_ms.is_none() && self.last_ms.is_none() {
            return Err("window missing: give from_ms (and to_ms) or last_ms".into());
        }
        check_window(self.from_ms, self.to_ms, self.last_ms)?;
        if let Some(step) = self.step_ms {
            if step == 0 {
                return Err("step_ms must be positive".into());
            }
            if step > MAX_WINDOW_MS {
                return Err(format!("step_ms {step} is more than 30 days"));
            }
        }
        Ok(())
    }
}

/// The checks every window takes, given as `from_ms`..`to_ms` or as the last `last_ms` (stats
/// and history queries).
fn check_window(from: Option<UnixMs>, to: Option<UnixMs>, last: Option<u64>) -> Result<(), String> {
    match (from, to, last) {
        (_, _, Some(0)) => Err("last_ms must be positive".into()),
        (_, _, Some(l)) if l > MAX_WINDOW_MS => Err(format!("last_ms {l} is more than 30 days")),
        (Some(_), _, Some(_)) => Err("give either from_ms/to_ms or last_ms, not both".into()),
        (Some(f), Some(t), None) if t <= f => {
            Err(format!("bad window: to_ms {t} is not after from_ms {f}"))
        }
        _ => Ok(()),
    }
}

/// One point of a series: the bucket starting at `ts_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsPoint {
    pub ts_ms: UnixMs,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub last: f64,
}

/// Summary of one metric over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsSummary {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub last: f64,
    /// Estimated 95th percentile; see docs/EVENTS.md ("Monitor") for its error bound.
    pub p95: f64,
}

/// `acs.monitor.stats` reply. `ok: false` carries `error` naming the problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    #[serde(default = "v1")]
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<StatsScope>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metric: String,
    #[serde(default)]
    pub from_ms: UnixMs,
    #[serde(default)]
    pub to_ms: UnixMs,
    /// Resolution the answer came from (1 s raw, 1 min, 1 h).
    #[serde(default)]
    pub resolution_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<StatsSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<StatsPoint>,
}
versioned!(StatsReply);

impl StatsReply {
    pub fn error(msg: impl Into<String>) -> Self {
        StatsReply {
            v: v1(),
            ok: false,
            error: Some(msg.into()),
            scope: None,
            id: String::new(),
            metric: String::new(),
            from_ms: 0,
            to_ms: 0,
            resolution_ms: 0,
            summary: None,
            series: Vec::new(),
        }
    }
}

impl Validate for StatsReply {
    fn validate(&self) -> Result<(), String> {
        if !self.ok && self.error.is_none() {
            return Err("a failed reply must carry an error".into());
        }
        Ok(())
    }
}

/// Kinds of event kept in the history (`<prefix>.events.<kind>[.<id>]`).
pub const HISTORY_KINDS: &[&str] = &[
    "decision", "replica", "worker", "leader", "alarm", "error", "drained",
];
/// Most entries one history reply carries (newest last), and the default.
pub const MAX_HISTORY: u32 = 1_000;
pub const DEFAULT_HISTORY: u32 = 100;

/// `acs.monitor.history` request: the newest `limit` events of one kind (or of every kind) in
/// a window, oldest first. `id` narrows a kind to its last subject token: a service for
/// `decision`, a worker for `replica` and `worker`, a rule for `alarm`, a component for `error`,
/// a proxy for `drained`.
/// The window is `from_ms`..`to_ms` or the last `last_ms`; neither means the last hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRequest {
    #[serde(default = "v1")]
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
versioned!(HistoryRequest);

impl Validate for HistoryRequest {
    fn validate(&self) -> Result<(), String> {
        if let Some(k) = &self.kind {
            if !HISTORY_KINDS.contains(&k.as_str()) {
                return Err(format!(
                    "kind {k:?} is not one of {}",
                    HISTORY_KINDS.join(", ")
                ));
            }
        }
        if let Some(id) = &self.id {
            match self.kind.as_deref() {
                None => {
                    return Err(
                        "id needs a kind (decision, replica, worker, alarm or error)".into(),
                    )
                }
                Some("leader") => return Err("leader events have no id".into()),
                _ => {}
            }
            if id.is_empty()
                || id.len() > 128
                || id.contains(['.', '*', '>', ' ', '\t', '\n', '\r'])
            {
                return Err(format!(
                    "id {id:?} must be one subject token of 1..=128 characters"
                ));
            }
        }
        check_window(self.from_ms, self.to_ms, self.last_ms)?;
        match (self.from_ms, self.to_ms, self.last_ms) {
            (None, Some(_), Some(_)) => {
                return Err("give either from_ms/to_ms or last_ms, not both".into())
            }
            (None, Some(_), None) => return Err("to_ms needs from_ms".into()),
            _ => {}
        }
        match self.limit {
            Some(0) => Err("limit must be positive".into()),
            Some(n) if n > MAX_HISTORY => Err(format!("limit {n} is more than {MAX_HISTORY}")),
            _ => Ok(()),
        }
    }
}

/// One kept event: where and when it was published, and its message as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Sequence in the history stream (`ACS_EVENTS`); later events have higher ones.
    pub seq: u64,
    /// When the stream stored it (unix ms).
    pub ts_ms: UnixMs,
    pub subject: String,
    pub kind: String,
    /// The event's own JSON (a `Decision`, `ReplicaEvent`, `AlarmEvent`, ...); a payload that is
    /// not JSON is kept as a string.
    pub data: serde_json::Value,
}

/// `acs.monitor.history` reply. `truncated` says older matching events in the window were left
/// out (more than `limit`, or more than the monitor scans for one request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryReply {
    #[serde(default = "v1")]
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub from_ms: UnixMs,
    #[serde(default)]
    pub to_ms: UnixMs,
    #[serde(default)]
    pub events: Vec<HistoryEntry>,
    #[serde(default)]
    pub truncated: bool,
}
versioned!(HistoryReply);

impl HistoryReply {
    pub fn error(msg: impl Into<String>) -> Self {
        HistoryReply {
            v: v1(),
            ok: false,
            error: Some(msg.into()),
            from_ms: 0,
            to_ms: 0,
            events: Vec::new(),
            truncated: false,
        }
    }
}

impl Validate for HistoryReply {
    fn validate(&self) -> Result<(), String> {
        if !self.ok && self.error.is_none() {
            return Err("a failed reply must carry an error".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<StatsRequest, String> {
        crate::decode::<StatsRequest>(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn windows_are_checked() {
        assert!(req(r#"{"scope":"worker","id":"w1","metric":"cpu","last_ms":60000}"#).is_ok());
        assert!(req(r#"{"scope":"worker","id":"w1","metric":"cpu"}"#)
            .unwrap_err()
            .contains("window missing"));
        assert!(
            req(r#"{"scope":"worker","id":"w1","metric":"cpu","from_ms":5,"to_ms":5}"#)
                .unwrap_err()
                .contains("bad window")
        );
        assert!(req(r#"{"scope":"disk","id":"w1","metric":"cpu","last_ms":1}"#).is_err());
        assert!(
            req(r#"{"scope":"worker","id":"w1","metric":"cpu","last_ms":1,"step_ms":0}"#)
                .unwrap_err()
                .contains("step_ms")
        );
    }

    #[test]
    fn history_requests_are_checked() {
        let h = |json: &str| {
            crate::decode::<HistoryRequest>(json.as_bytes()).map_err(|e| e.to_string())
        };
        assert!(h("{}").is_ok());
        assert!(h(r#"{"kind":"decision","id":"web","last_ms":60000,"limit":10}"#).is_ok());
        assert!(h(r#"{"kind":"deploy"}"#)
            .unwrap_err()
            .contains("not one of"));
        assert!(h(r#"{"id":"web"}"#).unwrap_err().contains("needs a kind"));
        assert!(h(r#"{"kind":"leader","id":"x"}"#)
            .unwrap_err()
            .contains("no id"));
        assert!(h(r#"{"kind":"decision","id":"a.b"}"#)
            .unwrap_err()
            .contains("subject token"));
        assert!(h(r#"{"limit":0}"#).unwrap_err().contains("positive"));
        assert!(h(r#"{"limit":5000}"#).unwrap_err().contains("more than"));
        assert!(h(r#"{"to_ms":5}"#).unwrap_err().contains("needs from_ms"));
    }
}
