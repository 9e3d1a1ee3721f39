//! Step 4: how many replicas a service should have now: its manual pin, or its policy's
//! recommendation over the measured signals, stabilised and stepped.

use std::collections::BTreeMap;

use acs_events::{Decision, DecisionAction, ServiceName, ServiceTraffic};

use super::{decision, Member, Phase};
use crate::config::Policy;
use crate::policy::{self, Measured};
use crate::world::{Now, Scale};

#[derive(Debug, PartialEq)]
pub(super) struct Desired {
    pub count: u32,
    /// The recommendation to remember for the stabilisation windows (`None` while pinned).
    pub recommendation: Option<u32>,
    /// A change of the desired count, explained.
    pub decision: Option<Decision>,
}

/// The figures the signals read: the ready replicas' CPU and each live proxy's totals.
pub(super) fn measure(
    members: &[Member],
    cpus: Option<f64>,
    traffic: &[&ServiceTraffic],
) -> Measured {
    let per_replica_cores = cpus.unwrap_or(1.0);
    let ready: Vec<&Member> = members
        .iter()
        .filter(|m| m.phase == Phase::Healthy)
        .collect();
    Measured {
        ready: ready.len() as u32,
        replica_cpu_pct: ready
            .iter()
            .map(|m| m.cpu_pct / per_replica_cores)
            .collect(),
        proxies: traffic.iter().map(|t| t.totals).collect(),
    }
}

/// `active` replicas count (pending, starting, healthy, unhealthy); `state` holds what the
/// brain decided before (desired count, pin, history, last change).
pub(super) fn desired_count(
    service: &ServiceName,
    policy: &Policy,
    state: &Scale,
    active: u32,
    measured: &Measured,
    now: Now,
) -> Desired {
    let current = state
        .desired
        .unwrap_or_else(|| active.clamp(policy.min_replicas, policy.max_replicas));
    if let Some(pinned) = state.manual {
        let decision = (state.desired != Some(pinned)).then(|| {
            let action = DecisionAction::Scale {
                from: current,
                to: pinned,
                manual: true,
            };
            let reason =
                format!("manual scale to {pinned}; policy overridden until scaled with auto");
            decision(service, now, action, reason, BTreeMap::new())
        });
        return Desired {
            count: pinned,
            recommendation: None,
            decision,
        };
    }
    if state.pin_unreadable {
        // Held as if pinned, at what runs: the operator's value is unknown, and handing the
        // service to its policy could stop replicas the pin was keeping (announced at take-over).
        return Desired {
            count: current,
            recommendation: None,
            decision: None,
        };
    }
    let first_plan = state.desired.is_none();
    let recommended = policy::recommend(policy, current, measured);
    let mut stabilized = policy::stabilize(
        policy,
        current,
        recommended.replicas,
        &state.history,
        now.mono,
    );
    let step_ms = (policy.step_interval_s * 1000.0) as u64;
    let changed_recently = state
        .last_change
        .is_some_and(|at| now.mono.saturating_sub(at) < step_ms);
    if first_plan || (stabilized.desired != current && changed_recently) {
        // First plan since the brain started: keep what runs (and recording `current` as a
        // recommendation makes the scale-down window hold it until there is evidence). Or the
        // last step is too recent to have been measured yet.
        stabilized.desired = current;
    }
    let decision = (!first_plan && stabilized.desired != current).then(|| {
        let mut reason = recommended.reason.clone();
        if let Some(limit) = &stabilized.limited_by {
            reason.push_str(&format!("; limited by {limit}"));
        }
        let action = DecisionAction::Scale {
            from: current,
            to: stabilized.desired,
            manual: false,
        };
        decision(service, now, action, reason, recommended.inputs.clone())
    });
    let remembered = if first_plan {
        recommended.replicas.max(current)
    } else {
        recommended.replicas
    };
    Desired {
        count: stabilized.desired,
        recommendation: Some(remembered),
        decision,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, member, now};
    use super::*;
    use acs_events::Traffic;

    fn policy() -> Policy {
        Policy {
            min_replicas: 1,
            max_replicas: 8,
            target_rps_per_replica: Some(20.0),
            ..Policy::default()
        }
    }

    fn load(ready: u32, rps: f64) -> Measured {
        Measured {
            ready,
            proxies: vec![Traffic {
                rps,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn settled(desired: u32) -> Scale {
        Scale {
            desired: Some(desired),
            ..Scale::default()
        }
    }

    #[test]
    fn measures_ready_replicas_and_every_proxy() {
        let members = [
            member("web-a", "w1", Phase::Healthy),
            member("web-b", "w1", Phase::Starting),
            member(
                "web-c",
                "w1",
                Phase::Draining {
                    since: 0,
                    version: 1,
                    deadline: 9,
                },
            ),
        ];
        let traffic = ServiceTraffic {
            service: id("web"),
            version: 1,
            totals: Traffic {
                rps: 5.0,
                ..Default::default()
            },
            backends: vec![],
        };
        let measured = measure(&members, Some(0.5), &[&traffic, &traffic]);
        assert_eq!(measured.ready, 1);
        assert_eq!(measured.replica_cpu_pct, [0.0]);
        assert_eq!(measured.proxies.len(), 2);
    }

    #[test]
    fn the_first_plan_keeps_what_runs() {
        let out = desired_count(
            &id("web"),
            &policy(),
            &Scale::default(),
            3,
            &load(3, 0.0),
            now(0),
        );
        assert_eq!(
            (out.count, out.recommendation),
            (3, Some(3)),
            "remembered as at least current"
        );
        assert_eq!(out.decision, None);
    }

    #[test]
    fn load_scales_out_with_a_reason() {
        let out = desired_count(
            &id("web"),
            &policy(),
            &settled(2),
            2,
            &load(2, 100.0),
            now(10_000),
        );
        assert_eq!((out.count, out.recommendation), (5, Some(5)));
        let decision = out.decision.unwrap();
        assert_eq!(
            decision.action,
            DecisionAction::Scale {
                from: 2,
                to: 5,
                manual: false
            }
        );
        assert!(
            decision
                .reason
                .starts_with("rps 50.0 rps/replica over 2 ready"),
            "{}",
            decision.reason
        );
    }

    #[test]
    fn no_new_step_within_the_step_interval() {
        let state = Scale {
            last_change: Some(9_000),
            ..settled(2)
        };
        let out = desired_count(
            &id("web"),
            &policy(),
            &state,
            2,
            &load(2, 100.0),
            now(10_000),
        );
        assert_eq!(
            (out.count, out.recommendation, out.decision),
            (2, Some(5), None)
        );
    }

    #[test]
    fn a_pin_wins_and_is_announced_once() {
        let pinned = Scale {
            manual: Some(6),
            ..settled(2)
        };
        let out = desired_count(&id("web"), &policy(), &pinned, 2, &load(2, 0.0), now(0));
        assert_eq!((out.count, out.recommendation), (6, None));
        assert_eq!(
            out.decision.unwrap().action,
            DecisionAction::Scale {
                from: 2,
                to: 6,
                manual: true
            }
        );
        let held = Scale {
            manual: Some(6),
            ..settled(6)
        };
        assert_eq!(
            desired_count(&id("web"), &policy(), &held, 6, &load(6, 0.0), now(0)).decision,
            None
        );
    }
}
