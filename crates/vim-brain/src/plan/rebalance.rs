//! Rebalance (DRS-style, `[service.rebalance]`): pick one replica to move off a hot worker.
//! Pure. The move itself is the same make-before-break as a worker drain
//! ([`super::maintenance`]): a replacement starts elsewhere (never on the hot worker), and the
//! old replica is drained and stopped only once the replacement serves.
//!
//! A move is picked only when the service is steady (as many replicas as desired, none in
//! motion), the budget allows (`moves_per_minute` over the last 60 s), and the hottest worker
//! running one of its serving replicas is more than `cpu_gap_pct` points hotter than the coldest
//! worker that could take one: up, not cordoned, with a free slot, and running fewer replicas
//! of the service than the hot one (so a move never undoes the spread).

use std::collections::{BTreeMap, VecDeque};

use acs_events::{Backend, ReplicaId, WorkerId};

use super::{Member, Phase};
use crate::config::Rebalance;
use crate::placement::Candidate;
use crate::world::Millis;

/// The budget window.
pub(super) const WINDOW_MS: Millis = 60_000;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pick {
    pub replica: ReplicaId,
    pub from: WorkerId,
    pub to: WorkerId,
    pub reason: String,
}

/// Moves started within the budget window before `now`.
pub(super) fn recent(moves: &VecDeque<Millis>, now: Millis) -> usize {
    moves
        .iter()
        .filter(|at| now.saturating_sub(**at) < WINDOW_MS)
        .count()
}

pub(super) fn pick(
    cfg: &Rebalance,
    members: &[Member],
    published: &BTreeMap<ReplicaId, Backend>,
    candidates: &[Candidate],
    worker_cpu: impl Fn(&WorkerId) -> f64,
    moves: &VecDeque<Millis>,
    now: Millis,
) -> Option<Pick> {
    if !cfg.enabled || recent(moves, now) >= cfg.moves_per_minute as usize {
        return None;
    }
    let serving: Vec<&Member> = members
        .iter()
        .filter(|m| m.phase == Phase::Healthy && published.get(m.id).is_some_and(|b| !b.draining))
        .collect();
    let mut per_worker: BTreeMap<&WorkerId, u32> = BTreeMap::new();
    for m in &serving {
        *per_worker.entry(m.worker).or_default() += 1;
    }
    // Hottest first; ties by id so the choice is deterministic.
    let (hot, hot_count) = per_worker
        .iter()
        .max_by(|(a, _), (b, _)| {
            worker_cpu(a)
                .total_cmp(&worker_cpu(b))
                .then_with(|| b.cmp(a))
        })
        .map(|(w, n)| ((*w).clone(), *n))?;
    let hot_cpu = worker_cpu(&hot);
    let cold = candidates
        .iter()
        // After the move it runs at most what the hot worker ran: the spread never gets worse.
        .filter(|c| c.id != hot && c.running < c.max_replicas && c.of_service < hot_count)
        .min_by(|a, b| {
            a.cpu_pct
                .total_cmp(&b.cpu_pct)
                .then_with(|| a.id.cmp(&b.id))
        })?;
    let gap = hot_cpu - cold.cpu_pct;
    if gap <= cfg.cpu_gap_pct {
        return None;
    }
    let victim = serving
        .iter()
        .filter(|m| *m.worker == hot)
        .max_by_key(|m| (m.started_ms, m.id.clone()))?;
    let reason = format!(
        "rebalance: {hot} runs at cpu {hot_cpu:.0}%, {} at {:.0}% ({gap:.0} points apart, more than {:.0}); \
         moving {} there make-before-break ({} of {} moves this minute)",
        cold.id,
        cold.cpu_pct,
        cfg.cpu_gap_pct,
        victim.id,
        recent(moves, now) + 1,
        cfg.moves_per_minute
    );
    Some(Pick {
        replica: victim.id.clone(),
        from: hot,
        to: cold.id.clone(),
        reason,
    })
}

