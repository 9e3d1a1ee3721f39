//! Unit tests of `backends`.

use super::super::test_support::{id, member, now};
use super::*;
use crate::world::{digest, route_hash};
use acs_events::WorkerId;

fn draining() -> Phase {
    Phase::Draining {
        since: 0,
        version: 0,
        deadline: 0,
    }
}

fn names(changes: &[BackendChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            BackendChange::Reset { backends, .. } => format!("reset {}", backends.len()),
            BackendChange::Add { backends } => format!("add {}", backends[0].id),
            BackendChange::Drain { ids } => format!("drain {}", ids[0]),
            BackendChange::Remove { ids } => format!("remove {}", ids[0]),
            BackendChange::Withdraw => "withdraw".to_string(),
        })
        .collect()
}

#[test]
fn only_healthy_and_draining_replicas_are_routed() {
    let members = [
        member("web-a", "w1", Phase::Healthy),
        member("web-b", "w1", draining()),
        member("web-c", "w1", Phase::Starting),
        member(
            "web-d",
            "w1",
            Phase::Stopping {
                sent: 0,
                attempt: 1,
            },
        ),
    ];
    let want = wanted(&members);
    assert_eq!(
        want.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["web-a", "web-b"]
    );
    assert!(want[&id::<ReplicaId>("web-b")].draining);
}

#[test]
fn deltas_add_drain_and_remove() {
    let published = wanted(&[
        member("web-a", "w1", Phase::Healthy),
        member("web-b", "w1", Phase::Healthy),
    ]);
    let want = wanted(&[
        member("web-a", "w1", draining()),
        member("web-c", "w1", Phase::Healthy),
    ]);
    assert_eq!(
        names(&changes(&published, &want, None)),
        ["add web-c", "drain web-a", "remove web-b"]
    );
    assert!(changes(&want, &want, None).is_empty());
    let members = [
        member("web-a", "w1", draining()),
        member("web-c", "w1", Phase::Healthy),
    ];
    // Both checks, the digest's and the lookups' (they must agree).
    let same = |published: &BTreeMap<ReplicaId, Backend>, members: &[Member]| {
        let by_digest = unchanged(published, digest(published.values()), members);
        assert_eq!(
            by_digest,
            exactly_unchanged(published, members),
            "{members:?}"
        );
        by_digest
    };
    assert!(same(&want, &members));
    assert!(same(
        &want,
        &[
            members[0].clone(),
            members[1].clone(),
            member("web-d", "w1", Phase::Starting)
        ]
    ));
    assert!(!same(&published, &members));
    assert!(
        !same(&want, &members[..1]),
        "a published backend no member routes"
    );
    assert!(
        !same(
            &want,
            &[member("web-a", "w1", Phase::Healthy), members[1].clone()]
        ),
        "drain mark"
    );
    // Order does not matter; an extra routed member, an address or a worker does.
    assert!(same(&want, &[members[1].clone(), members[0].clone()]));
    assert!(!same(
        &want,
        &[
            members[0].clone(),
            members[1].clone(),
            member("web-e", "w1", Phase::Healthy)
        ]
    ));
    let moved = Member {
        addr: Some("10.0.0.9:1"),
        route: route_hash(members[1].id, "10.0.0.9:1", members[1].worker),
        ..members[1].clone()
    };
    assert!(!same(&want, &[members[0].clone(), moved]), "address");
    let w2: &'static WorkerId = Box::leak(Box::new(id("w2")));
    let elsewhere = Member {
        worker: w2,
        route: route_hash(members[1].id, members[1].addr.unwrap(), w2),
        ..members[1].clone()
    };
    assert!(!same(&want, &[members[0].clone(), elsewhere]), "worker");
    // A digest that does not belong to the set (a state built by hand) never says unchanged.
    assert!(!unchanged(&want, 0, &members));
    assert_eq!(
        names(&changes(&published, &want, Some(&Route::default()))),
        ["reset 2"]
    );
}

