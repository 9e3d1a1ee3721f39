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
mod tests;
