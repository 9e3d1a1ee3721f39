//! Proxy reports too big for one message (`acs.metrics.proxy.<proxy>`), split and reassembled.
//!
//! A proxy lists every service and every backend; at 10,000 backends a report is about 1.4 MB,
//! over [`crate::MAX_PAYLOAD`]. [`split_metrics`] sends a report that fits whole, exactly as
//! before, and cuts a bigger one into parts of at most `max_bytes` each, in the manner of
//! [`crate::split_change`]: every part carries the report's header, a run of services, and a
//! service too big for one part is continued in the next with its `version` and totals repeated.
//! A part says which it is in `part: {seq, index, count}` (`seq` is the report's `ts_ms`).
//!
//! Parts are written as schema version [`PARTS_VERSION`] (2), so a reader older than this
//! refuses them (a `version` error) rather than taking a slice of the backends for the whole
//! set — a drain would read a missing backend as having nothing in flight.
//!
//! [`MetricsAssembler`] is the receiving end: pure, clock passed in. Every consumer pushes each
//! decoded [`ProxyMetricsMsg`] through one and uses only the whole [`ProxyMetrics`] it returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::traffic::{ProxyMetrics, ServiceTraffic};
use crate::codec::{encode, Validate, Versioned};
use crate::id::ProxyId;
use crate::SCHEMA_VERSION;

/// The schema version of a part of a split report.
pub const PARTS_VERSION: u32 = 2;
/// Most parts one report may have (at [`crate::CHUNK_BYTES`] a part, about 48 MB of report or
/// some 2 million backends); readers refuse a part claiming more.
pub const MAX_PARTS: u32 = 256;
/// How long a reader waits for the rest of a split report, from its first part.
pub const DEFAULT_PARTS_TIMEOUT_MS: u64 = 3_000;

/// What travels on `acs.metrics.proxy.<proxy>`: a whole report (`part` absent, the JSON of
/// [`ProxyMetrics`] unchanged) or one part of a split one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyMetricsMsg {
    #[serde(flatten)]
    pub metrics: ProxyMetrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<MetricsPart>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsPart {
    /// Which report of this proxy the part belongs to (its `ts_ms`).
    pub seq: u64,
    /// `0..count`.
    pub index: u32,
    pub count: u32,
}

impl From<ProxyMetrics> for ProxyMetricsMsg {
    fn from(metrics: ProxyMetrics) -> Self {
        Self {
            metrics,
            part: None,
        }
    }
}

impl Versioned for ProxyMetricsMsg {
    fn version(&self) -> u32 {
        self.metrics.v
    }
    fn max_version() -> u32 {
        PARTS_VERSION
    }
}

impl Validate for ProxyMetricsMsg {
    fn validate(&self) -> Result<(), String> {
        if let Some(p) = &self.part {
            p.check()?;
        }
        self.metrics.validate()
    }
}

impl MetricsPart {
    fn check(&self) -> Result<(), String> {
        if self.count == 0 || self.count > MAX_PARTS {
            return Err(format!(
                "part.count must be 1..={MAX_PARTS}, got {}",
                self.count
            ));
        }
        if self.index >= self.count {
            return Err(format!(
                "part.index {} must be below part.count {}",
                self.index, self.count
            ));
        }
        Ok(())
    }
}

/// `m` as messages of at most `max_bytes` encoded each: `[m]` whole (no `part`) when it fits,
/// else parts in order (`index` 0..count, `seq` = `m.ts_ms`). A service with more backends
/// than one part holds is continued over several, each repeating its `version` and totals. A
/// lone service or backend bigger than `max_bytes` gets a part of its own, over the size; a
/// report of more than [`MAX_PARTS`] parts is refused by readers (the caller may check `len()`).
pub fn split_metrics(m: ProxyMetrics, max_bytes: usize) -> Vec<ProxyMetricsMsg> {
    let whole = ProxyMetricsMsg::from(m);
    if encode(&whole).len() <= max_bytes {
        return vec![whole];
    }
    split_parts(whole.metrics, max_bytes)
}

