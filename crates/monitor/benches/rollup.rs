//! Rollups of one metric with the default tiers (raw 1 s, 1 min, 1 h): a minute of samples
//! folded in and its minute bucket closed, and an hour's bucket combined from 60 minutes.
//!
//! `cargo bench -p acs-monitor --bench rollup` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::Duration;

use acs_monitor::rollup::{Bucket, Series, DEFAULT_TIERS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MINUTE_MS: u64 = 60_000;

fn sample(ts_ms: u64) -> f32 {
    (ts_ms / 1000 % 97) as f32
}

fn rollup(c: &mut Criterion) {
    let mut group = c.benchmark_group("rollup_default_tiers");
    // Short runs: these take microseconds or less.
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(60));
    group.bench_function("minute_of_samples_added_and_closed", |b| {
        let mut series = Series::new(&DEFAULT_TIERS, 0);
        let mut start = 0;
        b.iter(|| {
            for s in 0..60 {
                let ts = start + s * 1000;
                series.add(ts, sample(ts));
            }
            start += MINUTE_MS;
            let mut closed = 0;
            series.close(start, |_, _, _| closed += 1);
            assert!(closed >= 1, "a minute bucket closes");
        })
    });
    let minutes: Vec<Bucket> = (0..60)
        .map(|m| {
            let parts: Vec<Bucket> = (0..60)
                .map(|s| Bucket::slot(sample((m * 60 + s) * 1000), 1))
                .collect();
            Bucket::combine(&parts).expect("samples")
        })
        .collect();
    group.bench_function("hour_combined_from_60_minutes", |b| {
        b.iter(|| Bucket::combine(black_box(&minutes)).expect("samples"))
    });
    group.finish();
}

criterion_group!(benches, rollup);
criterion_main!(benches);
