//! One alarm (one rule on one target) as plain data: `step(rule, alarm, value, now)` moves it
//! and says what to publish and whom to tell. No clock, no I/O.
//!
//! States: (none) → pending (condition holds) → firing (held for `for`) → resolved (cleared
//! past the hysteresis); a pending alarm that clears goes to resolved without firing.
//!
//! Notifications are *owed*, not pushed: `told` records the last (state, severity) the
//! channels heard, and a notice goes out whenever the alarm differs from it (and it is not
//! silenced). So each state change is told exactly once, a notice held back by a silence goes
//! out when the silence ends, and a monitor that restarts from the saved alarm owes nothing.
//! On top: repeats while firing and not acked, and one escalation if not acked in time.

use acs_events::{AlarmAck, AlarmState, Severity};
use serde::{Deserialize, Serialize};

use super::rules::{human_ms, Condition, Rule};

/// Saved as JSON in the KV bucket; fields added later need `#[serde(default)]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub state: AlarmState,
    pub severity: Severity,
    pub value: f64,
    pub threshold: f64,
    /// When the alarm entered `state` (for firing: the escalation clock).
    pub since_ms: u64,
    /// Last change of state, severity or ack.
    pub changed_ms: u64,
    #[serde(default)]
    pub ack: Option<AlarmAck>,
    /// The last (state, severity) the channels were told.
    #[serde(default)]
    pub told: Option<(AlarmState, Severity)>,
    /// When the last firing or repeat notice went out (the repeat clock).
    #[serde(default)]
    pub last_notice_ms: u64,
    /// The escalation channel has been brought in for this firing; it hears the rest of it.
    #[serde(default)]
    pub escalated: bool,
    /// Notifications sent (every channel).
    #[serde(default)]
    pub notified: u64,
}

impl Alarm {
    /// Equal apart from the evaluated value: whether a save is worth it.
    pub fn same_but_value(&self, other: &Alarm) -> bool {
        let mut a = self.clone();
        a.value = other.value;
        a == *other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Started firing, or changed severity while firing.
    Firing,
    Repeat,
    /// Not acked within `escalation.after`: goes to the escalation channel.
    Escalation,
    Resolved,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Firing => "firing",
            NoticeKind::Repeat => "repeat",
            NoticeKind::Escalation => "escalation",
            NoticeKind::Resolved => "resolved",
        }
    }
}

/// Which of the rule's channels a notice goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The rule's `notify` channels.
    Notify,
    /// The escalation channel only.
    Escalation,
    /// Both (after an escalation, the escalation channel hears the rest).
    Both,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The alarm entered `state` (or changed severity while firing): publish an event.
    Changed {
        state: AlarmState,
        severity: Severity,
        value: f64,
        threshold: f64,
        since_ms: u64,
    },
    Notify {
        kind: NoticeKind,
        route: Route,
    },
}

/// The severity the value is at, with its threshold. `held` is the severity the alarm is active
/// at: a threshold it already crossed holds until the value is `clear` back past it.
pub fn level(rule: &Rule, v: f64, held: Option<Severity>) -> Option<(Severity, f64)> {
    for (sev, t) in [
        (Severity::Critical, rule.critical),
        (Severity::Warning, rule.warning),
    ] {
        let Some(t) = t else { continue };
        let (crossed, holds) = match rule.condition {
            Condition::Above => (v > t, v > t - rule.clear),
            Condition::Below => (v < t, v < t + rule.clear),
        };
        if crossed || (held.is_some_and(|h| h >= sev) && holds) {
            return Some((sev, t));
        }
    }
    None
}

fn active(a: &Alarm) -> bool {
    matches!(a.state, AlarmState::Pending | AlarmState::Firing)
}

/// One evaluation. `value` is the rule's aggregate over its window, `None` when the window
/// holds no data (the target went away): an active alarm then resolves. `silenced_until` is
/// when a silence on the alarm (its rule or its target) ends. Returns what to publish and whom
/// to tell, in order.
pub fn step(
    rule: &Rule,
    slot: &mut Option<Alarm>,
    value: Option<f64>,
    now_ms: u64,
    silenced_until: Option<u64>,
) -> Vec<Output> {
    let mut out = Vec::new();
    if let Some(a) = slot.as_mut() {
        expire(a, now_ms);
    }
    let held = slot.as_ref().filter(|a| active(a)).map(|a| a.severity);
    let lvl = value.and_then(|v| level(rule, v, held));
    match (slot.as_mut(), lvl) {
        (None, None) => return out,
        (Some(a), None) if !active(a) => {
            if let Some(v) = value {
                a.value = v;
            }
        }
        (None, Some((sev, t))) => {
            let a = Alarm {
                state: AlarmState::Pending,
                severity: sev,
                value: value.unwrap_or_default(),
                threshold: t,
                since_ms: now_ms,
                changed_ms: now_ms,
                ack: None,
                told: None,
                last_notice_ms: 0,
                escalated: false,
                notified: 0,
            };
            out.push(changed(&a));
            *slot = Some(a);
        }
        (Some(a), Some((sev, t))) if !active(a) => {
            a.state = AlarmState::Pending;
            (a.severity, a.threshold, a.since_ms, a.changed_ms) = (sev, t, now_ms, now_ms);
            a.value = value.unwrap_or(a.value);
            if !matches!(a.told, Some((AlarmState::Firing, _))) {
                a.escalated = false;
            }
            out.push(changed(a));
        }
        (Some(a), Some((sev, t))) => {
            a.value = value.unwrap_or(a.value);
            if sev != a.severity {
                (a.severity, a.threshold, a.changed_ms) = (sev, t, now_ms);
                if a.state == AlarmState::Firing {
                    out.push(changed(a));
                }
            }
        }
        (Some(a), None) => {
            a.value = value.unwrap_or(a.value);
            a.state = AlarmState::Resolved;
            (a.since_ms, a.changed_ms) = (now_ms, now_ms);
            a.ack = None;
            out.push(changed(a));
        }
    }
    let Some(a) = slot.as_mut() else { return out };
    if a.state == AlarmState::Pending && now_ms.saturating_sub(a.since_ms) >= rule.for_ms {
        a.state = AlarmState::Firing;
        (a.since_ms, a.changed_ms) = (now_ms, now_ms);
        out.push(changed(a));
    }
    notices(rule, a, now_ms, silenced_until, &mut out);
    out
}

