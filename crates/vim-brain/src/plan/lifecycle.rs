//! A service's lifecycle state, from plain counts (Creating, Running, Partial-Running, ...).
//!
//! Rules, first match wins (`ready` = healthy replicas in rotation, `starting` = starts sent or
//! in progress, `leaving` = draining or stopping, `problem` = the crash-loop reason, else the
//! blocked reason):
//! 1. `Suspended`: desired 0 (pinned at 0, or the policy's minimum is 0).
//! 2. `Failed`: 0 ready and a problem: cannot be placed, or crash-looping; reason = that.
//! 3. `Creating`: 0 ready and no replica of it has ever been healthy.
//! 4. `Running`: ready >= desired and nothing starting or leaving.
//! 5. `Partial-Running`: some ready, fewer than desired, and a problem: `2/3: <problem>`.
//! 6. `Scaling`: anything else: replicas starting, draining or unhealthy toward the desired
//!    count: `2/3: 1 starting, 1 leaving`.
//!
//! The state a plan computes is set on each of the service's decisions in that plan; a change
//! is announced as a `lifecycle` decision and remembered through `Event::PlanSent`.

use std::collections::BTreeMap;

use acs_events::{DecisionAction, Lifecycle, LifecycleState, ServiceName};

use super::{decision, Member, Phase, Plan};
use crate::world::{LifecycleChange, Now, Status};

/// What the state is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs<'a> {
    pub desired: u32,
    pub ready: u32,
    pub starting: u32,
    pub unhealthy: u32,
    pub leaving: u32,
    pub pinned: bool,
    /// Why the brain cannot add replicas (`no worker has a free slot`).
    pub blocked: Option<&'a str>,
    /// The crash-loop reason, while the crash history stands.
    pub crash: Option<&'a str>,
    /// A replica of it has been healthy before.
    pub ever_ready: bool,
}

impl<'a> Inputs<'a> {
    /// Counts from the plan's members, plus the starts this plan sends.
    pub(super) fn count(members: &[Member], placed: u32) -> Self {
        let mut i = Inputs {
            starting: placed,
            ..Inputs::default()
        };
        for m in members {
            match m.phase {
                Phase::Healthy => i.ready += 1,
                Phase::Pending | Phase::Starting => i.starting += 1,
                Phase::Unhealthy { .. } => i.unhealthy += 1,
                Phase::Draining { .. } | Phase::Stopping { .. } => i.leaving += 1,
            }
        }
        i
    }
}

