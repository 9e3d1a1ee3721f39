//! How many replicas a service should have: target tracking, stabilisation and step limits.
//! Pure functions over plain numbers.
//!
//! [`SIGNALS`] is the one list of scaling signals: recommendation, the services file's
//! validation and `vim-brain --check` all read it. A new signal is its `Policy` field (config.rs)
//! plus one entry here.

use std::collections::{BTreeMap, VecDeque};

use acs_events::Traffic;

use crate::config::Policy;
use crate::world::Millis;

/// What the signals are measured from: one service's replicas in rotation and its traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Replicas in rotation (healthy, not draining).
    pub ready: u32,
    /// CPU use of each ready replica, in percent of its limit (`cpus`, or one core).
    pub replica_cpu_pct: Vec<f64>,
    /// The service's traffic totals, one per live proxy that reports it.
    pub proxies: Vec<Traffic>,
}

/// One scaling signal: how it is configured, measured and explained.
pub struct Signal {
    /// Name in reasons and decision inputs (`<name>_total`, `<name>_target`, `<name>_per_replica`).
    pub name: &'static str,
    /// The key of its target under `policy` in the services file.
    pub key: &'static str,
    /// Printed after its figures in reasons.
    pub unit: &'static str,
    /// The configured target per replica, if any.
    pub target: fn(&Policy) -> Option<f64>,
    /// The service's total (`None`: nothing measured now); per replica is `total / ready`.
    pub total: fn(&Measured) -> Option<f64>,
}

/// Every scaling signal, in the order they are weighed (on a tie the first one explains).
pub const SIGNALS: &[Signal] = &[
    Signal {
        name: "cpu_pct",
        key: "target_cpu_pct",
        unit: "%",
        target: |p| p.target_cpu_pct,
        total: |m| (!m.replica_cpu_pct.is_empty()).then(|| m.replica_cpu_pct.iter().sum()),
    },
    Signal {
        name: "rps",
        key: "target_rps_per_replica",
        unit: " rps",
        target: |p| p.target_rps_per_replica,
        total: |m| sum_over_proxies(m, |t| t.rps),
    },
    Signal {
        name: "in_flight",
        key: "target_inflight_per_replica",
        unit: " in flight",
        target: |p| p.target_inflight_per_replica,
        total: |m| sum_over_proxies(m, |t| t.in_flight as f64), // f64: no overflow
    },
    Signal {
        name: "p99_ms",
        key: "target_p99_ms",
        unit: " ms",
        target: |p| p.target_p99_ms,
        // Latency is not split over replicas: scaled by `ready` so that per replica reads the
        // p99 itself and the proposal is `ceil(ready * p99 / target)`, the HPA's ratio form.
        total: |m| {
            m.proxies
                .iter()
                .map(|t| t.p99_ms)
                .reduce(f64::max)
                .map(|p99| p99 * m.ready as f64)
        },
    },
];

/// Summed over the proxies that report the service; `None` if none does.
fn sum_over_proxies(m: &Measured, figure: fn(&Traffic) -> f64) -> Option<f64> {
    (!m.proxies.is_empty()).then(|| m.proxies.iter().fold(0.0, |sum, t| sum + figure(t)))
}

/// The configured targets, for `vim-brain --check`.
pub fn describe_targets(policy: &Policy) -> String {
    let set: Vec<String> = SIGNALS
        .iter()
        .filter_map(|s| (s.target)(policy).map(|t| format!("{} {t}", s.key)))
        .collect();
    if set.is_empty() {
        "no target (stays at min_replicas unless scaled by hand)".into()
    } else {
        set.join(", ")
    }
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
pub fn recommend(policy: &Policy, current: u32, measured: &Measured) -> Recommendation {
    let ready = measured.ready;
    let mut inputs = BTreeMap::new();
    inputs.insert("current".to_string(), current as f64);
    inputs.insert("ready".to_string(), ready as f64);
    let mut best: Option<(u32, String)> = None;
    for signal in SIGNALS {
        let (name, unit) = (signal.name, signal.unit);
        let (Some(target), Some(total)) = ((signal.target)(policy), (signal.total)(measured))
        else {
            continue;
        };
        inputs.insert(format!("{name}_total"), round2(total));
        inputs.insert(format!("{name}_target"), target);
        if ready == 0 {
            continue;
        }
        let per = total / ready as f64;
        inputs.insert(format!("{name}_per_replica"), round2(per));
        let ratio = per / target;
        let proposal = if (ratio - 1.0).abs() <= policy.tolerance {
            current
        } else {
            (total / target - 1e-9).ceil().max(0.0) as u32
        };
        let why = format!("{name} {per:.1}{unit}/replica over {ready} ready vs target {target}{unit} -> {proposal}");
        if best.as_ref().is_none_or(|(b, _)| proposal > *b) {
            best = Some((proposal, why));
        }
    }
    let (replicas, reason) = best.unwrap_or_else(|| {
        (
            current,
            "no signal to act on (no target configured or no ready replica)".into(),
        )
    });
    Recommendation {
        replicas,
        reason,
        inputs,
    }
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
        history
            .iter()
            .filter(move |(t, _)| now.saturating_sub(*t) <= w)
            .map(|(_, r)| *r)
    };
    let up = within(policy.scale_up_window_s)
        .chain([proposal])
        .min()
        .unwrap_or(proposal);
    let down = within(policy.scale_down_window_s)
        .chain([proposal])
        .max()
        .unwrap_or(proposal);
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
    Stabilized {
        desired,
        limited_by,
    }
}

