//! Builders shared by the steps' unit tests.

use super::*;

pub fn now(ms: Millis) -> Now {
    Now {
        mono: ms,
        unix_ms: 1_700_000_000_000 + ms,
    }
}

pub fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// Members borrow from the world; here the ids and address are leaked, a few bytes a test.
pub fn member(replica: &str, worker: &str, phase: Phase) -> Member<'static> {
    let (id, worker): (&'static ReplicaId, &'static WorkerId) = (
        Box::leak(Box::new(id(replica))),
        Box::leak(Box::new(id(worker))),
    );
    let addr: &'static str = Box::leak(format!("127.0.0.1:4{}", replica.len()).into_boxed_str());
    Member {
        id,
        worker,
        phase,
        addr: Some(addr),
        route: crate::world::route_hash(id, addr, worker),
        cpu_pct: 0.0,
        started_ms: 0,
    }
}

/// A worker's report with these replicas (room for 8).
pub fn report(worker: &str, replicas: Vec<acs_events::ReplicaStatus>) -> acs_events::WorkerMetrics {
    acs_events::WorkerMetrics {
        v: 1,
        worker: id(worker),
        seq: 1,
        ts_ms: 0,
        started_ms: 0,
        instance: String::new(),
        interval_ms: 1000,
        runtime: acs_events::RuntimeKind::Process,
        host: acs_events::HostMetrics::default(),
        capacity: acs_events::Capacity {
            max_replicas: 8,
            running: replicas.len() as u32,
        },
        replicas,
        rejected: 0,
    }
}

pub fn ids(stops: &[Stop]) -> Vec<&str> {
    stops.iter().map(|s| s.replica.as_str()).collect()
}