pub fn lifecycle(i: &Inputs) -> Lifecycle {
    let at = |state, reason: String| Lifecycle {
        state,
        reason: Some(reason),
    };
    let problem = i.crash.or(i.blocked);
    let frac = format!("{}/{}", i.ready, i.desired);
    if i.desired == 0 {
        let why = if i.pinned {
            "pinned at 0"
        } else {
            "scaled to 0 by its policy"
        };
        let reason = if i.leaving > 0 {
            format!("{why}; {} stopping", i.leaving)
        } else {
            why.to_string()
        };
        return at(LifecycleState::Suspended, reason);
    }
    if i.ready == 0 {
        if let Some(p) = problem {
            return at(LifecycleState::Failed, p.to_string());
        }
        if !i.ever_ready {
            return at(
                LifecycleState::Creating,
                format!("{} of {} replicas starting", i.starting, i.desired),
            );
        }
    }
    if i.ready >= i.desired && i.starting == 0 && i.leaving == 0 {
        return Lifecycle {
            state: LifecycleState::Running,
            reason: None,
        };
    }
    if i.ready < i.desired {
        if let Some(p) = problem {
            return at(LifecycleState::PartialRunning, format!("{frac}: {p}"));
        }
    }
    let parts: Vec<String> = [
        (i.starting, "starting"),
        (i.unhealthy, "unhealthy"),
        (i.leaving, "leaving"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let detail = if parts.is_empty() {
        "replicas to start".to_string()
    } else {
        parts.join(", ")
    };
    at(LifecycleState::Scaling, format!("{frac}: {detail}"))
}

/// Sets `lc` on the service's decisions in this plan, announces a change of state, records it.
pub(super) fn observe(
    plan: &mut Plan,
    service: &ServiceName,
    state: &Status,
    lc: Lifecycle,
    ever_ready: bool,
    now: Now,
) {
    let was = state.lifecycle.state;
    if lc.state != was {
        let action = DecisionAction::Lifecycle {
            from: was,
            to: lc.state,
        };
        let reason = lc.reason.clone().unwrap_or_default();
        plan.decisions
            .push(decision(service, now, action, reason, BTreeMap::new()));
    }
    for d in plan
        .decisions
        .iter_mut()
        .filter(|d| &d.service == service && d.lifecycle.is_none())
    {
        d.lifecycle = Some(lc.clone());
    }
    if lc != state.lifecycle || ever_ready != state.ever_ready {
        plan.bookkeeping.lifecycle.push(LifecycleChange {
            service: service.clone(),
            lifecycle: lc,
            ever_ready,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleState::*;

    fn of(i: Inputs) -> (LifecycleState, String) {
        let lc = lifecycle(&i);
        (lc.state, lc.reason.unwrap_or_default())
    }

    fn three() -> Inputs<'static> {
        Inputs {
            desired: 3,
            ever_ready: true,
            ..Inputs::default()
        }
    }

    #[test]
    fn suspended_when_pinned_at_zero() {
        assert_eq!(
            of(Inputs {
                pinned: true,
                leaving: 1,
                ..Inputs::default()
            }),
            (Suspended, "pinned at 0; 1 stopping".into())
        );
        assert_eq!(of(Inputs::default()).0, Suspended);
    }

    #[test]
    fn creating_until_the_first_healthy_replica() {
        let i = Inputs {
            desired: 3,
            starting: 3,
            ..Inputs::default()
        };
        assert_eq!(of(i), (Creating, "3 of 3 replicas starting".into()));
    }

    #[test]
    fn running_when_all_ready_and_still() {
        assert_eq!(
            of(Inputs {
                ready: 3,
                ..three()
            }),
            (Running, String::new())
        );
        assert_eq!(
            of(Inputs {
                ready: 3,
                crash: Some("crash loop: old"),
                ..three()
            })
            .0,
            Running,
            "healed"
        );
    }

    #[test]
    fn partial_running_when_short_and_stuck() {
        let i = Inputs {
            ready: 2,
            blocked: Some("no worker has a free slot"),
            ..three()
        };
        assert_eq!(
            of(i),
            (PartialRunning, "2/3: no worker has a free slot".into())
        );
        let i = Inputs {
            ready: 2,
            blocked: Some("no slot"),
            crash: Some("crash loop: web-7 exited"),
            ..three()
        };
        assert_eq!(
            of(i).1,
            "2/3: crash loop: web-7 exited",
            "the crash explains more than the slot"
        );
    }

    #[test]
    fn scaling_while_replicas_come_and_go() {
        assert_eq!(
            of(Inputs {
                ready: 2,
                starting: 1,
                ..three()
            }),
            (Scaling, "2/3: 1 starting".into())
        );
        assert_eq!(
            of(Inputs {
                ready: 3,
                leaving: 1,
                ..three()
            }),
            (Scaling, "3/3: 1 leaving".into())
        );
        assert_eq!(
            of(Inputs {
                ready: 1,
                unhealthy: 1,
                ..three()
            }),
            (Scaling, "1/3: 1 unhealthy".into())
        );
        assert_eq!(
            of(Inputs {
                starting: 3,
                ..three()
            }),
            (Scaling, "0/3: 3 starting".into()),
            "replacing all"
        );
    }

    #[test]
    fn failed_with_nothing_ready_and_a_problem() {
        let crash = "crash loop: web-7 exited with status 1; next start in 8 s";
        assert_eq!(
            of(Inputs {
                crash: Some(crash),
                ..three()
            }),
            (Failed, crash.into())
        );
        let i = Inputs {
            desired: 2,
            blocked: Some("no worker is up"),
            ..Inputs::default()
        };
        assert_eq!(of(i), (Failed, "no worker is up".into()), "never placed");
    }

    #[test]
    fn a_change_is_announced_once_and_set_on_decisions() {
        let svc: ServiceName = "web".parse().unwrap();
        let now = Now {
            mono: 0,
            unix_ms: 1,
        };
        let mut plan = Plan::default();
        plan.decisions.push(decision(
            &svc,
            now,
            DecisionAction::Blocked,
            "no slot".into(),
            BTreeMap::new(),
        ));
        let lc = lifecycle(&Inputs {
            ready: 2,
            blocked: Some("no slot"),
            ..three()
        });
        let mut state = Status {
            lifecycle: Lifecycle {
                state: Running,
                reason: None,
            },
            ..Default::default()
        };
        observe(&mut plan, &svc, &state, lc.clone(), true, now);
        assert_eq!(
            plan.decisions[1].action,
            DecisionAction::Lifecycle {
                from: Running,
                to: PartialRunning
            }
        );
        assert_eq!(plan.decisions[1].reason, "2/3: no slot");
        assert!(plan
            .decisions
            .iter()
            .all(|d| d.lifecycle.as_ref() == Some(&lc)));
        assert_eq!(plan.bookkeeping.lifecycle.len(), 1);

        state.lifecycle = lc.clone();
        state.ever_ready = true;
        let mut plan = Plan::default();
        observe(&mut plan, &svc, &state, lc, true, now);
        assert!(
            plan.decisions.is_empty() && plan.bookkeeping.lifecycle.is_empty(),
            "no change, nothing said"
        );
    }
}
