//! Monitor alarms: state changes on `acs.events.alarm.<rule>` (`AlarmEvent`), and people's
//! requests on `acs.monitor.alarms` (request-reply: list, ack, silence; `AlarmRequest` →
//! `AlarmReply`).

use serde::{Deserialize, Serialize};

use super::{v1, versioned, StatsScope};
use crate::codec::Validate;
use crate::id::validate_id;
use crate::UnixMs;

/// Longest ack or silence a request may ask for (30 days), and the longest comment.
pub const MAX_ALARM_FOR_MS: u64 = 30 * 24 * 3600 * 1000;
pub const MAX_COMMENT_LEN: usize = 512;

/// Where one alarm (one rule on one target) is. A target that was never pending has no alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    /// The condition holds, but not yet for the rule's `for` duration.
    Pending,
    /// The condition has held for `for`; notifications went out.
    Firing,
    /// The value came back past the threshold minus the hysteresis (or pending never fired).
    Resolved,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Pending => "pending",
            AlarmState::Firing => "firing",
            AlarmState::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// `acs.events.alarm.<rule>`: an alarm changed state or severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmEvent {
    #[serde(default = "v1")]
    pub v: u32,
    pub rule: String,
    pub scope: StatsScope,
    /// The target: a worker, service, replica or proxy id.
    pub id: String,
    pub metric: String,
    pub state: AlarmState,
    pub severity: Severity,
    /// The evaluated value (the rule's aggregate over its window) that caused the change.
    pub value: f64,
    /// The threshold of `severity` that was crossed.
    pub threshold: f64,
    /// When the alarm entered `state`.
    pub since_ms: UnixMs,
    pub ts_ms: UnixMs,
    /// One sentence with the value, e.g. "cpu of worker w1 is 0.93 (avg over 30s), above the
    /// critical threshold 0.9 for 1m".
    pub message: String,
}
versioned!(AlarmEvent);

impl Validate for AlarmEvent {
    fn validate(&self) -> Result<(), String> {
        validate_id("rule", &self.rule).map_err(|e| e.to_string())?;
        validate_id("target id", &self.id).map_err(|e| e.to_string())?;
        if self.metric.is_empty() || self.metric.len() > 64 {
            return Err("metric must be 1..=64 characters".into());
        }
        if !self.value.is_finite() || !self.threshold.is_finite() {
            return Err("value and threshold must be finite numbers".into());
        }
        Ok(())
    }
}

/// What an `AlarmRequest` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmAction {
    /// Every known alarm, optionally only of `rule` (and target `id`).
    List,
    /// Stop repeats and escalation of a firing alarm, until `for_ms` passes or it resolves.
    Ack,
    Unack,
    /// No notifications at all for `for_ms` (state changes are still published and kept).
    Silence,
    Unsilence,
}

impl AlarmAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmAction::List => "list",
            AlarmAction::Ack => "ack",
            AlarmAction::Unack => "unack",
            AlarmAction::Silence => "silence",
            AlarmAction::Unsilence => "unsilence",
        }
    }
}

