//! Step 6: too many replicas: choose victims (see [`crate::placement::victim_order`]); a replica
//! not serving yet is stopped at once, a serving one is drained first. Then the drains that
//! finished (or ran out of time) are stopped, and stops not yet reflected are retried. A drain
//! finishes on fresh evidence from every live proxy: its metrics, or at once its
//! `BackendDrained` event.

use std::collections::{BTreeMap, BTreeSet};

use acs_events::{Decision, DecisionAction, ReplicaId, ServiceName, ServiceTraffic, WorkerId};

use super::{decision, Member, Phase, Stop};
use crate::config::Policy;
use crate::placement::{self, VictimCandidate};
use crate::world::{Drained, Millis, Now};

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
    leaving: &BTreeSet<ReplicaId>,
    now: Now,
) -> ScaleIn {
    let mut out = ScaleIn::default();
    let active: Vec<&Member> = members.iter().filter(|m| m.phase.active()).collect();
    let Some(excess) = (active.len() as u32)
        .checked_sub(desired)
        .filter(|n| *n > 0)
    else {
        return out;
    };
    let mut per_worker: BTreeMap<&WorkerId, u32> = BTreeMap::new();
    for m in &active {
        *per_worker.entry(m.worker).or_default() += 1;
    }
    let mut victims: Vec<VictimCandidate> = active
        .iter()
        .map(|m| VictimCandidate {
            id: m.id.clone(),
            worker: m.worker.clone(),
            not_serving: m.phase != Phase::Healthy,
            worker_of_service: per_worker[&m.worker],
            worker_cpu_pct: worker_cpu_pct(m.worker),
            started_ms: m.started_ms,
        })
        .collect();
    // Replicas moving off a draining worker go first (see `maintenance.rs`).
    victims.sort_by(|a, b| {
        leaving
            .contains(&b.id)
            .cmp(&leaving.contains(&a.id))
            .then(placement::victim_order(a, b))
    });
    for victim in victims.into_iter().take(excess as usize) {
        let m = members
            .iter_mut()
            .find(|m| *m.id == victim.id)
            .expect("victim is a member");
        if victim.not_serving {
            let reason = format!("scale-in to {desired}: not serving yet, stopped without drain");
            let stop = Stop {
                replica: m.id.clone(),
                worker: m.worker.clone(),
                attempt: 1,
                grace_s: policy.stop_grace_s,
                reason,
            };
            out.steps.push(Victim::Stop(stop));
            m.phase = Phase::Stopping {
                sent: now.mono,
                attempt: 1,
            };
        } else {
            let deadline = now.mono + (policy.drain_timeout_s * 1000.0) as u64;
            // The version is filled in once the backend diff has one.
            m.phase = Phase::Draining {
                since: now.mono,
                version: 0,
                deadline,
            };
            out.newly_draining.insert(m.id.clone());
            let action = DecisionAction::Drain {
                replica: m.id.clone(),
                worker: m.worker.clone(),
            };
            let reason = format!(
                "scale-in to {desired}: no new requests; stops once every live proxy reports 0 in flight, or after {} s",
                policy.drain_timeout_s
            );
            out.steps.push(Victim::Drain(decision(
                service,
                now,
                action,
                reason,
                BTreeMap::new(),
            )));
        }
    }
    out
}

/// One live proxy's latest report, as the drains see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProxyReport<'a> {
    /// When the brain received it (monotonic).
    pub seen: Millis,
    /// Its entry for the service; `None` if it does not route the service (yet).
    pub traffic: Option<&'a ServiceTraffic>,
    /// Its `BackendDrained` events, by replica: evidence that does not wait for a metrics tick.
    pub drained: &'a BTreeMap<ReplicaId, Drained>,
}

