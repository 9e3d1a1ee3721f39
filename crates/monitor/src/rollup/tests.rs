use super::*;

const SPECS: [TierSpec; 3] = [
    TierSpec {
        width_ms: 1_000,
        keep_ms: 120_000,
        durable_ms: 3_600_000,
    },
    TierSpec {
        width_ms: 60_000,
        keep_ms: 600_000,
        durable_ms: 86_400_000,
    },
    TierSpec {
        width_ms: 300_000,
        keep_ms: 600_000,
        durable_ms: 86_400_000,
    },
];

#[test]
fn a_bucket_is_24_bytes_and_combines_exactly() {
    assert_eq!(std::mem::size_of::<Bucket>(), 24);
    let parts: Vec<Bucket> = [3.0, 1.0, 7.0, 5.0]
        .iter()
        .map(|&x| Bucket::slot(x, 1))
        .collect();
    let b = Bucket::combine(&parts).unwrap();
    assert_eq!(
        (b.count, b.sum, b.min, b.max, b.last),
        (4, 16.0, 1.0, 7.0, 5.0)
    );
    assert_eq!(b.avg(), 4.0);
    assert_eq!(Bucket::combine(&[]), None);
}

#[test]
fn p95_over_slots_is_the_exact_nearest_rank() {
    let parts: Vec<Bucket> = (1..=1000).map(|i| Bucket::slot(i as f32, 1)).collect();
    assert_eq!(Bucket::combine(&parts).unwrap().p95, 950.0);
    // Weighted: 90 samples of 1 and 10 of 100 → p95 is 100.
    let parts = [Bucket::slot(1.0, 90), Bucket::slot(100.0, 10)];
    assert_eq!(Bucket::combine(&parts).unwrap().p95, 100.0);
}

#[test]
fn the_ring_averages_a_slot_and_forgets_past_its_capacity() {
    let mut r = Ring::new(1_000, 10_000);
    assert!(r.add(5_000, 2.0));
    assert!(r.add(5_500, 4.0));
    let v: Vec<_> = r.range(0, 100_000).collect();
    assert_eq!(
        v,
        vec![(
            5_000,
            Bucket {
                count: 2,
                sum: 6.0,
                min: 3.0,
                max: 3.0,
                last: 3.0,
                p95: 3.0
            }
        )]
    );
    for s in 6..100u64 {
        r.add(s * 1_000, s as f32);
    }
    assert_eq!(r.capacity(), 10);
    let v: Vec<_> = r.range(0, 200_000).map(|p| p.0).collect();
    assert_eq!(v, (90..100u64).map(|s| s * 1_000).collect::<Vec<_>>());
    assert!(!r.add(5_000, 1.0), "older than the ring");
    // A gap clears the slots skipped over.
    r.add(105_000, 1.0);
    assert_eq!(r.range(0, 200_000).count(), 5);
}

#[test]
fn memory_per_series_is_bounded() {
    let mut s = Series::new(&SPECS, 0);
    let mut emitted = 0;
    // Ten hours of 1 s samples.
    for t in 0..36_000u64 {
        s.add(t * 1_000, (t % 100) as f32);
        s.close(t * 1_000, |_, _, _| emitted += 1);
    }
    assert_eq!(s.raw.capacity(), 120);
    // Past the keep (10 min) buckets are dropped: at most keep / width + 1 stay.
    assert!(
        (9..=11).contains(&s.rollups[0].len()),
        "{}",
        s.rollups[0].len()
    );
    assert!(
        (1..=3).contains(&s.rollups[1].len()),
        "{}",
        s.rollups[1].len()
    );
    assert!(s.size() <= 120 + 11 + 3);
    assert!(
        s.rollups[0].buckets.capacity() <= 16,
        "no growth past the keep"
    );
    assert_eq!(emitted, 599 + 119);
}

#[test]
fn rollups_are_built_from_the_finer_tier() {
    let mut s = Series::new(&SPECS, 0);
    let mut out = Vec::new();
    for t in 0..600u64 {
        s.add(t * 1_000, (t % 60) as f32);
        s.close(t * 1_000, |k, start, b| out.push((k, start, b)));
    }
    s.close(1_000_000, |k, start, b| out.push((k, start, b)));
    let minutes: Vec<_> = out.iter().filter(|o| o.0 == 1).collect();
    assert_eq!(minutes.len(), 10);
    let m = minutes[0].2;
    assert_eq!(
        (m.count, m.min, m.max, m.last, m.sum),
        (60, 0.0, 59.0, 59.0, 1770.0)
    );
    assert_eq!(m.p95, 56.0);
    let fives: Vec<_> = out.iter().filter(|o| o.0 == 2).collect();
    assert_eq!(fives.len(), 2);
    assert_eq!(
        (fives[1].1, fives[1].2.count, fives[1].2.max),
        (300_000, 300, 59.0)
    );
    // A long silence then new data: no empty buckets, no long loop.
    s.add(40_000_000, 1.0);
    s.close(40_100_000, |k, start, b| out.push((k, start, b)));
    assert_eq!(out.last().unwrap().1, 39_960_000);
}

#[test]
fn tiers_are_validated_with_a_reason() {
    assert_eq!(validate(&DEFAULT_TIERS, 2_000), Ok(()));
    let mut t = DEFAULT_TIERS;
    t[0].width_ms = 1_500;
    assert!(validate(&t, 0)
        .unwrap_err()
        .contains("whole number of seconds"));
    let mut t = DEFAULT_TIERS;
    t[0].keep_ms = 30_000;
    assert!(validate(&t, 0)
        .unwrap_err()
        .contains("must cover one tier 1 (1m) bucket"));
    let mut t = DEFAULT_TIERS;
    t[2].durable_ms = 1_000;
    assert!(validate(&t, 0).unwrap_err().contains("durable keep"));
    let mut t = DEFAULT_TIERS;
    t[2].width_ms = 90_000;
    assert!(validate(&t, 0).unwrap_err().contains("not a multiple"));
    assert_eq!(tier_name(60_000), "1m");
    assert_eq!(tier_name(7_200_000), "2h");
    assert_eq!(tier_name(5_000), "5s");
}
