//! The brain's timings and limits that are not per-service policy.

use super::Millis;

/// Timings that are not per-service policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// A worker with no metrics for this long is down.
    pub worker_timeout_ms: Millis,
    /// A proxy with no metrics for this long no longer counts (for drains and traffic).
    pub proxy_timeout_ms: Millis,
    /// After start-up the brain only listens for this long before it acts, so that a restarted
    /// brain learns what runs before it starts or stops anything.
    pub warmup_ms: Millis,
    /// A start that has not turned healthy in this long is given up and replaced.
    pub start_timeout_ms: Millis,
    /// A replica unhealthy for this long is stopped and replaced.
    pub unhealthy_grace_ms: Millis,
    /// A stop not yet reflected by the worker is retried after this long.
    pub stop_retry_ms: Millis,
    /// A worker that refused a start is not chosen again for this long.
    pub refusal_backoff_ms: Millis,
    /// Full `reset` snapshots are republished this often (longer for over 10,000 backends in
    /// all: `plan::backends::snapshot_every`).
    pub reset_every_ms: Millis,
    /// A worker (announced down) or proxy silent this long is forgotten: its replicas were
    /// replaced long ago. Default: 10 worker timeouts.
    pub forget_after_ms: Millis,
    /// Most distinct worker ids, and most distinct proxy ids, kept; reports from more are refused.
    pub max_ids: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            worker_timeout_ms: 3_000,
            proxy_timeout_ms: 3_000,
            warmup_ms: 2_500,
            start_timeout_ms: 60_000,
            unhealthy_grace_ms: 30_000,
            stop_retry_ms: 15_000,
            refusal_backoff_ms: 3_000,
            reset_every_ms: 5_000,
            forget_after_ms: 30_000,
            max_ids: 100_000,
        }
    }
}
