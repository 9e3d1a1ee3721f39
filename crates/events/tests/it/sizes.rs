//! Messages that must stay under the payload limit at the target scale: a backend snapshot of
//! 10,000 backends is split and reassembles, and every part decodes under `MAX_PAYLOAD`.

use std::collections::BTreeMap;

use acs_events::{
    decode, encode, split_change, Backend, BackendChange, BackendUpdate, ReplicaId, Route,
    Selection, ServiceName, WorkerId, CHUNK_BYTES, MAX_PAYLOAD,
};

fn backends(n: usize, pad: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend {
            id: ReplicaId::new(format!("web-{}-{i}", "x".repeat(pad))).unwrap(),
            addr: format!(
                "10.{}.{}.{}:{}",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                20_000 + i % 10
            ),
            worker: WorkerId::new(format!("w{:05}{}", i / 10, "y".repeat(pad))).unwrap(),
            draining: i % 7 == 0,
        })
        .collect()
}

fn update(version: u64, change: BackendChange) -> BackendUpdate {
    BackendUpdate {
        v: 1,
        service: ServiceName::new("web").unwrap(),
        version,
        ts_ms: 1_763_870_400_000,
        selection: Selection::default(),
        change,
    }
}

#[test]
fn a_snapshot_of_10000_backends_is_split_under_the_limit_and_reassembles() {
    // Short ids (as the simulator's) and ids near the 64-byte limit.
    for pad in [0, 40] {
        let all = backends(10_000, pad);
        let whole = encode(&update(
            1,
            BackendChange::Reset {
                route: Route::default(),
                backends: all.clone(),
            },
        ));
        assert!(
            whole.len() > MAX_PAYLOAD,
            "the test needs a snapshot over the limit ({} bytes)",
            whole.len()
        );

        let parts = split_change(
            BackendChange::Reset {
                route: Route::default(),
                backends: all.clone(),
            },
            CHUNK_BYTES,
        );
        assert!(parts.len() > 1);
        assert!(matches!(parts[0], BackendChange::Reset { .. }));
        assert!(parts[1..]
            .iter()
            .all(|p| matches!(p, BackendChange::Add { .. })));

        // Applied in order with consecutive versions, as a proxy applies deltas.
        let mut table: BTreeMap<ReplicaId, Backend> = BTreeMap::new();
        let mut version = 0;
        for (i, part) in parts.into_iter().enumerate() {
            let bytes = encode(&update(100 + i as u64, part));
            assert!(
                bytes.len() <= MAX_PAYLOAD,
                "part {i} is {} bytes",
                bytes.len()
            );
            let u: BackendUpdate = decode(&bytes).unwrap();
            assert!(u.version == 100 || u.version == version + 1);
            version = u.version;
            match u.change {
                BackendChange::Reset { backends, .. } => {
                    table = backends.into_iter().map(|b| (b.id.clone(), b)).collect();
                }
                BackendChange::Add { backends } => {
                    table.extend(backends.into_iter().map(|b| (b.id.clone(), b)))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let want: BTreeMap<ReplicaId, Backend> =
            all.into_iter().map(|b| (b.id.clone(), b)).collect();
        assert_eq!(table, want);
    }
}

#[test]
fn long_id_lists_are_split_and_small_changes_stay_whole() {
    let ids: Vec<ReplicaId> = backends(20_000, 40).into_iter().map(|b| b.id).collect();
    let parts = split_change(BackendChange::Remove { ids: ids.clone() }, CHUNK_BYTES);
    assert!(parts.len() > 1);
    let mut back = Vec::new();
    for p in parts {
        assert!(encode(&update(1, p.clone())).len() <= MAX_PAYLOAD);
        let BackendChange::Remove { ids } = p else {
            panic!()
        };
        back.extend(ids);
    }
    assert_eq!(back, ids);

    let small = BackendChange::Add {
        backends: backends(3, 0),
    };
    assert_eq!(split_change(small.clone(), CHUNK_BYTES), vec![small]);
    // An empty reset stays one (empty) reset: it still replaces the proxy's set.
    let empty = BackendChange::Reset {
        route: Route::default(),
        backends: vec![],
    };
    assert_eq!(split_change(empty.clone(), CHUNK_BYTES), vec![empty]);
    assert_eq!(
        split_change(BackendChange::Withdraw, CHUNK_BYTES),
        vec![BackendChange::Withdraw]
    );
}