/// The payloads to publish for `m`: as [`split_metrics`], encoded, with a report that fits
/// encoded only once (what a proxy does every interval).
pub fn encode_metrics(m: ProxyMetrics, max_bytes: usize) -> Vec<Vec<u8>> {
    let whole = ProxyMetricsMsg::from(m);
    let bytes = encode(&whole);
    if bytes.len() <= max_bytes {
        return vec![bytes];
    }
    split_parts(whole.metrics, max_bytes)
        .iter()
        .map(encode)
        .collect()
}

/// `m` (known not to fit) as parts of at most `max_bytes`, see [`split_metrics`].
fn split_parts(mut header: ProxyMetrics, max_bytes: usize) -> Vec<ProxyMetricsMsg> {
    let services = std::mem::take(&mut header.services);
    header.v = PARTS_VERSION;
    let seq = header.ts_ms;
    let widest = MetricsPart {
        seq,
        index: u32::MAX,
        count: u32::MAX,
    };
    let overhead = encode(&ProxyMetricsMsg {
        metrics: header.clone(),
        part: Some(widest),
    })
    .len();
    let budget = max_bytes.saturating_sub(overhead);

    let mut runs: Vec<Vec<ServiceTraffic>> = Vec::new();
    let mut run: Vec<ServiceTraffic> = Vec::new();
    let mut used = 0;
    for mut svc in services {
        let backends = std::mem::take(&mut svc.backends);
        let shell = size(&svc);
        // Whether the last service of `run` is `svc`, being filled.
        let mut open = false;
        if backends.is_empty() {
            if !run.is_empty() && used + shell > budget {
                runs.push(std::mem::take(&mut run));
                used = 0;
            }
            run.push(svc);
            used += shell;
            continue;
        }
        for b in backends {
            let n = size(&b);
            let need = if open { n } else { shell + n };
            if !run.is_empty() && used + need > budget {
                runs.push(std::mem::take(&mut run));
                used = 0;
                open = false;
            }
            if !open {
                run.push(ServiceTraffic {
                    backends: Vec::new(),
                    ..svc.clone()
                });
                used += shell;
                open = true;
            }
            used += n;
            run.last_mut().expect("just pushed").backends.push(b);
        }
    }
    if !run.is_empty() || runs.is_empty() {
        runs.push(run);
    }
    let count = runs.len() as u32;
    runs.into_iter()
        .enumerate()
        .map(|(index, services)| ProxyMetricsMsg {
            metrics: ProxyMetrics {
                services,
                ..header.clone()
            },
            part: Some(MetricsPart {
                seq,
                index: index as u32,
                count,
            }),
        })
        .collect()
}

/// An item's encoded size with its separating comma, so a part is never bigger than its sum.
fn size<T: Serialize>(x: &T) -> usize {
    serde_json::to_vec(x).map_or(0, |v| v.len()) + 1
}

/// Incomplete reports and parts an assembler gave up on, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartsDropped {
    /// Reports whose parts did not all arrive within the timeout.
    pub timed_out: u64,
    /// Incomplete reports replaced by a newer report of the same proxy.
    pub superseded: u64,
    /// Incomplete reports pushed out to keep memory bounded (too many proxies or parts held).
    pub evicted: u64,
    /// Parts of a report older than the one being assembled for that proxy.
    pub stale: u64,
    /// Incomplete reports abandoned because a part did not match them (a repeated index, a
    /// different count), and parts that fail [`MetricsPart`]'s rules.
    pub inconsistent: u64,
}

impl PartsDropped {
    pub fn total(&self) -> u64 {
        self.timed_out + self.superseded + self.evicted + self.stale + self.inconsistent
    }
}

/// Reassembles split proxy reports. Pure: `now_ms` is any monotonic clock of the caller's.
#[derive(Debug)]
pub struct MetricsAssembler {
    timeout_ms: u64,
    max_proxies: usize,
    max_parts_held: usize,
    pending: BTreeMap<ProxyId, Pending>,
    parts_held: usize,
    last_sweep: u64,
    dropped: PartsDropped,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    count: u32,
    first_ms: u64,
    parts: BTreeMap<u32, ProxyMetrics>,
}

