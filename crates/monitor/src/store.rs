//! The in-memory history: one [`Series`] per (scope, id, metric), fed from decoded metrics.
//! Pure: no clock, no I/O; the sample time is the message's `ts_ms`.
//!
//! Buckets close on a watermark, the newest sample time seen minus a grace for late samples:
//! every monitor reads the same stream in the same order, so every monitor closes the same
//! buckets with the same contents, and the copies published to ACS_ROLLUPS are duplicates
//! JetStream can drop. A sample for a bucket already closed still reaches the raw ring (if it
//! is within it) but no longer changes the rollup.

use std::collections::HashMap;

use acs_events::{ProxyMetrics, ReplicaState, StatsScope, WorkerMetrics};

use crate::rollup::{Bucket, Series, TierSpec, DEFAULT_TIERS};

/// Metrics each scope answers; a query for anything else is refused by name.
pub const WORKER_METRICS: &[&str] = &[
    "cpu",
    "memory",
    "net_rx",
    "net_tx",
    "disk_read",
    "disk_write",
    "disk_used",
    "replicas",
];
pub const REPLICA_METRICS: &[&str] = &[
    "cpu",
    "memory",
    "rps",
    "in_flight",
    "errors",
    "p50_ms",
    "p99_ms",
];
pub const SERVICE_METRICS: &[&str] =
    &["rps", "in_flight", "errors", "p50_ms", "p99_ms", "replicas"];
pub const PROXY_METRICS: &[&str] = &["rps", "in_flight", "errors", "unrouted"];

pub fn metrics_of(scope: StatsScope) -> &'static [&'static str] {
    match scope {
        StatsScope::Worker => WORKER_METRICS,
        StatsScope::Replica => REPLICA_METRICS,
        StatsScope::Service => SERVICE_METRICS,
        StatsScope::Proxy => PROXY_METRICS,
    }
}

/// One closed bucket set of one id: every metric of `(scope, id)` that had samples in the
/// bucket `start_ms..start_ms + width` of rollup tier `tier` (1 = the first rollup).
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub tier: usize,
    pub width_ms: u64,
    pub start_ms: u64,
    pub scope: StatsScope,
    pub id: String,
    pub metrics: Vec<(&'static str, Bucket)>,
}

/// The metrics of one id, each with its series (a handful: a short list beats a map).
type Entity = Vec<(&'static str, Series)>;

fn scope_index(scope: StatsScope) -> usize {
    match scope {
        StatsScope::Worker => 0,
        StatsScope::Replica => 1,
        StatsScope::Service => 2,
        StatsScope::Proxy => 3,
    }
}

const SCOPES: [StatsScope; 4] = [
    StatsScope::Worker,
    StatsScope::Replica,
    StatsScope::Service,
    StatsScope::Proxy,
];

/// Default wait for late samples before a bucket closes.
pub const DEFAULT_GRACE_MS: u64 = 2_000;

#[derive(Debug, Clone)]
pub struct Store {
    specs: Vec<TierSpec>,
    grace_ms: u64,
    entities: [HashMap<Box<str>, Entity>; 4],
    /// Newest sample time seen, the "now" of `last_ms` windows in pure use.
    pub newest_ms: u64,
    pub samples: u64,
    /// Samples older than the raw ring holds, not stored.
    pub too_old: u64,
    /// Everything ending at or before this is closed (newest sample time − grace).
    pub watermark_ms: u64,
    closed: Vec<Closed>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(&DEFAULT_TIERS)
    }
}

impl Store {
    /// A store with `specs` (checked with [`crate::rollup::validate`] by the caller).
    pub fn new(specs: &[TierSpec]) -> Self {
        Store::with_grace(specs, DEFAULT_GRACE_MS)
    }

    pub fn with_grace(specs: &[TierSpec], grace_ms: u64) -> Self {
        Store {
            specs: specs.to_vec(),
            grace_ms,
            entities: Default::default(),
            newest_ms: 0,
            samples: 0,
            too_old: 0,
            watermark_ms: 0,
            closed: Vec::new(),
        }
    }

    pub fn specs(&self) -> &[TierSpec] {
        &self.specs
    }

    /// Series held, and raw slots (at capacity) plus rollup buckets over all of them.
    pub fn size(&self) -> (usize, usize) {
        let all = self.entities.iter().flat_map(|m| m.values()).flatten();
        all.fold((0, 0), |(n, b), (_, s)| (n + 1, b + s.size()))
    }

