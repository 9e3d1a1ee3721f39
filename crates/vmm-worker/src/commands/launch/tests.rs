use super::*;
use crate::commands::tests::{rid, start, start_with, stop, worker};
use serde_json::json;

const NOW: UnixMs = 1_800_000_000_000;

fn decide(c: &mut Commands, payload: &[u8], reps: &mut Replicas, fl: &InFlight) -> Decision {
    c.decide(payload, reps, fl, RuntimeKind::Process, NOW)
}

fn issued(id: &str, replica: &str, issued_ms: UnixMs) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&start(id, replica)).unwrap();
    v["issued_ms"] = json!(issued_ms);
    serde_json::to_vec(&v).unwrap()
}

fn launch_of(d: Decision) -> Launch {
    match d {
        Decision::Launch(l) => l,
        other => panic!("expected a launch, got {other:?}"),
    }
}

fn done(d: Decision) -> Outcome {
    match d {
        Decision::Done(o) => o,
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// Puts `l` in flight as the loop does.
fn fly(fl: &mut InFlight, l: &Launch) {
    fl.insert(
        l.replica.clone(),
        Starting {
            id: l.id.clone(),
            service: l.spec.service.clone(),
            reply: "_INBOX.x".into(),
            waiters: vec![],
            stop_after: None,
        },
    );
}

fn running_replica(l: &Launch) -> RunningReplica {
    RunningReplica {
        addr: "127.0.0.1:20001".into(),
        ..never_ran(l)
    }
}

#[test]
fn a_stale_command_is_refused_and_nothing_runs() {
    let mut c = worker().with_max_age(Duration::from_secs(10));
    let (mut reps, fl) = (Replicas::new(), InFlight::new());
    let out = done(decide(
        &mut c,
        &issued("c1", "r1", NOW - 10_001),
        &mut reps,
        &fl,
    ));
    assert!(!out.ack.ok);
    let err = out.ack.error.clone().unwrap();
    assert!(
        err.contains("stale") && err.contains("10001 ms ago"),
        "{err}"
    );
    assert_eq!(out.refused.as_ref().map(|r| r.0), Some("stale"));
    assert!(out.effects.is_empty() && reps.is_empty());
    // Remembered: the same id again is the same refusal.
    let again = done(decide(&mut c, &issued("c1", "r1", NOW), &mut reps, &fl));
    assert!(again.ack.duplicate && !again.ack.ok);
    // Stops are refused the same way.
    let mut s: serde_json::Value = serde_json::from_slice(&stop("c2", "r1")).unwrap();
    s["issued_ms"] = json!(NOW - 60_000);
    let out = done(decide(
        &mut c,
        &serde_json::to_vec(&s).unwrap(),
        &mut reps,
        &fl,
    ));
    assert_eq!(out.refused.map(|r| r.0), Some("stale"));
}

#[test]
fn only_clearly_stale_commands_are_refused() {
    let mut c = worker().with_max_age(Duration::from_secs(10));
    let (mut reps, fl) = (Replicas::new(), InFlight::new());
    // Within the age, from a clock ahead of ours, or without `issued_ms`: carried out.
    for (id, r, at) in [
        ("c1", "r1", NOW - 10_000),
        ("c2", "r2", NOW + 60_000),
        ("c3", "r3", 0),
    ] {
        let l = launch_of(decide(&mut c, &issued(id, r, at), &mut reps, &fl));
        assert_eq!(l.replica, rid(r));
    }
    // No age set: never refused.
    let mut c = worker().with_max_age(Duration::ZERO);
    launch_of(decide(&mut c, &issued("c1", "r1", 1), &mut reps, &fl));
}

#[test]
fn a_start_in_flight_takes_its_slot() {
    let (mut c, mut reps, mut fl) = (worker(), Replicas::new(), InFlight::new());
    let l1 = launch_of(decide(&mut c, &start("c1", "r1"), &mut reps, &fl));
    fly(&mut fl, &l1);
    let l2 = launch_of(decide(&mut c, &start("c2", "r2"), &mut reps, &fl));
    fly(&mut fl, &l2);
    let full = done(decide(&mut c, &start("c3", "r3"), &mut reps, &fl));
    assert_eq!(
        full.ack.error.as_deref(),
        Some("worker w1 is full: 2/2 replicas")
    );
    // Started: the slot moves to the table; still full.
    let s = fl.remove(&l1.replica).unwrap();
    let out = c.launched(
        l1.clone(),
        LaunchResult::Started(running_replica(&l1)),
        s.stop_after,
        &mut reps,
    );
    assert!(out.ack.ok);
    assert_eq!(out.effects, vec![Effect::WatchHealth(rid("r1"))]);
    assert!(
        !done(decide(&mut c, &start("c4", "r3"), &mut reps, &fl))
            .ack
            .ok
    );
    // Failed: the slot is free again.
    fl.remove(&l2.replica);
    let err = RuntimeError::Start {
        replica: rid("r2"),
        message: "boom".into(),
    };
    let out = c.launched(l2, LaunchResult::Failed(err), None, &mut reps);
    assert!(out.ack.error.unwrap().contains("boom"));
    launch_of(decide(&mut c, &start("c5", "r3"), &mut reps, &fl));
}

#[test]
fn commands_for_a_start_in_flight_wait_for_it() {
    let (mut c, mut reps, mut fl) = (worker(), Replicas::new(), InFlight::new());
    let l = launch_of(decide(&mut c, &start("c1", "r1"), &mut reps, &fl));
    fly(&mut fl, &l);
    let same = decide(&mut c, &start("c1", "r1"), &mut reps, &fl);
    assert_eq!(
        same,
        Decision::Join {
            replica: rid("r1"),
            id: l.id.clone(),
            duplicate: true
        }
    );
    let other = decide(&mut c, &start("c2", "r1"), &mut reps, &fl);
    let c2 = CommandId::new("c2").unwrap();
    assert_eq!(
        other,
        Decision::Join {
            replica: rid("r1"),
            id: c2.clone(),
            duplicate: false
        }
    );
    let spec = json!({"service": "api", "command": ["sh", "-c", "x"]});
    let clash = done(decide(
        &mut c,
        &start_with("c3", "r1", spec),
        &mut reps,
        &fl,
    ));
    assert!(clash
        .ack
        .error
        .unwrap()
        .contains("starting on worker w1 for service web, not api"));

    let out = c.launched(
        l.clone(),
        LaunchResult::Started(running_replica(&l)),
        None,
        &mut reps,
    );
    assert_eq!(
        c.joined(&out.ack, l.id.clone(), true),
        CommandAck {
            duplicate: true,
            ..out.ack.clone()
        }
    );
    let theirs = c.joined(&out.ack, c2.clone(), false);
    assert!(theirs.ok && !theirs.duplicate && theirs.id == Some(c2));
    // Both are remembered: a repeat replays without a launch.
    fl.remove(&l.replica);
    for id in ["c1", "c2"] {
        let again = done(decide(&mut c, &start(id, "r1"), &mut reps, &fl));
        assert!(again.ack.ok && again.ack.duplicate, "{again:?}");
    }
}

#[test]
fn a_stop_during_a_start_stops_it_once_started() {
    let (mut c, mut reps, mut fl) = (worker(), Replicas::new(), InFlight::new());
    let l = launch_of(decide(&mut c, &start("c1", "r1"), &mut reps, &fl));
    fly(&mut fl, &l);
    let out = done(decide(&mut c, &stop("c2", "r1"), &mut reps, &fl));
    assert!(out.ack.ok && out.ack.replica.is_none());
    let grace = Duration::from_millis(100);
    assert_eq!(
        out.effects,
        vec![Effect::StopAfterStart {
            replica: rid("r1"),
            grace
        }]
    );
    let out = c.launched(
        l.clone(),
        LaunchResult::Started(running_replica(&l)),
        Some(grace),
        &mut reps,
    );
    assert_eq!(out.ack.replica.unwrap().state, ReplicaState::Stopping);
    assert_eq!(
        out.effects,
        vec![Effect::Stop {
            replica: rid("r1"),
            grace
        }]
    );
    assert_eq!(reps[&rid("r1")].state, ReplicaState::Stopping);
}

#[test]
fn a_start_past_its_deadline_is_reported_exited() {
    let (mut c, mut reps, fl) = (worker(), Replicas::new(), InFlight::new());
    let l = launch_of(decide(&mut c, &start("c1", "r1"), &mut reps, &fl));
    let res = LaunchResult::TimedOut {
        deadline: Duration::from_millis(1500),
        cleanup: Ok(()),
    };
    let out = c.launched(l, res, None, &mut reps);
    assert!(!out.ack.ok);
    let err = out.ack.error.clone().unwrap();
    assert!(
        err.contains("did not finish within 1500 ms") && err.contains("abandoned"),
        "{err}"
    );
    let [Effect::Gone { replica, reason }] = &out.effects[..] else {
        panic!("{:?}", out.effects)
    };
    assert_eq!(
        (replica.info.id.as_str(), replica.state),
        ("r1", ReplicaState::Exited)
    );
    assert!(reason.contains("removed"), "{reason}");
    assert!(reps.is_empty());
    let failed = LaunchResult::TimedOut {
        deadline: Duration::from_secs(1),
        cleanup: Err("engine gone".into()),
    };
    let l = launch_of(decide(&mut c, &start("c2", "r2"), &mut reps, &fl));
    let out = c.launched(l, failed, None, &mut reps);
    assert!(out
        .ack
        .error
        .unwrap()
        .contains("removing what it left failed: engine gone"));
}
