//! Step 2: each service's replicas as the plan sees them, from what live workers report and from
//! the brain's own records of what it asked for. Replicas of services no longer declared are
//! stopped; records of replicas no worker reports any more are forgotten (or, for a start that
//! never showed up in time, stopped in case).

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{ReplicaId, ReplicaState, ServiceName, WorkerId};

use super::{Member, Phase, Stop};
use crate::config::Services;
use crate::world::{Intent, Millis, Record, World};

#[derive(Debug, Default)]
pub(super) struct Gathered<'a> {
    /// Every declared service (possibly with no member), and its members.
    pub by_service: BTreeMap<ServiceName, Vec<Member<'a>>>,
    /// Stops to send, with the service each replica belongs to.
    pub stops: Vec<(ServiceName, Stop)>,
    /// Records to drop.
    pub forget: Vec<ReplicaId>,
}

pub(super) fn gather<'a>(
    world: &'a World,
    services: &Services,
    up: &BTreeSet<&WorkerId>,
    now: Millis,
) -> Gathered<'a> {
    let settings = world.settings();
    // A replica's service, found by its number (`ReplicaKeys::service`): a service is declared
    // exactly when its number maps to a list here. No name is read: at 100,000 replicas a
    // pass, reading them was a cache miss each. Numberless names (past the cap) go by name.
    let numbers = world.service_numbers();
    let mut by_number: Vec<Option<usize>> = vec![None; numbers.len()];
    for (i, name) in services.0.keys().enumerate() {
        if let Some(n) = numbers.get(name) {
            by_number[n as usize] = Some(i);
        }
    }
    let by_name = |name: &ServiceName| services.0.keys().position(|n| n == name);
    let mut lists: Vec<Vec<Member<'a>>> = services.0.keys().map(|_| Vec::new()).collect();
    let mut out = Gathered::default();
    // Reported replicas the brain holds a record of (only those are looked up below): a pass
    // over every replica costs lookups, not a set of all of them.
    let mut seen: BTreeSet<&ReplicaId> = BTreeSet::new();
    // `up` is a subset of the workers, both in id order: one walk over both, no lookups.
    let mut workers = world.workers().iter();
    for worker_id in up {
        let Some((worker_id, worker)) = workers.by_ref().find(|(id, _)| id == worker_id) else {
            break;
        };
        for (i, reported) in worker
            .last
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state != ReplicaState::Exited)
        {
            let record = world.records().get(&reported.id);
            if record.is_some() {
                seen.insert(&reported.id);
            }
            let unhealthy_since = worker.unhealthy_since.get(&reported.id).copied();
            let phase = phase(record, reported.state, unhealthy_since, now);
            let keys = worker.keys(i);
            let list = match keys.service {
                Some(n) => by_number.get(n as usize).copied().flatten(),
                None => by_name(&reported.service),
            };
            let Some(members) = list.map(|i| &mut lists[i]) else {
                let reason = format!(
                    "service {} is not declared in the services file",
                    reported.service
                );
                if let Some((attempt, reason)) =
                    undeclared_stop(phase, now, settings.stop_retry_ms, reason)
                {
                    let stop = Stop {
                        replica: reported.id.clone(),
                        worker: worker_id.clone(),
                        attempt,
                        grace_s: 0.0,
                        reason,
                    };
                    out.stops.push((reported.service.clone(), stop));
                }
                continue;
            };
            members.push(Member {
                id: &reported.id,
                worker: worker_id,
                phase,
                addr: Some(&reported.addr),
                route: keys.route,
                cpu_pct: reported.cpu_pct,
                started_ms: reported.started_ms,
            });
        }
    }

    unreported(world, up, now, &seen, by_name, &mut lists, &mut out);
    out.by_service = services.0.keys().cloned().zip(lists).collect();
    out
}

