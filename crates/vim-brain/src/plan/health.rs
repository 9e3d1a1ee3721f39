//! Step 1: which workers are up, and the health transitions to announce.

use std::collections::BTreeSet;

use acs_events::{WorkerEvent, WorkerHealth, WorkerId, SCHEMA_VERSION};

use super::HealthAnnounced;
use crate::world::{Now, World};

#[derive(Debug, Default, PartialEq)]
pub(super) struct Health {
    /// Workers whose metrics are recent enough.
    pub up: BTreeSet<WorkerId>,
    /// Transitions since the last announcement, to record...
    pub announced: Vec<HealthAnnounced>,
    /// ...and to publish.
    pub events: Vec<WorkerEvent>,
}

pub(super) fn worker_health(world: &World, now: Now) -> Health {
    let settings = world.settings();
    let mut health = Health::default();
    for (id, worker) in world.workers() {
        let is_up = worker.is_up(now.mono, settings);
        if is_up {
            health.up.insert(id.clone());
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
            format!("no metrics for {silent_ms} ms (timeout {} ms)", settings.worker_timeout_ms)
        };
        health.announced.push(HealthAnnounced { worker: id.clone(), up: is_up });
        health.events.push(WorkerEvent {
            v: SCHEMA_VERSION,
            worker: id.clone(),
            ts_ms: now.unix_ms,
            health: if is_up { WorkerHealth::Up } else { WorkerHealth::Down },
            reason,
        });
    }
    health
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, now};
    use super::*;
    use crate::world::{Event, Settings};
    use acs_events::{Capacity, HostMetrics, RuntimeKind, WorkerMetrics};

    fn metrics(worker: &str) -> Event {
        Event::WorkerMetrics(WorkerMetrics {
            v: 1,
            worker: id(worker),
            seq: 1,
            ts_ms: 0,
            started_ms: 0,
            interval_ms: 1000,
            runtime: RuntimeKind::Process,
            host: HostMetrics::default(),
            capacity: Capacity { max_replicas: 4, running: 0 },
            replicas: vec![],
            rejected: 0,
        })
    }

    #[test]
    fn announces_up_once_then_down_after_the_timeout() {
        let mut world = World::new(Settings::default(), now(0));
        world.apply(metrics("w1"), 0);
        let health = worker_health(&world, now(100));
        assert_eq!(health.up.iter().map(|w| w.as_str()).collect::<Vec<_>>(), ["w1"]);
        assert_eq!(health.announced, [HealthAnnounced { worker: id("w1"), up: true }]);
        assert!(health.events[0].reason.starts_with("metrics arriving; 0/4 replicas"), "{}", health.events[0].reason);

        let sent = crate::plan::Bookkeeping { worker_health: health.announced, ..Default::default() };
        world.apply(Event::PlanSent(sent), 100);
        assert_eq!(worker_health(&world, now(200)).events, [], "announced once");

        let health = worker_health(&world, now(3_100));
        assert!(health.up.is_empty());
        assert_eq!(health.events[0].health, WorkerHealth::Down);
        assert_eq!(health.events[0].reason, "no metrics for 3100 ms (timeout 3000 ms)");
    }
}
