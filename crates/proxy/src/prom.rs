//! The proxy's Prometheus metrics (`GET /metrics`, served by `acs_node::metrics` as a Pingora
//! background service).
//!
//! Nothing here runs per request. The request path already counts into per-backend windows
//! that the metrics task reads and resets every interval ([`crate::metrics`]); that task adds
//! each window to [`Totals`], which keeps the running sums Prometheus wants:
//! `acs_proxy_requests_total{service,outcome}` (`error`: a 5xx answer or an upstream failure,
//! including 503 "no usable backend"), `acs_proxy_request_duration_seconds{service}` (a
//! histogram rebuilt from the windows' log-linear buckets: a bucket's bound can be up to 1/16
//! too high) and `acs_proxy_unrouted_requests_total` (answered 404). These lag by at most one
//! metrics interval. Read from the live snapshot at scrape time: `acs_proxy_in_flight{service}`,
//! `acs_proxy_backends{service,state}`, `acs_proxy_rejected_updates_total`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use acs_events::{ProxyId, ServiceName};
use acs_node::metrics::{counter, prometheus_client};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::backend::mono_now_ms;
use crate::service::Shared;
use crate::stats::{HistSnapshot, WindowStats};

/// Histogram bounds, in seconds.
const BOUNDS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Running sums of every window the metrics task has read.
#[derive(Debug, Default)]
pub struct Totals {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<ServiceName, WindowStats>,
    unrouted: u64,
    early_reports: u64,
    split_reports: u64,
    unsent_reports: u64,
}

impl Totals {
    /// A service's window (its backends merged, unbacked requests included).
    pub fn add(&self, service: &ServiceName, w: &WindowStats) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.services.entry(service.clone()).or_default().merge(w);
    }

    /// A traffic report sent before the interval was up ([`crate::pressure`]).
    pub fn early_report(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .early_reports += 1;
    }

    /// A traffic report too big for one message, sent in parts.
    pub fn split_report(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .split_reports += 1;
    }

    /// A traffic report too big even in parts ([`acs_events::MAX_PARTS`]), not sent.
    pub fn unsent_report(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unsent_reports += 1;
    }

    pub fn add_unrouted(&self, n: u64) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unrouted += n;
    }
}

/// The registry `GET /metrics` serves.
pub fn registry(shared: Arc<Shared>, proxy: &ProxyId) -> Registry {
    let mut r = Registry::default();
    // The encoder appends `_info`: acs_proxy_info.
    r.register(
        "acs_proxy",
        "This proxy process",
        Info::new(vec![("proxy", proxy.to_string())]),
    );
    r.register_collector(Box::new(ProxyCollector(shared)));
    r
}

/// Serves `registry` (with `/healthz` and `/readyz`), or the health paths alone, on a listener
/// bound before Pingora started, until shutdown.
pub struct MetricsService {
    pub listener: Mutex<Option<std::net::TcpListener>>,
    pub auth: acs_node::MetricsAuth,
    /// `None`: the health paths alone (`--health-listen`).
    pub registry: Option<Arc<Registry>>,
    pub ready: acs_node::Readiness,
}

impl MetricsService {
    /// Binds now, so a taken port is a clean error before Pingora starts.
    pub fn bind(
        listen: &acs_node::MetricsListen,
        registry: Registry,
        ready: acs_node::Readiness,
    ) -> Result<Self, acs_node::metrics::MetricsError> {
        let listener = bind_early(listen.addr)?;
        tracing::info!(addr = %listen.addr, auth = ?listen.auth, "serving Prometheus metrics on GET /metrics");
        Ok(Self {
            listener: Mutex::new(Some(listener)),
            auth: listen.auth.clone(),
            registry: Some(Arc::new(registry)),
            ready,
        })
    }

    /// `/healthz` and `/readyz` alone on `addr`.
    pub fn bind_health(
        addr: std::net::SocketAddr,
        ready: acs_node::Readiness,
    ) -> Result<Self, acs_node::metrics::MetricsError> {
        let listener = bind_early(addr)?;
        tracing::info!(%addr, "serving GET /healthz and /readyz");
        Ok(Self {
            listener: Mutex::new(Some(listener)),
            auth: acs_node::MetricsAuth::Insecure,
            registry: None,
            ready,
        })
    }
}