/// Our own records of replicas the workers do not (or no longer) report: starts still pending
/// become members, starts never reported in time are stopped, the rest are forgotten.
fn unreported<'a>(
    world: &'a World,
    up: &BTreeSet<&WorkerId>,
    now: Millis,
    seen: &BTreeSet<&ReplicaId>,
    by_name: impl Fn(&ServiceName) -> Option<usize>,
    lists: &mut [Vec<Member<'a>>],
    out: &mut Gathered<'a>,
) {
    let settings = world.settings();
    for (id, record) in world.records().iter().filter(|(id, _)| !seen.contains(id)) {
        let worker_up = up.contains(&record.worker);
        match record.intent {
            Intent::Starting { since }
                if worker_up && now.saturating_sub(since) < settings.start_timeout_ms =>
            {
                if let Some(members) = by_name(&record.service).map(|i| &mut lists[i]) {
                    members.push(Member {
                        id,
                        worker: &record.worker,
                        phase: Phase::Pending,
                        addr: None,
                        route: 0,
                        cpu_pct: 0.0,
                        started_ms: 0,
                    });
                } else {
                    out.forget.push(id.clone());
                }
            }
            Intent::Starting { .. } if worker_up => {
                // Timed out before the worker ever reported it: give up, stop it in case.
                let reason = format!(
                    "not healthy within {} s; replacing it",
                    settings.start_timeout_ms / 1000
                );
                let stop = Stop {
                    replica: id.clone(),
                    worker: record.worker.clone(),
                    attempt: 1,
                    grace_s: 0.0,
                    reason,
                };
                out.stops.push((record.service.clone(), stop));
            }
            // Gone (stopped, exited) or its worker is down: forget it.
            _ => out.forget.push(id.clone()),
        }
    }
}

/// A reported replica's phase: the brain's intent (stopping, draining) first, then what its
/// worker says. `reported` is never `Exited` (those are skipped).
fn phase(
    record: Option<&Record>,
    reported: ReplicaState,
    unhealthy_since: Option<Millis>,
    now: Millis,
) -> Phase {
    match (record.map(|r| &r.intent), reported) {
        (Some(Intent::Stopping { sent, attempt }), _) => Phase::Stopping {
            sent: *sent,
            attempt: *attempt,
        },
        (_, ReplicaState::Stopping) => Phase::Stopping {
            sent: now,
            attempt: 0,
        },
        (
            Some(Intent::Draining {
                since,
                version,
                deadline,
            }),
            _,
        ) => Phase::Draining {
            since: *since,
            version: *version,
            deadline: *deadline,
        },
        (_, ReplicaState::Starting) => Phase::Starting,
        (_, ReplicaState::Healthy) => Phase::Healthy,
        (_, ReplicaState::Unhealthy) => Phase::Unhealthy {
            since: unhealthy_since.unwrap_or(now),
        },
        (_, ReplicaState::Exited) => unreachable!("exited replicas are skipped"),
    }
}

