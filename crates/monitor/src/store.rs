//! The in-memory history: one [`Series`] per (scope, id, metric), fed from decoded metrics.
//! Pure: no clock, no I/O; the sample time is the message's `ts_ms`.

use std::collections::HashMap;

use acs_events::{ProxyMetrics, ReplicaState, StatsScope, WorkerMetrics};

use crate::rollup::{Series, TierSpec, DEFAULT_TIERS};

/// Metrics each scope answers; a query for anything else is refused by name.
pub const WORKER_METRICS: &[&str] =
    &["cpu", "memory", "net_rx", "net_tx", "disk_read", "disk_write", "disk_used", "replicas"];
pub const REPLICA_METRICS: &[&str] = &["cpu", "memory", "rps", "in_flight", "errors", "p50_ms", "p99_ms"];
pub const SERVICE_METRICS: &[&str] = &["rps", "in_flight", "errors", "p50_ms", "p99_ms", "replicas"];
pub const PROXY_METRICS: &[&str] = &["rps", "in_flight", "errors", "unrouted"];

pub fn metrics_of(scope: StatsScope) -> &'static [&'static str] {
    match scope {
        StatsScope::Worker => WORKER_METRICS,
        StatsScope::Replica => REPLICA_METRICS,
        StatsScope::Service => SERVICE_METRICS,
        StatsScope::Proxy => PROXY_METRICS,
    }
}

type Key = (StatsScope, String, &'static str);

#[derive(Debug, Clone)]
pub struct Store {
    specs: Vec<TierSpec>,
    series: HashMap<Key, Series>,
    /// Newest sample time seen, the "now" of `last_ms` windows in pure use.
    pub newest_ms: u64,
    pub samples: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(&DEFAULT_TIERS)
    }
}

impl Store {
    pub fn new(specs: &[TierSpec]) -> Self {
        Store { specs: specs.to_vec(), series: HashMap::new(), newest_ms: 0, samples: 0 }
    }

    /// Series held, and buckets over all their tiers (what the memory grows with).
    pub fn size(&self) -> (usize, usize) {
        (self.series.len(), self.series.values().map(|s| s.tiers.iter().map(|t| t.len()).sum::<usize>()).sum())
    }

    pub fn add(&mut self, scope: StatsScope, id: &str, metric: &'static str, ts_ms: u64, x: f64) {
        if !x.is_finite() {
            return;
        }
        let specs = &self.specs;
        self.series
            .entry((scope, id.to_string(), metric))
            .or_insert_with(|| Series::new(specs))
            .add(ts_ms, x);
        self.newest_ms = self.newest_ms.max(ts_ms);
        self.samples += 1;
    }

    pub fn get(&self, scope: StatsScope, id: &str, metric: &str) -> Option<&Series> {
        let metric = *metrics_of(scope).iter().find(|m| **m == metric)?;
        self.series.get(&(scope, id.to_string(), metric))
    }

    /// Whether anything at all is known for this scope and id.
    pub fn knows(&self, scope: StatsScope, id: &str) -> bool {
        metrics_of(scope).iter().any(|m| self.series.contains_key(&(scope, id.to_string(), *m)))
    }

    /// Ids known for a scope, sorted.
    pub fn ids(&self, scope: StatsScope) -> Vec<String> {
        let mut v: Vec<String> =
            self.series.keys().filter(|k| k.0 == scope).map(|k| k.1.clone()).collect();
        v.sort();
        v.dedup();
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
            self.add(StatsScope::Replica, r.id.as_str(), "memory", t, r.mem_bytes as f64);
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
            let routable = s.backends.iter().filter(|b| !b.draining && !b.ejected).count();
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
