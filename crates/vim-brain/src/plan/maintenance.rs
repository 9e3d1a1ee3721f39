//! Moves off draining workers, make-before-break (`acs.cmd.maintenance` drain). Pure.
//!
//! Per service, while some of its active replicas sit on a draining worker:
//! - if removing one of them still leaves `desired` replicas serving and published (or it is
//!   not serving at all), it is *released*: scale-in drains it (backends Drain, evidence from
//!   every live proxy or the deadline, then stop), and prefers it over any other victim;
//! - otherwise the service's target is `desired + 1`: scale-out starts one replacement on a
//!   worker that is not cordoned, and scale-in leaves both alone (a move is not a surplus).
//!
//! So at most one replica per service is in motion at a time, and the old one serves until the
//! new one does. With nowhere to go, the old one keeps serving and the move is `blocked`.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{Backend, Decision, DecisionAction, ReplicaId, ServiceName, WorkerId};

use super::{decision, Member, Phase};
use crate::world::Now;

/// What the drains ask of one service's plan this round.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Moves {
    /// The count scale-out and scale-in aim for (`desired`, or `desired + 1` during a move).
    pub target: u32,
    /// Replicas on draining workers: scale-in takes these first.
    pub leaving: BTreeSet<ReplicaId>,
    /// Set when a replacement is needed; its reason, for the placement decision.
    pub replacing: Option<(ReplicaId, WorkerId)>,
    /// The relocation explained, once the replacement serves and the old one is released.
    pub decision: Option<Decision>,
}

pub(super) fn moves(
    service: &ServiceName,
    members: &[Member],
    desired: u32,
    published: &BTreeMap<ReplicaId, Backend>,
    draining: &BTreeSet<WorkerId>,
    rebalancing: &BTreeSet<ReplicaId>,
    now: Now,
) -> Moves {
    // Leaving: on a draining worker, or picked by the rebalance.
    let is_leaving = |m: &Member| draining.contains(m.worker) || rebalancing.contains(m.id);
    let on: Vec<&Member> = members
        .iter()
        .filter(|m| m.phase.active() && is_leaving(m))
        .collect();
    let mut out = Moves {
        target: desired,
        leaving: on.iter().map(|m| m.id.clone()).collect(),
        ..Moves::default()
    };
    let Some(first) = on.first() else { return out };
    let serving =
        |m: &Member| m.phase == Phase::Healthy && published.get(m.id).is_some_and(|b| !b.draining);
    let off: Vec<&Member> = members
        .iter()
        .filter(|m| !is_leaving(m))
        .filter(|m| serving(m))
        .collect();
    let on_serving = on.iter().filter(|m| serving(m)).count() as u32;
    let off_serving = off.len() as u32;
    // A replica on a draining worker that is not serving goes at once: nothing to lose.
    let idle = on.iter().find(|m| !serving(m)).copied();
    if idle.is_some() || off_serving + on_serving > desired {
        let old = idle.unwrap_or(first);
        if let Some(new) = off
            .iter()
            .max_by_key(|m| (m.started_ms, m.id.clone()))
            .filter(|_| idle.is_none())
        {
            let action = DecisionAction::Relocate {
                replica: old.id.clone(),
                from: old.worker.clone(),
                replacement: new.id.clone(),
                to: new.worker.clone(),
            };
            let why = if draining.contains(old.worker) {
                format!("{} is draining", old.worker)
            } else {
                format!("rebalance off {}", old.worker)
            };
            let reason = format!(
                "{why}: replacement {} serves on {} ({off_serving} serving elsewhere, {desired} desired), so {} is drained now",
                new.id, new.worker, old.id
            );
            out.decision = Some(decision(service, now, action, reason, BTreeMap::new()));
        }
        // Scale-in removes down to `desired`, leaving replicas first.
        return out;
    }
    out.target = desired + 1;
    out.replacing = Some((first.id.clone(), first.worker.clone()));
    out
}

/// Why a move cannot start: the old replica keeps serving.
pub(super) fn blocked_reason(
    replica: &ReplicaId,
    worker: &WorkerId,
    placement_blocked: &str,
) -> String {
    format!("cannot move {replica} off draining worker {worker}: no other worker can take it ({placement_blocked}); it keeps serving")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, member, now};
    use super::*;

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

    fn draining() -> BTreeSet<WorkerId> {
        [id("w1")].into()
    }

    #[test]
    fn nothing_to_move_keeps_the_target() {
        let ms = [member("a", "w2", Phase::Healthy)];
        let out = moves(
            &id("web"),
            &ms,
            1,
            &published(&["a"]),
            &draining(),
            &BTreeSet::new(),
            now(0),
        );
        assert_eq!(
            out,
            Moves {
                target: 1,
                ..Moves::default()
            }
        );
    }

    #[test]
    fn make_before_break_across_rounds() {
        // Round 1: both replicas on w1 serve; ask for one replacement.
        let mut ms = vec![
            member("a", "w1", Phase::Healthy),
            member("b", "w1", Phase::Healthy),
        ];
        let out = moves(
            &id("web"),
            &ms,
            2,
            &published(&["a", "b"]),
            &draining(),
            &BTreeSet::new(),
            now(0),
        );
        assert_eq!(out.target, 3);
        assert_eq!(out.replacing, Some((id("a"), id("w1"))));
        // Round 2: the replacement starts; not serving yet, so nothing is released.
        ms.push(member("c", "w2", Phase::Starting));
        let out = moves(
            &id("web"),
            &ms,
            2,
            &published(&["a", "b"]),
            &draining(),
            &BTreeSet::new(),
            now(1),
        );
        assert_eq!((out.target, out.decision.is_none()), (3, true));
        // Round 3: healthy but not yet published: still wait.
        ms[2].phase = Phase::Healthy;
        let out = moves(
            &id("web"),
            &ms,
            2,
            &published(&["a", "b"]),
            &draining(),
            &BTreeSet::new(),
            now(2),
        );
        assert_eq!(out.target, 3);
        // Round 4: published: release the old one (scale-in to 2 drains a leaving replica).
        let out = moves(
            &id("web"),
            &ms,
            2,
            &published(&["a", "b", "c"]),
            &draining(),
            &BTreeSet::new(),
            now(3),
        );
        assert_eq!(out.target, 2);
        assert!(out.leaving.contains(&id::<ReplicaId>("a")));
        let d = out.decision.unwrap();
        assert!(
            matches!(d.action, DecisionAction::Relocate { ref replacement, .. } if replacement.as_str() == "c")
        );
        // Round 5: a is draining (not active): b is next, and needs its own replacement first.
        ms[0].phase = Phase::Draining {
            since: 3,
            version: 1,
            deadline: 100,
        };
        let out = moves(
            &id("web"),
            &ms,
            2,
            &published(&["b", "c"]),
            &draining(),
            &BTreeSet::new(),
            now(4),
        );
        assert_eq!(out.target, 3);
        assert_eq!(out.replacing, Some((id("b"), id("w1"))));
    }

    #[test]
    fn a_not_serving_replica_leaves_at_once() {
        let ms = [
            member("a", "w1", Phase::Starting),
            member("b", "w2", Phase::Healthy),
        ];
        let out = moves(
            &id("web"),
            &ms,
            2,
            &published(&["b"]),
            &draining(),
            &BTreeSet::new(),
            now(0),
        );
        assert_eq!(out.target, 2);
        assert_eq!(out.decision, None);
    }

    #[test]
    fn blocked_reason_says_it_keeps_serving() {
        let r = blocked_reason(&id("a"), &id("w1"), "no live worker has room");
        assert!(r.ends_with("it keeps serving"), "{r}");
    }
}
