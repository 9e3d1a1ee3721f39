use super::*;
use crate::alarm::rules::parse;
use acs_events::{Severity, StatsScope};

fn rules() -> Rules {
    parse(
        r#"
[channels.hook]
type = "webhook"
url = "http://127.0.0.1:1/x"
[channels.mail]
type = "email"
host = "127.0.0.1"
tls = "none"
from = "acs@example.com"
to = ["oncall@example.com"]

[[rule]]
name = "cpu_high"
metric = "cpu"
scope = "worker"
id = "*"
condition = "above"
warning = 80.0
for = "0s"
notify = ["hook"]
escalation = { after = "5s", to = "mail" }
"#,
        std::path::Path::new("."),
    )
    .unwrap()
}

fn req(json: &str) -> AlarmRequest {
    acs_events::decode(json.as_bytes()).unwrap()
}

#[test]
fn a_tick_over_the_store_finds_every_target_and_tells_the_channels() {
    let mut store = Store::default();
    for s in 0..30u64 {
        store.add(StatsScope::Worker, "w1", "cpu", s * 1000, 90.0);
        store.add(StatsScope::Worker, "w2", "cpu", s * 1000, 10.0);
    }
    let mut book = Book::default();
    let fx = book.tick_store(&rules(), &store, 30_000);
    let states: Vec<_> = fx.events.iter().map(|e| (e.id.as_str(), e.state)).collect();
    assert_eq!(
        states,
        vec![("w1", AlarmState::Pending), ("w1", AlarmState::Firing)]
    );
    assert_eq!(fx.events[1].value, 90.0);
    assert!(
        fx.events[1].message.contains("is 90"),
        "{}",
        fx.events[1].message
    );
    assert_eq!(fx.notices.len(), 1);
    assert_eq!(
        (fx.notices[0].channel.as_str(), fx.notices[0].kind),
        ("hook", NoticeKind::Firing)
    );
    assert_eq!(fx.alarms.len(), 1);
    assert_eq!(book.alarms[&("cpu_high".into(), "w1".into())].notified, 1);
    // The next tick with the same value changes nothing worth saving.
    let fx = book.tick_store(&rules(), &store, 31_000);
    assert!(
        fx.events.is_empty() && fx.notices.is_empty() && fx.alarms.is_empty(),
        "{fx:?}"
    );
    // w1 goes away: no data resolves it.
    let fx = book.tick_store(&rules(), &Store::default(), 120_000);
    let states: Vec<_> = fx.events.iter().map(|e| (e.id.as_str(), e.state)).collect();
    assert_eq!(states, vec![("w1", AlarmState::Resolved)]);
    assert_eq!(
        fx.notices.iter().map(|n| n.kind).collect::<Vec<_>>(),
        vec![NoticeKind::Resolved]
    );
}

#[test]
fn ack_stops_escalation_and_bad_requests_name_the_problem() {
    let r = rules();
    let mut book = Book::default();
    let fx = book.tick(&r, 0, |_| vec![], |_, _| None);
    assert!(fx.events.is_empty());
    // Nothing known for "*" yet: put w1 in by hand through a one-target tick.
    let mut w1 = r.clone();
    w1.rules[0].target = Target::One("w1".into());
    book.tick(&w1, 0, |_| vec![], |_, _| Some(95.0));
    let (reply, _) = book.request(&r, &req(r#"{"action":"list"}"#), 1);
    assert!(reply.ok);
    assert_eq!(reply.alarms.len(), 1);
    assert_eq!(
        (reply.alarms[0].state, reply.alarms[0].severity),
        (AlarmState::Firing, Severity::Warning)
    );

    let (reply, fx) = book.request(
        &r,
        &req(r#"{"action":"ack","rule":"cpu_high","id":"w1","by":"ana"}"#),
        1000,
    );
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.alarms[0].ack.as_ref().unwrap().by, "ana");
    assert_eq!(fx.alarms.len(), 1);
    let fx = book.tick(&r, 10_000, |_| vec![], |_, _| Some(95.0));
    assert!(fx.notices.is_empty(), "acked: no escalation {fx:?}");

    let (reply, _) = book.request(&r, &req(r#"{"action":"unack","rule":"cpu_high"}"#), 11_000);
    assert!(reply.ok && reply.alarms[0].ack.is_none());
    let fx = book.tick(&r, 12_000, |_| vec![], |_, _| Some(95.0));
    assert_eq!(
        fx.notices
            .iter()
            .map(|n| (n.channel.as_str(), n.kind))
            .collect::<Vec<_>>(),
        vec![("mail", NoticeKind::Escalation)]
    );

    let (reply, _) = book.request(
        &r,
        &req(r#"{"action":"ack","rule":"mem_high","by":"ana"}"#),
        1,
    );
    assert!(reply
        .error
        .unwrap()
        .contains("no alarm rule \"mem_high\"; known: cpu_high"));
    let (reply, _) = book.request(
        &r,
        &req(r#"{"action":"ack","rule":"cpu_high","id":"w9","by":"ana"}"#),
        1,
    );
    assert!(reply.error.unwrap().contains("no pending or firing alarm"));
}

#[test]
fn a_rule_silence_covers_targets_that_fire_later_and_expires() {
    let r = rules();
    let mut book = Book::default();
    let (reply, fx) = book.request(
        &r,
        &req(r#"{"action":"silence","rule":"cpu_high","by":"ana","for_ms":5000}"#),
        0,
    );
    assert!(reply.ok && reply.alarms.is_empty());
    assert_eq!(fx.silences.len(), 1);
    let mut w1 = r.clone();
    w1.rules[0].target = Target::One("w1".into());
    let fx = book.tick(&w1, 1000, |_| vec![], |_, _| Some(95.0));
    assert_eq!(fx.events.len(), 2);
    assert!(fx.notices.is_empty());
    assert_eq!(
        book.request(&r, &req(r#"{"action":"list"}"#), 1).0.alarms[0].silenced_until_ms,
        Some(5000)
    );
    let fx = book.tick(&w1, 5000, |_| vec![], |_, _| Some(95.0));
    assert_eq!(
        fx.silences.keys().next(),
        Some(&("cpu_high".to_string(), None))
    );
    assert_eq!(
        fx.notices.iter().map(|n| n.kind).collect::<Vec<_>>(),
        vec![NoticeKind::Firing]
    );
}

#[test]
fn alarms_of_removed_rules_are_forgotten() {
    let r = rules();
    let mut book = Book::default();
    let mut w1 = r.clone();
    w1.rules[0].target = Target::One("w1".into());
    book.tick(&w1, 0, |_| vec![], |_, _| Some(95.0));
    let fx = book.tick(&Rules::default(), 1000, |_| vec![], |_, _| None);
    assert_eq!(
        fx.alarms.get(&("cpu_high".to_string(), "w1".to_string())),
        Some(&None)
    );
    assert!(book.alarms.is_empty());
}
