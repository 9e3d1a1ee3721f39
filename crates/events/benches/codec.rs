//! Encode and decode (with validation) of the messages sent most: a worker's metrics (10
//! replicas), a backend reset of 100 backends, and a proxy's metrics (10 services of 10
//! backends each).
//!
//! `cargo bench -p acs-events --bench codec` (add `-- --quick` for a short run).

use std::time::Duration;

use acs_events::{
    decode, encode, Backend, BackendChange, BackendTraffic, BackendUpdate, Capacity, HostMetrics,
    ProxyMetrics, ReplicaState, ReplicaStatus, Route, RuntimeKind, Selection, ServiceTraffic,
    Traffic, WorkerMetrics,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn id<T: std::str::FromStr>(s: String) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("a valid id")
}

fn worker_metrics() -> WorkerMetrics {
    WorkerMetrics {
        v: 1,
        worker: id("w00042".into()),
        seq: 7,
        ts_ms: 1_700_000_000_000,
        started_ms: 1_699_999_000_000,
        instance: "inst42".into(),
        interval_ms: 1000,
        runtime: RuntimeKind::Docker,
        host: HostMetrics {
            cpu_pct: 42.5,
            cpus: 4,
            ..Default::default()
        },
        capacity: Capacity {
            max_replicas: 16,
            running: 10,
        },
        replicas: (0..10)
            .map(|j| ReplicaStatus {
                id: id(format!("s{j}-t1-{}", 1000 + j)),
                service: id(format!("s{j}")),
                addr: format!("10.0.0.42:{}", 20_000 + j),
                state: ReplicaState::Healthy,
                cpu_pct: 4.2,
                mem_bytes: 64 << 20,
                started_ms: 1_699_999_500_000,
                restarts: 0,
            })
            .collect(),
        rejected: 0,
    }
}

fn backend_reset() -> BackendUpdate {
    BackendUpdate {
        v: 1,
        service: id("web".into()),
        version: 4_294_967_300,
        ts_ms: 1_700_000_000_000,
        selection: Selection::RoundRobin,
        change: BackendChange::Reset {
            route: Route {
                host: None,
                path_prefix: Some("/web".into()),
            },
            backends: (0..100)
                .map(|i| Backend {
                    id: id(format!("web-t1-{i}")),
                    addr: format!("10.0.{}.{}:20000", i / 250, i % 250),
                    worker: id(format!("w{i:05}")),
                    draining: false,
                })
                .collect(),
        },
    }
}

fn traffic(rps: f64) -> Traffic {
    Traffic {
        requests: (rps * 1.0) as u64,
        rps,
        in_flight: 3,
        p50_ms: 1.2,
        p99_ms: 8.5,
        errors: 0,
    }
}

fn proxy_metrics() -> ProxyMetrics {
    ProxyMetrics {
        v: 1,
        proxy: id("p1".into()),
        ts_ms: 1_700_000_000_000,
        interval_ms: 1000,
        services: (0..10)
            .map(|s| ServiceTraffic {
                service: id(format!("s{s}")),
                version: 4_294_967_300,
                totals: traffic(1000.0),
                backends: (0..10)
                    .map(|b| BackendTraffic {
                        id: id(format!("s{s}-t1-{b}")),
                        traffic: traffic(100.0),
                        draining: false,
                        ejected: false,
                    })
                    .collect(),
            })
            .collect(),
        unrouted: 0,
        rejected: 0,
    }
}

fn codec<T>(c: &mut Criterion, name: &str, msg: T)
where
    T: Serialize + DeserializeOwned + acs_events::Validate + acs_events::codec::Versioned,
{
    let bytes = encode(&msg);
    let mut group = c.benchmark_group(format!("codec_{name}"));
    // Short runs: these take microseconds or less.
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| b.iter(|| encode(&msg)));
    group.bench_function("decode", |b| {
        b.iter(|| decode::<T>(&bytes).expect("a valid message"))
    });
    group.finish();
}

fn messages(c: &mut Criterion) {
    codec(c, "worker_metrics_10_replicas", worker_metrics());
    codec(c, "backend_reset_100_backends", backend_reset());
    codec(c, "proxy_metrics_100_backends", proxy_metrics());
}

criterion_group!(benches, messages);
criterion_main!(benches);
