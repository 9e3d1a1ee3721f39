//! Route lookup and route updates, the proxy's pure hot paths: the compiled router's lookup of a
//! request over 100 services (by path prefix, by host, and a miss), and the updater folding an
//! `add` or `remove` of one backend into a 100-backend service and swapping a new snapshot in.
//!
//! `cargo bench -p acs-proxy --bench routes` (add `-- --quick` for a short run). How long a
//! backend event takes to reach requests through NATS and a running proxy is measured by
//! `examples/route_latency.rs` (driven by `bench/proxy-bench.sh`).

use std::sync::Arc;
use std::time::Duration;

use acs_events::{Backend, BackendChange, BackendUpdate, ReplicaId, Route, Selection, ServiceName};
use acs_proxy::routes::Router;
use acs_proxy::{Outcome, Shared, Tuning, Updater};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

const SERVICES: usize = 100;

/// Half the services routed by path prefix (`/s7`), half by host (`s57.example.com`).
fn routes() -> Vec<Route> {
    (0..SERVICES)
        .map(|i| match i % 2 {
            0 => Route {
                host: None,
                path_prefix: Some(format!("/s{i}")),
            },
            _ => Route {
                host: Some(format!("s{i}.example.com")),
                path_prefix: None,
            },
        })
        .collect()
}

fn route_lookup(c: &mut Criterion) {
    let routes = routes();
    let router = Router::build(routes.iter());
    let mut group = c.benchmark_group("route_lookup_100_services");
    // Short runs: these take microseconds or less.
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("path_prefix", |b| {
        b.iter(|| {
            let found = router.lookup(Some(b"proxy.local:8080"), black_box("/s42/api/items?x=1"));
            assert_eq!(found, Some(42));
        })
    });
    group.bench_function("host", |b| {
        b.iter(|| {
            let found = router.lookup(Some(black_box(b"s57.example.com:8080")), "/api/items");
            assert_eq!(found, Some(57));
        })
    });
    group.bench_function("miss", |b| {
        b.iter(|| {
            let found = router.lookup(Some(b"other.example.com"), black_box("/nowhere"));
            assert_eq!(found, None);
        })
    });
    group.finish();
}

fn backend(i: usize) -> Backend {
    Backend {
        id: ReplicaId::new(format!("web-t1-{i}")).expect("a valid id"),
        addr: format!("10.0.{}.{}:20000", i / 250, i % 250),
        worker: format!("w{i:05}").parse().expect("a valid id"),
        draining: false,
    }
}

fn update(version: u64, change: BackendChange) -> BackendUpdate {
    BackendUpdate {
        v: 1,
        service: "web".parse::<ServiceName>().expect("a valid name"),
        version,
        ts_ms: 0,
        selection: Selection::RoundRobin,
        change,
    }
}

fn route_update(c: &mut Criterion) {
    let mut updater = Updater::new(Arc::new(Shared::new(Tuning::default())));
    let reset = BackendChange::Reset {
        route: Route {
            host: None,
            path_prefix: Some("/web".into()),
        },
        backends: (0..100).map(backend).collect(),
    };
    assert_eq!(updater.apply(update(1, reset)), Outcome::Applied);
    let mut version = 1;
    let extra = backend(100);
    let mut group = c.benchmark_group("route_update_100_backends");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("add_or_remove_one_and_swap", |b| {
        b.iter(|| {
            version += 1;
            // Alternately add and remove the same backend, so the set stays at 100-101.
            let change = if version % 2 == 0 {
                BackendChange::Add {
                    backends: vec![extra.clone()],
                }
            } else {
                BackendChange::Remove {
                    ids: vec![extra.id.clone()],
                }
            };
            let outcome = updater.apply(update(version, change));
            assert_eq!(outcome, Outcome::Applied);
        })
    });
    group.finish();
}

criterion_group!(benches, route_lookup, route_update);
criterion_main!(benches);
