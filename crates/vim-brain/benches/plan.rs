//! The plan at 10,000 workers × 10 replicas over ten services (min = max = what runs, so a
//! steady pass changes nothing): a pass after half the workers reported, the same with its
//! bookkeeping folded in, and the intake of every worker's report.
//!
//! `cargo bench -p vim-brain --bench plan` (add `-- --quick` for a short run).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vim_brain::fleet::{now, Fleet, Ids};
use vim_brain::{plan, Event};

const WORKERS: usize = 10_000;
const REPLICAS: usize = 10;
const SERVICES: usize = 10;

/// A fleet after its first plan, half of whose workers have reported again 500 ms later (what
/// one tick of the loop sees), with no periodic snapshot due yet.
fn between_ticks() -> Fleet {
    let mut fleet = Fleet::new(WORKERS, REPLICAS, SERVICES, Ids::Brain);
    fleet.step();
    fleet.now += 500;
    let seq = fleet.seq as usize;
    fleet.reports(|i| (i + seq + 1).is_multiple_of(2));
    fleet
}

fn plan_at_10000_workers(c: &mut Criterion) {
    let fleet = between_ticks();
    let at = now(fleet.now);
    let mut group = c.benchmark_group("plan_10000_workers");
    // A pass takes milliseconds: ten samples of a few iterations each.
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements((WORKERS * REPLICAS) as u64));
    group.bench_function("steady_pass", |b| {
        b.iter(|| {
            let p = plan(&fleet.world, &fleet.services, at);
            assert!(p.commands.is_empty(), "a steady pass sends nothing");
            p
        })
    });
    group.bench_function("steady_pass_and_plan_sent", |b| {
        b.iter_batched(
            || fleet.world.clone(),
            |mut world| {
                let p = plan(&world, &fleet.services, at);
                world.apply(Event::PlanSent(p.bookkeeping), at.mono);
                world
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn intake_of_10000_reports(c: &mut Criterion) {
    let mut fleet = between_ticks();
    let reports: Vec<_> = (0..WORKERS).map(|i| fleet.report(i)).collect();
    let at = fleet.now;
    let mut group = c.benchmark_group("intake_10000_workers");
    // Folding 10,000 reports takes milliseconds: ten samples of a few iterations each.
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(WORKERS as u64));
    group.bench_function("apply_worker_metrics", |b| {
        b.iter_batched(
            || reports.clone(),
            |reports| {
                for m in reports {
                    fleet.world.apply(Event::WorkerMetrics(m), at);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, plan_at_10000_workers, intake_of_10000_reports);
criterion_main!(benches);
