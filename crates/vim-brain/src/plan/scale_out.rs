//! Step 5: too few replicas: choose a worker for each missing one (see [`crate::placement`]),
//! or say why some cannot be placed.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{ReplicaId, ServiceName, WorkerId};

use crate::placement::{self, Candidate};
use crate::world::{Intent, Millis, World};

/// A replica to start on `worker`, and why there.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Placement {
    pub worker: WorkerId,
    pub reason: String,
}

#[derive(Debug, Default, PartialEq)]
pub(super) struct ScaleOut {
    pub placements: Vec<Placement>,
    /// Why the rest cannot be placed, if some cannot.
    pub blocked: Option<String>,
}

/// Workers that can take a replica of `service` now: up, not cordoned (maintenance), not backing
/// off after a refusal. Each counts the slots its reported replicas take, plus starts sent but
/// not yet reported. One pass over the records (indexed by worker), then one over each
/// candidate's replicas: O(records + replicas), not O(workers × records).
pub(super) fn candidates(
    world: &World,
    now: Millis,
    service: &ServiceName,
    up: &BTreeSet<&WorkerId>,
) -> Vec<Candidate> {
    let mut starting: BTreeMap<&WorkerId, Vec<(&ReplicaId, &ServiceName)>> = BTreeMap::new();
    for (replica, record) in world.records() {
        if matches!(record.intent, Intent::Starting { .. }) {
            starting
                .entry(&record.worker)
                .or_default()
                .push((replica, &record.service));
        }
    }
    let mut out = Vec::new();
    for &id in up {
        let worker = &world.workers()[id];
        if worker.backoff_until > now || world.maintenance_of(id).cordoned {
            continue;
        }
        let mut running = 0;
        let mut of_service = 0;
        let mut reported = BTreeSet::new();
        for r in worker.last.replicas.iter().filter(|r| r.state.takes_slot()) {
            running += 1;
            of_service += (&r.service == service) as u32;
            reported.insert(&r.id);
        }
        for (_, record_service) in starting
            .get(id)
            .into_iter()
            .flatten()
            .filter(|(r, _)| !reported.contains(r))
        {
            running += 1;
            of_service += (*record_service == service) as u32;
        }
        out.push(Candidate {
            id: id.clone(),
            running,
            max_replicas: worker.last.capacity.max_replicas,
            of_service,
            cpu_pct: worker.last.host.cpu_pct,
        });
    }
    out
}

/// Workers named in a "cannot be placed" reason.
const ROOM_LISTED: usize = 10;

/// Starts this plan already sends (for other services) take room too.
pub(super) fn count_planned_starts(candidates: &mut [Candidate], planned_starts: &[&WorkerId]) {
    let mut planned: BTreeMap<&WorkerId, u32> = BTreeMap::new();
    for worker in planned_starts {
        *planned.entry(worker).or_default() += 1;
    }
    for candidate in candidates.iter_mut() {
        candidate.running += planned.get(&candidate.id).copied().unwrap_or(0);
    }
}

