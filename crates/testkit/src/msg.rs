//! Messages as tests build them: the fields a test cares about as arguments, every other field
//! a plain value, so a change to a message type is mended here once.

use acs_events::{
    Capacity, HostMetrics, ProxyMetrics, RuntimeKind, ServiceTraffic, WorkerMetrics, SCHEMA_VERSION,
};

/// `worker`'s publication number `seq` at `ts_ms`: host CPU at `cpu_pct` of 2 cores, room for 4
/// replicas and none running, the process runtime, one report a second.
pub fn worker_metrics(worker: &str, seq: u64, ts_ms: u64, cpu_pct: f64) -> WorkerMetrics {
    WorkerMetrics {
        v: SCHEMA_VERSION,
        worker: worker.parse().expect("a valid worker id"),
        seq,
        ts_ms,
        started_ms: 0,
        instance: "i1".into(),
        interval_ms: 1000,
        runtime: RuntimeKind::Process,
        host: HostMetrics {
            cpu_pct,
            cpus: 2,
            ..Default::default()
        },
        capacity: Capacity {
            max_replicas: 4,
            running: 0,
        },
        replicas: vec![],
        rejected: 0,
    }
}

/// `proxy`'s report at `ts_ms` over `interval_ms`, with the traffic of `services`, no unrouted
/// requests and nothing rejected.
pub fn proxy_metrics(
    proxy: &str,
    ts_ms: u64,
    interval_ms: u64,
    services: Vec<ServiceTraffic>,
) -> ProxyMetrics {
    ProxyMetrics {
        v: SCHEMA_VERSION,
        proxy: proxy.parse().expect("a valid proxy id"),
        ts_ms,
        interval_ms,
        services,
        unrouted: 0,
        rejected: 0,
    }
}
