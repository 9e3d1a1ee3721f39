//! Unit tests of `scale_in`.

use super::super::test_support::{id, ids, member, now};
use super::*;
use acs_events::{BackendTraffic, Traffic};

fn policy() -> Policy {
    Policy {
        drain_timeout_s: 5.0,
        stop_grace_s: 10.0,
        ..Policy::default()
    }
}

fn at_proxy(version: u64, in_flight: &[(&str, u64)]) -> ServiceTraffic {
    let backends = in_flight.iter().map(|(replica, n)| BackendTraffic {
        id: id(replica),
        traffic: Traffic {
            in_flight: *n,
            ..Default::default()
        },
        draining: true,
        ejected: false,
    });
    ServiceTraffic {
        service: id("web"),
        version,
        totals: Traffic::default(),
        backends: backends.collect(),
    }
}

#[test]
fn a_starting_replica_goes_first_and_without_a_drain() {
    let mut members = [
        member("web-a", "w1", Phase::Healthy),
        member("web-b", "w1", Phase::Starting),
    ];
    let out = scale_in(
        &id("web"),
        &mut members,
        1,
        &policy(),
        |_| 0.0,
        &BTreeSet::new(),
        now(1_000),
    );
    let Victim::Stop(stop) = &out.steps[0] else {
        panic!("{out:?}")
    };
    assert_eq!((stop.replica.as_str(), stop.grace_s), ("web-b", 10.0));
    assert!(out.newly_draining.is_empty());
    assert_eq!(
        members[1].phase,
        Phase::Stopping {
            sent: 1_000,
            attempt: 1
        }
    );
}

#[test]
fn a_serving_replica_drains_until_its_deadline() {
    let mut members = [
        member("web-a", "w1", Phase::Healthy),
        member("web-b", "w2", Phase::Healthy),
    ];
    let out = scale_in(
        &id("web"),
        &mut members,
        1,
        &policy(),
        |w| if w.as_str() == "w2" { 90.0 } else { 5.0 },
        &BTreeSet::new(),
        now(1_000),
    );
    let Victim::Drain(d) = &out.steps[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        d.action,
        DecisionAction::Drain {
            replica: id("web-b"),
            worker: id("w2")
        },
        "the busier worker"
    );
    assert_eq!(out.newly_draining, [id("web-b")].into());
    assert_eq!(
        members[1].phase,
        Phase::Draining {
            since: 1_000,
            version: 0,
            deadline: 6_000
        }
    );
    assert_eq!(
        scale_in(
            &id("web"),
            &mut members,
            1,
            &policy(),
            |_| 0.0,
            &BTreeSet::new(),
            now(1_000)
        ),
        ScaleIn::default()
    );
}

static NO_EVENTS: BTreeMap<ReplicaId, Drained> = BTreeMap::new();

fn report(seen: Millis, traffic: &ServiceTraffic) -> ProxyReport<'_> {
    ProxyReport {
        seen,
        traffic: Some(traffic),
        drained: &NO_EVENTS,
    }
}

/// `web-b`, draining since 1 000 at version 7 until 6 000, as the live `proxies` see it `at`.
fn run(proxies: &[ProxyReport], at: Millis) -> Vec<Stop> {
    let mut members = [member(
        "web-b",
        "w1",
        Phase::Draining {
            since: 1_000,
            version: 7,
            deadline: 6_000,
        },
    )];
    finish_drains(&mut members, &BTreeSet::new(), proxies, at, 10.0, 15_000)
}

#[test]
fn a_drain_ends_when_every_proxy_applied_it_and_nothing_is_in_flight() {
    let (old, busy, idle) = (
        at_proxy(6, &[]),
        at_proxy(7, &[("web-b", 2)]),
        at_proxy(7, &[("web-b", 0)]),
    );
    assert!(
        run(&[report(1_500, &old)], 2_000).is_empty(),
        "drain not applied yet"
    );
    assert!(
        run(&[report(1_500, &busy)], 2_000).is_empty(),
        "two still in flight"
    );
    assert_eq!(
        run(&[report(1_500, &idle)], 2_000)[0].reason,
        "drained in 1000 ms: no request in flight at any of the 1 live proxies"
    );
    let late = run(&[report(5_500, &busy)], 6_000);
    assert_eq!(
        late[0].reason,
        "drain deadline passed with 2 request(s) still in flight"
    );
    let late = run(&[report(5_500, &old)], 6_000);
    assert_eq!(
        late[0].reason,
        "drain deadline passed before every proxy applied the drain"
    );
}

