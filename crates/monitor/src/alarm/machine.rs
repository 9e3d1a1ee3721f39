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
mod tests {
    use super::*;
    use crate::alarm::rules::{Aggregate, Escalation, Target};
    use acs_events::StatsScope;

    fn rule() -> Rule {
        Rule {
            name: "cpu_high".into(),
            metric: "cpu".into(),
            scope: StatsScope::Worker,
            target: Target::All,
            condition: Condition::Above,
            warning: Some(80.0),
            critical: Some(90.0),
            for_ms: 10_000,
            clear: 5.0,
            window_ms: 30_000,
            aggregate: Aggregate::Avg,
            repeat_ms: None,
            notify: vec!["hook".into()],
            escalation: None,
        }
    }

    /// Feeds `(now, value)` pairs and collects every output.
    fn run(
        rule: &Rule,
        slot: &mut Option<Alarm>,
        inputs: &[(u64, Option<f64>)],
    ) -> Vec<(u64, Output)> {
        inputs
            .iter()
            .flat_map(|&(t, v)| {
                step(rule, slot, v, t, None)
                    .into_iter()
                    .map(move |o| (t, o))
            })
            .collect()
    }

    fn states(outs: &[(u64, Output)]) -> Vec<(u64, AlarmState, Severity)> {
        outs.iter()
            .filter_map(|(t, o)| match o {
                Output::Changed {
                    state, severity, ..
                } => Some((*t, *state, *severity)),
                _ => None,
            })
            .collect()
    }

    fn notices(outs: &[(u64, Output)]) -> Vec<(u64, NoticeKind, Route)> {
        outs.iter()
            .filter_map(|(t, o)| match o {
                Output::Notify { kind, route } => Some((*t, *kind, *route)),
                _ => None,
            })
            .collect()
    }

    fn every_second(from: u64, to: u64, v: f64) -> Vec<(u64, Option<f64>)> {
        (from..=to).map(|s| (s * 1000, Some(v))).collect()
    }

    #[test]
    fn ok_pending_firing_resolved_with_one_notice_each() {
        let r = rule();
        let mut slot = None;
        let mut inputs = every_second(0, 2, 50.0);
        inputs.extend(every_second(3, 20, 85.0));
        inputs.extend(every_second(21, 25, 78.0)); // inside the hysteresis: still firing
        inputs.extend(every_second(26, 30, 70.0));
        let outs = run(&r, &mut slot, &inputs);
        use AlarmState::*;
        assert_eq!(
            states(&outs),
            vec![
                (3000, Pending, Severity::Warning),
                (13_000, Firing, Severity::Warning),
                (26_000, Resolved, Severity::Warning)
            ]
        );
        assert_eq!(
            notices(&outs),
            vec![
                (13_000, NoticeKind::Firing, Route::Notify),
                (26_000, NoticeKind::Resolved, Route::Notify)
            ]
        );
        let a = slot.unwrap();
        assert_eq!((a.state, a.value, a.since_ms), (Resolved, 70.0, 26_000));
    }

    #[test]
    fn pending_that_clears_resolves_without_any_notice() {
        let r = rule();
        let mut slot = None;
        let mut inputs = every_second(0, 5, 85.0);
        inputs.extend(every_second(6, 8, 10.0));
        let outs = run(&r, &mut slot, &inputs);
        assert_eq!(
            states(&outs).iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![AlarmState::Pending, AlarmState::Resolved]
        );
        assert!(notices(&outs).is_empty());
        // And a new episode starts from pending again.
        let outs = run(&r, &mut slot, &every_second(9, 9, 85.0));
        assert_eq!(
            states(&outs),
            vec![(9000, AlarmState::Pending, Severity::Warning)]
        );
    }

    #[test]
    fn for_zero_fires_at_once() {
        let mut r = rule();
        r.for_ms = 0;
        let mut slot = None;
        let outs = run(&r, &mut slot, &[(1000, Some(95.0))]);
        assert_eq!(
            states(&outs),
            vec![
                (1000, AlarmState::Pending, Severity::Critical),
                (1000, AlarmState::Firing, Severity::Critical)
            ]
        );
        assert_eq!(
            notices(&outs),
            vec![(1000, NoticeKind::Firing, Route::Notify)]
        );
    }

