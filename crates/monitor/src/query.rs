//! The query engine: `(&Store, StatsRequest, now)` in, `StatsReply` out. Pure, so the NATS API,
//! the HTTP API, alarms and the dashboard all answer the same way.

use acs_events::{StatsPoint, StatsReply, StatsRequest, StatsSummary, SCHEMA_VERSION};

use crate::rollup::Bucket;
use crate::store::{metrics_of, Store};

/// Answers `req` against `store`, `now_ms` closing `last_ms` windows. Errors name the problem.
pub fn answer(store: &Store, req: &StatsRequest, now_ms: u64) -> StatsReply {
    match run(store, req, now_ms) {
        Ok(r) => r,
        Err(e) => StatsReply::error(e),
    }
}

fn run(store: &Store, req: &StatsRequest, now_ms: u64) -> Result<StatsReply, String> {
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
    if !store.knows(scope, &req.id) {
        return Err(format!("unknown {} {:?}: no metrics seen for it", scope.as_str(), req.id));
    }
    let (from, to) = match (req.from_ms, req.to_ms, req.last_ms) {
        (_, _, Some(last)) => (now_ms.saturating_sub(last), now_ms + 1),
        (Some(f), t, None) => (f, t.unwrap_or(now_ms + 1)),
        _ => return Err("window missing: give from_ms (and to_ms) or last_ms".into()),
    };
    if to <= from {
        return Err(format!("bad window: to_ms {to} is not after from_ms {from}"));
    }
    let series = store
        .get(scope, &req.id, &req.metric)
        .ok_or_else(|| format!("no {} data for {} {:?}", req.metric, scope.as_str(), req.id))?;
    let tier = series.tier_for(from, now_ms).ok_or("no data")?;
    let mut total: Option<Bucket> = None;
    let mut points: Vec<StatsPoint> = Vec::new();
    let step = req.step_ms.map(|s| s.max(tier.width_ms));
    if let Some(step) = step {
        if (to - from) / step > acs_events::MAX_POINTS {
            return Err(format!("step_ms {step} gives more than {} points", acs_events::MAX_POINTS));
        }
    }
    let mut cur: Option<(u64, Bucket)> = None;
    for (start, b) in tier.range(from - from % tier.width_ms, to) {
        match total.as_mut() {
            Some(t) => t.merge(b),
            None => total = Some(b.clone()),
        }
        let Some(step) = step else { continue };
        let slot = start - start % step;
        match cur.as_mut() {
            Some((s, acc)) if *s == slot => acc.merge(b),
            _ => {
                if let Some((s, acc)) = cur.take() {
                    points.push(point(s, &acc));
                }
                cur = Some((slot, b.clone()));
            }
        }
    }
    if let Some((s, acc)) = cur {
        points.push(point(s, &acc));
    }
    let summary = total.map(|t| StatsSummary {
        count: t.count,
        min: t.min,
        max: t.max,
        avg: t.avg(),
        last: t.last,
        p95: t.quantile(0.95),
    });
    Ok(StatsReply {
        v: SCHEMA_VERSION,
        ok: true,
        error: None,
        scope: Some(scope),
        id: req.id.clone(),
        metric: req.metric.clone(),
        from_ms: from,
        to_ms: to,
        resolution_ms: tier.width_ms,
        summary,
        series: points,
    })
}

fn point(ts_ms: u64, b: &Bucket) -> StatsPoint {
    StatsPoint { ts_ms, count: b.count, min: b.min, max: b.max, avg: b.avg(), last: b.last }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::StatsScope;

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
            s.add(StatsScope::Worker, "w1", "cpu", 1_000_000 + i * 1_000, (i % 10) as f64);
        }
        s
    }

    #[test]
    fn summary_and_series_match_known_inputs() {
        let s = store();
        let r = answer(&s, &req("cpu", 120_000, Some(60_000)), s.newest_ms);
        assert!(r.ok, "{:?}", r.error);
        let sum = r.summary.unwrap();
        assert_eq!((sum.count, sum.min, sum.max, sum.last), (120, 0.0, 9.0, 9.0));
        assert!((sum.avg - 4.5).abs() < 1e-9);
        assert!((sum.p95 - 9.0).abs() <= 9.0 * 0.03, "p95 {}", sum.p95);
        assert_eq!(r.resolution_ms, 1_000);
        assert!(r.series.len() >= 2 && r.series.iter().map(|p| p.count).sum::<u64>() == 120);
    }

    #[test]
    fn bad_queries_name_the_problem() {
        let s = store();
        let e = answer(&s, &req("bogus", 1_000, None), s.newest_ms).error.unwrap();
        assert!(e.contains("unknown metric \"bogus\""), "{e}");
        let mut r = req("cpu", 1_000, None);
        r.id = "w9".into();
        assert!(answer(&s, &r, s.newest_ms).error.unwrap().contains("unknown worker \"w9\""));
        let mut r = req("cpu", 1_000, None);
        (r.last_ms, r.from_ms, r.to_ms) = (None, Some(10), Some(5));
        assert!(answer(&s, &r, s.newest_ms).error.unwrap().contains("bad window"));
    }
}
