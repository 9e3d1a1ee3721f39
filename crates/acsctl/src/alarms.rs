//! `acsctl alarms [list | ack | unack | silence | unsilence]`: `AlarmRequest`s on
//! `acs.monitor.alarms`, answered by the acs-monitor that evaluates the rules. The list is a
//! table ([`render`], pure); the other actions print the alarms they touched.

use std::fmt::Write as _;
use std::time::Duration;

use acs_events::{
    AlarmAction, AlarmReply, AlarmRequest, AlarmState, Subjects, UnixMs, SCHEMA_VERSION,
};

use crate::client;
use crate::error::Result;
use crate::status::Table;

#[derive(Debug, Clone)]
pub struct AlarmArgs {
    pub action: AlarmAction,
    pub rule: Option<String>,
    /// One target of the rule (a worker, a service...); none: every target of it.
    pub id: Option<String>,
    pub for_: Option<Duration>,
    pub by: Option<String>,
    pub comment: Option<String>,
}

impl AlarmArgs {
    pub fn request(&self) -> AlarmRequest {
        // Who acks or silences: --by, else the login name, so the monitor's history says who.
        let by = self
            .by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|b| !b.is_empty());
        let needs_by = matches!(self.action, AlarmAction::Ack | AlarmAction::Silence);
        AlarmRequest {
            v: SCHEMA_VERSION,
            action: self.action,
            rule: self.rule.clone(),
            id: self.id.clone(),
            by: if needs_by {
                Some(by.unwrap_or_else(|| "acsctl".into()))
            } else {
                None
            },
            for_ms: self.for_.map(|d| d.as_millis() as u64),
            comment: self.comment.clone(),
        }
    }
}

pub async fn run(
    candidates: &[acs_node::NatsOptions],
    timeout: Duration,
    subjects: &Subjects,
    args: AlarmArgs,
    json: bool,
) -> Result<()> {
    let req = args.request();
    let (nc, _, refusals) = client::connect_any(candidates, timeout).await?;
    let reply: AlarmReply = client::unless_refused(
        &refusals,
        client::ask(&nc, subjects, subjects.monitor_alarms(), &req, timeout),
    )
    .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    } else {
        print!("{}", render(&reply, unix_now_ms()));
    }
    Ok(())
}

fn unix_now_ms() -> UnixMs {
    acs_node::unix_ms()
}

/// One row per alarm (rule and target), firing first, then pending, then resolved.
pub fn render(r: &AlarmReply, now_ms: UnixMs) -> String {
    if r.alarms.is_empty() {
        return "ALARMS: none (no rule has fired; rules come from the monitor's --alarms file)\n"
            .into();
    }
    let rank = |s: AlarmState| match s {
        AlarmState::Firing => 0,
        AlarmState::Pending => 1,
        AlarmState::Resolved => 2,
    };
    let mut alarms: Vec<_> = r.alarms.iter().collect();
    alarms.sort_by_key(|a| {
        (
            rank(a.state),
            std::cmp::Reverse(a.changed_ms),
            a.rule.clone(),
            a.id.clone(),
        )
    });
    let mut t = Table::new([
        "RULE",
        "TARGET",
        "STATE",
        "SEVERITY",
        "VALUE",
        "SINCE",
        "ACK / SILENCE",
        "MESSAGE",
    ]);
    for a in alarms {
        let mut people = Vec::new();
        if let Some(ack) = &a.ack {
            let until = ack
                .until_ms
                .map(|u| format!(" for {}", left(u, now_ms)))
                .unwrap_or_default();
            people.push(format!("acked by {}{until}", ack.by));
        }
        if let Some(until) = a.silenced_until_ms.filter(|u| *u > now_ms) {
            people.push(format!("silenced for {}", left(until, now_ms)));
        }
        t.row([
            a.rule.clone(),
            format!("{} {}", a.scope.as_str(), a.id),
            a.state.as_str().to_string(),
            a.severity.as_str().to_string(),
            format!("{} {:.1} (threshold {:.1})", a.metric, a.value, a.threshold),
            crate::status::ago(now_ms.saturating_sub(a.since_ms)),
            if people.is_empty() {
                "-".into()
            } else {
                people.join(", ")
            },
            a.message.clone(),
        ]);
    }
    let mut out = t.render();
    let firing = r
        .alarms
        .iter()
        .filter(|a| a.state == AlarmState::Firing)
        .count();
    let _ = writeln!(out, "{firing} firing, {} in all", r.alarms.len());
    out
}

/// `59m`, `2h`, `3d`: how long until `until`.
fn left(until: UnixMs, now: UnixMs) -> String {
    let s = until.saturating_sub(now) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::{AlarmAck, AlarmView, Severity, StatsScope};

    fn view(rule: &str, state: AlarmState, changed_ms: u64) -> AlarmView {
        AlarmView {
            rule: rule.into(),
            scope: StatsScope::Worker,
            id: "w1".into(),
            metric: "cpu".into(),
            state,
            severity: Severity::Critical,
            value: 97.25,
            threshold: 90.0,
            since_ms: 1_000,
            changed_ms,
            ack: None,
            silenced_until_ms: None,
            notified: 1,
            message: format!("{rule}: cpu of worker w1 is 97.2"),
        }
    }

    #[test]
    fn firing_first_with_people() {
        let mut acked = view("cpu_high", AlarmState::Firing, 5_000);
        acked.ack = Some(AlarmAck {
            by: "ana".into(),
            until_ms: Some(3_601_000),
            comment: None,
        });
        acked.silenced_until_ms = Some(7_201_000);
        let reply = AlarmReply::ok(vec![view("mem_high", AlarmState::Resolved, 9_000), acked]);
        let out = render(&reply, 61_000);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("RULE"), "{out}");
        assert!(
            lines[1].starts_with(
                "cpu_high  worker w1  firing    critical  cpu 97.2 (threshold 90.0)  60s ago"
            ),
            "{out}"
        );
        assert!(
            lines[1].contains("acked by ana for 59m, silenced for 119m"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("mem_high") && lines[2].contains("resolved"),
            "{out}"
        );
        assert_eq!(lines[3], "1 firing, 2 in all");
    }

    #[test]
    fn empty_and_requests() {
        assert!(render(&AlarmReply::ok(vec![]), 0).starts_with("ALARMS: none"));
        let a = AlarmArgs {
            action: AlarmAction::Ack,
            rule: Some("cpu_high".into()),
            id: None,
            for_: Some(Duration::from_secs(60)),
            by: Some("ana".into()),
            comment: None,
        };
        let r = a.request();
        assert_eq!((r.by.as_deref(), r.for_ms), (Some("ana"), Some(60_000)));
        let list = AlarmArgs {
            action: AlarmAction::List,
            rule: None,
            id: None,
            for_: None,
            by: Some("ana".into()),
            comment: None,
        }
        .request();
        assert_eq!(list.by, None, "a list names nobody");
    }
}
