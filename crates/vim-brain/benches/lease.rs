//! The lease as a pure state machine: a leader's renewal round (renewal, confirmation, deadline
//! check) and a standby's read of a live leader's entry, as the driver runs them every turn.
//!
//! `cargo bench -p vim-brain --bench lease` (add `-- --quick` for a short run).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use vim_brain::lease::{Machine, Read, Transition, Value};

const LEASE_MS: u64 = 3_000;
const MARGIN_MS: u64 = 500;

/// A machine that has just won the lease at time 0.
fn elected() -> Machine {
    let mut m = Machine::new("brain-a", LEASE_MS, MARGIN_MS);
    let claim = m
        .observed(Read::Absent, 0)
        .expect("a free lease is claimed");
    let t = m.confirmed(&claim, 1, 0, 1);
    assert_eq!(t, Some(Transition::Elected(1)));
    m
}

fn lease_machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("lease_machine");
    // Short runs: these take microseconds or less.
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("leader_renewal_round", |b| {
        let mut m = elected();
        let (mut now, mut revision) = (0, 1);
        b.iter(|| {
            now += 1_000;
            revision += 1;
            let renewal = m.renewal().expect("a leader renews");
            let t = m.confirmed(&renewal, revision, now, now + 1);
            assert_eq!(t, Some(Transition::Renewed(1)));
            m.tick(now + 2)
        })
    });
    group.bench_function("standby_reads_a_live_lease", |b| {
        let mut m = Machine::new("brain-b", LEASE_MS, MARGIN_MS);
        let value = Value {
            holder: "brain-a".into(),
            term: 7,
            lease_ms: LEASE_MS,
            released: false,
        };
        let (mut now, mut revision) = (0, 1);
        b.iter(|| {
            // The leader renews every second: a new revision, never expired.
            now += 1_000;
            revision += 1;
            let read = Read::Entry {
                revision,
                value: Ok(value.clone()),
            };
            let write = m.observed(read, now);
            assert!(write.is_none(), "a live lease is not taken");
            write
        })
    });
    group.finish();
}

criterion_group!(benches, lease_machine);
criterion_main!(benches);
