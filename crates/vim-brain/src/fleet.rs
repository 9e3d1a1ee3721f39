//! A plain-data fleet for the plan's scale test and benches: `workers × replicas` healthy
//! replicas over `services` services whose min = max = what runs, so a steady pass changes
//! nothing. Reports are shaped like `acs-sim workers`' (CPU figures vary with each report).
//! Built only with the `fleet` feature (dev and bench builds).

use acs_events::{Capacity, HostMetrics, ReplicaState, ReplicaStatus, RuntimeKind, WorkerMetrics};

use crate::{plan, Event, Now, Plan, Services, Settings, World};

/// How replica ids are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// Like the brain's own (`<service>-t<term>-<seq>`, `seq` in placement order), which a pass
    /// meets in no particular order.
    Brain,
    /// Like acs-sim's (`<worker>-<service>-<j>`), which a pass meets already sorted by id.
    Sim,
}

/// The time `ms` after the start, with a fixed wall clock.
pub fn now(ms: u64) -> Now {
    Now {
        mono: ms,
        unix_ms: 1_700_000_000_000 + ms,
    }
}

/// A services file with `services` services of exactly `per_service` replicas each.
pub fn services_file(services: usize, per_service: usize) -> String {
    (0..services)
        .map(|i| {
            format!(
                "[[service]]\nname = \"s{i}\"\ncommand = [\"demo-web\", \"--port\", \"{{port}}\"]\n\
                 route = {{ path_prefix = \"/s{i}\" }}\n\
                 policy = {{ min_replicas = {per_service}, max_replicas = {per_service}, target_cpu_pct = 70 }}\n\n"
            )
        })
        .collect()
}

/// Replica `j` of worker `i`.
fn replica_id(ids: Ids, i: usize, j: usize, replicas: usize, services: usize) -> String {
    match ids {
        Ids::Sim => format!("sim-w{i:05}-s{}-{j}", j % services),
        Ids::Brain => {
            // An odd multiplier is a bijection modulo a power of two: unique, scattered order.
            let seq = ((i * replicas + j) as u64).wrapping_mul(2_654_435_761) % (1 << 20);
            format!("s{}-t1-{seq}", j % services)
        }
    }
}

/// Worker `i`'s report number `seq`.
pub fn report(ids: Ids, i: usize, replicas: usize, services: usize, seq: u64) -> WorkerMetrics {
    let cpu = 10.0 + ((i as u64 * 7 + seq * 13) % 80) as f64;
    WorkerMetrics {
        v: 1,
        worker: format!("sim-w{i:05}").parse().expect("a valid worker id"),
        seq,
        ts_ms: 0,
        started_ms: 0,
        instance: format!("inst{i}"),
        interval_ms: 1000,
        runtime: RuntimeKind::Docker,
        host: HostMetrics {
            cpu_pct: cpu,
            cpus: 4,
            ..Default::default()
        },
        capacity: Capacity {
            max_replicas: 16,
            running: replicas as u32,
        },
        replicas: (0..replicas)
            .map(|j| ReplicaStatus {
                id: replica_id(ids, i, j, replicas, services)
                    .parse()
                    .expect("a valid replica id"),
                service: format!("s{}", j % services).parse().expect("a valid name"),
                addr: format!(
                    "10.{}.{}.{}:{}",
                    (i >> 16) & 255,
                    (i >> 8) & 255,
                    i & 255,
                    20_000 + j
                ),
                state: ReplicaState::Healthy,
                cpu_pct: cpu / replicas as f64,
                mem_bytes: 64 << 20,
                started_ms: 5_000 + j as u64,
                restarts: 0,
            })
            .collect(),
        rejected: 0,
    }
}

/// A world that has heard every worker once, and the services it runs.
pub struct Fleet {
    pub world: World,
    pub services: Services,
    pub workers: usize,
    pub replicas: usize,
    pub service_count: usize,
    pub ids: Ids,
    /// The last report number.
    pub seq: u64,
    /// Milliseconds since the start.
    pub now: u64,
}

impl Fleet {
    pub fn new(workers: usize, replicas: usize, service_count: usize, ids: Ids) -> Self {
        let per_service = workers * replicas / service_count;
        let services = Services::parse(&services_file(service_count, per_service))
            .expect("a valid services file");
        let settings = Settings {
            warmup_ms: 0,
            ..Settings::default()
        };
        let mut fleet = Self {
            world: World::new(settings, now(0)),
            services,
            workers,
            replicas,
            service_count,
            ids,
            seq: 0,
            now: 0,
        };
        fleet.reports(|_| true);
        fleet
    }

    /// Worker `i`'s next report.
    pub fn report(&self, i: usize) -> WorkerMetrics {
        report(self.ids, i, self.replicas, self.service_count, self.seq)
    }

    /// The workers `which` picks report once more.
    pub fn reports(&mut self, which: impl Fn(usize) -> bool) {
        self.seq += 1;
        for i in (0..self.workers).filter(|&i| which(i)) {
            let m = self.report(i);
            self.world.apply(Event::WorkerMetrics(m), self.now);
        }
    }

    /// A plan now, folded in as if sent.
    pub fn step(&mut self) -> Plan {
        let p = plan(&self.world, &self.services, now(self.now));
        self.world
            .apply(Event::PlanSent(p.bookkeeping.clone()), self.now);
        p
    }
}