/// `acs.monitor.alarms` request, e.g. `{"action":"list"}` or
/// `{"action":"ack","rule":"cpu_high","id":"w1","by":"ana","for_ms":3600000,"comment":"on it"}`.
/// Without `id`, ack/silence apply to every target of the rule (a silence then also covers
/// targets that start firing later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmRequest {
    #[serde(default = "v1")]
    pub v: u32,
    pub action: AlarmAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Who acks or silences; required for `ack` and `silence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// How long the ack or silence lasts. Required for `silence`; an ack without it lasts until
    /// the alarm resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
versioned!(AlarmRequest);

impl Validate for AlarmRequest {
    fn validate(&self) -> Result<(), String> {
        if let Some(rule) = &self.rule {
            validate_id("rule", rule).map_err(|e| e.to_string())?;
        }
        if let Some(id) = &self.id {
            validate_id("target id", id).map_err(|e| e.to_string())?;
        }
        let action = self.action.as_str();
        if self.action != AlarmAction::List && self.rule.is_none() {
            return Err(format!("{action} needs a \"rule\""));
        }
        if matches!(self.action, AlarmAction::Ack | AlarmAction::Silence) {
            match self.by.as_deref().map(str::trim) {
                None | Some("") => return Err(format!("{action} needs \"by\": who does it")),
                Some(by) if by.len() > 64 => return Err("by must be at most 64 characters".into()),
                _ => {}
            }
        }
        match self.for_ms {
            Some(0) => return Err("for_ms must be positive".into()),
            Some(f) if f > MAX_ALARM_FOR_MS => {
                return Err(format!("for_ms {f} is more than 30 days"))
            }
            None if self.action == AlarmAction::Silence => {
                return Err("silence needs \"for_ms\": how long it lasts".into())
            }
            _ => {}
        }
        if self
            .comment
            .as_ref()
            .is_some_and(|c| c.len() > MAX_COMMENT_LEN)
        {
            return Err(format!("comment must be at most {MAX_COMMENT_LEN} bytes"));
        }
        Ok(())
    }
}

/// Who acknowledged an alarm, and until when (`None`: until it resolves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmAck {
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One alarm as the monitor holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmView {
    pub rule: String,
    pub scope: StatsScope,
    pub id: String,
    pub metric: String,
    pub state: AlarmState,
    pub severity: Severity,
    /// The last evaluated value.
    pub value: f64,
    pub threshold: f64,
    /// When the alarm entered `state`.
    pub since_ms: UnixMs,
    /// Last change of state, severity, ack or silence.
    pub changed_ms: UnixMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<AlarmAck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_until_ms: Option<UnixMs>,
    /// Notifications sent for this alarm (every channel, every state change and repeat).
    #[serde(default)]
    pub notified: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `acs.monitor.alarms` reply. `ok: false` carries `error` naming the problem; ack and silence
/// answer with the alarms they changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmReply {
    #[serde(default = "v1")]
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub alarms: Vec<AlarmView>,
}
versioned!(AlarmReply);

impl AlarmReply {
    pub fn ok(alarms: Vec<AlarmView>) -> Self {
        AlarmReply {
            v: v1(),
            ok: true,
            error: None,
            alarms,
        }
    }
    pub fn error(msg: impl Into<String>) -> Self {
        AlarmReply {
            v: v1(),
            ok: false,
            error: Some(msg.into()),
            alarms: Vec::new(),
        }
    }
}

impl Validate for AlarmReply {
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

    fn req(json: &str) -> Result<AlarmRequest, String> {
        crate::decode::<AlarmRequest>(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn requests_are_checked() {
        assert!(req(r#"{"action":"list"}"#).is_ok());
        assert!(req(r#"{"action":"ack","rule":"cpu_high","by":"ana"}"#).is_ok());
        assert!(req(
            r#"{"action":"silence","rule":"cpu_high","id":"w1","by":"ana","for_ms":60000}"#
        )
        .is_ok());
        assert!(req(r#"{"action":"unack","rule":"cpu_high"}"#).is_ok());
        assert!(req(r#"{"action":"ack","by":"ana"}"#)
            .unwrap_err()
            .contains("needs a \"rule\""));
        assert!(req(r#"{"action":"ack","rule":"cpu_high"}"#)
            .unwrap_err()
            .contains("\"by\""));
        assert!(req(r#"{"action":"silence","rule":"cpu_high","by":"ana"}"#)
            .unwrap_err()
            .contains("for_ms"));
        assert!(
            req(r#"{"action":"ack","rule":"cpu_high","by":"a","for_ms":0}"#)
                .unwrap_err()
                .contains("positive")
        );
        assert!(req(r#"{"action":"ack","rule":"cpu.high","by":"a"}"#)
            .unwrap_err()
            .contains("rule"));
        assert!(req(r#"{"action":"mute","rule":"cpu_high"}"#).is_err());
        assert!(req(r#"{"action":"list","colour":"red"}"#).is_err());
    }

    /// The v1 fixtures (crates/events/tests/fixtures/v1/alarm_*.json) keep parsing.
    #[test]
    fn v1_fixtures_parse() {
        let e: AlarmEvent =
            crate::decode(include_bytes!("../../tests/fixtures/v1/alarm_event.json")).unwrap();
        assert_eq!(
            (e.state, e.severity, e.value),
            (AlarmState::Firing, Severity::Critical, 93.5)
        );
        let r: AlarmRequest = crate::decode(include_bytes!(
            "../../tests/fixtures/v1/alarm_request_ack.json"
        ))
        .unwrap();
        assert_eq!((r.action, r.for_ms), (AlarmAction::Ack, Some(3_600_000)));
        let r: AlarmReply =
            crate::decode(include_bytes!("../../tests/fixtures/v1/alarm_reply.json")).unwrap();
        assert_eq!(r.alarms.len(), 2);
        assert_eq!(r.alarms[0].ack.as_ref().map(|a| a.by.as_str()), Some("ana"));
        assert_eq!(
            (r.alarms[1].notified, r.alarms[1].silenced_until_ms),
            (0, Some(1_763_877_600_000))
        );
    }

    #[test]
    fn event_round_trips() {
        let e = AlarmEvent {
            v: 1,
            rule: "cpu_high".into(),
            scope: StatsScope::Worker,
            id: "w1".into(),
            metric: "cpu".into(),
            state: AlarmState::Firing,
            severity: Severity::Critical,
            value: 0.93,
            threshold: 0.9,
            since_ms: 5,
            ts_ms: 6,
            message: "cpu of worker w1 is 0.93".into(),
        };
        let back: AlarmEvent = crate::decode(&crate::encode(&e)).unwrap();
        assert_eq!(back, e);
        let json = String::from_utf8(crate::encode(&e)).unwrap();
        assert!(
            json.contains(r#""state":"firing""#) && json.contains(r#""severity":"critical""#),
            "{json}"
        );
    }
}
