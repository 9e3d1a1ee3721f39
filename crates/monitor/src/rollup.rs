//! Tiers of history for one metric: pure data, no clock, no I/O.
//!
//! - The raw tier is a [`Ring`] of fixed slots (1 s by default): one `f32` (the average of the
//!   samples that fell into the slot) and a `u8` count each, NaN where nothing came. Its size is
//!   fixed when the series is made: `keep / width` slots, 5 bytes each.
//! - Every coarser tier is a [`Rollup`]: closed [`Bucket`]s of 24 bytes (count, sum, min, max,
//!   last, p95) plus a 4-byte start, at most `keep / width` of them.
//!
//! A bucket of tier k is built from tier k-1 when it closes (see [`Series::close`]): a minute
//! from its raw slots, an hour from its minute buckets. Percentiles:
//! - over raw slots they are exact: the nearest-rank p95 of the slot values, each weighted by its
//!   sample count (one sample per slot at the usual 1 s interval, so plainly the sample p95);
//! - over buckets (an hour from minutes, a query window over minutes or hours) they are an
//!   estimate: the count-weighted nearest-rank p95 of the buckets' own p95s. It always lies
//!   within [min, max] of the window, equals the exact value when every bucket holds one value,
//!   and tracks it when the distribution is similar from bucket to bucket; a short spike that
//!   fills less than 5 % of one bucket is not seen (no finer data is kept to see it).

use std::collections::VecDeque;

/// Aggregate of one time slot: 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub count: u32,
    pub sum: f32,
    pub min: f32,
    pub max: f32,
    pub last: f32,
    pub p95: f32,
}

impl Bucket {
    /// A slot of `count` samples averaging `avg`.
    pub fn slot(avg: f32, count: u32) -> Self {
        Bucket {
            count,
            sum: avg * count as f32,
            min: avg,
            max: avg,
            last: avg,
            p95: avg,
        }
    }

    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// Folds parts given oldest first: sums and extremes exactly, `last` from the newest part,
    /// p95 as the count-weighted p95 of the parts' p95s (see the module comment). `None` if no
    /// part holds a sample.
    pub fn combine<'a>(parts: impl IntoIterator<Item = &'a Bucket>) -> Option<Bucket> {
        let mut acc: Option<Bucket> = None;
        let mut p95s: Vec<(f32, u32)> = Vec::new();
        for b in parts.into_iter().filter(|b| b.count > 0) {
            p95s.push((b.p95, b.count));
            match acc.as_mut() {
                None => acc = Some(*b),
                Some(a) => {
                    a.count = a.count.saturating_add(b.count);
                    a.sum += b.sum;
                    a.min = a.min.min(b.min);
                    a.max = a.max.max(b.max);
                    a.last = b.last;
                }
            }
        }
        let mut acc = acc?;
        acc.p95 = weighted_quantile(&mut p95s, 0.95);
        Some(acc)
    }
}

/// Nearest-rank `q`-quantile of values weighted by counts. `v` must not be empty.
fn weighted_quantile(v: &mut [(f32, u32)], q: f64) -> f32 {
    let total: u64 = v.iter().map(|p| p.1 as u64).sum();
    let rank = ((q * total as f64).ceil() as u64).max(1);
    if v.iter().all(|p| p.1 == 1) {
        // The usual case (one sample per slot): a linear-time selection.
        let (_, x, _) = v.select_nth_unstable_by(rank as usize - 1, |a, b| a.0.total_cmp(&b.0));
        return x.0;
    }
    v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut seen = 0u64;
    for &(x, n) in v.iter() {
        seen += n as u64;
        if seen >= rank {
            return x;
        }
    }
    v[v.len() - 1].0
}

/// The raw tier: `cap` slots of `slot_ms`, the newest at slot index `head` (absolute,
/// `ts_ms / slot_ms`); a slot index older than `head - cap + 1` has been overwritten.
#[derive(Debug, Clone)]
pub struct Ring {
    pub slot_ms: u64,
    head: Option<u64>,
    vals: Box<[f32]>,
    counts: Box<[u8]>,
}