/// Stops for drains that are done (or past their deadline) and retries of stops not yet
/// reflected after `stop_retry_ms`. `proxies` holds every live proxy's latest report.
pub(super) fn finish_drains(
    members: &mut [Member],
    newly_draining: &BTreeSet<ReplicaId>,
    proxies: &[ProxyReport],
    now: Millis,
    stop_grace_s: f64,
    stop_retry_ms: Millis,
) -> Vec<Stop> {
    let mut stops = Vec::new();
    for m in members.iter_mut() {
        let stop = |attempt, reason| Stop {
            replica: m.id.clone(),
            worker: m.worker.clone(),
            attempt,
            grace_s: stop_grace_s,
            reason,
        };
        match m.phase {
            Phase::Draining {
                since,
                version,
                deadline,
            } if !newly_draining.contains(m.id) => {
                let evidence = drain_evidence(proxies, m.id, since, version);
                let reason = match evidence {
                    Evidence::Drained { proxies, by_event: 0 } => Some(format!(
                        "drained in {} ms: no request in flight at any of the {proxies} live proxies",
                        now - since
                    )),
                    Evidence::Drained { proxies, by_event } => Some(format!(
                        "drained in {} ms: no request in flight at any of the {proxies} live proxies \
                         ({by_event} said so in a drained event)",
                        now - since
                    )),
                    _ if now < deadline => None,
                    Evidence::NoLiveProxy => {
                        Some("drain deadline passed with no live proxy to confirm it; stopped anyway".to_string())
                    }
                    Evidence::Waiting { not_fresh, not_applied, in_flight } => Some(deadline_reason(not_fresh, not_applied, in_flight)),
                };
                if let Some(reason) = reason {
                    stops.push(stop(1, reason));
                    m.phase = Phase::Stopping {
                        sent: now,
                        attempt: 1,
                    };
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

fn deadline_reason(not_fresh: usize, not_applied: usize, in_flight: u64) -> String {
    let mut why = Vec::new();
    if not_applied > 0 {
        why.push("before every proxy applied the drain".to_string());
    }
    if not_fresh > 0 {
        why.push("before every proxy reported since the drain began".to_string());
    }
    if in_flight > 0 {
        why.push(format!("with {in_flight} request(s) still in flight"));
    }
    format!("drain deadline passed {}", why.join("; "))
}

/// What the live proxies say about a drain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Evidence {
    /// No live proxy: nobody can confirm it; only the deadline ends it.
    NoLiveProxy,
    /// Every live proxy reported after the drain began, has applied its version, and has no
    /// request in flight to the replica; `by_event` of them in a `BackendDrained` event.
    Drained { proxies: usize, by_event: usize },
    /// Not yet: how many proxies have not reported since, have not applied it, and how many
    /// requests the others still have in flight.
    Waiting {
        not_fresh: usize,
        not_applied: usize,
        in_flight: u64,
    },
}

/// Fresh evidence only: a report the brain received after `since` (the drain's start), from a
/// proxy that has applied `version` (or a later one). A proxy that does not route the service
/// has not applied it. A `BackendDrained` event received after `since` at `version` or later
/// is such a report with nothing in flight (a draining backend gets no new requests).
fn drain_evidence(
    proxies: &[ProxyReport],
    replica: &ReplicaId,
    since: Millis,
    version: u64,
) -> Evidence {
    if proxies.is_empty() {
        return Evidence::NoLiveProxy;
    }
    let (mut not_fresh, mut not_applied, mut in_flight, mut by_event) = (0, 0, 0u64, 0);
    for p in proxies {
        // `>=`: the event may come back within the millisecond the drain began; its version
        // (the drain's or later) already says it is about this drain.
        if p.drained
            .get(replica)
            .is_some_and(|d| d.seen >= since && d.version >= version)
        {
            by_event += 1;
            continue;
        }
        match p.traffic {
            _ if p.seen <= since => not_fresh += 1,
            Some(t) if t.version >= version => {
                let n = t
                    .backends
                    .iter()
                    .find(|b| &b.id == replica)
                    .map_or(0, |b| b.traffic.in_flight);
                in_flight = in_flight.saturating_add(n);
            }
            _ => not_applied += 1,
        }
    }
    if not_fresh == 0 && not_applied == 0 && in_flight == 0 {
        Evidence::Drained {
            proxies: proxies.len(),
            by_event,
        }
    } else {
        Evidence::Waiting {
            not_fresh,
            not_applied,
            in_flight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, ids, member, now};
    use super::*;
    use acs_events::{BackendTraffic, Traffic};

    fn policy() -> Policy {
        Policy {
            drain_timeout_s: 5.0,
            stop_grace_s: 10.0,
            ..Policy::default()
        }
    }

    fn at_proxy(version: u64, in_flight: &[(&str, u64)]) -> ServiceTraffic {
        let backends = in_flight.iter().map(|(replica, n)| BackendTraffic {
            id: id(replica),
            traffic: Traffic {
                in_flight: *n,
                ..Default::default()
            },
            draining: true,
            ejected: false,
        });
        ServiceTraffic {
            service: id("web"),
            version,
            totals: Traffic::default(),
            backends: backends.collect(),
        }
    }

    #[test]
    fn a_starting_replica_goes_first_and_without_a_drain() {
        let mut members = [
            member("web-a", "w1", Phase::Healthy),
            member("web-b", "w1", Phase::Starting),
        ];
        let out = scale_in(
            &id("web"),
            &mut members,
            1,
            &policy(),
            |_| 0.0,
            &BTreeSet::new(),
            now(1_000),
        );
        let Victim::Stop(stop) = &out.steps[0] else {
            panic!("{out:?}")
        };
        assert_eq!((stop.replica.as_str(), stop.grace_s), ("web-b", 10.0));
        assert!(out.newly_draining.is_empty());
        assert_eq!(
            members[1].phase,
            Phase::Stopping {
                sent: 1_000,
                attempt: 1
            }
        );
    }

    #[test]
    fn a_serving_replica_drains_until_its_deadline() {
        let mut members = [
            member("web-a", "w1", Phase::Healthy),
            member("web-b", "w2", Phase::Healthy),
        ];
        let out = scale_in(
            &id("web"),
            &mut members,
            1,
            &policy(),
            |w| if w.as_str() == "w2" { 90.0 } else { 5.0 },
            &BTreeSet::new(),
            now(1_000),
        );
        let Victim::Drain(d) = &out.steps[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            d.action,
            DecisionAction::Drain {
                replica: id("web-b"),
                worker: id("w2")
            },
            "the busier worker"
        );
        assert_eq!(out.newly_draining, [id("web-b")].into());
        assert_eq!(
            members[1].phase,
            Phase::Draining {
                since: 1_000,
                version: 0,
                deadline: 6_000
            }
        );
        assert_eq!(
            scale_in(
                &id("web"),
                &mut members,
                1,
                &policy(),
                |_| 0.0,
                &BTreeSet::new(),
                now(1_000)
            ),
            ScaleIn::default()
        );
    }

    static NO_EVENTS: BTreeMap<ReplicaId, Drained> = BTreeMap::new();

    fn report(seen: Millis, traffic: &ServiceTraffic) -> ProxyReport<'_> {
        ProxyReport {
            seen,
            traffic: Some(traffic),
            drained: &NO_EVENTS,
        }
    }

    /// `web-b`, draining since 1 000 at version 7 until 6 000, as the live `proxies` see it `at`.
    fn run(proxies: &[ProxyReport], at: Millis) -> Vec<Stop> {
        let mut members = [member(
            "web-b",
            "w1",
            Phase::Draining {
                since: 1_000,
                version: 7,
                deadline: 6_000,
            },
        )];
        finish_drains(&mut members, &BTreeSet::new(), proxies, at, 10.0, 15_000)
    }

    #[test]
    fn a_drain_ends_when_every_proxy_applied_it_and_nothing_is_in_flight() {
        let (old, busy, idle) = (
            at_proxy(6, &[]),
            at_proxy(7, &[("web-b", 2)]),
            at_proxy(7, &[("web-b", 0)]),
        );
        assert!(
            run(&[report(1_500, &old)], 2_000).is_empty(),
            "drain not applied yet"
        );
        assert!(
            run(&[report(1_500, &busy)], 2_000).is_empty(),
            "two still in flight"
        );
        assert_eq!(
            run(&[report(1_500, &idle)], 2_000)[0].reason,
            "drained in 1000 ms: no request in flight at any of the 1 live proxies"
        );
        let late = run(&[report(5_500, &busy)], 6_000);
        assert_eq!(
            late[0].reason,
            "drain deadline passed with 2 request(s) still in flight"
        );
        let late = run(&[report(5_500, &old)], 6_000);
        assert_eq!(
            late[0].reason,
            "drain deadline passed before every proxy applied the drain"
        );
    }

    #[test]
    fn a_drain_needs_fresh_evidence_from_every_live_proxy() {
        let idle = at_proxy(7, &[("web-b", 0)]);
        // No live proxy at all: nobody can say it drained; only the deadline ends it.
        assert!(run(&[], 2_000).is_empty(), "no evidence, no stop");
        assert_eq!(
            run(&[], 6_000)[0].reason,
            "drain deadline passed with no live proxy to confirm it; stopped anyway"
        );
        // A report from before the drain began says nothing about it.
        assert!(
            run(&[report(1_000, &idle)], 2_000).is_empty(),
            "stale report"
        );
        // Every live proxy must confirm: one idle, one that does not route the service yet.
        let unrouted = ProxyReport {
            seen: 1_500,
            traffic: None,
            drained: &NO_EVENTS,
        };
        assert!(
            run(&[report(1_500, &idle), unrouted], 2_000).is_empty(),
            "one proxy has not applied it"
        );
        assert!(
            run(&[report(1_500, &idle), report(900, &idle)], 2_000).is_empty(),
            "one proxy not fresh"
        );
        let late = run(&[report(1_500, &idle), report(900, &idle)], 6_000);
        assert_eq!(
            late[0].reason,
            "drain deadline passed before every proxy reported since the drain began"
        );
        let both = run(&[report(1_500, &idle), report(1_600, &idle)], 2_000);
        assert_eq!(
            both[0].reason,
            "drained in 1000 ms: no request in flight at any of the 2 live proxies"
        );
    }

    #[test]
    fn a_drained_event_is_evidence_without_waiting_for_metrics() {
        // Both proxies' last metrics are from before the drain and show requests in flight.
        let busy = at_proxy(6, &[("web-b", 3)]);
        let event = |version, seen| BTreeMap::from([(id("web-b"), Drained { version, seen })]);
        let (fresh, stale, old_version) = (event(7, 1_020), event(7, 900), event(6, 1_020));
        let with = |drained| ProxyReport {
            seen: 800,
            traffic: Some(&busy),
            drained,
        };
        let stops = run(&[with(&fresh)], 1_030);
        assert_eq!(stops[0].reason, "drained in 30 ms: no request in flight at any of the 1 live proxies (1 said so in a drained event)");
        assert!(
            run(&[with(&stale)], 1_030).is_empty(),
            "an event from before this drain began"
        );
        assert!(
            run(&[with(&old_version)], 1_030).is_empty(),
            "an event at an older version"
        );
        // Every live proxy still has to confirm, by event or by metrics.
        let idle = at_proxy(7, &[("web-b", 0)]);
        assert!(
            run(&[with(&fresh), with(&NO_EVENTS)], 1_030).is_empty(),
            "the other proxy has not said so"
        );
        let both = run(&[with(&fresh), report(1_025, &idle)], 1_030);
        assert_eq!(both[0].reason, "drained in 30 ms: no request in flight at any of the 2 live proxies (1 said so in a drained event)");
    }

    #[test]
    fn new_drains_wait_and_stops_are_retried() {
        let mut members = [
            member(
                "web-a",
                "w1",
                Phase::Draining {
                    since: 0,
                    version: 0,
                    deadline: 0,
                },
            ),
            member(
                "web-b",
                "w1",
                Phase::Stopping {
                    sent: 0,
                    attempt: 1,
                },
            ),
            member(
                "web-c",
                "w1",
                Phase::Stopping {
                    sent: 10_000,
                    attempt: 1,
                },
            ),
        ];
        let stops = finish_drains(
            &mut members,
            &[id("web-a")].into(),
            &[],
            15_000,
            10.0,
            15_000,
        );
        assert_eq!(ids(&stops), ["web-b"]);
        assert_eq!((stops[0].attempt, stops[0].reason.as_str()), (2, ""));
    }
}