/// This round's rebalance for one service: the replica in motion (kept until it has left), or
/// a new pick when the service is steady. Returns the replicas leaving by rebalance, and the
/// reason to give the replacement's placement when a move starts now.
#[allow(clippy::too_many_arguments)]
pub(super) fn step(
    plan: &mut super::Plan,
    world: &crate::world::World,
    name: &acs_events::ServiceName,
    svc: &crate::config::ServiceConfig,
    state: &crate::world::ServiceState,
    members: &[Member],
    fresh: &std::collections::BTreeSet<&WorkerId>,
    desired: u32,
    draining: &std::collections::BTreeSet<WorkerId>,
    hold: bool,
    now: crate::world::Now,
) -> (std::collections::BTreeSet<ReplicaId>, Option<String>) {
    let mut leaving = std::collections::BTreeSet::new();
    if let Some(r) = &state.moves.moving {
        if members.iter().any(|m| m.id == r && m.phase.active()) {
            leaving.insert(r.clone());
        } else {
            // Released to the drain (or gone): this move is over.
            plan.bookkeeping.rebalance.push((name.clone(), None));
        }
        return (leaving, None);
    }
    let active = members.iter().filter(|m| m.phase.active()).count() as u32;
    let steady = active == desired && !hold && !members.iter().any(|m| draining.contains(m.worker));
    if !svc.rebalance.enabled || !steady {
        return (leaving, None);
    }
    let candidates = super::scale_out::candidates(world, now.mono, name, fresh);
    let cpu = |w: &WorkerId| world.workers().get(w).map_or(0.0, |w| w.last.host.cpu_pct);
    let Some(p) = pick(
        &svc.rebalance,
        members,
        &state.routing.published,
        &candidates,
        cpu,
        &state.moves.begun,
        now.mono,
    ) else {
        return (leaving, None);
    };
    leaving.insert(p.replica.clone());
    plan.bookkeeping
        .rebalance
        .push((name.clone(), Some(p.replica)));
    (leaving, Some(p.reason))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, member};
    use super::*;

    fn cfg() -> Rebalance {
        Rebalance {
            enabled: true,
            moves_per_minute: 1,
            cpu_gap_pct: 40.0,
        }
    }

    fn published(ids: &[&str]) -> BTreeMap<ReplicaId, Backend> {
        ids.iter()
            .map(|r| {
                (
                    id(r),
                    Backend {
                        id: id(r),
                        addr: "127.0.0.1:1".into(),
                        worker: id("w"),
                        draining: false,
                    },
                )
            })
            .collect()
    }

    fn cand(w: &str, running: u32, of_service: u32, cpu: f64) -> Candidate {
        Candidate {
            id: id(w),
            running,
            max_replicas: 4,
            of_service,
            cpu_pct: cpu,
        }
    }

    fn cpu(w: &WorkerId) -> f64 {
        match w.as_str() {
            "w1" => 95.0,
            "w2" => 50.0,
            _ => 10.0,
        }
    }

    fn members() -> Vec<Member<'static>> {
        let mut a = member("a", "w1", Phase::Healthy);
        let mut b = member("b", "w1", Phase::Healthy);
        let c = member("c", "w2", Phase::Healthy);
        a.started_ms = 1;
        b.started_ms = 2;
        vec![a, b, c]
    }

    #[test]
    fn the_newest_replica_on_the_hottest_worker_moves_to_the_coldest() {
        let cands = [cand("w2", 1, 1, 50.0), cand("w3", 0, 0, 10.0)];
        let p = pick(
            &cfg(),
            &members(),
            &published(&["a", "b", "c"]),
            &cands,
            cpu,
            &VecDeque::new(),
            0,
        )
        .unwrap();
        assert_eq!(
            (p.replica.as_str(), p.from.as_str(), p.to.as_str()),
            ("b", "w1", "w3")
        );
        assert!(
            p.reason.contains("95%") && p.reason.contains("10%") && p.reason.contains("1 of 1"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn off_by_default_and_needs_a_gap() {
        let cands = [cand("w3", 0, 0, 10.0)];
        let off = Rebalance::default();
        assert!(pick(
            &off,
            &members(),
            &published(&["a", "b", "c"]),
            &cands,
            cpu,
            &VecDeque::new(),
            0
        )
        .is_none());
        let warm = [cand("w3", 0, 0, 60.0)];
        assert!(
            pick(
                &cfg(),
                &members(),
                &published(&["a", "b", "c"]),
                &warm,
                cpu,
                &VecDeque::new(),
                0
            )
            .is_none(),
            "35 points is under 40"
        );
    }

    #[test]
    fn the_budget_holds_moves_per_minute() {
        let cands = [cand("w3", 0, 0, 10.0)];
        let moves: VecDeque<Millis> = [10_000].into();
        assert!(pick(
            &cfg(),
            &members(),
            &published(&["a", "b", "c"]),
            &cands,
            cpu,
            &moves,
            30_000
        )
        .is_none());
        assert!(
            pick(
                &cfg(),
                &members(),
                &published(&["a", "b", "c"]),
                &cands,
                cpu,
                &moves,
                70_001
            )
            .is_some(),
            "a minute later"
        );
    }

    #[test]
    fn never_onto_a_full_worker_nor_one_that_would_undo_the_spread() {
        let full = [Candidate {
            max_replicas: 1,
            ..cand("w3", 1, 0, 10.0)
        }];
        assert!(pick(
            &cfg(),
            &members(),
            &published(&["a", "b", "c"]),
            &full,
            cpu,
            &VecDeque::new(),
            0
        )
        .is_none());
        // w1 runs 1 replica of the service, w3 runs 1 already: moving would not spread anything.
        let ms = vec![
            member("a", "w1", Phase::Healthy),
            member("c", "w3", Phase::Healthy),
        ];
        let same = [cand("w3", 1, 1, 10.0)];
        assert!(pick(
            &cfg(),
            &ms,
            &published(&["a", "c"]),
            &same,
            cpu,
            &VecDeque::new(),
            0
        )
        .is_none());
    }

    #[test]
    fn only_serving_replicas_count() {
        let ms = vec![member("a", "w1", Phase::Starting)];
        let cands = [cand("w3", 0, 0, 10.0)];
        assert!(pick(
            &cfg(),
            &ms,
            &published(&[]),
            &cands,
            cpu,
            &VecDeque::new(),
            0
        )
        .is_none());
    }
}
