//! Cheap per-window statistics: a fixed-bucket latency histogram of atomics and the counters of
//! one metrics window.
//!
//! The histogram is log-linear (8 sub-buckets per power of two of microseconds, so a reported
//! percentile is within 1/16 of the true value), covers 0 µs to about 70 minutes, and records with
//! one relaxed `fetch_add`. The metrics task reads a window by swapping every bucket to zero.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Sub-buckets per power of two (as bits).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Largest recorded value: 2^32 µs (~71 min); larger values land in the last bucket.
const MAX_MSB: u32 = 31;
/// Number of buckets.
pub const BUCKETS: usize = (MAX_MSB as usize - SUB_BITS as usize + 2) * SUB;

/// Bucket index of a value in microseconds.
fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let us = us.min((1u64 << (MAX_MSB + 1)) - 1);
    let msb = 63 - us.leading_zeros();
    let sub = ((us >> (msb - SUB_BITS)) as usize) & (SUB - 1);
    (msb - SUB_BITS + 1) as usize * SUB + sub
}

/// `(lowest value, width)` of a bucket, in microseconds.
fn bucket_range(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, 1);
    }
    let msb = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let shift = msb - SUB_BITS;
    ((SUB as u64 + sub) << shift, 1 << shift)
}

/// A histogram that many threads record into.
pub struct Histogram {
    buckets: Box<[AtomicU64; BUCKETS]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").finish_non_exhaustive()
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
    }

    /// Reads and resets every bucket (the end of a window).
    pub fn take(&self) -> HistSnapshot {
        let mut s = HistSnapshot::default();
        for (out, b) in s.counts.iter_mut().zip(self.buckets.iter()) {
            *out = b.swap(0, Relaxed);
        }
        s
    }
}

/// Counts of one window; can be merged (service totals are the sum of their backends).
#[derive(Clone, PartialEq)]
pub struct HistSnapshot {
    counts: Box<[u64; BUCKETS]>,
}

impl Default for HistSnapshot {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
        }
    }
}

impl std::fmt::Debug for HistSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistSnapshot")
            .field("count", &self.count())
            .finish()
    }
}

impl HistSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Every bucket as `(lowest value in µs, width in µs, count)`, in order (for `prom`).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts.iter().enumerate().map(|(i, c)| {
            let (low, width) = bucket_range(i);
            (low, width, *c)
        })
    }

    pub fn merge(&mut self, other: &HistSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// The `q` quantile (0..=1) in milliseconds: the middle of the bucket holding the
    /// `ceil(q * count)`-th value; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                let mid = low as f64 + (width as f64 - 1.0) / 2.0;
                return mid / 1000.0;
            }
        }
        0.0
    }
}

/// The counters of one metrics window for one backend.
#[derive(Debug, Default)]
pub struct Window {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

/// A window read by [`Window::take`].
#[derive(Debug, Default, Clone)]
pub struct WindowStats {
    pub requests: u64,
    pub errors: u64,
    pub latency: HistSnapshot,
}

impl Window {
    /// A request finished (whatever its status) after `latency`.
    pub fn done(&self, latency: Duration, error: bool) {
        self.requests.fetch_add(1, Relaxed);
        if error {
            self.errors.fetch_add(1, Relaxed);
        }
        self.latency.record(latency);
    }

    /// An error that did not complete a request (e.g. a connect failure that was retried).
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// Requests completed so far in this window (the window is not reset).
    pub fn requests_so_far(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    pub fn take(&self) -> WindowStats {
        WindowStats {
            requests: self.requests.swap(0, Relaxed),
            errors: self.errors.swap(0, Relaxed),
            latency: self.latency.take(),
        }
    }
}

impl WindowStats {
    pub fn merge(&mut self, other: &WindowStats) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let b = bucket_of(us);
            assert!(b == last || b == last + 1, "us={us} b={b} last={last}");
            let (low, width) = bucket_range(b);
            assert!(
                low <= us && us < low + width,
                "us={us} in [{low}, {})",
                low + width
            );
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert!(bucket_of((1 << 32) - 1) == BUCKETS - 1);
    }

    #[test]
    fn relative_error_is_small() {
        for us in [9u64, 100, 999, 1_500, 12_345, 250_000, 3_000_000] {
            let (low, width) = bucket_range(bucket_of(us));
            let mid = low as f64 + (width as f64 - 1.0) / 2.0;
            let err = (mid - us as f64).abs() / us as f64;
            assert!(err <= 1.0 / 16.0 + 1e-9, "us={us} mid={mid} err={err}");
        }
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::default();
        let s = h.take();
        assert_eq!(s.count(), 0);
        assert_eq!(s.quantile_ms(0.5), 0.0);
        assert_eq!(s.quantile_ms(0.99), 0.0);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::default();
        // 90 fast requests (1 ms), 9 medium (10 ms), 1 slow (100 ms).
        for _ in 0..90 {
            h.record(Duration::from_millis(1));
        }
        for _ in 0..9 {
            h.record(Duration::from_millis(10));
        }
        h.record(Duration::from_millis(100));
        let s = h.take();
        assert_eq!(s.count(), 100);
        let close = |got: f64, want: f64| (got - want).abs() / want < 0.07;
        assert!(close(s.quantile_ms(0.5), 1.0), "{}", s.quantile_ms(0.5));
        assert!(close(s.quantile_ms(0.95), 10.0), "{}", s.quantile_ms(0.95));
        assert!(close(s.quantile_ms(0.99), 10.0), "{}", s.quantile_ms(0.99));
        assert!(close(s.quantile_ms(1.0), 100.0), "{}", s.quantile_ms(1.0));
    }

    #[test]
    fn take_resets_the_window() {
        let w = Window::default();
        w.done(Duration::from_millis(2), false);
        w.done(Duration::from_millis(2), true);
        w.error();
        let s = w.take();
        assert_eq!((s.requests, s.errors, s.latency.count()), (2, 2, 2));
        let s = w.take();
        assert_eq!((s.requests, s.errors, s.latency.count()), (0, 0, 0));
    }

    #[test]
    fn merge_adds_up() {
        let a = Window::default();
        let b = Window::default();
        a.done(Duration::from_millis(1), false);
        b.done(Duration::from_millis(50), true);
        let mut s = a.take();
        s.merge(&b.take());
        assert_eq!((s.requests, s.errors, s.latency.count()), (2, 1, 2));
        assert!(s.quantile_ms_max() > 45.0);
    }

    impl WindowStats {
        fn quantile_ms_max(&self) -> f64 {
            self.latency.quantile_ms(1.0)
        }
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let h = std::sync::Arc::new(Histogram::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.record(Duration::from_micros(i * (t + 1)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.take().count(), 40_000);
    }
}
