//! What a notice says: the e-mail subject and body, the Slack text, the webhook JSON. Pure.

use std::time::Duration;

use super::book::Notice;
use super::machine::{num, NoticeKind};

fn label(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Firing => "FIRING",
        NoticeKind::Repeat => "STILL FIRING",
        NoticeKind::Escalation => "ESCALATED",
        NoticeKind::Resolved => "RESOLVED",
    }
}

/// `[acs] FIRING critical cpu_high: worker w1 cpu = 93.5`
pub fn subject(n: &Notice) -> String {
    let a = &n.alarm;
    let sev = match n.kind {
        NoticeKind::Resolved => String::new(),
        _ => format!(" {}", a.severity.as_str()),
    };
    format!(
        "[acs] {}{sev} {}: {} {} {} = {}",
        label(n.kind),
        a.rule,
        a.scope.as_str(),
        a.id,
        a.metric,
        num(a.value)
    )
}

/// Unix ms as an RFC 3339 UTC time, to the millisecond.
fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn mail_body(n: &Notice) -> String {
    let a = &n.alarm;
    format!(
        "{}\n\nrule:      {}\ntarget:    {} {}\nmetric:    {}\nvalue:     {}\nthreshold: {}\nstate:     {} ({})\nsince:     {}\nnotice:    {}\n\n\
         Acknowledge (stops repeats and escalation):\n  nats req acs.monitor.alarms '{{\"action\":\"ack\",\"rule\":\"{}\",\"id\":\"{}\",\"by\":\"you\"}}'\n",
        a.message,
        a.rule,
        a.scope.as_str(),
        a.id,
        a.metric,
        num(a.value),
        num(a.threshold),
        a.state.as_str(),
        a.severity.as_str(),
        rfc3339(a.since_ms),
        n.kind.as_str(),
        a.rule,
        a.id,
    )
}

pub fn slack_text(n: &Notice) -> String {
    format!(
        "*{}* `{}`: {}",
        subject(n).trim_start_matches("[acs] "),
        n.alarm.rule,
        n.alarm.message
    )
}

/// The AlarmEvent's fields plus `notice` and `channel`.
pub fn webhook_body(n: &Notice) -> Vec<u8> {
    let mut v = serde_json::to_value(&n.alarm).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("notice".into(), n.kind.as_str().into());
        o.insert("channel".into(), n.channel.clone().into());
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::{AlarmEvent, AlarmState, Severity, StatsScope};

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            channel: "hook".into(),
            kind,
            alarm: AlarmEvent {
                v: 1,
                rule: "cpu_high".into(),
                scope: StatsScope::Worker,
                id: "w1".into(),
                metric: "cpu".into(),
                state: AlarmState::Firing,
                severity: Severity::Critical,
                value: 93.5,
                threshold: 90.0,
                since_ms: 1,
                ts_ms: 2,
                message: "cpu of worker w1 is 93.5 (avg over 30s), above the critical threshold 90 for 1m".into(),
            },
        }
    }

    #[test]
    fn bodies_carry_the_rule_and_the_value() {
        let n = notice(NoticeKind::Firing);
        assert_eq!(
            subject(&n),
            "[acs] FIRING critical cpu_high: worker w1 cpu = 93.5"
        );
        assert!(mail_body(&n).starts_with("cpu of worker w1 is 93.5"));
        assert!(
            mail_body(&n).contains("\nsince:     1970-01-01T00:00:00.001Z\n"),
            "{}",
            mail_body(&n)
        );
        assert!(slack_text(&n).contains("FIRING critical") && slack_text(&n).contains("is 93.5"));
        let v: serde_json::Value = serde_json::from_slice(&webhook_body(&n)).unwrap();
        assert_eq!(
            (
                v["notice"].as_str(),
                v["rule"].as_str(),
                v["value"].as_f64()
            ),
            (Some("firing"), Some("cpu_high"), Some(93.5))
        );
        assert_eq!(
            subject(&notice(NoticeKind::Resolved)),
            "[acs] RESOLVED cpu_high: worker w1 cpu = 93.5"
        );
    }
}
