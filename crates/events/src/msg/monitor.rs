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
        match (self.from_ms, self.to_ms, self.last_ms) {
            (_, _, Some(0)) => return Err("last_ms must be positive".into()),
            (_, _, Some(l)) if l > MAX_WINDOW_MS => return Err(format!("last_ms {l} is more than 30 days")),
            (Some(_), _, Some(_)) => return Err("give either from_ms/to_ms or last_ms, not both".into()),
            (None, _, None) => return Err("window missing: give from_ms (and to_ms) or last_ms".into()),
            (Some(f), Some(t), None) if t <= f => return Err(format!("bad window: to_ms {t} is not after from_ms {f}")),
            _ => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<StatsRequest, String> {
        crate::decode::<StatsRequest>(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn windows_are_checked() {
        assert!(req(r#"{"scope":"worker","id":"w1","metric":"cpu","last_ms":60000}"#).is_ok());
        assert!(req(r#"{"scope":"worker","id":"w1","metric":"cpu"}"#).unwrap_err().contains("window missing"));
        assert!(req(r#"{"scope":"worker","id":"w1","metric":"cpu","from_ms":5,"to_ms":5}"#).unwrap_err().contains("bad window"));
        assert!(req(r#"{"scope":"disk","id":"w1","metric":"cpu","last_ms":1}"#).is_err());
        assert!(req(r#"{"scope":"worker","id":"w1","metric":"cpu","last_ms":1,"step_ms":0}"#).unwrap_err().contains("step_ms"));
    }
}
