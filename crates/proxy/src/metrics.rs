//! Traffic figures: every interval, read (and reset) each backend's window and build the
//! `ProxyMetrics` message. Every backend in the live snapshot is listed, idle ones included: the
//! brain finishes a drain on a backend's `in_flight == 0` at the drained `version`. Each window
//! is also added to the running sums `GET /metrics` serves ([`crate::prom::Totals`]).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use acs_events::{BackendTraffic, ProxyId, ProxyMetrics, ServiceTraffic, Traffic, UnixMs};

use crate::backend::mono_now_ms;
use crate::service::Shared;
use crate::snapshot::Snapshot;
use crate::stats::WindowStats;

/// Reads one window from `snapshot`. `window` is the real time the window covered (for rates).
pub fn collect(
    snapshot: &Snapshot,
    proxy: &ProxyId,
    window: Duration,
    unrouted: u64,
    rejected: u64,
    ts_ms: UnixMs,
    totals: &crate::prom::Totals,
) -> ProxyMetrics {
    totals.add_unrouted(unrouted);
    let secs = window.as_secs_f64().max(1e-3);
    let now = mono_now_ms();
    let services = snapshot
        .services
        .iter()
        .map(|svc| {
            let mut total = WindowStats::default();
            let mut in_flight = 0;
            let backends = svc
                .backends
                .iter()
                .map(|b| {
                    let w = b.state.window.take();
                    let inf = b.state.in_flight();
                    in_flight += inf;
                    total.merge(&w);
                    BackendTraffic {
                        id: b.id().clone(),
                        traffic: traffic(&w, inf, secs),
                        draining: b.draining,
                        ejected: b.state.is_ejected(now),
                    }
                })
                .collect();
            let unbacked = svc.state.unbacked.swap(0, Relaxed);
            total.requests += unbacked;
            total.errors += unbacked;
            totals.add(&svc.name, &total);
            ServiceTraffic {
                service: svc.name.clone(),
                version: svc.version,
                totals: traffic(&total, in_flight, secs),
                backends,
            }
        })
        .collect();
    ProxyMetrics {
        v: acs_events::SCHEMA_VERSION,
        proxy: proxy.clone(),
        ts_ms,
        interval_ms: (window.as_millis() as u64).max(1),
        services,
        unrouted,
        rejected,
    }
}

fn traffic(w: &WindowStats, in_flight: u64, secs: f64) -> Traffic {
    Traffic {
        requests: w.requests,
        rps: w.requests as f64 / secs,
        in_flight,
        p50_ms: w.latency.quantile_ms(0.5),
        p99_ms: w.latency.quantile_ms(0.99),
        errors: w.errors,
    }
}

/// Reads one window from the live state (resets the window counters).
pub fn collect_shared(shared: &Shared, proxy: &ProxyId, window: Duration) -> ProxyMetrics {
    let snap = shared.snapshot.load_full();
    collect(
        &snap,
        proxy,
        window,
        shared.unrouted.swap(0, Relaxed),
        shared.rejected.load(Relaxed),
        unix_ms(),
        &shared.prom,
    )
}

/// Wall-clock milliseconds since the Unix epoch.
pub use acs_node::unix_ms;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteTable;
    use crate::snapshot::PeerTimeouts;
    use acs_events::{
        Backend, BackendChange, BackendUpdate, ReplicaId, Route, Selection, ServiceName, Validate,
        WorkerId,
    };

    fn snapshot() -> Snapshot {
        let b = |id: &str, draining| Backend {
            id: ReplicaId::new(id).unwrap(),
            addr: "127.0.0.1:9".into(),
            worker: WorkerId::new("w1").unwrap(),
            draining,
        };
        let mut t = RouteTable::new();
        t.apply(&BackendUpdate {
            v: 1,
            service: ServiceName::new("web").unwrap(),
            version: 42,
            ts_ms: 0,
            selection: Selection::RoundRobin,
            change: BackendChange::Reset {
                route: Route::default(),
                backends: vec![b("a", false), b("b", true)],
            },
        });
        Snapshot::build(&t, &Snapshot::default(), &PeerTimeouts::default())
    }

    #[test]
    fn lists_every_backend_with_sane_numbers() {
        let s = snapshot();
        let web = &s.services[0];
        for _ in 0..10 {
            web.backends[0]
                .state
                .window
                .done(Duration::from_millis(4), false);
        }
        web.backends[0]
            .state
            .window
            .done(Duration::from_millis(4), true);
        let _busy = web.backends[1].state.begin();
        web.state.unbacked.fetch_add(2, Relaxed);

        let m = collect(
            &s,
            &ProxyId::new("p1").unwrap(),
            Duration::from_secs(2),
            3,
            1,
            99,
            &Default::default(),
        );
        m.validate().unwrap();
        assert_eq!(
            (m.unrouted, m.rejected, m.interval_ms, m.ts_ms),
            (3, 1, 2000, 99)
        );
        let svc = &m.services[0];
        assert_eq!(svc.version, 42);
        assert_eq!(svc.totals.requests, 13);
        assert_eq!(svc.totals.errors, 3);
        assert_eq!(svc.totals.in_flight, 1);
        assert!((svc.totals.rps - 6.5).abs() < 1e-9);
        assert_eq!(svc.backends.len(), 2);
        let a = &svc.backends[0];
        assert_eq!(
            (a.traffic.requests, a.traffic.errors, a.draining),
            (11, 1, false)
        );
        assert!((a.traffic.p50_ms - 4.0).abs() < 0.3, "{}", a.traffic.p50_ms);
        let b = &svc.backends[1];
        assert_eq!(
            (b.traffic.requests, b.traffic.in_flight, b.draining),
            (0, 1, true)
        );
        assert_eq!(b.traffic.p99_ms, 0.0);

        // The window was reset.
        let m = collect(
            &s,
            &ProxyId::new("p1").unwrap(),
            Duration::from_secs(1),
            0,
            1,
            100,
            &Default::default(),
        );
        assert_eq!(m.services[0].totals.requests, 0);
        assert_eq!(m.services[0].totals.in_flight, 1);
    }
}
