//! Which worker gets the next replica, and which replica goes first on scale-in. Pure.

use std::cmp::Ordering;

use acs_events::{ReplicaId, WorkerId};

/// A worker as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: WorkerId,
    /// Replicas it runs or is about to run (all services).
    pub running: u32,
    pub max_replicas: u32,
    /// Replicas of the service being placed.
    pub of_service: u32,
    /// Host CPU, 0..=100.
    pub cpu_pct: f64,
}

impl Candidate {
    fn has_room(&self) -> bool {
        self.running < self.max_replicas
    }
    fn fill(&self) -> f64 {
        self.running as f64 / self.max_replicas.max(1) as f64
    }
}

/// Capacity-aware, least-loaded, spreading: among workers with room, the fewest replicas of
/// this service, then the lowest fill (running / max), then the lowest CPU, then the id.
pub fn choose(candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.has_room())
        .min_by(|(_, a), (_, b)| {
            a.of_service
                .cmp(&b.of_service)
                .then(a.fill().total_cmp(&b.fill()))
                .then(cpu_bucket(a.cpu_pct).cmp(&cpu_bucket(b.cpu_pct)))
                .then(a.id.cmp(&b.id))
        })
        .map(|(i, _)| i)
}

/// CPU compared in 10-point buckets, so noise does not flip placements between equal hosts.
fn cpu_bucket(cpu: f64) -> u32 {
    (cpu.clamp(0.0, 100.0) / 10.0) as u32
}

/// A replica as scale-in sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VictimCandidate {
    pub id: ReplicaId,
    pub worker: WorkerId,
    /// Not yet serving (pending, starting or unhealthy): cheapest to remove, no drain needed.
    pub not_serving: bool,
    /// Replicas of this service on the same worker.
    pub worker_of_service: u32,
    pub worker_cpu_pct: f64,
    pub started_ms: u64,
}

/// Orders scale-in victims: replicas not serving first, then those on the workers holding the
/// most of this service (keeps the spread), then the busiest worker, then the newest replica.
pub fn victim_order(a: &VictimCandidate, b: &VictimCandidate) -> Ordering {
    b.not_serving
        .cmp(&a.not_serving)
        .then(b.worker_of_service.cmp(&a.worker_of_service))
        .then(cpu_bucket(b.worker_cpu_pct).cmp(&cpu_bucket(a.worker_cpu_pct)))
        .then(b.started_ms.cmp(&a.started_ms))
        .then(a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, running: u32, max: u32, of_service: u32, cpu: f64) -> Candidate {
        Candidate {
            id: id.parse().unwrap(),
            running,
            max_replicas: max,
            of_service,
            cpu_pct: cpu,
        }
    }

    #[test]
    fn spreads_a_service_first() {
        let cs = [c("w1", 1, 4, 1, 5.0), c("w2", 3, 4, 0, 80.0)];
        assert_eq!(choose(&cs), Some(1));
    }

    #[test]
    fn least_loaded_then_cpu_then_id() {
        let cs = [c("w1", 2, 4, 0, 5.0), c("w2", 1, 4, 0, 50.0)];
        assert_eq!(choose(&cs), Some(1), "fill 1/4 beats 2/4");
        let cs = [c("w1", 1, 4, 0, 50.0), c("w2", 1, 4, 0, 5.0)];
        assert_eq!(choose(&cs), Some(1), "same fill: lower cpu");
        let cs = [c("w2", 1, 4, 0, 5.0), c("w1", 1, 4, 0, 7.0)];
        assert_eq!(choose(&cs), Some(1), "same bucket: lower id");
    }

    #[test]
    fn capacity_aware() {
        let cs = [c("w1", 4, 4, 0, 0.0), c("w2", 2, 2, 0, 0.0)];
        assert_eq!(choose(&cs), None);
        let cs = [c("w1", 4, 4, 0, 0.0), c("w2", 7, 8, 5, 90.0)];
        assert_eq!(choose(&cs), Some(1));
        // Fill is relative to capacity: 2/8 beats 1/2.
        let cs = [c("w1", 1, 2, 0, 0.0), c("w2", 2, 8, 0, 0.0)];
        assert_eq!(choose(&cs), Some(1));
    }

    fn v(id: &str, worker: &str, not_serving: bool, n: u32, started: u64) -> VictimCandidate {
        VictimCandidate {
            id: id.parse().unwrap(),
            worker: worker.parse().unwrap(),
            not_serving,
            worker_of_service: n,
            worker_cpu_pct: 10.0,
            started_ms: started,
        }
    }

    #[test]
    fn victims() {
        let mut vs = [
            v("a", "w1", false, 1, 10),
            v("b", "w2", false, 2, 5),
            v("c", "w2", false, 2, 20),
            v("d", "w1", true, 1, 1),
        ];
        vs.sort_by(victim_order);
        let ids: Vec<_> = vs.iter().map(|v| v.id.to_string()).collect();
        assert_eq!(ids, ["d", "c", "b", "a"]);
    }
}