/// The stop (attempt, reason) due for a replica of an undeclared service: the first one, or a
/// retry once `stop_retry_ms` has passed since the last.
fn undeclared_stop(
    phase: Phase,
    now: Millis,
    stop_retry_ms: Millis,
    reason: String,
) -> Option<(u32, String)> {
    match phase {
        Phase::Stopping { sent, attempt } => {
            (now.saturating_sub(sent) >= stop_retry_ms).then(|| (attempt + 1, String::new()))
        }
        _ => Some((1, reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::id;
    use super::*;

    fn record(intent: Intent) -> Record {
        Record {
            service: id("web"),
            worker: id("w1"),
            intent,
        }
    }

    #[test]
    fn the_brains_intent_comes_before_the_workers_state() {
        let stopping = record(Intent::Stopping {
            sent: 5,
            attempt: 2,
        });
        assert_eq!(
            phase(Some(&stopping), ReplicaState::Healthy, None, 100),
            Phase::Stopping {
                sent: 5,
                attempt: 2
            }
        );
        let draining = record(Intent::Draining {
            since: 1,
            version: 7,
            deadline: 9,
        });
        assert_eq!(
            phase(Some(&draining), ReplicaState::Healthy, None, 100),
            Phase::Draining {
                since: 1,
                version: 7,
                deadline: 9
            }
        );
        assert_eq!(
            phase(Some(&draining), ReplicaState::Stopping, None, 100),
            Phase::Stopping {
                sent: 100,
                attempt: 0
            }
        );
        let starting = record(Intent::Starting { since: 0 });
        assert_eq!(
            phase(Some(&starting), ReplicaState::Healthy, None, 100),
            Phase::Healthy
        );
        assert_eq!(
            phase(None, ReplicaState::Unhealthy, Some(40), 100),
            Phase::Unhealthy { since: 40 }
        );
        assert_eq!(
            phase(None, ReplicaState::Unhealthy, None, 100),
            Phase::Unhealthy { since: 100 }
        );
    }

    #[test]
    fn replicas_are_filed_by_service_number_and_by_name_past_the_cap() {
        use crate::world::{Event, Now, Settings};
        use acs_events::*;
        // A cap of 3 ids: the worker fits, and only the first 3 service names get numbers.
        let mut world = World::new(
            Settings {
                max_ids: 3,
                ..Settings::default()
            },
            Now {
                mono: 0,
                unix_ms: 0,
            },
        );
        let replica = |n: usize, service: &str| ReplicaStatus {
            id: id(&format!("r{n}")),
            service: id(service),
            addr: format!("10.0.0.1:{}", 20_000 + n),
            state: ReplicaState::Healthy,
            cpu_pct: 0.0,
            mem_bytes: 0,
            started_ms: 0,
            restarts: 0,
        };
        let replicas = ["other", "web", "gone", "api", "web"]
            .iter()
            .enumerate()
            .map(|(n, s)| replica(n, s))
            .collect();
        let m = super::super::test_support::report("w1", replicas);
        world.apply(Event::WorkerMetrics(m), 0);
        assert_eq!(
            world.service_numbers().get(&id("api")),
            None,
            "past the cap"
        );
        let file = "[[service]]\nname = \"web\"\ncommand = [\"x\"]\nroute = { path_prefix = \"/w\" }\n\
                    [[service]]\nname = \"api\"\ncommand = [\"x\"]\nroute = { path_prefix = \"/a\" }\n";
        let services = Services::parse(file).unwrap();
        let w1 = id("w1");
        let out = gather(&world, &services, &[&w1].into(), 0);
        let filed = |service: &str| {
            out.by_service[&id::<ServiceName>(service)]
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(filed("web"), ["r1", "r4"]);
        assert_eq!(filed("api"), ["r3"], "numberless, found by name");
        let stopped: Vec<_> = out
            .stops
            .iter()
            .map(|(s, stop)| (s.as_str(), stop.replica.as_str()))
            .collect();
        assert_eq!(
            stopped,
            [("other", "r0"), ("gone", "r2")],
            "undeclared services' replicas are stopped"
        );
        // Their route hashes are the ones the digest uses.
        let m = &out.by_service[&id::<ServiceName>("web")][0];
        assert_eq!(
            m.route,
            crate::world::route_hash(m.id, m.addr.unwrap(), &w1)
        );
    }

    #[test]
    fn undeclared_replicas_are_stopped_then_retried_after_the_retry_time() {
        let first = undeclared_stop(Phase::Healthy, 0, 15_000, "why".into());
        assert_eq!(first, Some((1, "why".to_string())));
        let sent = Phase::Stopping {
            sent: 1_000,
            attempt: 1,
        };
        assert_eq!(undeclared_stop(sent, 10_000, 15_000, "why".into()), None);
        assert_eq!(
            undeclared_stop(sent, 16_000, 15_000, "why".into()),
            Some((2, String::new()))
        );
    }
}
