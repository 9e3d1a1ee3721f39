//! Proxy traffic figures (`acs.metrics.proxy.<proxy>`), every second. The brain uses them as a
//! scaling signal (requests/s and in-flight per replica) and to know when a draining backend
//! has no requests left.

use serde::{Deserialize, Serialize};

use super::{sane, v1, versioned};
use crate::codec::Validate;
use crate::id::{ProxyId, ReplicaId, ServiceName};
use crate::UnixMs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyMetrics {
    #[serde(default = "v1")]
    pub v: u32,
    pub proxy: ProxyId,
    pub ts_ms: UnixMs,
    /// Window the rates and percentiles cover.
    pub interval_ms: u64,
    #[serde(default)]
    pub services: Vec<ServiceTraffic>,
    /// Requests in the window that matched no route (answered 404).
    #[serde(default)]
    pub unrouted: u64,
    /// Malformed backend updates this proxy has refused since it started.
    #[serde(default)]
    pub rejected: u64,
}
versioned!(ProxyMetrics);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    pub service: ServiceName,
    /// Backend-set version the proxy has applied; the brain trusts a drained backend's
    /// `in_flight == 0` only once this is at least the version that drained it.
    pub version: u64,
    #[serde(flatten)]
    pub totals: Traffic,
    #[serde(default)]
    pub backends: Vec<BackendTraffic>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendTraffic {
    pub id: ReplicaId,
    #[serde(flatten)]
    pub traffic: Traffic,
    #[serde(default)]
    pub draining: bool,
    /// Out of rotation after repeated failures.
    #[serde(default)]
    pub ejected: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Requests completed in the window.
    pub requests: u64,
    pub rps: f64,
    /// Requests in progress at the end of the window.
    pub in_flight: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// 5xx answers, upstream connect failures and timeouts in the window.
    pub errors: u64,
}

impl Validate for ProxyMetrics {
    fn validate(&self) -> Result<(), String> {
        if self.interval_ms == 0 {
            return Err("interval_ms must be > 0".into());
        }
        for s in &self.services {
            s.totals.check(&format!("services[{}]", s.service))?;
            for b in &s.backends {
                b.traffic
                    .check(&format!("services[{}].backends[{}]", s.service, b.id))?;
            }
        }
        Ok(())
    }
}

impl Traffic {
    fn check(&self, at: &str) -> Result<(), String> {
        for (name, x) in [
            ("rps", self.rps),
            ("p50_ms", self.p50_ms),
            ("p99_ms", self.p99_ms),
        ] {
            if !sane(x) {
                return Err(format!("{at}.{name} must be a finite number >= 0, got {x}"));
            }
        }
        Ok(())
    }
}
