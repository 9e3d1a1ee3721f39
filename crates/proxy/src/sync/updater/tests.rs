use super::*;
use crate::config::Tuning;
use acs_events::{encode, Backend, ReplicaId, Route, Selection, WorkerId};

fn updater() -> Updater {
    Updater::new(Arc::new(Shared::new(Tuning::default())))
}

fn backend(id: &str) -> Backend {
    Backend {
        id: ReplicaId::new(id).unwrap(),
        addr: "127.0.0.1:9".into(),
        worker: WorkerId::new("w1").unwrap(),
        draining: false,
    }
}

fn upd(version: u64, change: BackendChange) -> BackendUpdate {
    BackendUpdate {
        v: 1,
        service: ServiceName::new("web").unwrap(),
        version,
        ts_ms: 0,
        selection: Selection::RoundRobin,
        change,
    }
}

fn reset(version: u64, ids: &[&str]) -> BackendUpdate {
    upd(
        version,
        BackendChange::Reset {
            route: Route::default(),
            backends: ids.iter().map(|i| backend(i)).collect(),
        },
    )
}

fn add(version: u64, id: &str) -> BackendUpdate {
    upd(
        version,
        BackendChange::Add {
            backends: vec![backend(id)],
        },
    )
}

fn live_ids(u: &Updater) -> Vec<String> {
    let snap = u.shared.snapshot.load();
    snap.service("web").map_or(vec![], |s| {
        s.backends.iter().map(|b| b.id().to_string()).collect()
    })
}

#[test]
fn applied_updates_reach_the_live_snapshot() {
    let mut u = updater();
    assert_eq!(u.apply(reset(1, &["a"])), Outcome::Applied);
    assert_eq!(live_ids(&u), ["a"]);
    assert_eq!(u.apply(add(2, "b")), Outcome::Applied);
    assert_eq!(live_ids(&u), ["a", "b"]);
    assert_eq!(u.shared.snapshot.load().service("web").unwrap().version, 2);
}

#[test]
fn buffered_deltas_apply_once_the_gap_is_filled() {
    let mut u = updater();
    u.apply(reset(1, &["a"]));
    assert_eq!(u.apply(add(3, "c")), Outcome::Gap);
    assert_eq!(u.apply(add(4, "d")), Outcome::Gap);
    assert_eq!(live_ids(&u), ["a"]);
    // The missing delta arrives late: 2, then the buffered 3 and 4 follow.
    assert_eq!(u.apply(add(2, "b")), Outcome::Applied);
    assert_eq!(live_ids(&u), ["a", "b", "c", "d"]);
    assert_eq!(u.table().version("web"), Some(4));
    assert!(u.pending.is_empty());
}

#[test]
fn a_sync_reset_drops_older_buffered_deltas() {
    let mut u = updater();
    u.apply(reset(1, &["a"]));
    u.apply(add(3, "c"));
    u.apply(add(6, "f"));
    let reply = SyncReply {
        v: 1,
        updates: vec![reset(5, &["x"])],
    };
    assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap(), 1);
    // 3 is older than the reset (dropped); 6 follows it (applied).
    assert_eq!(live_ids(&u), ["f", "x"]);
    assert_eq!(u.table().version("web"), Some(6));
}

#[test]
fn deltas_before_any_reset_wait_for_the_sync() {
    let mut u = updater();
    assert_eq!(u.apply(add(8, "b")), Outcome::Gap);
    u.on_sync_reply(&encode(&SyncReply {
        v: 1,
        updates: vec![reset(7, &["a"])],
    }))
    .unwrap();
    assert_eq!(live_ids(&u), ["a", "b"]);
}

#[test]
fn pending_is_bounded() {
    let mut u = updater();
    u.apply(reset(1, &["a"]));
    for v in 10..(10 + MAX_PENDING as u64 * 2) {
        u.apply(add(v, "z"));
    }
    assert_eq!(u.pending["web"].len(), MAX_PENDING);
}

