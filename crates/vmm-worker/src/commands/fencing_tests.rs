//! Fencing by leader term and refusal of commands meant for another instance.

use super::*;
use crate::commands::tests::{start, worker};
use serde_json::json;

const NOW: UnixMs = 1_800_000_000_000;

fn with(payload: Vec<u8>, term: u64, instance: Option<&str>) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    v["term"] = json!(term);
    if let Some(i) = instance {
        v["instance"] = json!(i);
    }
    serde_json::to_vec(&v).unwrap()
}

fn decide(c: &mut Commands, payload: &[u8]) -> Decision {
    let (mut reps, fl) = (Replicas::new(), InFlight::new());
    c.decide(payload, &mut reps, &fl, RuntimeKind::Process, NOW)
}

fn refused(d: Decision) -> (&'static str, String, CommandAck) {
    match d {
        Decision::Done(o) => {
            let (kind, msg) = o.refused.expect("refused");
            assert!(o.effects.is_empty());
            (kind, msg, o.ack)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn launches(d: Decision) {
    assert!(
        matches!(d, Decision::Launch(_)),
        "expected a launch, got {d:?}"
    );
}

#[test]
fn a_command_from_an_older_term_is_fenced_and_nothing_runs() {
    let mut c = worker();
    assert!(c.observe_term(5));
    let (kind, msg, ack) = refused(decide(&mut c, &with(start("c1", "r1"), 4, None)));
    assert_eq!(kind, "fenced");
    assert!(msg.contains("from term 4, but term 5 leads"), "{msg}");
    assert!(!ack.ok);
    // The leader's own term and newer ones are accepted; a newer one raises the floor.
    launches(decide(&mut c, &with(start("c2", "r2"), 5, None)));
    launches(decide(&mut c, &with(start("c3", "r3"), 6, None)));
    assert_eq!(c.term_floor(), 6);
    assert_eq!(
        refused(decide(&mut c, &with(start("c4", "r4"), 5, None))).0,
        "fenced"
    );
}

#[test]
fn term_zero_is_accepted_only_until_a_real_term_is_seen() {
    let mut c = worker();
    launches(decide(&mut c, &with(start("c1", "r1"), 0, None)));
    launches(decide(&mut c, &with(start("c2", "r2"), 1, None)));
    assert_eq!(
        refused(decide(&mut c, &with(start("c3", "r3"), 0, None))).0,
        "fenced"
    );
}

#[test]
fn an_older_leader_event_does_not_lower_the_floor() {
    let mut c = worker();
    assert!(c.observe_term(7));
    assert!(!c.observe_term(3));
    assert_eq!(c.term_floor(), 7);
}

#[test]
fn a_command_for_another_instance_is_refused() {
    let mut c = worker().with_instance("aaaa");
    let (kind, msg, _) = refused(decide(&mut c, &with(start("c1", "r1"), 1, Some("bbbb"))));
    assert_eq!(kind, "wrong_instance");
    assert!(msg.contains("bbbb") && msg.contains("aaaa"), "{msg}");
    launches(decide(&mut c, &with(start("c2", "r2"), 1, Some("aaaa"))));
    // No instance named (an older brain): any instance.
    launches(decide(&mut c, &with(start("c3", "r3"), 1, None)));
}

#[test]
fn a_refused_command_id_replays_its_refusal() {
    let mut c = worker();
    c.observe_term(5);
    let p = with(start("c1", "r1"), 4, None);
    refused(decide(&mut c, &p));
    match decide(&mut c, &p) {
        Decision::Done(o) => assert!(o.ack.duplicate && !o.ack.ok),
        other => panic!("{other:?}"),
    }
}
