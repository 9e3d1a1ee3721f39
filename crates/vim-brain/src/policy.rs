//! How many replicas a service should have: target tracking, stabilisation and step limits.
//! Pure functions over plain numbers.

use std::collections::{BTreeMap, VecDeque};

use crate::config::Policy;
use crate::world::Millis;

/// The figures a recommendation is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Replicas in rotation (healthy, not draining).
    pub ready: u32,
    /// Sum over ready replicas of CPU use in percent of each replica's limit (or of one core).
    pub cpu_pct_sum: Option<f64>,
    /// Requests per second to the service, summed over live proxies.
    pub rps: Option<f64>,
    /// Requests in flight to the service, summed over live proxies.
    pub in_flight: Option<f64>,
}

/// A policy recommendation and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub replicas: u32,
    pub reason: String,
    pub inputs: BTreeMap<String, f64>,
}

/// Target tracking (the HPA formula): for each configured target, `ceil(total / target)`, unless
/// the per-replica value is within `tolerance` of the target (then keep `current`). The largest
/// proposal wins. Signals with no ready replicas to measure are skipped.
pub fn recommend(policy: &Policy, current: u32, s: &Signals) -> Recommendation {
    let mut inputs = BTreeMap::new();
    inputs.insert("current".to_string(), current as f64);
    inputs.insert("ready".to_string(), s.ready as f64);
    let mut best: Option<(u32, String)> = None;
    let targets = [
        ("cpu_pct", policy.target_cpu_pct, s.cpu_pct_sum, "%"),
        ("rps", policy.target_rps_per_replica, s.rps, " rps"),
        ("in_flight", policy.target_inflight_per_replica, s.in_flight, " in flight"),
    ];
    for (name, target, total, unit) in targets {
        let (Some(target), Some(total)) = (target, total) else { continue };
        inputs.insert(format!("{name}_total"), round2(total));
        inputs.insert(format!("{name}_target"), target);
        if s.ready == 0 {
            continue;
        }
        let per = total / s.ready as f64;
        inputs.insert(format!("{name}_per_replica"), round2(per));
        let ratio = per / target;
        let proposal = if (ratio - 1.0).abs() <= policy.tolerance {
            current
        } else {
            (total / target - 1e-9).ceil().max(0.0) as u32
        };
        let why = format!(
            "{name} {per:.1}{unit}/replica over {} ready vs target {target}{unit} -> {proposal}",
            s.ready
        );
        if best.as_ref().is_none_or(|(b, _)| proposal > *b) {
            best = Some((proposal, why));
        }
    }
    let (replicas, reason) = best.unwrap_or_else(|| {
        (current, "no signal to act on (no target configured or no ready replica)".into())
    });
    Recommendation { replicas, reason, inputs }
}

/// The outcome of stabilising a recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Stabilized {
    pub desired: u32,
    /// Which limit shaped the outcome, if any ("scale-down window", "max_step_up", "max_replicas").
    pub limited_by: Option<String>,
}

/// Applies the stabilisation windows (HPA behaviour: scale up to the lowest recommendation in the
/// up window, down to the highest in the down window), step limits, then min/max.
/// `history` holds earlier recommendations; `proposal` is the one made now.
pub fn stabilize(
    policy: &Policy,
    current: u32,
    proposal: u32,
    history: &VecDeque<(Millis, u32)>,
    now: Millis,
) -> Stabilized {
    let within = |window_s: f64| {
        let w = (window_s * 1000.0) as u64;
        history.iter().filter(move |(t, _)| now.saturating_sub(*t) <= w).map(|(_, r)| *r)
    };
    let up = within(policy.scale_up_window_s).chain([proposal]).min().unwrap_or(proposal);
    let down = within(policy.scale_down_window_s).chain([proposal]).max().unwrap_or(proposal);
    let mut limited_by = None;
    let mut desired = if current < up {
        if up < proposal {
            limited_by = Some(format!("scale-up window {}s", policy.scale_up_window_s));
        }
        up
    } else if current > down {
        if down > proposal {
            limited_by = Some(format!("scale-down window {}s", policy.scale_down_window_s));
        }
        down
    } else {
        if proposal != current {
            limited_by = Some(if proposal > current {
                format!("scale-up window {}s", policy.scale_up_window_s)
            } else {
                format!("scale-down window {}s", policy.scale_down_window_s)
            });
        }
        current
    };
    if desired > current + policy.max_step_up {
        desired = current + policy.max_step_up;
        limited_by = Some(format!("max_step_up {}", policy.max_step_up));
    }
    if desired + policy.max_step_down < current {
        desired = current - policy.max_step_down;
        limited_by = Some(format!("max_step_down {}", policy.max_step_down));
    }
    if desired > policy.max_replicas {
        desired = policy.max_replicas;
        limited_by = Some(format!("max_replicas {}", policy.max_replicas));
    }
    if desired < policy.min_replicas {
        desired = policy.min_replicas;
        limited_by = Some(format!("min_replicas {}", policy.min_replicas));
    }
    Stabilized { desired, limited_by }
}

