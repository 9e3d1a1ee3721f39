//! [`percentile`]: the one percentile of every latency report (load runs, benches, the sim,
//! examples and timing tests), so their figures mean the same thing.

/// The nearest-rank percentile `q` (`0.0..=1.0`, clamped) of `sorted`, ascending: the
/// smallest sample with at least `q` of all samples at or below it. `None` when empty.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    let rank = (q * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.995), Some(100));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7.5], 0.9), Some(7.5));
        assert_eq!(percentile(&[1, 2, 3], 2.0), Some(3));
        assert_eq!(percentile::<u8>(&[], 0.5), None);
    }
}