impl Ring {
    pub fn new(slot_ms: u64, keep_ms: u64) -> Self {
        let cap = (keep_ms / slot_ms).max(1) as usize;
        Ring {
            slot_ms,
            head: None,
            vals: vec![f32::NAN; cap].into_boxed_slice(),
            counts: vec![0; cap].into_boxed_slice(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.vals.len()
    }

    /// Start time of the newest slot written.
    pub fn newest_ms(&self) -> Option<u64> {
        self.head.map(|h| h * self.slot_ms)
    }

    /// Oldest slot index still held.
    fn tail(&self) -> Option<u64> {
        self.head
            .map(|h| (h + 1).saturating_sub(self.capacity() as u64))
    }

    /// Adds a sample; false if it is older than the ring holds.
    pub fn add(&mut self, ts_ms: u64, x: f32) -> bool {
        let slot = ts_ms / self.slot_ms;
        let cap = self.capacity() as u64;
        match self.head {
            None => self.head = Some(slot),
            Some(h) if slot > h => {
                // Clear the slots skipped over (at most the whole ring).
                for s in (h + 1).max(slot.saturating_sub(cap - 1))..=slot {
                    let i = (s % cap) as usize;
                    self.vals[i] = f32::NAN;
                    self.counts[i] = 0;
                }
                self.head = Some(slot);
            }
            Some(h) if slot + cap <= h => return false,
            Some(_) => {}
        }
        let i = (slot % cap) as usize;
        let n = self.counts[i];
        if n == 0 {
            self.vals[i] = x;
        } else {
            self.vals[i] = (self.vals[i] * n as f32 + x) / (n as f32 + 1.0);
        }
        self.counts[i] = n.saturating_add(1);
        true
    }

    /// The slots with samples whose start lies in `from_ms..to_ms`, oldest first, as buckets.
    pub fn range(&self, from_ms: u64, to_ms: u64) -> impl Iterator<Item = (u64, Bucket)> + '_ {
        let (lo, hi) = match (self.tail(), self.head) {
            (Some(t), Some(h)) => (
                t.max(from_ms.div_ceil(self.slot_ms)),
                (h + 1).min(to_ms.div_ceil(self.slot_ms)),
            ),
            _ => (1, 0),
        };
        let cap = self.capacity() as u64;
        (lo..hi.max(lo)).filter_map(move |s| {
            let i = (s % cap) as usize;
            (self.counts[i] > 0).then(|| {
                (
                    s * self.slot_ms,
                    Bucket::slot(self.vals[i], self.counts[i] as u32),
                )
            })
        })
    }
}

/// One rollup tier of one series: closed buckets, oldest first, each keyed by its start in
/// seconds (widths are whole seconds). Buckets with no sample are not stored.
#[derive(Debug, Clone)]
pub struct Rollup {
    pub width_ms: u64,
    pub keep_ms: u64,
    buckets: VecDeque<(u32, Bucket)>,
    /// Start of the next bucket to close: everything before it is closed.
    pub next_close_ms: u64,
    /// From here on memory holds every closed bucket this monitor computed; before it, the
    /// durable copy in ACS_ROLLUPS is preferred (older buckets were dropped, or were never seen
    /// whole: the first bucket after a replay may have started before the replayed raw data).
    pub mem_from_ms: u64,
}

impl Rollup {
    fn new(width_ms: u64, keep_ms: u64, first_ms: u64) -> Self {
        let start = first_ms - first_ms % width_ms;
        let cap = (keep_ms / width_ms) as usize + 1;
        Rollup {
            width_ms,
            keep_ms,
            buckets: VecDeque::with_capacity(cap),
            next_close_ms: start,
            mem_from_ms: start + width_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Closed buckets whose start lies in `from_ms..to_ms`, oldest first.
    pub fn range(&self, from_ms: u64, to_ms: u64) -> impl Iterator<Item = (u64, Bucket)> + '_ {
        let i = self
            .buckets
            .partition_point(|b| (b.0 as u64) * 1000 < from_ms);
        self.buckets
            .range(i..)
            .map(|&(s, b)| (s as u64 * 1000, b))
            .take_while(move |b| b.0 < to_ms)
    }

    fn oldest_ms(&self) -> Option<u64> {
        self.buckets.front().map(|b| b.0 as u64 * 1000)
    }

    fn push(&mut self, start_ms: u64, b: Bucket) {
        self.buckets.push_back(((start_ms / 1000) as u32, b));
    }

    /// Drops buckets past the memory keep, as seen from `watermark_ms`.
    fn evict(&mut self, watermark_ms: u64) {
        let cutoff = watermark_ms.saturating_sub(self.keep_ms);
        while self.oldest_ms().is_some_and(|s| s < cutoff) {
            self.buckets.pop_front();
        }
        let kept_from = cutoff.div_ceil(self.width_ms) * self.width_ms;
        self.mem_from_ms = self.mem_from_ms.max(kept_from.min(self.next_close_ms));
    }
}

/// Width, in-memory keep and durable keep of one tier. For the raw tier (the first) the durable
/// keep is the ACS_METRICS stream's max age: what a restart replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierSpec {
    pub width_ms: u64,
    pub keep_ms: u64,
    pub durable_ms: u64,
}

/// The default tiers: raw 1 s (10 min in memory, 1 h replayable), 1 min (1 h in memory, 1 day
/// durable), 1 h (2 h in memory, 30 days durable).
pub const DEFAULT_TIERS: [TierSpec; 3] = [
    TierSpec {
        width_ms: 1_000,
        keep_ms: 600_000,
        durable_ms: 3_600_000,
    },
    TierSpec {
        width_ms: 60_000,
        keep_ms: 3_600_000,
        durable_ms: 86_400_000,
    },
    TierSpec {
        width_ms: 3_600_000,
        keep_ms: 7_200_000,
        durable_ms: 30 * 86_400_000,
    },
];

/// A tier's name in subjects and messages: its width, e.g. `1s`, `1m`, `5m`, `1h`, `1d`.
pub fn tier_name(width_ms: u64) -> String {
    let s = width_ms / 1000;
    match s {
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Checks that the tiers can be built one from the other; the error names the tier and why.
/// `grace_ms` is how long a bucket waits for late samples before it closes.
pub fn validate(specs: &[TierSpec], grace_ms: u64) -> Result<(), String> {
    if specs.is_empty() {
        return Err("no tiers: at least the raw tier is needed".into());
    }
    if specs.len() > 8 {
        return Err(format!("{} tiers: at most 8", specs.len()));
    }
    for (i, t) in specs.iter().enumerate() {
        let name = if i == 0 {
            "raw".to_string()
        } else {
            format!("tier {} ({})", i, tier_name(t.width_ms))
        };
        if t.width_ms == 0 || t.width_ms % 1000 != 0 {
            return Err(format!(
                "{name}: width {} ms is not a whole number of seconds",
                t.width_ms
            ));
        }
        if t.keep_ms < t.width_ms {
            return Err(format!(
                "{name}: memory keep {} s is shorter than its width {} s",
                t.keep_ms / 1000,
                t.width_ms / 1000
            ));
        }
        if t.durable_ms < t.keep_ms {
            return Err(format!(
                "{name}: durable keep {} s is shorter than its memory keep {} s",
                t.durable_ms / 1000,
                t.keep_ms / 1000
            ));
        }
        if i == 0 && t.keep_ms / t.width_ms > 86_400 {
            return Err(format!(
                "raw: memory keep of {} slots is more than 86400",
                t.keep_ms / t.width_ms
            ));
        }
        if let Some(next) = specs.get(i + 1) {
            let nname = format!("tier {} ({})", i + 1, tier_name(next.width_ms));
            if next.width_ms <= t.width_ms || next.width_ms % t.width_ms != 0 {
                return Err(format!(
                    "{nname}: width {} s is not a multiple of the finer width {} s",
                    next.width_ms / 1000,
                    t.width_ms / 1000
                ));
            }
            // The raw ring must still hold a bucket's slots when the watermark (newest − grace)
            // closes it; closed rollups stay until the watermark passes their keep.
            let grace = if i == 0 { grace_ms } else { 0 };
            if t.keep_ms < next.width_ms + grace {
                return Err(format!(
                    "{name}: memory keep {} s must cover one {nname} bucket ({} s) plus the grace ({} ms), since that bucket is built from it",
                    t.keep_ms / 1000,
                    next.width_ms / 1000,
                    grace_ms
                ));
            }
        }
    }
    Ok(())
}

/// One metric's history: the raw ring and the rollups built from it.
#[derive(Debug, Clone)]
pub struct Series {
    pub raw: Ring,
    pub rollups: Vec<Rollup>,
}

impl Series {
    /// A series whose first sample is at `first_ms`.
    pub fn new(specs: &[TierSpec], first_ms: u64) -> Self {
        let raw = Ring::new(specs[0].width_ms, specs[0].keep_ms);
        Series {
            raw,
            rollups: specs[1..]
                .iter()
                .map(|s| Rollup::new(s.width_ms, s.keep_ms, first_ms))
                .collect(),
        }
    }

    pub fn add(&mut self, ts_ms: u64, x: f32) -> bool {
        self.raw.add(ts_ms, x)
    }

    /// Buckets and slots held (what the memory grows with), raw slots counted at capacity.
    pub fn size(&self) -> usize {
        self.raw.capacity() + self.rollups.iter().map(|r| r.len()).sum::<usize>()
    }

    /// Closes every bucket that ends at or before `watermark_ms`, finest tier first, and calls
    /// `emit(tier, start_ms, bucket)` for each one holding samples (tier 1 is the first rollup).
    /// Then drops what is past each tier's memory keep.
    pub fn close(&mut self, watermark_ms: u64, mut emit: impl FnMut(usize, u64, Bucket)) {
        for k in 0..self.rollups.len() {
            let (finer, rest) = self.rollups.split_at_mut(k);
            let r = &mut rest[0];
            let w = r.width_ms;
            let end = watermark_ms - watermark_ms % w;
            while r.next_close_ms + w <= end {
                let s = r.next_close_ms;
                // Skip empty stretches in one step: where does the finer tier next hold data?
                let next = match finer.last() {
                    None => self
                        .raw
                        .newest_ms()
                        .filter(|&n| n >= s)
                        .map(|_| s.max(self.raw.tail().unwrap_or(0) * self.raw.slot_ms)),
                    Some(f) => f
                        .buckets
                        .get(f.buckets.partition_point(|b| (b.0 as u64) * 1000 < s))
                        .map(|b| b.0 as u64 * 1000),
                };
                match next {
                    None => {
                        r.next_close_ms = end;
                        break;
                    }
                    Some(d) if d >= s + w => {
                        r.next_close_ms = (d - d % w).min(end);
                        continue;
                    }
                    Some(_) => {}
                }
                let parts: Vec<Bucket> = match finer.last() {
                    None => self.raw.range(s, s + w).map(|p| p.1).collect(),
                    Some(f) => f.range(s, s + w).map(|p| p.1).collect(),
                };
                if let Some(b) = Bucket::combine(&parts) {
                    r.push(s, b);
                    emit(k + 1, s, b);
                }
                r.next_close_ms = s + w;
            }
        }
        for r in &mut self.rollups {
            r.evict(watermark_ms);
        }
    }

    /// Whether nothing is left in memory as seen from `watermark_ms` (the series can go).
    pub fn is_stale(&self, watermark_ms: u64, raw_keep_ms: u64) -> bool {
        let raw_gone = self
            .raw
            .newest_ms()
            .is_none_or(|n| n + raw_keep_ms <= watermark_ms);
        raw_gone && self.rollups.iter().all(|r| r.is_empty())
    }
}

#[cfg(test)]
mod tests;
