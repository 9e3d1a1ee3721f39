//! Latency samples and their percentiles. Pure.

use std::time::Duration;

/// Samples kept whole (a load run is thousands, not millions), so percentiles are exact.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The nearest-rank percentile `q` in `0.0..=1.0`; `None` without samples.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        let mut v = self.0.clone();
        v.sort_unstable();
        acs_node::percentile(&v, q)
    }

    pub fn max(&self) -> Option<Duration> {
        self.0.iter().max().copied()
    }
}

/// Milliseconds with three decimals; `None` stays `None` (JSON `null`).
pub fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        assert_eq!(s.percentile(0.5), None);
        for ms in (1..=100).rev() {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(s.percentile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(s.percentile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(s.percentile(0.0), Some(Duration::from_millis(1)));
        assert_eq!(s.max(), Some(Duration::from_millis(100)));
        assert_eq!(ms(Some(Duration::from_micros(1234))), Some(1.234));
    }
}