#[test]
fn a_drain_needs_fresh_evidence_from_every_live_proxy() {
    let idle = at_proxy(7, &[("web-b", 0)]);
    // No live proxy at all: nobody can say it drained; only the deadline ends it.
    assert!(run(&[], 2_000).is_empty(), "no evidence, no stop");
    assert_eq!(
        run(&[], 6_000)[0].reason,
        "drain deadline passed with no live proxy to confirm it; stopped anyway"
    );
    // A report from before the drain began says nothing about it.
    assert!(
        run(&[report(1_000, &idle)], 2_000).is_empty(),
        "stale report"
    );
    // Every live proxy must confirm: one idle, one that does not route the service yet.
    let unrouted = ProxyReport {
        seen: 1_500,
        traffic: None,
        drained: &NO_EVENTS,
    };
    assert!(
        run(&[report(1_500, &idle), unrouted], 2_000).is_empty(),
        "one proxy has not applied it"
    );
    assert!(
        run(&[report(1_500, &idle), report(900, &idle)], 2_000).is_empty(),
        "one proxy not fresh"
    );
    let late = run(&[report(1_500, &idle), report(900, &idle)], 6_000);
    assert_eq!(
        late[0].reason,
        "drain deadline passed before every proxy reported since the drain began"
    );
    let both = run(&[report(1_500, &idle), report(1_600, &idle)], 2_000);
    assert_eq!(
        both[0].reason,
        "drained in 1000 ms: no request in flight at any of the 2 live proxies"
    );
}

#[test]
fn a_drained_event_is_evidence_without_waiting_for_metrics() {
    // Both proxies' last metrics are from before the drain and show requests in flight.
    let busy = at_proxy(6, &[("web-b", 3)]);
    let event = |version, seen| BTreeMap::from([(id("web-b"), Drained { version, seen })]);
    let (fresh, stale, old_version) = (event(7, 1_020), event(7, 900), event(6, 1_020));
    let with = |drained| ProxyReport {
        seen: 800,
        traffic: Some(&busy),
        drained,
    };
    let stops = run(&[with(&fresh)], 1_030);
    assert_eq!(stops[0].reason, "drained in 30 ms: no request in flight at any of the 1 live proxies (1 said so in a drained event)");
    assert!(
        run(&[with(&stale)], 1_030).is_empty(),
        "an event from before this drain began"
    );
    assert!(
        run(&[with(&old_version)], 1_030).is_empty(),
        "an event at an older version"
    );
    // Every live proxy still has to confirm, by event or by metrics.
    let idle = at_proxy(7, &[("web-b", 0)]);
    assert!(
        run(&[with(&fresh), with(&NO_EVENTS)], 1_030).is_empty(),
        "the other proxy has not said so"
    );
    let both = run(&[with(&fresh), report(1_025, &idle)], 1_030);
    assert_eq!(both[0].reason, "drained in 30 ms: no request in flight at any of the 2 live proxies (1 said so in a drained event)");
}

#[test]
fn new_drains_wait_and_stops_are_retried() {
    let mut members = [
        member(
            "web-a",
            "w1",
            Phase::Draining {
                since: 0,
                version: 0,
                deadline: 0,
            },
        ),
        member(
            "web-b",
            "w1",
            Phase::Stopping {
                sent: 0,
                attempt: 1,
            },
        ),
        member(
            "web-c",
            "w1",
            Phase::Stopping {
                sent: 10_000,
                attempt: 1,
            },
        ),
    ];
    let stops = finish_drains(
        &mut members,
        &[id("web-a")].into(),
        &[],
        15_000,
        10.0,
        15_000,
    );
    assert_eq!(ids(&stops), ["web-b"]);
    assert_eq!((stops[0].attempt, stops[0].reason.as_str()), (2, ""));
}
