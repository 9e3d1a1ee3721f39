//! The query engine, pure: [`plan`] says which tier answers and which older buckets must come
//! from the durable store (ACS_ROLLUPS); the caller fetches them and [`answer_with`] merges them
//! with memory into a `StatsReply`. [`answer`] is the memory-only shortcut the alarm engine
//! uses (its windows are short). So the NATS API, the HTTP API, alarms and the dashboard all
//! answer the same way.
//!
//! Which tier: the finest whose reach covers the window's start, seen from now. The raw tier
//! reaches as far as its memory keep (the raw stream itself is only replayed, never queried);
//! a rollup tier as far as its durable keep. A window on a rollup tier is answered from:
//! durable buckets before the series' `mem_from_ms`, memory buckets up to what the tier has
//! closed, and for the still-open rest the finer tiers down to the raw ring, so `last` is as
//! fresh as the raw data.

use acs_events::{StatsPoint, StatsReply, StatsRequest, StatsScope, StatsSummary, SCHEMA_VERSION};

use crate::rollup::{tier_name, Bucket, Series};
use crate::store::{metrics_of, Store};

/// Older buckets to read from ACS_ROLLUPS: tier `tier` of `(scope, id)`, metric `metric`,
/// bucket starts in `from_ms..until_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub tier: String,
    pub scope: StatsScope,
    pub id: String,
    pub metric: String,
    pub from_ms: u64,
    pub until_ms: u64,
}

/// What a request needs, worked out against the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Index into the store's tiers (0 = raw).
    pub tier: usize,
    pub width_ms: u64,
    pub from_ms: u64,
    pub to_ms: u64,
    pub step_ms: Option<u64>,
    pub fetch: Option<Fetch>,
}

/// Validates `req` and picks its tier; errors name the problem.
pub fn plan(store: &Store, req: &StatsRequest, now_ms: u64) -> Result<Plan, String> {
    let scope = req.scope;
    let known = metrics_of(scope);
    if !known.contains(&req.metric.as_str()) {
        return Err(format!(
            "unknown metric {:?} for scope {}; known: {}",
            req.metric,
            scope.as_str(),
            known.join(", ")
        ));
    }
    let (from, to) = match (req.from_ms, req.to_ms, req.last_ms) {
        (_, _, Some(last)) => (now_ms.saturating_sub(last), now_ms + 1),
        (Some(f), t, None) => (f, t.unwrap_or(now_ms + 1)),
        _ => return Err("window missing: give from_ms (and to_ms) or last_ms".into()),
    };
    if to <= from {
        return Err(format!(
            "bad window: to_ms {to} is not after from_ms {from}"
        ));
    }
    let specs = store.specs();
    let age = now_ms.saturating_sub(from);
    let reach = |i: usize| {
        if i == 0 {
            specs[0].keep_ms
        } else {
            specs[i].durable_ms
        }
    };
    let tier = (0..specs.len())
        .find(|&i| age <= reach(i))
        .unwrap_or(specs.len() - 1);
    let width = specs[tier].width_ms;
    let step = req.step_ms.map(|s| s.max(width));
    if let Some(step) = step {
        if (to - from) / step > acs_events::MAX_POINTS {
            return Err(format!(
                "step_ms {step} gives more than {} points",
                acs_events::MAX_POINTS
            ));
        }
    }
    let from = from - from % width;
    let known = store.knows(scope, &req.id);
    if tier == 0 && !known {
        return Err(unknown(scope, &req.id));
    }
    let fetch = if tier == 0 {
        None
    } else {
        let mem_from = store
            .get(scope, &req.id, &req.metric)
            .map_or(u64::MAX, |s| s.rollups[tier - 1].mem_from_ms);
        (from < mem_from).then(|| Fetch {
            tier: tier_name(width),
            scope,
            id: req.id.clone(),
            metric: req.metric.clone(),
            from_ms: from,
            until_ms: mem_from.min(to),
        })
    };
    Ok(Plan {
        tier,
        width_ms: width,
        from_ms: from,
        to_ms: to,
        step_ms: step,
        fetch,
    })
}

fn unknown(scope: StatsScope, id: &str) -> String {
    format!(
        "unknown {} {:?}: no metrics seen for it",
        scope.as_str(),
        id
    )
}

/// Answers from memory alone (what the alarm engine uses).
pub fn answer(store: &Store, req: &StatsRequest, now_ms: u64) -> StatsReply {
    match plan(store, req, now_ms) {
        Ok(p) => answer_with(store, req, &p, &[]),
        Err(e) => StatsReply::error(e),
    }
}