#[test]
fn refuses_malformed_payloads() {
    let mut u = updater();
    let s = "acs.backends.web";
    assert_eq!(u.on_update(s, b"{nope").unwrap_err().kind, "bad_json");
    assert_eq!(u.on_update(s, b"").unwrap_err().kind, "empty");
    let wrong_type = br#"{"service":"web","version":"seven","change":"add","backends":[]}"#;
    assert_eq!(u.on_update(s, wrong_type).unwrap_err().kind, "bad_field");
    let bad_id = br#"{"service":"web","version":1,"change":"drain","ids":["a.b"]}"#;
    let r = u.on_update(s, bad_id).unwrap_err();
    assert_eq!(r.kind, "bad_field");
    assert!(r.error.contains("replica id"), "{}", r.error);
    let bad_addr = br#"{"service":"web","version":1,"change":"add","backends":[{"id":"a","addr":"nope","worker":"w1"}]}"#;
    assert_eq!(u.on_update(s, bad_addr).unwrap_err().kind, "invalid");
    let big = vec![b' '; acs_events::MAX_PAYLOAD + 1];
    assert_eq!(u.on_update(s, &big).unwrap_err().kind, "too_large");
    let other = encode(&reset(1, &["a"]));
    let r = u.on_update("acs.backends.api", &other).unwrap_err();
    assert_eq!(r.kind, "invalid");
    assert!(r.error.contains("web"), "{}", r.error);
    assert!(u.table().is_empty());
    assert_eq!(u.on_sync_reply(b"[1,2]").unwrap_err().kind, "bad_field");
    // A good one still goes through afterwards.
    assert_eq!(
        u.on_update(s, &encode(&reset(1, &["a"]))).unwrap(),
        Outcome::Applied
    );
}

#[test]
fn an_update_from_an_older_term_is_fenced_and_never_applied() {
    use acs_events::pack_version;
    let mut u = updater();
    let s = "acs.backends.web";
    assert_eq!(
        u.on_update(s, &encode(&reset(pack_version(5, 1), &["new"])))
            .unwrap(),
        Outcome::Applied
    );
    assert_eq!(u.term_floor(), 5);
    // A paused old leader wakes up with a reset and a delta of its own.
    let r = u
        .on_update(s, &encode(&reset(pack_version(4, 900), &["old"])))
        .unwrap_err();
    assert_eq!(r.kind, "fenced");
    assert!(
        r.error.contains("from term 4, but term 5 leads"),
        "{}",
        r.error
    );
    assert_eq!(
        u.on_update(s, &encode(&add(pack_version(4, 901), "old")))
            .unwrap_err()
            .kind,
        "fenced"
    );
    assert_eq!(live_ids(&u), ["new"]);
    // The current term's next delta still applies.
    assert_eq!(
        u.on_update(s, &encode(&add(pack_version(5, 2), "b")))
            .unwrap(),
        Outcome::Applied
    );
    assert_eq!(live_ids(&u), ["b", "new"]);
}

#[test]
fn a_leader_event_fences_before_any_update_of_the_new_term() {
    use acs_events::pack_version;
    let mut u = updater();
    u.apply(reset(pack_version(3, 1), &["a"]));
    assert!(u.observe_term(4));
    assert!(!u.observe_term(2), "the floor never goes down");
    let r = u
        .on_update("acs.backends.web", &encode(&add(pack_version(3, 2), "x")))
        .unwrap_err();
    assert_eq!(r.kind, "fenced");
    assert_eq!(live_ids(&u), ["a"]);
}

