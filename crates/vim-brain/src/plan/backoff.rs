//! The plan's reading of a service's crash history ([`CrashLoop`], kept by the world): no start
//! while a backoff step runs, a `blocked` decision once per step, and the steps it hands back
//! (healthy since, reset). The rules are in `world/crash.rs`.

use std::collections::BTreeMap;

use acs_events::{Decision, DecisionAction, ServiceName};

use super::decision;
use crate::world::{CrashLoop, CrashStep, Millis, Now, RESET_AFTER_MS};

/// The plan's reading of one service's crash history.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Check {
    /// No start for this service now.
    pub hold: bool,
    /// `crash loop: web-7 exited with status 1; next start in 8 s` while the history stands.
    pub reason: Option<String>,
    /// The backoff step's explanation, once per step.
    pub decision: Option<Decision>,
    pub step: Option<CrashStep>,
}

pub(super) fn check(service: &ServiceName, crash: &CrashLoop, ready: u32, now: Now) -> Check {
    let Some(next) = crash.next_start_at() else {
        return Check::default();
    };
    if ready > 0 {
        match crash.healthy_since {
            None => {
                return Check {
                    step: Some(CrashStep::HealthySince(now.mono)),
                    ..reading(service, crash, next, now)
                }
            }
            Some(since) if now.mono.saturating_sub(since) >= RESET_AFTER_MS => {
                return Check {
                    step: Some(CrashStep::Reset),
                    ..Check::default()
                }
            }
            Some(_) => {}
        }
    }
    reading(service, crash, next, now)
}

fn reading(service: &ServiceName, crash: &CrashLoop, next: Millis, now: Now) -> Check {
    if crash.crashes < 2 {
        return Check::default();
    }
    let error = crash.last_error.as_deref().unwrap_or("a replica crashed");
    let hold = now.mono < next;
    let reason = if hold {
        let secs = (next - now.mono).div_ceil(1000);
        format!("crash loop: {error}; next start in {secs} s")
    } else {
        format!(
            "crash loop: {error}; {} crash(es) in a row, restarting",
            crash.crashes
        )
    };
    let mut check = Check {
        hold,
        reason: Some(reason.clone()),
        ..Check::default()
    };
    if hold && crash.announced != crash.crashes {
        let mut inputs = BTreeMap::new();
        inputs.insert("crashes".into(), crash.crashes as f64);
        inputs.insert("backoff_ms".into(), crash.delay_ms() as f64);
        check.decision = Some(decision(
            service,
            now,
            DecisionAction::Blocked,
            reason,
            inputs,
        ));
        check.step = Some(CrashStep::Announced(crash.crashes));
    }
    check
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{id, now};
    use super::*;

    #[test]
    fn holds_starts_and_says_each_step_once() {
        let mut c = CrashLoop::default();
        for _ in 0..5 {
            c.crashed("web-7 exited with status 1".into(), 10_000);
        }
        let svc = id("web");
        let k = check(&svc, &c, 0, now(11_000));
        assert!(k.hold);
        assert_eq!(
            k.reason.as_deref(),
            Some("crash loop: web-7 exited with status 1; next start in 7 s")
        );
        let d = k.decision.expect("first time at this step");
        assert_eq!(
            (d.action, d.inputs["backoff_ms"]),
            (DecisionAction::Blocked, 8_000.0)
        );
        assert_eq!(k.step, Some(CrashStep::Announced(5)));
        c.step(&CrashStep::Announced(5));
        let k = check(&svc, &c, 0, now(12_000));
        assert!(
            k.hold && k.decision.is_none() && k.step.is_none(),
            "said once: {k:?}"
        );
        let k = check(&svc, &c, 0, now(18_000));
        assert!(!k.hold, "8 s after the crash the next start may go");
        assert!(k.reason.unwrap().contains("5 crash(es) in a row"));
    }

    #[test]
    fn resets_after_staying_healthy() {
        let mut c = CrashLoop::default();
        c.crashed("web-7 exited with status 1".into(), 0);
        assert_eq!(
            check(&id("web"), &c, 0, now(1)),
            Check::default(),
            "one crash is not a loop"
        );
        c.crashed("web-7 exited with status 1".into(), 0);
        let svc = id("web");
        let k = check(&svc, &c, 1, now(5_000));
        assert_eq!(k.step, Some(CrashStep::HealthySince(5_000)));
        c.step(&k.step.unwrap());
        assert_eq!(
            check(&svc, &c, 1, now(5_000 + RESET_AFTER_MS - 1)).step,
            None
        );
        let k = check(&svc, &c, 1, now(5_000 + RESET_AFTER_MS));
        assert_eq!((k.step.clone(), k.reason), (Some(CrashStep::Reset), None));
        c.step(&k.step.unwrap());
        assert_eq!(c, CrashLoop::default());
        assert_eq!(check(&svc, &c, 0, now(1)), Check::default());
    }
}