/// Answers `req` as `plan` said, with `durable` the buckets fetched for `plan.fetch` (start,
/// bucket; any order, duplicates allowed).
pub fn answer_with(
    store: &Store,
    req: &StatsRequest,
    plan: &Plan,
    durable: &[(u64, Bucket)],
) -> StatsReply {
    let series = store.get(req.scope, &req.id, &req.metric);
    if series.is_none() && durable.is_empty() {
        return StatsReply::error(if store.knows(req.scope, &req.id) {
            format!(
                "no {} data for {} {:?}",
                req.metric,
                req.scope.as_str(),
                req.id
            )
        } else {
            unknown(req.scope, &req.id)
        });
    }
    let mut parts: Vec<(u64, Bucket)> = Vec::new();
    let until = plan.fetch.as_ref().map_or(0, |f| f.until_ms);
    // Durable first, for starts before `until`; memory fills in what the durable copy lacks.
    let mut old: Vec<(u64, Bucket)> = durable
        .iter()
        .copied()
        .filter(|(s, _)| *s >= plan.from_ms && *s < until && *s < plan.to_ms)
        .collect();
    old.sort_by_key(|p| p.0);
    old.dedup_by_key(|p| p.0);
    if let Some(s) = series {
        collect(s, plan.tier, plan.from_ms, plan.to_ms, &mut parts);
    }
    parts.retain(|(s, _)| *s >= until || old.binary_search_by_key(s, |p| p.0).is_err());
    parts.extend(old);
    parts.sort_by_key(|p| p.0);
    let summary = Bucket::combine(parts.iter().map(|p| &p.1)).map(|t| StatsSummary {
        count: t.count as u64,
        min: t.min as f64,
        max: t.max as f64,
        avg: t.avg(),
        last: t.last as f64,
        p95: t.p95 as f64,
    });
    let mut points = Vec::new();
    if let Some(step) = plan.step_ms {
        let mut i = 0;
        while i < parts.len() {
            let slot = parts[i].0 - parts[i].0 % step;
            let j = i + parts[i..]
                .iter()
                .take_while(|p| p.0 - p.0 % step == slot)
                .count();
            if let Some(b) = Bucket::combine(parts[i..j].iter().map(|p| &p.1)) {
                points.push(StatsPoint {
                    ts_ms: slot,
                    count: b.count as u64,
                    min: b.min as f64,
                    max: b.max as f64,
                    avg: b.avg(),
                    last: b.last as f64,
                });
            }
            i = j;
        }
    }
    StatsReply {
        v: SCHEMA_VERSION,
        ok: true,
        error: None,
        scope: Some(req.scope),
        id: req.id.clone(),
        metric: req.metric.clone(),
        from_ms: plan.from_ms,
        to_ms: plan.to_ms,
        resolution_ms: plan.width_ms,
        summary,
        series: points,
    }
}