#[test]
fn a_newer_term_reset_applies_and_a_newer_term_delta_asks_for_a_sync() {
    use acs_events::pack_version;
    let mut u = updater();
    let s = "acs.backends.web";
    u.apply(reset(pack_version(1, 40), &["a"]));
    // A new leader's first delta does not follow 1/40: a gap, so the loop asks for a sync.
    assert_eq!(
        u.on_update(s, &encode(&add(pack_version(2, 2), "c")))
            .unwrap(),
        Outcome::Gap
    );
    assert_eq!(u.term_floor(), 2);
    // Its reset (the sync answer) applies, then the buffered delta follows.
    let reply = SyncReply {
        v: 1,
        updates: vec![reset(pack_version(2, 1), &["b"])],
    };
    assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap(), 1);
    assert_eq!(live_ids(&u), ["b", "c"]);
    assert_eq!(u.table().version("web"), Some(pack_version(2, 2)));
    // Versions are not clock readings: a huge one is fine (no wall-clock ceiling), and the
    // next leader outranks it.
    assert_eq!(
        u.on_update(s, &encode(&reset(pack_version(2, 1 << 39), &["z"])))
            .unwrap(),
        Outcome::Applied
    );
    assert_eq!(
        u.on_update(s, &encode(&reset(pack_version(3, 1), &["d"])))
            .unwrap(),
        Outcome::Applied
    );
    assert_eq!(live_ids(&u), ["d"]);
}

#[test]
fn a_sync_reply_from_an_older_term_is_refused_whole() {
    use acs_events::pack_version;
    let mut u = updater();
    u.on_update(
        "acs.backends.web",
        &encode(&reset(pack_version(5, 1), &["a"])),
    )
    .unwrap();
    let mut api = reset(pack_version(4, 9), &["x"]);
    api.service = ServiceName::new("api").unwrap();
    // Old leader's full sync names only api: it must neither add api nor drop web.
    let reply = SyncReply {
        v: 1,
        updates: vec![api],
    };
    assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap_err().kind, "fenced");
    assert_eq!(live_ids(&u), ["a"]);
    assert_eq!(u.table().version("api"), None);
}

#[test]
fn a_full_sync_drops_services_the_brain_no_longer_declares() {
    let mut u = updater();
    u.apply(reset(1, &["a"]));
    assert_eq!(live_ids(&u), ["a"]);
    // A brain warming up answers with nothing: keep what we have.
    let reply = SyncReply {
        v: 1,
        updates: vec![],
    };
    assert_eq!(u.on_sync_reply(&encode(&reply)).unwrap(), 0);
    assert_eq!(live_ids(&u), ["a"]);
    // A full reply that does not name web: web is no longer declared.
    let mut api = reset(3, &[]);
    api.service = ServiceName::new("api").unwrap();
    let reply = SyncReply {
        v: 1,
        updates: vec![api],
    };
    assert_eq!(
        u.on_sync_reply(&encode(&reply)).unwrap(),
        2,
        "api applied, web dropped"
    );
    assert!(u.table().get("web").is_none());
    assert!(
        live_ids(&u).is_empty(),
        "the live snapshot no longer routes it"
    );
}

#[test]
fn a_drained_backend_is_reported_once_nothing_is_in_flight() {
    let mut u = updater();
    let proxy = acs_events::ProxyId::new("p1").unwrap();
    let drained = |u: &Updater| {
        let snap = u.shared.snapshot.load();
        super::super::nats::drained_now(&snap, &proxy, 0)
            .into_iter()
            .map(|d| (d.replica.to_string(), d.version))
            .collect::<Vec<_>>()
    };
    u.apply(reset(1, &["a", "b"]));
    assert!(drained(&u).is_empty(), "nothing draining");
    let b = u.shared.snapshot.load().service("web").unwrap().backends[1]
        .state
        .clone();
    let busy = b.begin();
    u.apply(upd(
        2,
        BackendChange::Drain {
            ids: vec![ReplicaId::new("b").unwrap()],
        },
    ));
    assert!(drained(&u).is_empty(), "one request still in flight");
    drop(busy);
    assert_eq!(drained(&u), [("b".to_string(), 2)]);
    assert!(drained(&u).is_empty(), "reported once per version");
    // A later version while still draining: reported again, so the brain sees that version.
    u.apply(add(3, "c"));
    assert_eq!(drained(&u), [("b".to_string(), 3)]);
}
