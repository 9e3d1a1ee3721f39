//! Step 3 (and the last clean-up): replicas that were serving and vanished without a stop,
//! unhealthy replicas to replace, and `Starting` records a healthy replica no longer needs.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{Backend, Decision, DecisionAction, ReplicaId, ServiceName, WorkerId};

use super::{decision, Member, Phase, Stop};
use crate::world::{Intent, Millis, Now, Record};

/// A published backend that no member accounts for, and that this plan is not stopping, is
/// lost: say so (the proxies are told by the backend diff; the desired count replaces it).
pub(super) fn lost_replicas(
    service: &ServiceName,
    now: Now,
    published: &BTreeMap<ReplicaId, Backend>,
    members: &[Member],
    being_stopped: &BTreeSet<ReplicaId>,
    up: &BTreeSet<&WorkerId>,
) -> Vec<Decision> {
    // Membership only (the output follows `published`'s order), so a hash set will do.
    let member_ids: std::collections::HashSet<&ReplicaId> = members.iter().map(|m| m.id).collect();
    let lost = published
        .iter()
        .filter(|(id, _)| !member_ids.contains(id) && !being_stopped.contains(*id));
    lost.map(|(id, backend)| {
        let why = if up.contains(&backend.worker) {
            format!("{id} is no longer reported by {}", backend.worker)
        } else {
            format!("worker {} is down", backend.worker)
        };
        let action = DecisionAction::Lost {
            replica: id.clone(),
            worker: backend.worker.clone(),
        };
        let reason = format!("{why}; removed from rotation and replaced if still needed");
        decision(service, now, action, reason, BTreeMap::new())
    })
    .collect()
}

/// Unhealthy for `grace_ms` or longer: stop it. It then no longer counts, so it is replaced.
pub(super) fn replace_unhealthy(
    members: &mut [Member],
    now: Millis,
    grace_ms: Millis,
    stop_grace_s: f64,
) -> Vec<Stop> {
    let mut stops = Vec::new();
    for m in members.iter_mut() {
        let Phase::Unhealthy { since } = m.phase else {
            continue;
        };
        if now.saturating_sub(since) >= grace_ms {
            let reason = format!("unhealthy for {} s; replacing it", (now - since) / 1000);
            stops.push(Stop {
                replica: m.id.clone(),
                worker: m.worker.clone(),
                attempt: 1,
                grace_s: stop_grace_s,
                reason,
            });
            m.phase = Phase::Stopping {
                sent: now,
                attempt: 1,
            };
        }
    }
    stops
}

/// Healthy replicas whose `Starting` record can go.
pub(super) fn started_records_done(
    members: &[Member],
    records: &BTreeMap<ReplicaId, Record>,
) -> Vec<ReplicaId> {
    let starting = |id: &ReplicaId| {
        matches!(
            records.get(id),
            Some(Record {
                intent: Intent::Starting { .. },
                ..
            })
        )
    };
    members
        .iter()
        .filter(|m| m.phase == Phase::Healthy && starting(m.id))
        .map(|m| m.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, ids, member, now};
    use super::*;

    fn backend(replica: &str, worker: &str) -> (ReplicaId, Backend) {
        let b = Backend {
            id: id(replica),
            addr: "127.0.0.1:1".into(),
            worker: id(worker),
            draining: false,
        };
        (id(replica), b)
    }

    #[test]
    fn a_published_replica_nobody_reports_is_lost() {
        let published: BTreeMap<_, _> = [
            backend("web-a", "w1"),
            backend("web-b", "w2"),
            backend("web-c", "w1"),
        ]
        .into();
        let members = [member("web-a", "w1", Phase::Healthy)];
        let being_stopped = [id("web-c")].into();
        let w1 = id("w1");
        let up = [&w1].into();
        let lost = lost_replicas(
            &id("web"),
            now(0),
            &published,
            &members,
            &being_stopped,
            &up,
        );
        assert_eq!(
            lost.len(),
            1,
            "web-a is reported, web-c is being stopped: {lost:?}"
        );
        assert_eq!(
            lost[0].action,
            DecisionAction::Lost {
                replica: id("web-b"),
                worker: id("w2")
            }
        );
        assert_eq!(
            lost[0].reason,
            "worker w2 is down; removed from rotation and replaced if still needed"
        );
    }

    #[test]
    fn lost_replicas_are_found_whatever_the_members_order() {
        let published: BTreeMap<_, _> = ["web-a", "web-b", "web-c", "web-d", "web-e", "web-f"]
            .map(|r| backend(r, "w1"))
            .into();
        // Members come in gather order (by worker), not by id; one is not published at all.
        let members =
            ["web-e", "web-a", "web-zz", "web-c"].map(|r| member(r, "w1", Phase::Healthy));
        let being_stopped = [id("web-f")].into();
        let w1 = id("w1");
        let up = [&w1].into();
        let lost = lost_replicas(
            &id("web"),
            now(0),
            &published,
            &members,
            &being_stopped,
            &up,
        );
        let replicas: Vec<_> = lost
            .iter()
            .map(|d| match &d.action {
                DecisionAction::Lost { replica, .. } => replica.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(replicas, ["web-b", "web-d"]);
        assert_eq!(
            lost[0].reason,
            "web-b is no longer reported by w1; removed from rotation and replaced if still needed"
        );
        assert!(lost_replicas(&id("web"), now(0), &published, &[], &being_stopped, &up).len() == 5);
    }

    #[test]
    fn unhealthy_past_the_grace_is_stopped() {
        let mut members = [
            member("web-a", "w1", Phase::Unhealthy { since: 0 }),
            member("web-b", "w1", Phase::Unhealthy { since: 20_000 }),
        ];
        let stops = replace_unhealthy(&mut members, 30_000, 30_000, 10.0);
        assert_eq!(ids(&stops), ["web-a"]);
        assert_eq!(stops[0].reason, "unhealthy for 30 s; replacing it");
        assert_eq!(stops[0].grace_s, 10.0);
        assert_eq!(
            members[0].phase,
            Phase::Stopping {
                sent: 30_000,
                attempt: 1
            }
        );
        assert_eq!(members[1].phase, Phase::Unhealthy { since: 20_000 });
    }

    #[test]
    fn a_healthy_replica_drops_its_starting_record() {
        let record = |intent| Record {
            service: id("web"),
            worker: id("w1"),
            intent,
        };
        let records: BTreeMap<ReplicaId, Record> = [
            (id("web-a"), record(Intent::Starting { since: 0 })),
            (id("web-b"), record(Intent::Starting { since: 0 })),
            (
                id("web-c"),
                record(Intent::Stopping {
                    sent: 0,
                    attempt: 1,
                }),
            ),
        ]
        .into();
        let members = [
            member("web-a", "w1", Phase::Healthy),
            member("web-b", "w1", Phase::Starting),
            member("web-c", "w1", Phase::Healthy),
        ];
        assert_eq!(
            started_records_done(&members, &records),
            [id::<ReplicaId>("web-a")]
        );
    }
}