/// Places `desired - active` replicas, one at a time, each on the best candidate left.
pub(super) fn scale_out(
    mut candidates: Vec<Candidate>,
    service: &ServiceName,
    active: u32,
    desired: u32,
) -> ScaleOut {
    let mut out = ScaleOut::default();
    for _ in active..desired {
        let Some(best) = placement::choose(&candidates) else {
            break;
        };
        let chosen = &mut candidates[best];
        let reason = format!(
            "{} has room ({}/{} replicas, {} of {service}, cpu {:.0}%); spread and least-loaded first",
            chosen.id, chosen.running, chosen.max_replicas, chosen.of_service, chosen.cpu_pct
        );
        out.placements.push(Placement {
            worker: chosen.id.clone(),
            reason,
        });
        chosen.running += 1;
        chosen.of_service += 1;
    }
    let missing = desired.saturating_sub(active) - out.placements.len() as u32;
    out.blocked = (missing > 0).then(|| {
        // At most ROOM_LISTED workers named, so the decision stays small with 10,000 of them.
        let mut room: Vec<String> = candidates
            .iter()
            .take(ROOM_LISTED)
            .map(|c| format!("{} {}/{}", c.id, c.running, c.max_replicas))
            .collect();
        if candidates.len() > ROOM_LISTED {
            room.push(format!("and {} more", candidates.len() - ROOM_LISTED));
        }
        let room = if room.is_empty() {
            "no worker is up".to_string()
        } else {
            room.join(", ")
        };
        format!(
            "{missing} of {desired} replicas cannot be placed: no live worker has room ({room})"
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::id;
    use super::*;

    fn worker(name: &str, running: u32, max_replicas: u32) -> Candidate {
        Candidate {
            id: id(name),
            running,
            max_replicas,
            of_service: 0,
            cpu_pct: 5.0,
        }
    }

    #[test]
    fn places_the_missing_replicas_spread_out() {
        let out = scale_out(
            vec![worker("w1", 0, 4), worker("w2", 0, 4)],
            &id("web"),
            1,
            4,
        );
        let on: Vec<&str> = out.placements.iter().map(|p| p.worker.as_str()).collect();
        assert_eq!(on, ["w1", "w2", "w1"]);
        assert_eq!(
            out.placements[0].reason,
            "w1 has room (0/4 replicas, 0 of web, cpu 5%); spread and least-loaded first"
        );
        assert_eq!(out.blocked, None);
    }

    #[test]
    fn says_what_cannot_be_placed() {
        let out = scale_out(vec![worker("w1", 3, 4)], &id("web"), 0, 3);
        assert_eq!(out.placements.len(), 1);
        assert_eq!(
            out.blocked.as_deref(),
            Some("2 of 3 replicas cannot be placed: no live worker has room (w1 4/4)")
        );
        let out = scale_out(vec![], &id("web"), 0, 1);
        assert!(out.blocked.unwrap().ends_with("(no worker is up)"));
    }

    #[test]
    fn a_blocked_reason_names_ten_workers_at_most() {
        let many: Vec<Candidate> = (0..12).map(|i| worker(&format!("w{i:02}"), 4, 4)).collect();
        let out = scale_out(many, &id("web"), 0, 1);
        let why = out.blocked.unwrap();
        assert!(why.contains("w09 4/4, and 2 more)"), "{why}");
        assert!(!why.contains("w10"), "{why}");
    }

    /// The reference: every worker scans every record (what `candidates` did before its index).
    fn candidates_by_scanning(
        world: &World,
        now: Millis,
        service: &ServiceName,
        up: &BTreeSet<&WorkerId>,
    ) -> Vec<Candidate> {
        let mut out = Vec::new();
        for &id in up {
            let worker = &world.workers()[id];
            if worker.backoff_until > now || world.maintenance_of(id).cordoned {
                continue;
            }
            let reported: BTreeSet<&ReplicaId> = worker
                .last
                .replicas
                .iter()
                .filter(|r| r.state.takes_slot())
                .map(|r| &r.id)
                .collect();
            let mut running = reported.len() as u32;
            let mut of_service = worker
                .last
                .replicas
                .iter()
                .filter(|r| r.state.takes_slot() && &r.service == service)
                .count() as u32;
            for (replica, record) in world.records() {
                if &record.worker == id
                    && matches!(record.intent, Intent::Starting { .. })
                    && !reported.contains(replica)
                {
                    running += 1;
                    of_service += (&record.service == service) as u32;
                }
            }
            let (max_replicas, cpu_pct) =
                (worker.last.capacity.max_replicas, worker.last.host.cpu_pct);
            out.push(Candidate {
                id: id.clone(),
                running,
                max_replicas,
                of_service,
                cpu_pct,
            });
        }
        out
    }

    #[test]
    fn the_indexed_candidates_are_the_scanned_ones() {
        use crate::world::{Bookkeeping, RecordChange};
        use crate::world::{Event, Now, Record, Settings};
        use acs_events::*;
        let mut world = World::new(
            Settings::default(),
            Now {
                mono: 0,
                unix_ms: 0,
            },
        );
        let mut records = Vec::new();
        for w in 0..30u32 {
            let worker: WorkerId = id(&format!("w{w}"));
            let replicas = (0..w % 5)
                .map(|j| ReplicaStatus {
                    id: id(&format!("r{w}-{j}")),
                    service: id(if j % 2 == 0 { "web" } else { "api" }),
                    addr: format!("10.0.0.{w}:{}", 20_000 + j),
                    state: if j == 3 {
                        ReplicaState::Exited
                    } else {
                        ReplicaState::Healthy
                    },
                    cpu_pct: 0.0,
                    mem_bytes: 0,
                    started_ms: 0,
                    restarts: 0,
                })
                .collect();
            let mut m = super::super::test_support::report(worker.as_str(), replicas);
            m.host.cpu_pct = f64::from(w);
            m.host.cpus = 2;
            world.apply(Event::WorkerMetrics(m), 0);
            // Starts sent: some already reported (r<w>-0), some not; and a drain, not a start.
            for (k, replica) in [format!("r{w}-0"), format!("new{w}-a"), format!("new{w}-b")]
                .into_iter()
                .enumerate()
            {
                if w % 3 == k as u32 {
                    continue;
                }
                let service = id(if k == 2 { "api" } else { "web" });
                let intent = if w % 7 == 0 {
                    Intent::Draining {
                        since: 0,
                        version: 1,
                        deadline: 10,
                    }
                } else {
                    Intent::Starting { since: 0 }
                };
                records.push(RecordChange::Upsert(
                    id(&replica),
                    Record {
                        service,
                        worker: worker.clone(),
                        intent,
                    },
                ));
            }
        }
        world.apply(
            Event::PlanSent(Bookkeeping {
                records,
                ..Bookkeeping::default()
            }),
            0,
        );
        let up: BTreeSet<&WorkerId> = world.workers().keys().collect();
        for service in ["web", "api", "other"] {
            let service: ServiceName = id(service);
            let indexed = candidates(&world, 0, &service, &up);
            assert_eq!(
                indexed,
                candidates_by_scanning(&world, 0, &service, &up),
                "{service}"
            );
            assert!(
                indexed.iter().any(|c| c.running > c.of_service),
                "the test covers both counts"
            );
        }
    }

    #[test]
    fn starts_planned_for_other_services_take_room() {
        let mut candidates = vec![worker("w1", 0, 1), worker("w2", 0, 1)];
        count_planned_starts(&mut candidates, &[&id("w1")]);
        let out = scale_out(candidates, &id("web"), 0, 1);
        assert_eq!(out.placements[0].worker.as_str(), "w2");
    }
}
