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
mod tests;
