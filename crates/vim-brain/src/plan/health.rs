//! Step 1: which workers are up, and the health transitions to announce.
//!
//! A worker is marked down only on evidence about that worker: it fell silent while the brain
//! could hear the others. So no worker is marked down while the brain's own link is held (see
//! [`crate::world::Link`]), nor in a full disruption, when most workers fall silent at once:
//! that is taken for the brain's own problem (Kubernetes' node controller does the same), the
//! silent workers keep their replicas routed, and it is announced once, until reports resume.

use std::collections::BTreeSet;

use acs_events::{ProxyId, WorkerEvent, WorkerHealth, WorkerId, SCHEMA_VERSION};

use crate::world::HealthAnnounced;
use crate::world::{is_full_disruption, Now, World};

#[derive(Debug, Default, PartialEq)]
pub(super) struct Health<'a> {
    /// Workers counted as up: recent metrics, or silent but held (their replicas stay routed).
    /// Borrowed from the world, and built from its sorted ids in one go: cloning and inserting
    /// 10,000 ids one at a time, twice a plan, was about half of this step's cost at 10,000 workers.
    pub up: BTreeSet<&'a WorkerId>,
    /// Workers whose metrics are recent enough: the only ones new replicas go to.
    pub fresh: BTreeSet<&'a WorkerId>,
    /// Transitions since the last announcement, to record...
    pub announced: Vec<HealthAnnounced>,
    /// ...and to publish.
    pub events: Vec<WorkerEvent>,
    /// A full disruption begins (`Some(true)`) or ends (`Some(false)`) now, and why.
    pub disruption: Option<(bool, String)>,
    /// Workers announced down, and proxies, silent for `forget_after_ms`: to forget.
    pub forget_workers: Vec<WorkerId>,
    pub forget_proxies: Vec<ProxyId>,
}

pub(super) fn worker_health(world: &World, now: Now) -> Health<'_> {
    let settings = world.settings();
    let mut health = Health {
        fresh: world
            .workers()
            .iter()
            .filter(|(_, w)| w.is_up(now.mono, settings))
            .map(|(id, _)| id)
            .collect(),
        ..Health::default()
    };
    let mut up = Vec::new();
    let believed = world
        .workers()
        .iter()
        .filter(|(id, w)| w.announced_up || health.fresh.contains(*id))
        .count();
    let silent = believed - health.fresh.len();
    let link = world.link();
    let hold = match link.hold_reason(now.mono) {
        Some(reason) => Some(reason),
        None => {
            let disrupted = is_full_disruption(silent, believed);
            let reason = format!(
                "full disruption: {silent} of {believed} workers went silent at once; taken for the brain's own \
                 problem: no worker is marked down and their replicas stay routed until reports resume"
            );
            if disrupted != link.disruption {
                let why = if disrupted {
                    reason.clone()
                } else {
                    format!("full disruption over: {silent} of {believed} workers silent")
                };
                health.disruption = Some((disrupted, why));
            }
            disrupted.then_some(reason)
        }
    };
    for (id, worker) in world.workers() {
        let fresh = health.fresh.contains(id);
        // Held: a silent worker keeps the health it was announced with.
        let is_up = fresh || (hold.is_some() && worker.announced_up);
        if is_up {
            up.push(id);
        }
        let gone = now.mono.saturating_sub(worker.last_seen) >= settings.forget_after_ms;
        if gone && !is_up && !worker.announced_up && hold.is_none() {
            health.forget_workers.push(id.clone());
            continue;
        }
        if is_up == worker.announced_up {
            continue;
        }
        let reason = if is_up {
            let capacity = &worker.last.capacity;
            format!(
                "metrics arriving; {}/{} replicas, runtime {:?}",
                capacity.running, capacity.max_replicas, worker.last.runtime
            )
        } else {
            let silent_ms = now.mono - worker.last_seen;
            format!(
                "no metrics for {silent_ms} ms (timeout {} ms)",
                settings.worker_timeout_ms
            )
        };
        health.announced.push(HealthAnnounced {
            worker: id.clone(),
            up: is_up,
        });
        health.events.push(WorkerEvent {
            v: SCHEMA_VERSION,
            worker: id.clone(),
            ts_ms: now.unix_ms,
            health: if is_up {
                WorkerHealth::Up
            } else {
                WorkerHealth::Down
            },
            reason,
        });
    }
    health.up = up.into_iter().collect();
    let gone = |seen| now.mono.saturating_sub(seen) >= settings.forget_after_ms;
    let proxies = world.proxies().iter().filter(|(_, p)| gone(p.last_seen));
    health.forget_proxies = proxies.map(|(id, _)| id.clone()).collect();
    health
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, now};
    use super::*;
    use crate::world::{Event, Settings};

    fn metrics(worker: &str) -> Event {
        Event::WorkerMetrics(super::super::test_support::report(worker, vec![]))
    }

    #[test]
    fn announces_up_once_then_down_after_the_timeout() {
        let mut world = World::new(Settings::default(), now(0));
        world.apply(metrics("w1"), 0);
        let health = worker_health(&world, now(100));
        assert_eq!(
            health.up.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
            ["w1"]
        );
        assert_eq!(
            health.announced,
            [HealthAnnounced {
                worker: id("w1"),
                up: true
            }]
        );
        assert!(
            health.events[0]
                .reason
                .starts_with("metrics arriving; 0/8 replicas"),
            "{}",
            health.events[0].reason
        );

        let sent = crate::world::Bookkeeping {
            worker_health: health.announced,
            ..Default::default()
        };
        world.apply(Event::PlanSent(sent), 100);
        assert_eq!(worker_health(&world, now(200)).events, [], "announced once");

        let health = worker_health(&world, now(3_100));
        assert!(health.up.is_empty());
        assert_eq!(health.events[0].health, WorkerHealth::Down);
        assert_eq!(
            health.events[0].reason,
            "no metrics for 3100 ms (timeout 3000 ms)"
        );
    }
}
