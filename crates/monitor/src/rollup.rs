//! Time buckets and tiers: pure data, no clock, no I/O.
//!
//! A [`Bucket`] keeps count/sum/min/max/last and a sparse log-scale histogram for percentiles.
//! Histogram bins grow by [`RATIO`] (5 %), so an estimated percentile is within ±2.5 % of a
//! value in the right bin (relative error; values below 1e-3 share bin 0). A [`Tier`] is a
//! window of buckets of one width kept for a bounded time: memory per series is
//! `keep / width` buckets, each a few dozen bytes plus one (bin, count) pair per distinct bin.

use std::collections::VecDeque;

/// Growth factor between histogram bins.
pub const RATIO: f64 = 1.05;
const FLOOR: f64 = 1e-3;

fn bin_of(x: f64) -> u16 {
    if x <= FLOOR {
        return 0;
    }
    ((x / FLOOR).ln() / RATIO.ln()).floor().clamp(0.0, u16::MAX as f64 - 1.0) as u16 + 1
}

/// Midpoint (geometric) of bin `b`.
fn bin_value(b: u16) -> f64 {
    if b == 0 {
        return 0.0;
    }
    FLOOR * RATIO.powf(b as f64 - 1.0 + 0.5)
}

/// Aggregate of the samples that fell into one time slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    /// Sorted (bin, count) pairs.
    hist: Vec<(u16, u32)>,
}

impl Bucket {
    pub fn new(x: f64) -> Self {
        Bucket { count: 1, sum: x, min: x, max: x, last: x, hist: vec![(bin_of(x), 1)] }
    }

    pub fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.last = x;
        self.bump(bin_of(x), 1);
    }

    fn bump(&mut self, bin: u16, n: u32) {
        match self.hist.binary_search_by_key(&bin, |p| p.0) {
            Ok(i) => self.hist[i].1 = self.hist[i].1.saturating_add(n),
            Err(i) => self.hist.insert(i, (bin, n)),
        }
    }

    /// Folds a later bucket into this one (`last` comes from `other`).
    pub fn merge(&mut self, other: &Bucket) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.last = other.last;
        for &(b, n) in &other.hist {
            self.bump(b, n);
        }
    }

    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// Estimated `q`-quantile (0..=1), clamped into [min, max] so one-value buckets are exact.
    pub fn quantile(&self, q: f64) -> f64 {
        let total: u64 = self.hist.iter().map(|p| p.1 as u64).sum();
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for &(b, n) in &self.hist {
            seen += n as u64;
            if seen >= rank {
                return bin_value(b).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// Buckets of one width, oldest first, kept for `keep_ms`.
#[derive(Debug, Clone)]
pub struct Tier {
    pub width_ms: u64,
    pub keep_ms: u64,
    buckets: VecDeque<(u64, Bucket)>,
}

impl Tier {
    pub fn new(width_ms: u64, keep_ms: u64) -> Self {
        Tier { width_ms: width_ms.max(1), keep_ms, buckets: VecDeque::new() }
    }

    /// Adds a sample at `ts_ms` and drops buckets older than `keep_ms` before the newest.
    /// A sample older than the newest bucket goes into its own slot if it is still kept.
    pub fn add(&mut self, ts_ms: u64, x: f64) {
        let start = ts_ms - ts_ms % self.width_ms;
        match self.buckets.binary_search_by_key(&start, |b| b.0) {
            Ok(i) => self.buckets[i].1.add(x),
            Err(i) => self.buckets.insert(i, (start, Bucket::new(x))),
        }
        let newest = self.buckets.back().map(|b| b.0).unwrap_or(0);
        while let Some(&(s, _)) = self.buckets.front() {
            if s + self.keep_ms <= newest {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    /// Oldest time this tier still covers.
    pub fn oldest(&self) -> Option<u64> {
        self.buckets.front().map(|b| b.0)
    }

    /// Buckets whose start lies in `from..to`.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &(u64, Bucket)> {
        let i = self.buckets.partition_point(|b| b.0 < from);
        self.buckets.range(i..).take_while(move |b| b.0 < to)
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Width and retention of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierSpec {
    pub width_ms: u64,
    pub keep_ms: u64,
}

/// The default tiers: 1 s for 1 h, 1 min for 1 day, 1 h for 30 days.
pub const DEFAULT_TIERS: [TierSpec; 3] = [
    TierSpec { width_ms: 1_000, keep_ms: 3_600_000 },
    TierSpec { width_ms: 60_000, keep_ms: 86_400_000 },
    TierSpec { width_ms: 3_600_000, keep_ms: 30 * 86_400_000 },
];

/// One metric's history at every resolution; every sample goes into every tier.
#[derive(Debug, Clone)]
pub struct Series {
    pub tiers: Vec<Tier>,
}

impl Series {
    pub fn new(specs: &[TierSpec]) -> Self {
        Series { tiers: specs.iter().map(|s| Tier::new(s.width_ms, s.keep_ms)).collect() }
    }

    pub fn add(&mut self, ts_ms: u64, x: f64) {
        for t in &mut self.tiers {
            t.add(ts_ms, x);
        }
    }

    /// The finest tier whose retention covers `from` as seen from `now` (else the coarsest).
    pub fn tier_for(&self, from: u64, now: u64) -> Option<&Tier> {
        let age = now.saturating_sub(from);
        self.tiers.iter().find(|t| age <= t.keep_ms).or(self.tiers.last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keeps_count_sum_min_max_last() {
        let mut b = Bucket::new(3.0);
        for x in [1.0, 7.0, 5.0] {
            b.add(x);
        }
        assert_eq!((b.count, b.sum, b.min, b.max, b.last), (4, 16.0, 1.0, 7.0, 5.0));
        assert_eq!(b.avg(), 4.0);
    }

    #[test]
    fn p95_is_within_the_documented_error() {
        let mut b = Bucket::new(1.0);
        for i in 2..=1000 {
            b.add(i as f64);
        }
        let p95 = b.quantile(0.95);
        assert!((p95 - 950.0).abs() / 950.0 < 0.03, "p95 {p95}");
        assert_eq!(Bucket::new(42.0).quantile(0.95), 42.0);
    }

    #[test]
    fn merge_equals_adding_everything() {
        let mut a = Bucket::new(1.0);
        a.add(2.0);
        let mut b = Bucket::new(10.0);
        b.add(0.5);
        a.merge(&b);
        assert_eq!((a.count, a.min, a.max, a.last), (4, 0.5, 10.0, 0.5));
    }

    #[test]
    fn tier_drops_old_buckets_and_bounds_memory() {
        let mut t = Tier::new(1_000, 10_000);
        for s in 0..100u64 {
            t.add(s * 1_000, s as f64);
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.oldest(), Some(90_000));
        assert_eq!(t.range(95_000, 97_000).count(), 2);
    }

    #[test]
    fn series_picks_the_finest_tier_that_reaches_back() {
        let specs = [TierSpec { width_ms: 1_000, keep_ms: 5_000 }, TierSpec { width_ms: 60_000, keep_ms: 3_600_000 }];
        let mut s = Series::new(&specs);
        for i in 0..120u64 {
            s.add(i * 1_000, 1.0);
        }
        assert_eq!(s.tier_for(118_000, 119_000).unwrap().width_ms, 1_000);
        assert_eq!(s.tier_for(10_000, 119_000).unwrap().width_ms, 60_000);
    }
}
