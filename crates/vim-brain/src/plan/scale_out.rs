//! Step 5: too few replicas: choose a worker for each missing one (see [`crate::placement`]),
//! or say why some cannot be placed.

use std::collections::BTreeSet;

use acs_events::{ServiceName, WorkerId};

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
/// off after a refusal. Each counts the slots its reported replicas take, plus starts sent but not yet reported.
pub(super) fn candidates(world: &World, now: Millis, service: &ServiceName, up: &BTreeSet<WorkerId>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for id in up {
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
        let unreported_starts = world.records().iter().filter(|(replica, record)| {
            &record.worker == id && matches!(record.intent, Intent::Starting { .. }) && !reported.contains(replica)
        });
        for (_, record) in unreported_starts {
            running += 1;
            of_service += (&record.service == service) as u32;
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

/// Starts this plan already sends (for other services) take room too.
pub(super) fn count_planned_starts(candidates: &mut [Candidate], planned_starts: &[&WorkerId]) {
    for worker in planned_starts {
        if let Some(candidate) = candidates.iter_mut().find(|c| &&c.id == worker) {
            candidate.running += 1;
        }
    }
}

/// Places `desired - active` replicas, one at a time, each on the best candidate left.
pub(super) fn scale_out(mut candidates: Vec<Candidate>, service: &ServiceName, active: u32, desired: u32) -> ScaleOut {
    let mut out = ScaleOut::default();
    for _ in active..desired {
        let Some(best) = placement::choose(&candidates) else { break };
        let chosen = &mut candidates[best];
        let reason = format!(
            "{} has room ({}/{} replicas, {} of {service}, cpu {:.0}%); spread and least-loaded first",
            chosen.id, chosen.running, chosen.max_replicas, chosen.of_service, chosen.cpu_pct
        );
        out.placements.push(Placement { worker: chosen.id.clone(), reason });
        chosen.running += 1;
        chosen.of_service += 1;
    }
    let missing = desired.saturating_sub(active) - out.placements.len() as u32;
    out.blocked = (missing > 0).then(|| {
        let room: Vec<String> = candidates.iter().map(|c| format!("{} {}/{}", c.id, c.running, c.max_replicas)).collect();
        let room = if room.is_empty() { "no worker is up".to_string() } else { room.join(", ") };
        format!("{missing} of {desired} replicas cannot be placed: no live worker has room ({room})")
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::id;
    use super::*;

    fn worker(name: &str, running: u32, max_replicas: u32) -> Candidate {
        Candidate { id: id(name), running, max_replicas, of_service: 0, cpu_pct: 5.0 }
    }

    #[test]
    fn places_the_missing_replicas_spread_out() {
        let out = scale_out(vec![worker("w1", 0, 4), worker("w2", 0, 4)], &id("web"), 1, 4);
        let on: Vec<&str> = out.placements.iter().map(|p| p.worker.as_str()).collect();
        assert_eq!(on, ["w1", "w2", "w1"]);
        assert_eq!(out.placements[0].reason, "w1 has room (0/4 replicas, 0 of web, cpu 5%); spread and least-loaded first");
        assert_eq!(out.blocked, None);
    }

    #[test]
    fn says_what_cannot_be_placed() {
        let out = scale_out(vec![worker("w1", 3, 4)], &id("web"), 0, 3);
        assert_eq!(out.placements.len(), 1);
        assert_eq!(out.blocked.as_deref(), Some("2 of 3 replicas cannot be placed: no live worker has room (w1 4/4)"));
        let out = scale_out(vec![], &id("web"), 0, 1);
        assert!(out.blocked.unwrap().ends_with("(no worker is up)"));
    }

    #[test]
    fn starts_planned_for_other_services_take_room() {
        let mut candidates = vec![worker("w1", 0, 1), worker("w2", 0, 1)];
        count_planned_starts(&mut candidates, &[&id("w1")]);
        let out = scale_out(candidates, &id("web"), 0, 1);
        assert_eq!(out.placements[0].worker.as_str(), "w2");
    }
}