/// Drops history older than both windows.
pub fn prune(policy: &Policy, history: &mut VecDeque<(Millis, u32)>, now: Millis) {
    let keep = (policy.scale_up_window_s.max(policy.scale_down_window_s) * 1000.0) as u64;
    while history.front().is_some_and(|(t, _)| now.saturating_sub(*t) > keep) {
        history.pop_front();
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_replicas: 1,
            max_replicas: 10,
            target_rps_per_replica: Some(20.0),
            target_cpu_pct: Some(60.0),
            scale_down_window_s: 30.0,
            max_step_up: 4,
            max_step_down: 1,
            ..Policy::default()
        }
    }

    #[test]
    fn rps_target_tracking() {
        let r = recommend(&policy(), 2, &Signals { ready: 2, rps: Some(100.0), ..Default::default() });
        assert_eq!(r.replicas, 5);
        assert!(r.reason.contains("rps 50.0"), "{}", r.reason);
        assert_eq!(r.inputs["rps_per_replica"], 50.0);
    }

    #[test]
    fn largest_signal_wins() {
        let s = Signals { ready: 2, rps: Some(30.0), cpu_pct_sum: Some(240.0), ..Default::default() };
        let r = recommend(&policy(), 2, &s);
        assert_eq!(r.replicas, 4, "cpu 120%/replica vs 60% doubles");
        assert!(r.reason.starts_with("cpu_pct"));
    }

    #[test]
    fn tolerance_keeps_current() {
        let r = recommend(&policy(), 3, &Signals { ready: 3, rps: Some(63.0), ..Default::default() });
        assert_eq!(r.replicas, 3);
    }

    #[test]
    fn exact_multiple_is_not_rounded_up() {
        let r = recommend(&policy(), 1, &Signals { ready: 1, rps: Some(80.0), ..Default::default() });
        assert_eq!(r.replicas, 4);
    }

    #[test]
    fn no_ready_replicas_holds() {
        let r = recommend(&policy(), 2, &Signals { ready: 0, rps: Some(80.0), ..Default::default() });
        assert_eq!(r.replicas, 2);
        let r = recommend(&Policy::default(), 3, &Signals { ready: 3, rps: Some(80.0), ..Default::default() });
        assert_eq!(r.replicas, 3, "no targets configured");
    }

    #[test]
    fn scale_up_is_immediate_but_stepped() {
        let h = VecDeque::new();
        let s = stabilize(&policy(), 1, 9, &h, 1000);
        assert_eq!(s.desired, 5);
        assert_eq!(s.limited_by.as_deref(), Some("max_step_up 4"));
    }

    #[test]
    fn scale_down_waits_for_the_window() {
        let p = policy();
        let mut h = VecDeque::new();
        h.push_back((0, 4));
        // 10 s later the load is gone, but 4 was recommended within the 30 s window.
        let s = stabilize(&p, 4, 1, &h, 10_000);
        assert_eq!(s.desired, 4);
        assert!(s.limited_by.unwrap().contains("scale-down window"));
        // After the window, one step down at a time.
        let s = stabilize(&p, 4, 1, &h, 31_000);
        assert_eq!(s.desired, 3);
        assert_eq!(s.limited_by.as_deref(), Some("max_step_down 1"));
    }

    #[test]
    fn scale_up_window_takes_the_lowest() {
        let p = Policy { scale_up_window_s: 5.0, ..policy() };
        let mut h = VecDeque::new();
        h.push_back((0, 2));
        h.push_back((1000, 6));
        let s = stabilize(&p, 2, 6, &h, 2000);
        assert_eq!(s.desired, 2, "a 2 within the last 5 s holds the scale-up");
        let s = stabilize(&p, 2, 6, &h, 6500);
        assert_eq!(s.desired, 6);
    }

    #[test]
    fn min_max_clamp() {
        let h = VecDeque::new();
        let p = Policy { min_replicas: 2, max_replicas: 3, ..policy() };
        assert_eq!(stabilize(&p, 3, 7, &h, 0).desired, 3);
        assert_eq!(stabilize(&p, 1, 0, &h, 0).desired, 2);
    }

    #[test]
    fn prune_drops_old_history() {
        let p = policy();
        let mut h: VecDeque<_> = [(0, 1), (20_000, 2), (40_000, 3)].into_iter().collect();
        prune(&p, &mut h, 45_000);
        assert_eq!(h.len(), 2);
    }
}
