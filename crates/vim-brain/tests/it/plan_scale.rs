//! The plan at the target scale, with plain data: 10,000 workers × 10 replicas over ten
//! services whose min = max = what runs, so a steady pass changes nothing. The timing test is
//! ignored by default (`cargo test --release -p vim-brain --test it plan_scale -- --ignored
//! --nocapture`); the small one checks that steady passes over changing CPU figures stay quiet.

use std::time::{Duration, Instant};

use acs_events::*;
use vim_brain::{plan, Event, Now, Plan, Services, Settings, World};

fn now(ms: u64) -> Now {
    Now {
        mono: ms,
        unix_ms: 1_700_000_000_000 + ms,
    }
}

fn services_file(services: usize, per_service: usize) -> String {
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

/// Replica `j` of worker `i`. By default shaped like the brain's own ids (`<service>-t<term>-<seq>`,
/// `seq` in placement order), which a pass meets in no particular order; `IDS=worker` gives
/// acs-sim's `<worker>-<service>-<j>`, which a pass meets already sorted by id.
fn replica_id(i: usize, j: usize, replicas: usize, services: usize) -> String {
    if std::env::var("IDS").is_ok_and(|v| v == "worker") {
        return format!("sim-w{i:05}-s{}-{j}", j % services);
    }
    // An odd multiplier is a bijection modulo a power of two: unique, scattered placement order.
    let seq = ((i * replicas + j) as u64).wrapping_mul(2_654_435_761) % (1 << 20);
    format!("s{}-t1-{seq}", j % services)
}

/// Worker `i`'s report number `seq`, shaped like `acs-sim workers`' (CPU figures vary with `seq`).
fn report(i: usize, replicas: usize, services: usize, seq: u64) -> WorkerMetrics {
    let cpu = 10.0 + ((i as u64 * 7 + seq * 13) % 80) as f64;
    WorkerMetrics {
        v: 1,
        worker: format!("sim-w{i:05}").parse().unwrap(),
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
                id: replica_id(i, j, replicas, services).parse().unwrap(),
                service: format!("s{}", j % services).parse().unwrap(),
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

struct Fleet {
    world: World,
    services: Services,
    workers: usize,
    replicas: usize,
    service_count: usize,
    seq: u64,
    now: u64,
}

impl Fleet {
    fn new(workers: usize, replicas: usize, service_count: usize) -> Self {
        let services = Services::parse(&services_file(
            service_count,
            workers * replicas / service_count,
        ))
        .unwrap();
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
            seq: 0,
            now: 0,
        };
        fleet.reports();
        fleet
    }

    /// Every worker reports once more.
    fn reports(&mut self) {
        self.seq += 1;
        for i in 0..self.workers {
            let m = report(i, self.replicas, self.service_count, self.seq);
            self.world.apply(Event::WorkerMetrics(m), self.now);
        }
    }

    fn step(&mut self) -> Plan {
        let p = plan(&self.world, &self.services, now(self.now));
        self.world
            .apply(Event::PlanSent(p.bookkeeping.clone()), self.now);
        p
    }
}

#[test]
fn steady_passes_over_changing_cpu_figures_change_nothing() {
    let mut fleet = Fleet::new(200, 10, 10);
    let first = fleet.step();
    assert!(first.commands.is_empty(), "{:?}", first.commands);
    assert_eq!(first.updates.len(), 10, "one reset per service");
    for pass in 1..=6 {
        fleet.now += 1_000;
        fleet.reports();
        let p = fleet.step();
        assert!(p.commands.is_empty(), "pass {pass}: {:?}", p.commands);
        // Resets are due every 5 s (the default); nothing else is published.
        let resets = p
            .updates
            .iter()
            .filter(|u| matches!(u.change, BackendChange::Reset { .. }))
            .count();
        assert_eq!(
            (p.updates.len(), resets),
            if pass == 5 { (10, 10) } else { (0, 0) },
            "pass {pass}"
        );
        assert!(p.decisions.is_empty(), "pass {pass}: {:?}", p.decisions);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    acs_node::percentile(sorted, p).expect("samples")
}

#[test]
#[ignore = "timing at 10,000 workers; run with --release -- --ignored --nocapture"]
fn plan_and_intake_at_10000_workers() {
    let (workers, replicas, services) = (10_000, 10, 10);
    let built = Instant::now();
    let mut fleet = Fleet::new(workers, replicas, services);
    eprintln!("world built in {:?}", built.elapsed());
    fleet.step();

    let encoded: Vec<Vec<u8>> = (0..workers)
        .map(|i| encode(&report(i, replicas, services, 99)))
        .collect();
    let decoding = Instant::now();
    let decoded: Vec<WorkerMetrics> = encoded
        .iter()
        .map(|b| decode::<WorkerMetrics>(b).unwrap())
        .collect();
    let decode_took = decoding.elapsed();
    let applying = Instant::now();
    for m in decoded {
        fleet.world.apply(Event::WorkerMetrics(m), fleet.now);
    }
    eprintln!(
        "intake of {workers} reports ({} bytes each): decode {decode_took:?}, apply {:?}",
        encoded[0].len(),
        applying.elapsed()
    );

    let passes = std::env::var("PASSES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (mut plans, mut steps, mut resets) = (Vec::new(), Vec::new(), 0);
    for _ in 0..passes {
        fleet.now += 500;
        // Half the workers report between two ticks.
        fleet.seq += 1;
        for i in (0..workers).filter(|i| (i + fleet.seq as usize).is_multiple_of(2)) {
            let m = report(i, replicas, services, fleet.seq);
            fleet.world.apply(Event::WorkerMetrics(m), fleet.now);
        }
        let t = Instant::now();
        let p = plan(&fleet.world, &fleet.services, now(fleet.now));
        plans.push(t.elapsed());
        assert!(p.commands.is_empty());
        resets += p
            .updates
            .iter()
            .any(|u| matches!(u.change, BackendChange::Reset { .. })) as usize;
        fleet.world.apply(Event::PlanSent(p.bookkeeping), fleet.now);
        steps.push(t.elapsed());
    }
    plans.sort();
    steps.sort();
    eprintln!(
        "{passes} passes ({resets} with resets): plan p50 {:?} max {:?}; plan + PlanSent p50 {:?} max {:?}",
        percentile(&plans, 0.5),
        plans.last().unwrap(),
        percentile(&steps, 0.5),
        steps.last().unwrap()
    );
}