    #[test]
    fn severity_changes_are_published_and_told_with_hysteresis() {
        let mut r = rule();
        r.for_ms = 0;
        let mut slot = None;
        let outs = run(
            &r,
            &mut slot,
            &[
                (1, Some(85.0)),
                (2, Some(92.0)),
                (3, Some(87.0)),
                (4, Some(84.0)),
                (5, Some(91.0)),
                (6, Some(74.0)),
            ],
        );
        use AlarmState::*;
        use Severity::*;
        // 87 stays critical (90 - 5 hysteresis), 84 drops to warning, 91 critical again, 74 resolves.
        assert_eq!(
            states(&outs),
            vec![
                (1, Pending, Warning),
                (1, Firing, Warning),
                (2, Firing, Critical),
                (4, Firing, Warning),
                (5, Firing, Critical),
                (6, Resolved, Critical)
            ]
        );
        let kinds: Vec<_> = notices(&outs).iter().map(|n| (n.0, n.1)).collect();
        use NoticeKind as K;
        assert_eq!(
            kinds,
            vec![
                (1, K::Firing),
                (2, K::Firing),
                (4, K::Firing),
                (5, K::Firing),
                (6, K::Resolved)
            ]
        );
    }

    #[test]
    fn below_rules_clear_above_the_threshold_plus_hysteresis() {
        let mut r = rule();
        (r.condition, r.warning, r.critical, r.clear, r.for_ms) =
            (Condition::Below, Some(10.0), None, 2.0, 0);
        let mut slot = None;
        let outs = run(
            &r,
            &mut slot,
            &[(1, Some(9.0)), (2, Some(11.0)), (3, Some(12.5))],
        );
        let s: Vec<_> = states(&outs).iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(
            s,
            vec![
                (1, AlarmState::Pending),
                (1, AlarmState::Firing),
                (3, AlarmState::Resolved)
            ]
        );
        assert_eq!(slot.unwrap().threshold, 10.0);
    }

    #[test]
    fn repeats_while_firing_until_acked_and_after_the_ack_expires() {
        let mut r = rule();
        (r.for_ms, r.repeat_ms) = (0, Some(5_000));
        let mut slot = None;
        let outs = run(&r, &mut slot, &every_second(0, 11, 85.0));
        let kinds: Vec<_> = notices(&outs).iter().map(|n| (n.0, n.1)).collect();
        use NoticeKind as K;
        assert_eq!(
            kinds,
            vec![(0, K::Firing), (5000, K::Repeat), (10_000, K::Repeat)]
        );
        ack(slot.as_mut().unwrap(), "ana", Some(30_000), None, 11_000).unwrap();
        let outs = run(&r, &mut slot, &every_second(12, 29, 85.0));
        assert!(notices(&outs).is_empty(), "{outs:?}");
        let outs = run(&r, &mut slot, &every_second(30, 30, 85.0));
        assert_eq!(
            notices(&outs),
            vec![(30_000, NoticeKind::Repeat, Route::Notify)]
        );
        assert!(slot.unwrap().ack.is_none());
    }

    #[test]
    fn an_ack_without_expiry_lasts_until_the_resolve_and_resolve_is_still_told() {
        let mut r = rule();
        (r.for_ms, r.repeat_ms) = (0, Some(1_000));
        let mut slot = None;
        run(&r, &mut slot, &[(0, Some(85.0))]);
        ack(
            slot.as_mut().unwrap(),
            "ana",
            None,
            Some("looking".into()),
            0,
        )
        .unwrap();
        let outs = run(&r, &mut slot, &[(5_000, Some(85.0)), (6_000, Some(10.0))]);
        assert_eq!(
            notices(&outs),
            vec![(6_000, NoticeKind::Resolved, Route::Notify)]
        );
        let a = slot.as_mut().unwrap();
        assert!(a.ack.is_none());
        assert!(ack(a, "ana", None, None, 7_000)
            .unwrap_err()
            .contains("resolved"));
    }

    #[test]
    fn escalates_once_when_not_acked_then_the_escalation_channel_hears_the_rest() {
        let mut r = rule();
        (r.for_ms, r.repeat_ms) = (0, Some(4_000));
        r.escalation = Some(Escalation {
            after_ms: 6_000,
            to: "mail".into(),
        });
        let mut slot = None;
        let mut inputs = every_second(0, 9, 85.0);
        inputs.push((10_000, Some(10.0)));
        let outs = run(&r, &mut slot, &inputs);
        use NoticeKind as K;
        assert_eq!(
            notices(&outs),
            vec![
                (0, K::Firing, Route::Notify),
                (4000, K::Repeat, Route::Notify),
                (6000, K::Escalation, Route::Escalation),
                (8000, K::Repeat, Route::Both),
                (10_000, K::Resolved, Route::Both),
            ]
        );
        assert!(!slot.unwrap().escalated);
    }