/// Memory's parts of tier `tier` over `from..to`: closed buckets, then the open rest from the
/// finer tiers.
fn collect(s: &Series, tier: usize, from: u64, to: u64, out: &mut Vec<(u64, Bucket)>) {
    if tier == 0 {
        out.extend(s.raw.range(from, to));
        return;
    }
    let r = &s.rollups[tier - 1];
    let closed = r.next_close_ms.clamp(from, to.max(from));
    out.extend(r.range(from, closed));
    if closed < to {
        collect(s, tier - 1, closed, to, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::TierSpec;

    fn req(metric: &str, last_ms: u64, step: Option<u64>) -> StatsRequest {
        StatsRequest {
            v: 1,
            scope: StatsScope::Worker,
            id: "w1".into(),
            metric: metric.into(),
            from_ms: None,
            to_ms: None,
            last_ms: Some(last_ms),
            step_ms: step,
        }
    }

    fn store() -> Store {
        let mut s = Store::default();
        for i in 0..120u64 {
            s.add(
                StatsScope::Worker,
                "w1",
                "cpu",
                1_000_000 + i * 1_000,
                (i % 10) as f64,
            );
        }
        s
    }

    #[test]
    fn summary_and_series_match_known_inputs() {
        let s = store();
        let r = answer(&s, &req("cpu", 120_000, Some(60_000)), s.newest_ms);
        assert!(r.ok, "{:?}", r.error);
        let sum = r.summary.unwrap();
        assert_eq!(
            (sum.count, sum.min, sum.max, sum.last),
            (120, 0.0, 9.0, 9.0)
        );
        assert!((sum.avg - 4.5).abs() < 1e-9);
        assert_eq!(sum.p95, 9.0, "exact over raw slots");
        assert_eq!(r.resolution_ms, 1_000);
        assert!(r.series.len() >= 2 && r.series.iter().map(|p| p.count).sum::<u64>() == 120);
    }

    #[test]
    fn a_rollup_window_joins_durable_memory_and_the_open_rest() {
        let specs = [
            TierSpec {
                width_ms: 1_000,
                keep_ms: 20_000,
                durable_ms: 3_600_000,
            },
            TierSpec {
                width_ms: 10_000,
                keep_ms: 30_000,
                durable_ms: 3_600_000,
            },
        ];
        let mut s = Store::with_grace(&specs, 0);
        // 100 s of samples from t = 1000 s; memory keeps the last 30 s of 10 s buckets.
        for i in 0..100u64 {
            s.add(
                StatsScope::Worker,
                "w1",
                "cpu",
                1_000_000 + i * 1_000,
                i as f64,
            );
        }
        let closed = s.take_closed();
        assert_eq!(closed.len(), 9, "buckets 1000..1090 s, one message each");
        assert_eq!(
            (closed[0].tier, closed[0].width_ms, closed[0].start_ms),
            (1, 10_000, 1_000_000)
        );
        let now = s.newest_ms;
        let r = req("cpu", 99_000, Some(10_000));
        let p = plan(&s, &r, now).unwrap();
        assert_eq!(p.tier, 1);
        let f = p.fetch.clone().expect("older than memory");
        assert_eq!((f.tier.as_str(), f.from_ms), ("10s", 1_000_000));
        assert!(f.until_ms > f.from_ms && f.until_ms <= 1_070_000, "{f:?}");
        // Without the durable part only memory's part is summed...
        let partial = answer_with(&s, &r, &p, &[]).summary.unwrap();
        assert!(partial.count < 100);
        // ...with it, everything: exact min, max, avg, last.
        let durable: Vec<(u64, Bucket)> = closed
            .iter()
            .map(|c| (c.start_ms, c.metrics[0].1))
            .collect();
        let full = answer_with(&s, &r, &p, &durable);
        let sum = full.summary.unwrap();
        assert_eq!(
            (sum.count, sum.min, sum.max, sum.last),
            (100, 0.0, 99.0, 99.0)
        );
        assert!((sum.avg - 49.5).abs() < 1e-6);
        assert_eq!(full.resolution_ms, 10_000);
        assert_eq!(full.series.len(), 10);
        assert_eq!(
            full.series[9].count, 10,
            "the open bucket from the raw ring"
        );
        // The p95 of buckets is the count-weighted p95 of their p95s.
        assert_eq!(sum.p95, 94.0);
    }

    #[test]
    fn an_id_only_in_durable_history_is_answered() {
        let s = Store::default();
        let mut r = req("cpu", 0, None);
        (r.last_ms, r.from_ms, r.to_ms) = (None, Some(1_000_000), Some(1_120_000));
        let p = plan(&s, &r, 2_000_000).unwrap();
        assert_eq!(p.fetch.as_ref().unwrap().until_ms, 1_120_000);
        assert!(answer_with(&s, &r, &p, &[])
            .error
            .unwrap()
            .contains("unknown worker \"w1\""));
        let b = Bucket {
            count: 60,
            sum: 60.0,
            min: 1.0,
            max: 1.0,
            last: 1.0,
            p95: 1.0,
        };
        let reply = answer_with(&s, &r, &p, &[(1_020_000, b), (1_020_000, b)]);
        assert_eq!(reply.summary.unwrap().count, 60, "a duplicate counted once");
    }

    #[test]
    fn bad_queries_name_the_problem() {
        let s = store();
        let e = answer(&s, &req("bogus", 1_000, None), s.newest_ms)
            .error
            .unwrap();
        assert!(e.contains("unknown metric \"bogus\""), "{e}");
        let mut r = req("cpu", 1_000, None);
        r.id = "w9".into();
        assert!(answer(&s, &r, s.newest_ms)
            .error
            .unwrap()
            .contains("unknown worker \"w9\""));
        let mut r = req("cpu", 1_000, None);
        (r.last_ms, r.from_ms, r.to_ms) = (None, Some(10), Some(5));
        assert!(answer(&s, &r, s.newest_ms)
            .error
            .unwrap()
            .contains("bad window"));
    }
}
