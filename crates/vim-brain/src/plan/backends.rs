//! Step 7: the backend set to route (healthy and draining replicas), diffed with what the
//! proxies were told: a full `reset` when one is due, else `add`, `drain` and `remove` deltas,
//! each with the next version. A change too large for one message is split
//! ([`acs_events::split_change`]): a big reset goes out as a reset and `add`s, consecutive
//! versions, so no update is over the payload limit even at 10,000 backends.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{
    Backend, BackendChange, BackendUpdate, ReplicaId, Route, ServiceName, SCHEMA_VERSION,
};

use super::{Member, Phase};
use crate::config::{ServiceConfig, Services};
use crate::world::{entry_hash, Millis, Now, Published, Routing, World};

#[derive(Debug, PartialEq)]
pub(super) struct Publish {
    pub updates: Vec<BackendUpdate>,
    /// The new set, when anything was published.
    pub published: Option<Published>,
    /// The version that told the proxies about new drains (the last one if none did).
    pub drain_version: u64,
}

/// Healthy replicas are routed; draining ones stay listed, marked, so proxies finish them.
pub(super) fn wanted(members: &[Member]) -> BTreeMap<ReplicaId, Backend> {
    let mut want = BTreeMap::new();
    for (m, addr, draining) in routable(members) {
        let backend = Backend {
            id: m.id.clone(),
            addr: addr.to_string(),
            worker: m.worker.clone(),
            draining,
        };
        want.insert(m.id.clone(), backend);
    }
    want
}

/// The routable members: healthy ones, and draining ones (marked), with an address.
fn routable<'m, 'a>(
    members: &'m [Member<'a>],
) -> impl Iterator<Item = (&'m Member<'a>, &'a str, bool)> + 'm {
    members.iter().filter_map(|m| {
        let draining = match m.phase {
            Phase::Healthy => false,
            Phase::Draining { .. } => true,
            _ => return None,
        };
        m.addr.map(|addr| (m, addr, draining))
    })
}

/// Whether the routable members are exactly what was published (same ids, addresses, workers
/// and drain marks): the common case. Answered by summing the members' route hashes and
/// comparing with the published set's digest, with no lookup and no read of an id or address:
/// at 10,000 backends a service, the lookups were 40 % of a steady plan, and rereading the
/// strings (cache misses) a quarter. A false "unchanged" (the 2^-64 above)
/// would hold a change back until the next periodic reset at the latest.
pub(super) fn unchanged(
    published: &BTreeMap<ReplicaId, Backend>,
    published_digest: u64,
    members: &[Member],
) -> bool {
    let (mut routed, mut sum) = (0usize, 0u64);
    for (m, _, draining) in routable(members) {
        routed += 1;
        sum = sum.wrapping_add(entry_hash(m.route, draining));
    }
    let same = routed == published.len() && sum == published_digest;
    debug_assert!(
        !same || exactly_unchanged(published, members),
        "a digest matched a different backend set"
    );
    same
}

/// [`unchanged`] by lookups, with no digest: what debug builds check the digest against.
fn exactly_unchanged(published: &BTreeMap<ReplicaId, Backend>, members: &[Member]) -> bool {
    let mut routed = 0;
    for (m, addr, draining) in routable(members) {
        routed += 1;
        match published.get(m.id) {
            Some(b) if b.addr == addr && b.draining == draining && &b.worker == m.worker => {}
            _ => return false,
        }
    }
    // Ids are unique among members, so equal counts mean no published backend is left over.
    routed == published.len()
}

/// What to tell the proxies so that `published` becomes `want`: everything (a reset on
/// `reset_route`), or the deltas.
pub(super) fn changes(
    published: &BTreeMap<ReplicaId, Backend>,
    want: &BTreeMap<ReplicaId, Backend>,
    reset_route: Option<&Route>,
) -> Vec<BackendChange> {
    if let Some(route) = reset_route {
        return vec![BackendChange::Reset {
            route: route.clone(),
            backends: want.values().cloned().collect(),
        }];
    }
    let was = |id: &ReplicaId| published.get(id);
    let add: Vec<Backend> = want
        .values()
        .filter(|b| {
            was(&b.id).is_none_or(|old| old.addr != b.addr || (old.draining && !b.draining))
        })
        .cloned()
        .collect();
    let drain: Vec<ReplicaId> = want
        .values()
        .filter(|b| b.draining && was(&b.id).is_some_and(|old| !old.draining))
        .map(|b| b.id.clone())
        .collect();
    let remove: Vec<ReplicaId> = published
        .keys()
        .filter(|id| !want.contains_key(*id))
        .cloned()
        .collect();
    let mut changes = Vec::new();
    if !add.is_empty() {
        changes.push(BackendChange::Add { backends: add });
    }
    if !drain.is_empty() {
        changes.push(BackendChange::Drain { ids: drain });
    }
    if !remove.is_empty() {
        changes.push(BackendChange::Remove { ids: remove });
    }
    changes
}

/// Periodic snapshots in one plan stop at about this many backends (at least one service is
/// always taken, the most overdue first); the rest are taken by the next plans. At 10,000
/// workers (10 services of 10,000 backends), ten snapshots in one pass made it 3 to 4 times as long as
/// a steady one. A snapshot for a new term or a proxy's sync request is never put off.
pub(super) const SNAPSHOT_BUDGET: usize = 10_000;

/// Periodic snapshots of all services together republish at most about this many backends a
/// second: past `reset_every_ms × SNAPSHOT_RATE` backends in all (10,000 at the default 5 s),
/// each service's period grows with the total. At 100,000 backends, that is every 50 s
/// instead of every 5 s (2 MB/s of snapshots to every proxy, and a snapshot in most plans).
/// Snapshots are the safety net: a proxy that misses a delta sees the version gap and asks for
/// one at once (`acs.backends.sync`), whatever the period.
pub(super) const SNAPSHOT_RATE: u64 = 2_000;

/// The period of periodic snapshots: `reset_every_ms`, or longer for large backend sets
/// ([`SNAPSHOT_RATE`]).
pub(super) fn snapshot_every(world: &World, services: &Services) -> Millis {
    let total: u64 = services
        .iter()
        .map(|(name, _)| {
            world
                .service(name)
                .map_or(0, |s| s.routing.published.len() as u64)
        })
        .sum();
    world
        .settings()
        .reset_every_ms
        .max(total * 1000 / SNAPSHOT_RATE)
}

/// Which services take their periodic `reset` (every [`snapshot_every`]) in this plan: the
/// most overdue first (never reset before that), within [`SNAPSHOT_BUDGET`].
pub(super) fn periodic_resets<'s>(
    world: &World,
    services: &'s Services,
    now: Millis,
) -> BTreeSet<&'s ServiceName> {
    let every = snapshot_every(world, services);
    let mut due: Vec<(Option<Millis>, usize, &ServiceName)> = services
        .iter()
        .filter_map(|(name, _)| {
            let st = world.service(name);
            let last = st.and_then(|s| s.routing.last_reset);
            last.is_none_or(|at| now.saturating_sub(at) >= every)
                .then(|| (last, st.map_or(0, |s| s.routing.published.len()), name))
        })
        .collect();
    due.sort();
    let mut taken = 0;
    let mut out = BTreeSet::new();
    for (_, size, name) in due {
        if !out.is_empty() && taken + size > SNAPSHOT_BUDGET {
            break;
        }
        taken += size;
        out.insert(name);
    }
    out
}