    pub fn add(&mut self, scope: StatsScope, id: &str, metric: &'static str, ts_ms: u64, x: f64) {
        if !x.is_finite() {
            return;
        }
        if ts_ms > self.newest_ms {
            self.newest_ms = ts_ms;
            self.advance(ts_ms.saturating_sub(self.grace_ms));
        }
        let specs = &self.specs;
        let map = &mut self.entities[scope_index(scope)];
        let entity = match map.get_mut(id) {
            Some(e) => e,
            None => map.entry(id.into()).or_default(),
        };
        let i = match entity.iter().position(|(m, _)| *m == metric) {
            Some(i) => i,
            None => {
                entity.push((metric, Series::new(specs, ts_ms)));
                entity.len() - 1
            }
        };
        // Close before the ring moves on: a sample far ahead would overwrite unclosed slots.
        if entity[i].1.add(ts_ms, x as f32) {
            self.samples += 1;
        } else {
            self.too_old += 1;
        }
    }

    /// Moves the watermark; when it crosses a bucket edge of the finest rollup, closes what
    /// ended in every series, queues it for [`take_closed`](Self::take_closed), and forgets
    /// series with nothing left in memory.
    fn advance(&mut self, watermark_ms: u64) {
        let Some(finest) = self.specs.get(1).map(|s| s.width_ms) else {
            self.watermark_ms = watermark_ms;
            return;
        };
        let crossed = watermark_ms / finest > self.watermark_ms / finest;
        self.watermark_ms = self.watermark_ms.max(watermark_ms);
        if !crossed {
            return;
        }
        let raw_keep = self.specs[0].keep_ms;
        let wm = self.watermark_ms;
        let specs = &self.specs;
        for (si, map) in self.entities.iter_mut().enumerate() {
            map.retain(|id, entity| {
                // (tier, start) → metrics, for this id: one message per tier and bucket.
                let mut out: Vec<Closed> = Vec::new();
                for (metric, series) in entity.iter_mut() {
                    series.close(wm, |tier, start_ms, b| {
                        match out
                            .iter_mut()
                            .find(|c| c.tier == tier && c.start_ms == start_ms)
                        {
                            Some(c) => c.metrics.push((metric, b)),
                            None => out.push(Closed {
                                tier,
                                width_ms: 0,
                                start_ms,
                                scope: SCOPES[si],
                                id: id.to_string(),
                                metrics: vec![(metric, b)],
                            }),
                        }
                    });
                }
                for mut c in out {
                    c.width_ms = specs[c.tier].width_ms;
                    self.closed.push(c);
                }
                entity.retain(|(_, s)| !s.is_stale(wm, raw_keep));
                !entity.is_empty()
            });
        }
    }

    /// Buckets closed since the last call, finest tier first within each id.
    pub fn take_closed(&mut self) -> Vec<Closed> {
        std::mem::take(&mut self.closed)
    }

    pub fn get(&self, scope: StatsScope, id: &str, metric: &str) -> Option<&Series> {
        let e = self.entities[scope_index(scope)].get(id)?;
        e.iter().find(|(m, _)| *m == metric).map(|(_, s)| s)
    }

    /// Whether anything at all is held in memory for this scope and id.
    pub fn knows(&self, scope: StatsScope, id: &str) -> bool {
        self.entities[scope_index(scope)].contains_key(id)
    }

    /// Ids held for a scope, sorted.
    pub fn ids(&self, scope: StatsScope) -> Vec<String> {
        let mut v: Vec<String> = self.entities[scope_index(scope)]
            .keys()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }

    pub fn ingest_worker(&mut self, m: &WorkerMetrics) {
        let (w, t, h) = (m.worker.as_str(), m.ts_ms, &m.host);
        let wk = StatsScope::Worker;
        self.add(wk, w, "cpu", t, h.cpu_pct);
        self.add(wk, w, "memory", t, h.mem_used_bytes as f64);
        self.add(wk, w, "net_rx", t, h.net_rx_bytes_per_s);
        self.add(wk, w, "net_tx", t, h.net_tx_bytes_per_s);
        self.add(wk, w, "disk_read", t, h.disk_read_bytes_per_s);
        self.add(wk, w, "disk_write", t, h.disk_write_bytes_per_s);
        self.add(wk, w, "disk_used", t, h.disk_used_bytes as f64);
        let live = m.replicas.iter().filter(|r| r.state.takes_slot()).count();
        self.add(wk, w, "replicas", t, live as f64);
        for r in &m.replicas {
            if r.state == ReplicaState::Exited {
                continue;
            }
            self.add(StatsScope::Replica, r.id.as_str(), "cpu", t, r.cpu_pct);
            self.add(
                StatsScope::Replica,
                r.id.as_str(),
                "memory",
                t,
                r.mem_bytes as f64,
            );
        }
    }

