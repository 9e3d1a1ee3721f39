//! The worker's one clock read: wall time, for timestamps that leave this process (`ts_ms`,
//! `started_ms` in events, state files and container labels). Durations inside the worker use
//! `tokio::time` / `Instant` instead.

use acs_events::UnixMs;

/// Milliseconds since the Unix epoch by the wall clock ([`acs_node::unix_ms`]); 0 if the
/// clock is set before 1970. Not monotonic: do not subtract two readings to measure a duration.
pub fn unix_now_ms() -> UnixMs {
    acs_node::unix_ms()
}
