//! Step 6: too many replicas: choose victims (see [`crate::placement::victim_order`]); a replica
//! not serving yet is stopped at once, a serving one is drained first. Then the drains that
//! finished (or ran out of time) are stopped, and stops not yet reflected are retried.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{Decision, DecisionAction, ReplicaId, ServiceName, ServiceTraffic, WorkerId};

use super::{decision, Member, Phase, Stop};
use crate::config::Policy;
use crate::placement::{self, VictimCandidate};
use crate::world::{Millis, Now};

/// What happens to one scale-in victim.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Victim {
    /// Not serving: stopped without a drain.
    Stop(Stop),
    /// Serving: out of rotation first (the backend diff tells the proxies), explained.
    Drain(Decision),
}

#[derive(Debug, Default, PartialEq)]
pub(super) struct ScaleIn {
    /// In victim order.
    pub steps: Vec<Victim>,
    /// Members that started draining in this plan; their drain version is the backend diff's.
    pub newly_draining: BTreeSet<ReplicaId>,
}

/// Picks `active - desired` victims among the active members and marks their new phase.
pub(super) fn scale_in(
    service: &ServiceName,
    members: &mut [Member],
    desired: u32,
    policy: &Policy,
    worker_cpu_pct: impl Fn(&WorkerId) -> f64,
    now: Now,
) -> ScaleIn {
    let mut out = ScaleIn::default();
    let active: Vec<&Member> = members.iter().filter(|m| m.phase.active()).collect();
    let Some(excess) = (active.len() as u32).checked_sub(desired).filter(|n| *n > 0) else { return out };
    let mut per_worker: BTreeMap<&WorkerId, u32> = BTreeMap::new();
    for m in &active {
        *per_worker.entry(&m.worker).or_default() += 1;
    }
    let mut victims: Vec<VictimCandidate> = active
        .iter()
        .map(|m| VictimCandidate {
            id: m.id.clone(),
            worker: m.worker.clone(),
            not_serving: m.phase != Phase::Healthy,
            worker_of_service: per_worker[&m.worker],
            worker_cpu_pct: worker_cpu_pct(&m.worker),
            started_ms: m.started_ms,
        })
        .collect();
    victims.sort_by(placement::victim_order);
    for victim in victims.into_iter().take(excess as usize) {
        let m = members.iter_mut().find(|m| m.id == victim.id).expect("victim is a member");
        if victim.not_serving {
            let reason = format!("scale-in to {desired}: not serving yet, stopped without drain");
            let stop = Stop { replica: m.id.clone(), worker: m.worker.clone(), attempt: 1, grace_s: policy.stop_grace_s, reason };
            out.steps.push(Victim::Stop(stop));
            m.phase = Phase::Stopping { sent: now.mono, attempt: 1 };
        } else {
            let deadline = now.mono + (policy.drain_timeout_s * 1000.0) as u64;
            // The version is filled in once the backend diff has one.
            m.phase = Phase::Draining { since: now.mono, version: 0, deadline };
            out.newly_draining.insert(m.id.clone());
            let action = DecisionAction::Drain { replica: m.id.clone(), worker: m.worker.clone() };
            let reason = format!(
                "scale-in to {desired}: no new requests; stops when in-flight reaches 0 or after {} s",
                policy.drain_timeout_s
            );
            out.steps.push(Victim::Drain(decision(service, now, action, reason, BTreeMap::new())));
        }
    }
    out
}

/// Stops for drains that are done (or past their deadline) and retries of stops not yet
/// reflected after `stop_retry_ms`. `traffic` is the service's entry at each live proxy.
pub(super) fn finish_drains(
    members: &mut [Member],
    newly_draining: &BTreeSet<ReplicaId>,
    traffic: &[&ServiceTraffic],
    now: Millis,
    stop_grace_s: f64,
    stop_retry_ms: Millis,
) -> Vec<Stop> {
    let mut stops = Vec::new();
    for m in members.iter_mut() {
        let stop = |attempt, reason| Stop { replica: m.id.clone(), worker: m.worker.clone(), attempt, grace_s: stop_grace_s, reason };
        match m.phase {
            Phase::Draining { since, version, deadline } if !newly_draining.contains(&m.id) => {
                let reason = match in_flight_left(traffic, &m.id, version) {
                    None => Some(format!("drained in {} ms: no request in flight", now - since)),
                    Some(u64::MAX) if now >= deadline => {
                        Some("drain deadline passed before every proxy applied the drain".to_string())
                    }
                    Some(n) if now >= deadline => Some(format!("drain deadline passed with {n} request(s) still in flight")),
                    Some(_) => None,
                };
                if let Some(reason) = reason {
                    stops.push(stop(1, reason));
                    m.phase = Phase::Stopping { sent: now, attempt: 1 };
                }
            }
            Phase::Stopping { sent, attempt } if now.saturating_sub(sent) >= stop_retry_ms => {
                stops.push(stop(attempt + 1, String::new()));
            }
            _ => {}
        }
    }
    stops
}