fn bind_early(
    addr: std::net::SocketAddr,
) -> Result<std::net::TcpListener, acs_node::metrics::MetricsError> {
    let bind_err = |source| acs_node::metrics::MetricsError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

#[async_trait]
impl BackgroundService for MetricsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "cannot serve metrics"),
        };
        let ready = self.ready.clone();
        let serve = async move {
            match &self.registry {
                Some(r) => {
                    let auth = self.auth.clone();
                    acs_node::metrics::serve_with_health(listener, auth, r.clone(), ready).await
                }
                None => acs_node::metrics::serve_health(listener, ready).await,
            }
        };
        tokio::select! {
            _ = serve => {}
            _ = async { while !*shutdown.borrow() { if shutdown.changed().await.is_err() { break } } } => {}
        }
    }
}

struct ProxyCollector(Arc<Shared>);

impl std::fmt::Debug for ProxyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyCollector")
    }
}

fn counter_type() -> MetricType {
    ConstCounter::new(0u64).metric_type()
}

fn gauge_type() -> MetricType {
    ConstGauge::new(0i64).metric_type()
}

impl Collector for ProxyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = &self.0;
        encode_totals(shared, &mut encoder)?;
        let rejected = shared.rejected.load(Relaxed);
        counter(
            &mut encoder,
            "acs_proxy_rejected_updates",
            "Malformed or unauthorised backend updates refused",
            rejected,
        )?;

        encode_route_table(shared, &mut encoder)?;
        Ok(())
    }
}

