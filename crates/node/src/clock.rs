//! [`unix_ms`]: the one wall-clock read behind every timestamp that leaves a process
//! (`ts_ms`, `issued_ms`, `started_ms`, event times). Durations are measured with `Instant` or
//! `tokio::time`, never by subtracting two of these.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by the wall clock; 0 if the clock is set before 1970.
/// Not monotonic: the clock may be stepped between two readings.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_wall_clock_in_milliseconds() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let now = super::unix_ms();
        assert!(now >= before && now - before < 60_000, "{before} {now}");
    }
}