    pub fn ingest_proxy(&mut self, m: &ProxyMetrics) {
        let t = m.ts_ms;
        let (mut rps, mut inf, mut err) = (0.0, 0u64, 0u64);
        for s in &m.services {
            let (name, tr) = (s.service.as_str(), &s.totals);
            rps += tr.rps;
            inf += tr.in_flight;
            err += tr.errors;
            let sv = StatsScope::Service;
            self.add(sv, name, "rps", t, tr.rps);
            self.add(sv, name, "in_flight", t, tr.in_flight as f64);
            self.add(sv, name, "errors", t, tr.errors as f64);
            self.add(sv, name, "p50_ms", t, tr.p50_ms);
            self.add(sv, name, "p99_ms", t, tr.p99_ms);
            let routable = s
                .backends
                .iter()
                .filter(|b| !b.draining && !b.ejected)
                .count();
            self.add(sv, name, "replicas", t, routable as f64);
            for b in &s.backends {
                let (id, bt) = (b.id.as_str(), &b.traffic);
                let rp = StatsScope::Replica;
                self.add(rp, id, "rps", t, bt.rps);
                self.add(rp, id, "in_flight", t, bt.in_flight as f64);
                self.add(rp, id, "errors", t, bt.errors as f64);
                self.add(rp, id, "p50_ms", t, bt.p50_ms);
                self.add(rp, id, "p99_ms", t, bt.p99_ms);
            }
        }
        let p = m.proxy.as_str();
        self.add(StatsScope::Proxy, p, "rps", t, rps);
        self.add(StatsScope::Proxy, p, "in_flight", t, inf as f64);
        self.add(StatsScope::Proxy, p, "errors", t, err as f64);
        self.add(StatsScope::Proxy, p, "unrouted", t, m.unrouted as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: [TierSpec; 3] = [
        TierSpec {
            width_ms: 1_000,
            keep_ms: 120_000,
            durable_ms: 3_600_000,
        },
        TierSpec {
            width_ms: 60_000,
            keep_ms: 600_000,
            durable_ms: 86_400_000,
        },
        TierSpec {
            width_ms: 600_000,
            keep_ms: 1_200_000,
            durable_ms: 86_400_000,
        },
    ];

    #[test]
    fn memory_is_bounded_and_ids_that_went_away_are_forgotten() {
        let mut s = Store::with_grace(&SPECS, 2_000);
        let mut messages = 0;
        // Two hours: w1 all along, w2 for the first ten minutes only.
        for t in 0..7_200u64 {
            s.add(StatsScope::Worker, "w1", "cpu", t * 1_000, 1.0);
            s.add(StatsScope::Worker, "w1", "memory", t * 1_000, 2.0);
            if t < 600 {
                s.add(StatsScope::Worker, "w2", "cpu", t * 1_000, 3.0);
            }
            messages += s.take_closed().len();
            if t == 3_600 || t == 7_199 {
                let (series, held) = s.size();
                assert_eq!(series, 2, "w2 is gone once past every memory keep, at {t}");
                assert!(held <= 2 * (120 + 11 + 3), "{held} slots and buckets");
            }
        }
        assert_eq!(s.ids(StatsScope::Worker), vec!["w1".to_string()]);
        // One message per id, tier and bucket, carrying all of the id's metrics.
        let minutes = 7_200 / 60 - 1 + 10;
        let tens = 7_200 / 600 - 1 + 1;
        assert_eq!(messages, minutes + tens);
    }

    #[test]
    fn closed_buckets_carry_every_metric_of_the_id() {
        let mut s = Store::with_grace(&SPECS, 0);
        for t in 0..61u64 {
            s.add(StatsScope::Replica, "r1", "cpu", t * 1_000, t as f64);
            s.add(StatsScope::Replica, "r1", "rps", t * 1_000, 10.0);
        }
        let c = s.take_closed();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].tier, c[0].width_ms, c[0].start_ms, c[0].scope),
            (1, 60_000, 0, StatsScope::Replica)
        );
        let names: Vec<&str> = c[0].metrics.iter().map(|m| m.0).collect();
        assert_eq!(names, vec!["cpu", "rps"]);
        assert_eq!((c[0].metrics[0].1.count, c[0].metrics[0].1.max), (60, 59.0));
        assert_eq!(s.take_closed(), vec![]);
        // Not finite: not stored.
        s.add(StatsScope::Replica, "r1", "cpu", 61_000, f64::NAN);
        assert_eq!(s.samples, 122);
    }
}