fn changed(a: &Alarm) -> Output {
    Output::Changed {
        state: a.state,
        severity: a.severity,
        value: a.value,
        threshold: a.threshold,
        since_ms: a.since_ms,
    }
}

/// Drops an ack that has run out.
fn expire(a: &mut Alarm, now_ms: u64) {
    if a.ack
        .as_ref()
        .is_some_and(|k| k.until_ms.is_some_and(|u| u <= now_ms))
    {
        a.ack = None;
        a.changed_ms = now_ms;
    }
}

fn notices(
    rule: &Rule,
    a: &mut Alarm,
    now_ms: u64,
    silenced_until: Option<u64>,
    out: &mut Vec<Output>,
) {
    if silenced_until.is_some_and(|u| u > now_ms) {
        return;
    }
    let route = if a.escalated {
        Route::Both
    } else {
        Route::Notify
    };
    match a.state {
        AlarmState::Firing => {
            if a.told != Some((AlarmState::Firing, a.severity)) {
                out.push(Output::Notify {
                    kind: NoticeKind::Firing,
                    route,
                });
                a.told = Some((AlarmState::Firing, a.severity));
                a.last_notice_ms = now_ms;
            } else if a.ack.is_none()
                && rule
                    .repeat_ms
                    .is_some_and(|r| now_ms.saturating_sub(a.last_notice_ms) >= r)
            {
                out.push(Output::Notify {
                    kind: NoticeKind::Repeat,
                    route,
                });
                a.last_notice_ms = now_ms;
            }
            if let Some(e) = &rule.escalation {
                if a.ack.is_none()
                    && !a.escalated
                    && now_ms.saturating_sub(a.since_ms) >= e.after_ms
                {
                    out.push(Output::Notify {
                        kind: NoticeKind::Escalation,
                        route: Route::Escalation,
                    });
                    a.escalated = true;
                }
            }
        }
        AlarmState::Resolved => {
            if matches!(a.told, Some((AlarmState::Firing, _))) {
                out.push(Output::Notify {
                    kind: NoticeKind::Resolved,
                    route,
                });
                a.told = Some((AlarmState::Resolved, a.severity));
                a.escalated = false;
            }
        }
        AlarmState::Pending => {}
    }
}

/// Acknowledges an active alarm: no repeats and no escalation until `until_ms` or the resolve.
pub fn ack(
    a: &mut Alarm,
    by: &str,
    until_ms: Option<u64>,
    comment: Option<String>,
    now_ms: u64,
) -> Result<(), String> {
    if !active(a) {
        return Err("the alarm is resolved; there is nothing to acknowledge".into());
    }
    a.ack = Some(AlarmAck {
        by: by.to_string(),
        until_ms,
        comment,
    });
    a.changed_ms = now_ms;
    Ok(())
}

pub fn unack(a: &mut Alarm, now_ms: u64) {
    if a.ack.take().is_some() {
        a.changed_ms = now_ms;
    }
}

/// One sentence with the value, e.g. "cpu of worker w1 is 93.5 (avg over 30s), above the
/// critical threshold 90 for 1m".
pub fn message(
    rule: &Rule,
    id: &str,
    state: AlarmState,
    severity: Severity,
    value: f64,
    threshold: f64,
) -> String {
    let what = format!(
        "{} of {} {id} is {} ({} over {})",
        rule.metric,
        rule.scope.as_str(),
        num(value),
        rule.aggregate.as_str(),
        human_ms(rule.window_ms)
    );
    let dir = rule.condition.as_str();
    match state {
        AlarmState::Pending => format!(
            "{what}, {dir} the {} threshold {}; fires if it holds for {}",
            severity.as_str(),
            num(threshold),
            human_ms(rule.for_ms)
        ),
        AlarmState::Firing => format!(
            "{what}, {dir} the {} threshold {} for {}",
            severity.as_str(),
            num(threshold),
            human_ms(rule.for_ms)
        ),
        AlarmState::Resolved => {
            let back = match rule.condition {
                Condition::Above => format!("below {}", num(threshold - rule.clear)),
                Condition::Below => format!("above {}", num(threshold + rule.clear)),
            };
            format!(
                "{what}, back {back} (threshold {} with hysteresis {}): resolved",
                num(threshold),
                num(rule.clear)
            )
        }
    }
}

/// Up to 3 decimals, no trailing zeros.
pub fn num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests;