#[test]
fn periodic_snapshots_are_spread_over_plans_within_the_budget() {
    use crate::world::{Event, Settings};
    let file: String = ["a", "b", "c", "small"]
        .iter()
        .map(|n| format!("[[service]]\nname = \"{n}\"\ncommand = [\"x\"]\nroute = {{ path_prefix = \"/{n}\" }}\n"))
        .collect();
    let services = Services::parse(&file).unwrap();
    let mut world = World::new(Settings::default(), now(0));
    let sent = |names: &[&str], size: usize| crate::world::Bookkeeping {
        published: names
            .iter()
            .map(|n| Published {
                service: id(n),
                version: 1,
                backends: wanted(
                    &(0..size)
                        .map(|i| member(&format!("{n}-{i}"), "w1", Phase::Healthy))
                        .collect::<Vec<_>>(),
                ),
                reset: true,
            })
            .collect(),
        ..Default::default()
    };
    let names = |set: BTreeSet<&ServiceName>| {
        set.into_iter()
            .map(|n| n.as_str().to_string())
            .collect::<Vec<_>>()
    };
    // Never reset: all due, and empty, so all fit.
    assert_eq!(
        names(periodic_resets(&world, &services, 0)),
        ["a", "b", "c", "small"]
    );
    world.apply(
        Event::PlanSent(sent(&["a", "b", "c"], SNAPSHOT_BUDGET * 6 / 10)),
        0,
    );
    world.apply(Event::PlanSent(sent(&["small"], 10)), 1);
    // 18,010 backends in all: snapshots of them all at most SNAPSHOT_RATE a second.
    let every = snapshot_every(&world, &services);
    assert_eq!(every, 18_010 * 1000 / SNAPSHOT_RATE);
    assert!(every > world.settings().reset_every_ms);
    assert!(
        periodic_resets(&world, &services, every - 1).is_empty(),
        "none due yet"
    );
    // All due: in order of how overdue, one big one a plan...
    let first = names(periodic_resets(&world, &services, every + 1));
    assert_eq!(first, ["a"]);
    world.apply(
        Event::PlanSent(sent(&["a"], SNAPSHOT_BUDGET * 6 / 10)),
        every + 1,
    );
    assert_eq!(names(periodic_resets(&world, &services, every + 2)), ["b"]);
    world.apply(
        Event::PlanSent(sent(&["b"], SNAPSHOT_BUDGET * 6 / 10)),
        every + 2,
    );
    // ...and the small one, last reset after them, fits beside the last big one.
    assert_eq!(
        names(periodic_resets(&world, &services, every + 3)),
        ["c", "small"]
    );
}

#[test]
fn versions_grow_and_the_drain_version_is_the_drains() {
    let services =
        crate::Services::parse("[[service]]\nname = \"web\"\ncommand = [\"x\"]\n").unwrap();
    let svc = services.get(&id("web")).unwrap();
    let state = Routing {
        version: 10,
        published: wanted(&[
            member("web-a", "w1", Phase::Healthy),
            member("web-b", "w1", Phase::Healthy),
        ]),
        ..Routing::default()
    };
    let members = [
        member("web-a", "w1", draining()),
        member("web-c", "w1", Phase::Healthy),
    ];
    let out = publish(&id("web"), svc, &state, 0, &members, false, now(0));
    assert_eq!(
        out.updates.iter().map(|u| u.version).collect::<Vec<_>>(),
        [11, 12, 13]
    );
    assert_eq!(out.drain_version, 12);
    assert_eq!(out.published.unwrap().version, 13);
    let published = wanted(&members);
    let unchanged = Routing {
        digest: digest(published.values()),
        published,
        ..state.clone()
    };
    let out = publish(&id("web"), svc, &unchanged, 0, &members, false, now(0));
    assert_eq!(
        (out.updates.len(), out.published, out.drain_version),
        (0, None, 10)
    );
}

#[test]
fn a_reset_of_10000_backends_goes_out_in_parts_under_the_limit() {
    let services =
        crate::Services::parse("[[service]]\nname = \"web\"\ncommand = [\"x\"]\n").unwrap();
    let svc = services.get(&id("web")).unwrap();
    let state = Routing {
        version: 10,
        ..Routing::default()
    };
    let members: Vec<Member> = (0..10_000)
        .map(|i| {
            let phase = if i == 9_999 {
                draining()
            } else {
                Phase::Healthy
            };
            member(&format!("web-{i}"), &format!("w{}", i / 10), phase)
        })
        .collect();
    let out = publish(&id("web"), svc, &state, 0, &members, true, now(0));
    assert!(out.updates.len() > 1, "{} updates", out.updates.len());
    let versions: Vec<u64> = out.updates.iter().map(|u| u.version).collect();
    assert_eq!(
        versions,
        (11..11 + versions.len() as u64).collect::<Vec<_>>()
    );
    let mut routed = 0;
    for u in &out.updates {
        assert!(acs_events::encode(u).len() <= acs_events::MAX_PAYLOAD);
        routed += match &u.change {
            BackendChange::Reset { backends, .. } | BackendChange::Add { backends } => {
                backends.len()
            }
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(routed, 10_000);
    let published = out.published.unwrap();
    assert_eq!(
        (published.version, published.backends.len(), published.reset),
        (*versions.last().unwrap(), 10_000, true)
    );
    // The drain (in the last part) is recorded with the last part's version.
    assert_eq!(out.drain_version, published.version);
}