/// The counters the request path keeps: requests, latency, unrouted and report counts.
fn encode_totals(shared: &Shared, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let totals = shared.prom.inner.lock().unwrap_or_else(|p| p.into_inner());
    let mut fam = encoder.encode_descriptor(
        "acs_proxy_requests",
        "Requests finished, by service and outcome (error: a 5xx answer or an upstream failure)",
        None,
        counter_type(),
    )?;
    for (name, w) in &totals.services {
        let ok = w.requests.saturating_sub(w.errors);
        ConstCounter::new(ok)
            .encode(fam.encode_family(&[("service", name.as_str()), ("outcome", "ok")])?)?;
        ConstCounter::new(w.errors)
            .encode(fam.encode_family(&[("service", name.as_str()), ("outcome", "error")])?)?;
    }
    let mut fam = encoder.encode_descriptor(
        "acs_proxy_request_duration",
        "Time from picking a backend to the end of the answer, by service",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (name, w) in &totals.services {
        let (sum, count, buckets) = histogram(&w.latency);
        fam.encode_family(&[("service", name.as_str())])?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    counter(
        encoder,
        "acs_proxy_unrouted_requests",
        "Requests no route matched (answered 404)",
        totals.unrouted,
    )?;
    counter(
        encoder,
        "acs_proxy_early_reports",
        "Traffic reports sent before the interval was up, because a service's load jumped",
        totals.early_reports,
    )?;
    counter(
        encoder,
        "acs_proxy_split_reports",
        "Traffic reports too big for one message, sent in parts",
        totals.split_reports,
    )?;
    counter(
        encoder,
        "acs_proxy_unsent_reports",
        "Traffic reports too big even in parts, not sent",
        totals.unsent_reports,
    )?;
    Ok(())
}

/// In-flight requests and backends by state, from the live route table.
fn encode_route_table(
    shared: &Shared,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let snap = shared.snapshot.load_full();
    let now = mono_now_ms();
    let mut fam = encoder.encode_descriptor(
        "acs_proxy_in_flight",
        "Requests in flight, by service",
        None,
        gauge_type(),
    )?;
    for svc in &snap.services {
        let n: u64 = svc.backends.iter().map(|b| b.state.in_flight()).sum();
        ConstGauge::new(n as i64).encode(fam.encode_family(&[("service", svc.name.as_str())])?)?;
    }
    let mut fam = encoder.encode_descriptor(
            "acs_proxy_backends",
            "Backends in the live route table, by service and state (active, draining, ejected, unresolved)",
            None,
            gauge_type(),
        )?;
    for svc in &snap.services {
        let mut by_state = [
            ("active", 0i64),
            ("draining", 0),
            ("ejected", 0),
            ("unresolved", 0),
        ];
        for b in &svc.backends {
            let i = if b.draining {
                1
            } else if b.peer.is_none() {
                3
            } else if b.state.is_ejected(now) {
                2
            } else {
                0
            };
            by_state[i].1 += 1;
        }
        for (state, n) in by_state {
            ConstGauge::new(n)
                .encode(fam.encode_family(&[("service", svc.name.as_str()), ("state", state)])?)?;
        }
    }
    Ok(())
}

/// `(sum in seconds, count, per-bound counts)` from the log-linear buckets: each of those goes
/// to the first bound at or above its highest value; the sum counts each value as its bucket's
/// middle.
fn histogram(h: &HistSnapshot) -> (f64, u64, Vec<(f64, u64)>) {
    let mut buckets: Vec<(f64, u64)> = BOUNDS_S.iter().map(|b| (*b, 0)).collect();
    let (mut sum_us, mut count) = (0.0, 0);
    for (low, width, n) in h.buckets().filter(|b| b.2 > 0) {
        count += n;
        sum_us += (low as f64 + (width as f64 - 1.0) / 2.0) * n as f64;
        let highest_s = (low + width - 1) as f64 / 1e6;
        if let Some(b) = buckets.iter_mut().find(|(bound, _)| highest_s <= *bound) {
            b.1 += n;
        }
    }
    (sum_us / 1e6, count, buckets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tuning;
    use crate::stats::Window;
    use std::time::Duration;

    #[test]
    fn windows_add_up_to_counters_and_a_histogram() {
        let shared = Arc::new(Shared::new(Tuning::default()));
        let r = registry(shared.clone(), &ProxyId::new("p1").unwrap());
        let web = ServiceName::new("web").unwrap();
        for _ in 0..2 {
            let w = Window::default();
            for _ in 0..9 {
                w.done(Duration::from_micros(700), false);
            }
            w.done(Duration::from_millis(40), true);
            shared.prom.add(&web, &w.take());
        }
        shared.prom.add_unrouted(3);
        shared.rejected.store(2, Relaxed);
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, &r).unwrap();
        for line in [
            "acs_proxy_info{proxy=\"p1\"} 1",
            "acs_proxy_requests_total{service=\"web\",outcome=\"ok\"} 18",
            "acs_proxy_requests_total{service=\"web\",outcome=\"error\"} 2",
            "acs_proxy_request_duration_seconds_bucket{service=\"web\",le=\"0.0005\"} 0",
            "acs_proxy_request_duration_seconds_bucket{service=\"web\",le=\"0.001\"} 18",
            "acs_proxy_request_duration_seconds_bucket{service=\"web\",le=\"0.025\"} 18",
            "acs_proxy_request_duration_seconds_bucket{service=\"web\",le=\"0.05\"} 20",
            "acs_proxy_request_duration_seconds_bucket{service=\"web\",le=\"+Inf\"} 20",
            "acs_proxy_request_duration_seconds_count{service=\"web\"} 20",
            "acs_proxy_unrouted_requests_total 3",
            "acs_proxy_rejected_updates_total 2",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
        assert!(
            s.contains("# TYPE acs_proxy_request_duration_seconds histogram"),
            "{s}"
        );
        let sum: f64 = s
            .lines()
            .find_map(|l| {
                l.strip_prefix("acs_proxy_request_duration_seconds_sum{service=\"web\"} ")
            })
            .unwrap()
            .parse()
            .unwrap();
        let want = 2.0 * (9.0 * 0.0007 + 0.040);
        assert!(
            (sum - want).abs() / want < 0.07,
            "sum {sum}, want about {want}"
        );
    }
}