impl Default for MetricsAssembler {
    fn default() -> Self {
        Self::new(DEFAULT_PARTS_TIMEOUT_MS)
    }
}

impl MetricsAssembler {
    /// Holds incomplete reports of at most 1,024 proxies and 1,024 parts in all.
    pub fn new(timeout_ms: u64) -> Self {
        Self::with_limits(timeout_ms, 1024, 1024)
    }

    pub fn with_limits(timeout_ms: u64, max_proxies: usize, max_parts_held: usize) -> Self {
        Self {
            timeout_ms,
            max_proxies: max_proxies.max(1),
            max_parts_held: max_parts_held.max(1),
            pending: BTreeMap::new(),
            parts_held: 0,
            last_sweep: 0,
            dropped: PartsDropped::default(),
        }
    }

    pub fn dropped(&self) -> PartsDropped {
        self.dropped
    }

    /// Proxies with an incomplete report held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A whole report at once; a part once all parts of its report are in, merged in index
    /// order (a service continued over parts gets its backends joined, its totals once).
    pub fn push(&mut self, msg: ProxyMetricsMsg, now_ms: u64) -> Option<ProxyMetrics> {
        self.sweep(now_ms);
        let ProxyMetricsMsg { metrics, part } = msg;
        let Some(p) = part else { return Some(metrics) };
        if p.check().is_err() {
            self.dropped.inconsistent += 1;
            return None;
        }
        if p.count == 1 {
            return Some(merge(vec![metrics]));
        }
        let proxy = metrics.proxy.clone();
        if let Some(held) = self.pending.get(&proxy) {
            if held.seq > p.seq {
                self.dropped.stale += 1;
                return None;
            }
            if held.seq < p.seq {
                self.dropped.superseded += 1;
                self.forget(&proxy);
            } else if held.count != p.count || held.parts.contains_key(&p.index) {
                self.dropped.inconsistent += 1;
                self.forget(&proxy);
            }
        }
        if !self.pending.contains_key(&proxy) {
            while self.pending.len() >= self.max_proxies {
                self.evict_oldest();
            }
        }
        while self.parts_held >= self.max_parts_held {
            self.evict_oldest();
        }
        // A new set, or this proxy's own again if it was the oldest and evicted just now.
        let held = self
            .pending
            .entry(proxy.clone())
            .or_insert_with(|| Pending {
                seq: p.seq,
                count: p.count,
                first_ms: now_ms,
                parts: BTreeMap::new(),
            });
        held.parts.insert(p.index, metrics);
        self.parts_held += 1;
        if held.parts.len() < held.count as usize {
            return None;
        }
        let done = self.pending.remove(&proxy).expect("held above");
        self.parts_held -= done.parts.len();
        Some(merge(done.parts.into_values().collect()))
    }

    /// Drops incomplete reports older than the timeout (checked a few times per timeout).
    fn sweep(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_sweep) < (self.timeout_ms / 4).max(1) {
            return;
        }
        self.last_sweep = now_ms;
        let expired: Vec<ProxyId> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.first_ms) > self.timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.dropped.timed_out += 1;
            self.forget(&id);
        }
    }

    fn evict_oldest(&mut self) {
        let Some(id) = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.first_ms)
            .map(|(id, _)| id.clone())
        else {
            // Nothing held, so nothing to count against the caps.
            self.parts_held = 0;
            return;
        };
        self.dropped.evicted += 1;
        self.forget(&id);
    }

    fn forget(&mut self, id: &ProxyId) {
        if let Some(p) = self.pending.remove(id) {
            self.parts_held -= p.parts.len();
        }
    }
}

/// Parts in index order into one whole report (version [`SCHEMA_VERSION`], no `part`).
fn merge(parts: Vec<ProxyMetrics>) -> ProxyMetrics {
    let mut parts = parts.into_iter();
    let mut whole = parts.next().expect("a report has at least one part");
    whole.v = SCHEMA_VERSION;
    for part in parts {
        for svc in part.services {
            match whole.services.last_mut() {
                Some(last) if last.service == svc.service => last.backends.extend(svc.backends),
                _ => whole.services.push(svc),
            }
        }
    }
    whole
}

#[cfg(test)]
mod tests;