/// How long a recommendation can matter: the longer of the two windows.
pub fn history_keep_ms(policy: &Policy) -> Millis {
    (policy.scale_up_window_s.max(policy.scale_down_window_s) * 1000.0) as u64
}

/// Drops history older than `keep_ms`.
pub fn prune(history: &mut VecDeque<(Millis, u32)>, keep_ms: Millis, now: Millis) {
    while history
        .front()
        .is_some_and(|(t, _)| now.saturating_sub(*t) > keep_ms)
    {
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

    /// `ready` replicas and one proxy reporting `rps` (CPU not measured).
    fn rps(ready: u32, rps: f64) -> Measured {
        Measured {
            ready,
            proxies: vec![Traffic {
                rps,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn rps_target_tracking() {
        let r = recommend(&policy(), 2, &rps(2, 100.0));
        assert_eq!(r.replicas, 5);
        assert!(r.reason.contains("rps 50.0"), "{}", r.reason);
        assert_eq!(r.inputs["rps_per_replica"], 50.0);
    }

    #[test]
    fn largest_signal_wins() {
        let s = Measured {
            replica_cpu_pct: vec![120.0, 120.0],
            ..rps(2, 30.0)
        };
        let r = recommend(&policy(), 2, &s);
        assert_eq!(r.replicas, 4, "cpu 120%/replica vs 60% doubles");
        assert!(r.reason.starts_with("cpu_pct"));
    }

    #[test]
    fn p99_latency_scales_by_its_ratio_to_the_target() {
        let p = Policy {
            target_p99_ms: Some(100.0),
            target_rps_per_replica: None,
            target_cpu_pct: None,
            ..policy()
        };
        let slow = Traffic {
            p99_ms: 250.0,
            ..Default::default()
        };
        let fast = Traffic {
            p99_ms: 40.0,
            ..Default::default()
        };
        let m = Measured {
            ready: 2,
            proxies: vec![fast, slow],
            ..Default::default()
        };
        let r = recommend(&p, 2, &m);
        assert_eq!(
            r.replicas, 5,
            "the slowest proxy counts: ceil(2 * 250 / 100)"
        );
        assert_eq!(r.inputs["p99_ms_per_replica"], 250.0);
        assert!(
            r.reason
                .starts_with("p99_ms 250.0 ms/replica over 2 ready vs target 100 ms"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn tolerance_keeps_current() {
        let r = recommend(&policy(), 3, &rps(3, 63.0));
        assert_eq!(r.replicas, 3);
    }

    #[test]
    fn exact_multiple_is_not_rounded_up() {
        let r = recommend(&policy(), 1, &rps(1, 80.0));
        assert_eq!(r.replicas, 4);
    }

    #[test]
    fn no_ready_replicas_holds() {
        let r = recommend(&policy(), 2, &rps(0, 80.0));
        assert_eq!(r.replicas, 2);
        let r = recommend(&Policy::default(), 3, &rps(3, 80.0));
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
        let p = Policy {
            scale_up_window_s: 5.0,
            ..policy()
        };
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
        let p = Policy {
            min_replicas: 2,
            max_replicas: 3,
            ..policy()
        };
        assert_eq!(stabilize(&p, 3, 7, &h, 0).desired, 3);
        assert_eq!(stabilize(&p, 1, 0, &h, 0).desired, 2);
    }

    #[test]
    fn prune_drops_old_history() {
        let p = policy();
        let mut h: VecDeque<_> = [(0, 1), (20_000, 2), (40_000, 3)].into_iter().collect();
        prune(&mut h, history_keep_ms(&p), 45_000);
        assert_eq!(h.len(), 2);
    }
}
