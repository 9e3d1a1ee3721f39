//! When each simulated message is due. Pure: offsets from a start, no clock.
//!
//! N senders each publish once per interval, spread evenly: the interval is a wheel of N slots
//! and message `k` (the k-th message of the whole run) belongs to sender `k % N`, round `k / N`,
//! and is due `k * interval / N` after the start. One loop walks `k` upwards; nothing per sender
//! is kept, so a million senders cost no more timers than one.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the count must be at least 1")]
    NoSenders,
    #[error("the interval must be longer than 0")]
    ZeroInterval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    senders: u64,
    interval_ns: u64,
}

impl Schedule {
    pub fn new(senders: usize, interval: Duration) -> Result<Self, ScheduleError> {
        if senders == 0 {
            return Err(ScheduleError::NoSenders);
        }
        let interval_ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        if interval_ns == 0 {
            return Err(ScheduleError::ZeroInterval);
        }
        Ok(Schedule {
            senders: senders as u64,
            interval_ns,
        })
    }

    pub fn senders(&self) -> usize {
        self.senders as usize
    }

    /// Which sender message `k` is for, and its round (0 for each sender's first message).
    pub fn slot(&self, k: u64) -> (usize, u64) {
        ((k % self.senders) as usize, k / self.senders)
    }

    /// How long after the start message `k` is due.
    pub fn due(&self, k: u64) -> Duration {
        let ns = u128::from(k) * u128::from(self.interval_ns) / u128::from(self.senders);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// How many messages are due at or before `elapsed`: messages `0..due_by(elapsed)`.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let ns = elapsed.as_nanos();
        // due(k) <= ns  <=>  k * interval <= ns * senders (up to the floor in `due`), so the
        // count is floor(ns * senders / interval) + 1, corrected for that floor below.
        let mut k = u64::try_from(ns * u128::from(self.senders) / u128::from(self.interval_ns))
            .unwrap_or(u64::MAX - 1)
            + 1;
        while self.due(k).as_nanos() <= ns {
            k += 1;
        }
        while k > 0 && self.due(k - 1).as_nanos() > ns {
            k -= 1;
        }
        k
    }
}

/// The shared duration parser (`1s`, `500ms`, `2m`, `1.5`).
pub use acs_node::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_spread_evenly_over_the_interval() {
        let s = Schedule::new(4, Duration::from_secs(1)).unwrap();
        let dues: Vec<u128> = (0..9).map(|k| s.due(k).as_millis()).collect();
        assert_eq!(dues, [0, 250, 500, 750, 1000, 1250, 1500, 1750, 2000]);
        assert_eq!(s.slot(0), (0, 0));
        assert_eq!(s.slot(5), (1, 1));
        assert_eq!(s.slot(8), (0, 2));
    }

    #[test]
    fn every_sender_once_per_interval() {
        let s = Schedule::new(1000, Duration::from_secs(1)).unwrap();
        let first_second = s.due_by(Duration::from_millis(999));
        assert_eq!(first_second, 1000);
        let mut seen = vec![0u32; 1000];
        for k in 0..first_second {
            seen[s.slot(k).0] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1));
    }

    #[test]
    fn due_by_counts_exactly_the_due_messages() {
        for (n, interval_ms) in [(1, 1000), (3, 1000), (7, 333), (10_000, 1000)] {
            let s = Schedule::new(n, Duration::from_millis(interval_ms)).unwrap();
            for t_us in [0u64, 1, 999, 142_857, 333_333, 1_000_000, 2_345_678] {
                let t = Duration::from_micros(t_us);
                let k = s.due_by(t);
                assert!(k >= 1, "message 0 is due at the start");
                assert!(s.due(k - 1) <= t, "n={n} t={t:?}: message {} is due", k - 1);
                assert!(s.due(k) > t, "n={n} t={t:?}: message {k} is not due yet");
            }
        }
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert_eq!(
            Schedule::new(0, Duration::from_secs(1)),
            Err(ScheduleError::NoSenders)
        );
        assert_eq!(
            Schedule::new(5, Duration::ZERO),
            Err(ScheduleError::ZeroInterval)
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
        // Days are a unit now (humantime); an unknown one is still named.
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert!(parse_duration("3x")
            .unwrap_err()
            .contains("unknown time unit"));
        assert!(parse_duration("-1s").is_err());
    }
}