/// `None` when every proxy has applied `version` (or a later one) and has no request in flight
/// to `replica`; otherwise how many are left (`u64::MAX` if a proxy has not applied the drain).
fn in_flight_left(traffic: &[&ServiceTraffic], replica: &ReplicaId, version: u64) -> Option<u64> {
    let mut left = 0u64;
    for at_proxy in traffic {
        if at_proxy.version < version {
            return Some(u64::MAX);
        }
        if let Some(backend) = at_proxy.backends.iter().find(|b| &b.id == replica) {
            left = left.saturating_add(backend.traffic.in_flight);
        }
    }
    (left > 0).then_some(left)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, ids, member, now};
    use super::*;
    use acs_events::{BackendTraffic, Traffic};

    fn policy() -> Policy {
        Policy { drain_timeout_s: 5.0, stop_grace_s: 10.0, ..Policy::default() }
    }

    fn at_proxy(version: u64, in_flight: &[(&str, u64)]) -> ServiceTraffic {
        let backends = in_flight.iter().map(|(replica, n)| BackendTraffic {
            id: id(replica),
            traffic: Traffic { in_flight: *n, ..Default::default() },
            draining: true,
            ejected: false,
        });
        ServiceTraffic { service: id("web"), version, totals: Traffic::default(), backends: backends.collect() }
    }

    #[test]
    fn a_starting_replica_goes_first_and_without_a_drain() {
        let mut members = [member("web-a", "w1", Phase::Healthy), member("web-b", "w1", Phase::Starting)];
        let out = scale_in(&id("web"), &mut members, 1, &policy(), |_| 0.0, now(1_000));
        let Victim::Stop(stop) = &out.steps[0] else { panic!("{out:?}") };
        assert_eq!((stop.replica.as_str(), stop.grace_s), ("web-b", 10.0));
        assert!(out.newly_draining.is_empty());
        assert_eq!(members[1].phase, Phase::Stopping { sent: 1_000, attempt: 1 });
    }

    #[test]
    fn a_serving_replica_drains_until_its_deadline() {
        let mut members = [member("web-a", "w1", Phase::Healthy), member("web-b", "w2", Phase::Healthy)];
        let out = scale_in(&id("web"), &mut members, 1, &policy(), |w| if w.as_str() == "w2" { 90.0 } else { 5.0 }, now(1_000));
        let Victim::Drain(d) = &out.steps[0] else { panic!("{out:?}") };
        assert_eq!(d.action, DecisionAction::Drain { replica: id("web-b"), worker: id("w2") }, "the busier worker");
        assert_eq!(out.newly_draining, [id("web-b")].into());
        assert_eq!(members[1].phase, Phase::Draining { since: 1_000, version: 0, deadline: 6_000 });
        assert_eq!(scale_in(&id("web"), &mut members, 1, &policy(), |_| 0.0, now(1_000)), ScaleIn::default());
    }

    #[test]
    fn a_drain_ends_when_every_proxy_applied_it_and_nothing_is_in_flight() {
        let draining = Phase::Draining { since: 1_000, version: 7, deadline: 6_000 };
        let run = |traffic: &[&ServiceTraffic], at| {
            let mut members = [member("web-b", "w1", draining)];
            finish_drains(&mut members, &BTreeSet::new(), traffic, at, 10.0, 15_000)
        };
        assert!(run(&[&at_proxy(6, &[])], 2_000).is_empty(), "drain not applied yet");
        assert!(run(&[&at_proxy(7, &[("web-b", 2)])], 2_000).is_empty(), "two still in flight");
        assert_eq!(run(&[&at_proxy(7, &[("web-b", 0)])], 2_000)[0].reason, "drained in 1000 ms: no request in flight");
        let late = run(&[&at_proxy(7, &[("web-b", 2)])], 6_000);
        assert_eq!(late[0].reason, "drain deadline passed with 2 request(s) still in flight");
        let late = run(&[&at_proxy(6, &[])], 6_000);
        assert_eq!(late[0].reason, "drain deadline passed before every proxy applied the drain");
    }

    #[test]
    fn new_drains_wait_and_stops_are_retried() {
        let mut members = [
            member("web-a", "w1", Phase::Draining { since: 0, version: 0, deadline: 0 }),
            member("web-b", "w1", Phase::Stopping { sent: 0, attempt: 1 }),
            member("web-c", "w1", Phase::Stopping { sent: 10_000, attempt: 1 }),
        ];
        let stops = finish_drains(&mut members, &[id("web-a")].into(), &[], 15_000, 10.0, 15_000);
        assert_eq!(ids(&stops), ["web-b"]);
        assert_eq!((stops[0].attempt, stops[0].reason.as_str()), (2, ""));
    }
}