/// The updates to publish for one service, versioned after `state.version` (or `first_version`
/// for a service this brain never published).
pub(super) fn publish(
    service: &ServiceName,
    svc: &ServiceConfig,
    state: &Routing,
    first_version: u64,
    members: &[Member],
    reset_due: bool,
    now: Now,
) -> Publish {
    if !reset_due
        && state.version >= first_version
        && unchanged(&state.published, state.digest, members)
    {
        return Publish {
            updates: Vec::new(),
            published: None,
            drain_version: state.version,
        };
    }
    let want = wanted(members);
    let mut version = state.version.max(first_version);
    let mut drain_version = None;
    let mut updates = Vec::new();
    let changes = changes(&state.published, &want, reset_due.then_some(&svc.route));
    for change in changes
        .into_iter()
        .flat_map(|c| acs_events::split_change(c, acs_events::CHUNK_BYTES))
    {
        version += 1;
        // A split reset tells the proxies about drains only with its last part.
        if matches!(
            change,
            BackendChange::Drain { .. } | BackendChange::Reset { .. }
        ) || reset_due
        {
            drain_version = Some(version);
        }
        updates.push(BackendUpdate {
            v: SCHEMA_VERSION,
            service: service.clone(),
            version,
            ts_ms: now.unix_ms,
            selection: svc.selection,
            change,
        });
    }
    let published = (version != state.version || reset_due).then(|| Published {
        service: service.clone(),
        version,
        backends: want,
        reset: reset_due,
    });
    Publish {
        updates,
        published,
        drain_version: drain_version.unwrap_or(version),
    }
}

#[cfg(test)]
mod tests {
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
}