    #[test]
    fn an_ack_in_time_prevents_the_escalation() {
        let mut r = rule();
        r.for_ms = 0;
        r.escalation = Some(Escalation {
            after_ms: 6_000,
            to: "mail".into(),
        });
        let mut slot = None;
        run(&r, &mut slot, &[(0, Some(85.0))]);
        ack(slot.as_mut().unwrap(), "ana", None, None, 1000).unwrap();
        let outs = run(&r, &mut slot, &every_second(2, 20, 85.0));
        assert!(notices(&outs).is_empty(), "{outs:?}");
    }

    #[test]
    fn a_silence_holds_notices_back_and_owed_ones_go_out_when_it_ends() {
        let mut r = rule();
        r.for_ms = 0;
        let mut slot = None;
        run(&r, &mut slot, &[(0, Some(50.0))]); // no alarm yet
        assert!(slot.is_none());
        run(&r, &mut slot, &[(1000, Some(85.0))]);
        // A second episode while silenced: state changes still come out, notices do not.
        let mut outs = step(&r, &mut slot, Some(10.0), 2000, Some(10_000));
        outs.extend(step(&r, &mut slot, Some(95.0), 3000, Some(10_000)));
        assert_eq!(outs.len(), 3, "{outs:?}");
        assert!(outs.iter().all(|o| matches!(o, Output::Changed { .. })));
        // The silence ends while critical: the channels still believe "firing warning".
        let outs = step(&r, &mut slot, Some(95.0), 10_000, Some(10_000));
        assert_eq!(
            outs,
            vec![Output::Notify {
                kind: NoticeKind::Firing,
                route: Route::Notify
            }]
        );
        let outs: Vec<_> = step(&r, &mut slot, Some(10.0), 11_000, Some(20_000));
        assert!(outs.iter().all(|o| matches!(o, Output::Changed { .. })));
        let outs = step(&r, &mut slot, Some(10.0), 20_000, Some(20_000));
        assert_eq!(
            outs,
            vec![Output::Notify {
                kind: NoticeKind::Resolved,
                route: Route::Notify
            }]
        );
    }

    #[test]
    fn no_data_resolves_an_active_alarm_and_leaves_others_alone() {
        let mut r = rule();
        r.for_ms = 0;
        let mut slot = None;
        assert!(step(&r, &mut slot, None, 0, None).is_empty());
        run(&r, &mut slot, &[(1000, Some(85.0))]);
        let outs = run(&r, &mut slot, &[(2000, None)]);
        assert_eq!(
            states(&outs),
            vec![(2000, AlarmState::Resolved, Severity::Warning)]
        );
        assert_eq!(slot.as_ref().unwrap().value, 85.0);
        assert!(run(&r, &mut slot, &[(3000, None)]).is_empty());
    }

    #[test]
    fn a_restored_alarm_owes_nothing() {
        let mut r = rule();
        (r.for_ms, r.repeat_ms) = (0, Some(60_000));
        let mut slot = None;
        run(&r, &mut slot, &[(0, Some(85.0))]);
        let saved = serde_json::to_vec(slot.as_ref().unwrap()).unwrap();
        let mut restored = Some(serde_json::from_slice::<Alarm>(&saved).unwrap());
        assert_eq!(restored, slot);
        assert!(run(&r, &mut restored, &every_second(1, 59, 85.0)).is_empty());
    }

    #[test]
    fn messages_carry_the_value() {
        let r = rule();
        let m = message(
            &r,
            "w1",
            AlarmState::Firing,
            Severity::Critical,
            93.456,
            90.0,
        );
        assert_eq!(
            m,
            "cpu of worker w1 is 93.456 (avg over 30s), above the critical threshold 90 for 10s"
        );
        let m = message(
            &r,
            "w1",
            AlarmState::Resolved,
            Severity::Warning,
            70.0,
            80.0,
        );
        assert!(
            m.contains("is 70") && m.contains("back below 75") && m.ends_with("resolved"),
            "{m}"
        );
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(-0.0001), "0");
    }
}
