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
fn run(rule: &Rule, slot: &mut Option<Alarm>, inputs: &[(u64, Option<f64>)]) -> Vec<(u64, Output)> {
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
