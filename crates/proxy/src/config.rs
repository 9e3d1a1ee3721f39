//! The proxy's configuration, validated once at start-up.

use std::net::SocketAddr;
use std::time::Duration;

use acs_events::{ProxyId, Subjects};

use crate::backend::EjectPolicy;
use crate::pressure::PressureSettings;
use crate::snapshot::PeerTimeouts;

/// Most tries (first attempt plus retries) a request may take; bounds the CTX's fixed array.
pub const MAX_TRIES_CAP: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid subject prefix: {0}")]
    Prefix(String),
    #[error("--metrics-interval must be > 0")]
    Interval,
    #[error("--max-tries must be between 1 and {MAX_TRIES_CAP}, got {0}")]
    Tries(u32),
    #[error("--threads must be > 0")]
    Threads,
    #[error("--listener-tasks and --upstream-keepalive-pool must be > 0")]
    Server,
    #[error("--pressure-factor must be a finite number >= 1 and --pressure-min-rps >= 0, got {0} and {1}")]
    Pressure(f64, f64),
}

/// Pingora's server knobs (`ServerConf` and the listener). Changing them moved throughput by
/// no more than the noise (docs/PERFORMANCE.md, "Pingora's knobs"), so the defaults are
/// Pingora's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTuning {
    /// Tokio work stealing between the proxy's threads (else one single-threaded runtime per
    /// thread).
    pub work_stealing: bool,
    /// Accept tasks per listening socket.
    pub listener_tasks: usize,
    /// Idle upstream connections kept for reuse, over all backends.
    pub upstream_keepalive_pool: usize,
}

impl Default for ServerTuning {
    fn default() -> Self {
        Self {
            work_stealing: true,
            listener_tasks: 1,
            upstream_keepalive_pool: 128,
        }
    }
}

/// How requests are retried and backends ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Tries per request (first attempt included), each on a different backend. Retried: GET,
    /// HEAD, OPTIONS and body-less requests after a connect failure; GET, HEAD and OPTIONS also
    /// after the upstream reset or closed the connection before any response byte (a backend
    /// that died mid-request, or docker-proxy accepting for a dead container). Never after a
    /// response has started, and never after a timeout.
    pub max_tries: u32,
    pub eject: EjectPolicy,
    pub timeouts: PeerTimeouts,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            max_tries: 3,
            eject: EjectPolicy::default(),
            timeouts: PeerTimeouts::default(),
        }
    }
}

/// Everything [`crate::run`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Servers, credentials and TLS; [`Config::new`] gives a plain connection to one URL.
    pub nats: acs_node::NatsOptions,
    pub subjects: Subjects,
    pub id: ProxyId,
    pub metrics_interval: Duration,
    /// Early reports when a service's load jumps between two intervals.
    pub pressure: PressureSettings,
    /// Pingora worker threads for the proxy service.
    pub threads: usize,
    pub tuning: Tuning,
    pub server: ServerTuning,
    /// Where `/healthz` and `/readyz` alone are served (`--health-listen`).
    pub health_listen: Option<SocketAddr>,
}

impl Config {
    /// A config with defaults for everything but the essentials.
    pub fn new(listen: SocketAddr, nats_url: impl Into<String>, id: ProxyId) -> Self {
        Self {
            listen,
            nats: acs_node::NatsOptions::new(nats_url.into()).with_name(format!("acs-proxy {id}")),
            subjects: Subjects::default(),
            id,
            metrics_interval: Duration::from_secs(1),
            pressure: PressureSettings::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            tuning: Tuning::default(),
            server: ServerTuning::default(),
            health_listen: None,
        }
    }

    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        self.subjects = Subjects::new(prefix).map_err(ConfigError::Prefix)?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.metrics_interval.is_zero() {
            return Err(ConfigError::Interval);
        }
        if self.tuning.max_tries == 0 || self.tuning.max_tries as usize > MAX_TRIES_CAP {
            return Err(ConfigError::Tries(self.tuning.max_tries));
        }
        if self.threads == 0 {
            return Err(ConfigError::Threads);
        }
        let p = &self.pressure;
        if !(p.factor.is_finite() && p.factor >= 1.0 && p.min_rps.is_finite() && p.min_rps >= 0.0) {
            return Err(ConfigError::Pressure(p.factor, p.min_rps));
        }
        let s = &self.server;
        if s.listener_tasks == 0 || s.upstream_keepalive_pool == 0 {
            return Err(ConfigError::Server);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::new(
            "127.0.0.1:0".parse().unwrap(),
            "nats://x",
            ProxyId::new("p1").unwrap(),
        )
    }

    #[test]
    fn defaults_are_valid() {
        cfg().validate().unwrap();
        assert_eq!(cfg().tuning.max_tries, 3);
        assert_eq!(cfg().subjects.prefix(), "acs");
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = cfg();
        c.metrics_interval = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.tuning.max_tries = 9;
        assert!(c.validate().unwrap_err().to_string().contains("max-tries"));
        let mut c = cfg();
        c.server.listener_tasks = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--listener-tasks"));
        let mut c = cfg();
        c.pressure.factor = 0.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--pressure-factor"));
        c.pressure.factor = f64::NAN;
        assert!(c.validate().is_err());
        assert!(cfg().with_prefix("a..b").is_err());
        assert_eq!(
            cfg().with_prefix("prod.acs").unwrap().subjects.prefix(),
            "prod.acs"
        );
    }
}
