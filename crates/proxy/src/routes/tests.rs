//! Tests of the route table (versions, gaps, deltas) and of the compiled router (matching).

use super::*;
use acs_events::WorkerId;

fn svc(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

fn backend(id: &str, port: u16) -> Backend {
    Backend {
        id: ReplicaId::new(id).unwrap(),
        addr: format!("127.0.0.1:{port}"),
        worker: WorkerId::new("w1").unwrap(),
        draining: false,
    }
}

fn route(host: Option<&str>, prefix: Option<&str>) -> Route {
    Route {
        host: host.map(Into::into),
        path_prefix: prefix.map(Into::into),
    }
}

fn update(service: &str, version: u64, change: BackendChange) -> BackendUpdate {
    BackendUpdate {
        v: 1,
        service: svc(service),
        version,
        ts_ms: 0,
        selection: Selection::RoundRobin,
        change,
    }
}

fn reset(service: &str, version: u64, backends: Vec<Backend>) -> BackendUpdate {
    update(
        service,
        version,
        BackendChange::Reset {
            route: Route::default(),
            backends,
        },
    )
}

fn add(service: &str, version: u64, backends: Vec<Backend>) -> BackendUpdate {
    update(service, version, BackendChange::Add { backends })
}

fn ids(v: &[&str]) -> Vec<ReplicaId> {
    v.iter().map(|s| ReplicaId::new(*s).unwrap()).collect()
}

fn backend_ids(t: &RouteTable, s: &str) -> Vec<String> {
    t.get(s)
        .unwrap()
        .backends
        .keys()
        .map(|k| k.to_string())
        .collect()
}

#[test]
fn reset_on_empty_table_applies() {
    let mut t = RouteTable::new();
    assert_eq!(
        t.apply(&reset("web", 10, vec![backend("a", 1)])),
        Outcome::Applied
    );
    assert_eq!(t.version("web"), Some(10));
    assert_eq!(backend_ids(&t, "web"), ["a"]);
}

#[test]
fn delta_applies_only_at_next_version() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 10, vec![backend("a", 1)]));
    assert_eq!(
        t.apply(&add("web", 11, vec![backend("b", 2)])),
        Outcome::Applied
    );
    assert_eq!(backend_ids(&t, "web"), ["a", "b"]);
    assert_eq!(t.version("web"), Some(11));
}

#[test]
fn older_or_equal_delta_is_stale() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 10, vec![backend("a", 1)]));
    let before = t.clone();
    assert_eq!(
        t.apply(&add("web", 10, vec![backend("b", 2)])),
        Outcome::Stale
    );
    assert_eq!(
        t.apply(&add("web", 3, vec![backend("b", 2)])),
        Outcome::Stale
    );
    assert_eq!(t, before);
}

#[test]
fn skipped_version_is_a_gap_and_changes_nothing() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 10, vec![backend("a", 1)]));
    let before = t.clone();
    assert_eq!(
        t.apply(&add("web", 12, vec![backend("b", 2)])),
        Outcome::Gap
    );
    assert_eq!(t, before);
}

#[test]
fn delta_for_unknown_service_is_a_gap() {
    let mut t = RouteTable::new();
    assert_eq!(t.apply(&add("web", 1, vec![backend("b", 2)])), Outcome::Gap);
    assert!(t.is_empty());
}

#[test]
fn reset_applies_only_when_newer() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 10, vec![backend("a", 1)]));
    assert_eq!(
        t.apply(&reset("web", 10, vec![backend("z", 9)])),
        Outcome::Stale
    );
    assert_eq!(
        t.apply(&reset("web", 9, vec![backend("z", 9)])),
        Outcome::Stale
    );
    assert_eq!(backend_ids(&t, "web"), ["a"]);
    // A much newer reset (e.g. after a brain restart) replaces everything.
    assert_eq!(
        t.apply(&reset("web", 5000, vec![backend("z", 9)])),
        Outcome::Applied
    );
    assert_eq!(backend_ids(&t, "web"), ["z"]);
    assert_eq!(t.version("web"), Some(5000));
}

#[test]
fn add_replaces_known_id() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 1, vec![backend("a", 1)]));
    t.apply(&add("web", 2, vec![backend("a", 7)]));
    assert_eq!(
        t.get("web").unwrap().backends[&ReplicaId::new("a").unwrap()].addr,
        "127.0.0.1:7"
    );
}

#[test]
fn drain_marks_and_remove_forgets() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 1, vec![backend("a", 1), backend("b", 2)]));
    assert_eq!(
        t.apply(&update("web", 2, BackendChange::Drain { ids: ids(&["a"]) })),
        Outcome::Applied
    );
    let a = ReplicaId::new("a").unwrap();
    assert!(t.get("web").unwrap().backends[&a].draining);
    assert_eq!(
        t.apply(&update(
            "web",
            3,
            BackendChange::Remove { ids: ids(&["a"]) }
        )),
        Outcome::Applied
    );
    assert_eq!(backend_ids(&t, "web"), ["b"]);
}

#[test]
fn unknown_ids_in_drain_or_remove_are_noops_but_advance_version() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 1, vec![backend("a", 1)]));
    assert_eq!(
        t.apply(&update(
            "web",
            2,
            BackendChange::Drain {
                ids: ids(&["nope"])
            }
        )),
        Outcome::Applied
    );
    assert_eq!(
        t.apply(&update(
            "web",
            3,
            BackendChange::Remove {
                ids: ids(&["nope"])
            }
        )),
        Outcome::Applied
    );
    assert_eq!(t.version("web"), Some(3));
    assert_eq!(backend_ids(&t, "web"), ["a"]);
}

#[test]
fn selection_comes_from_resets_only() {
    let mut t = RouteTable::new();
    let mut r = reset("web", 1, vec![backend("a", 1)]);
    r.selection = Selection::P2c;
    t.apply(&r);
    t.apply(&add("web", 2, vec![backend("b", 2)])); // carries the default, round-robin
    assert_eq!(t.get("web").unwrap().selection, Selection::P2c);
}

#[test]
fn services_are_independent() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 10, vec![backend("a", 1)]));
    t.apply(&reset("api", 500, vec![backend("x", 1)]));
    assert_eq!(
        t.apply(&add("api", 501, vec![backend("y", 2)])),
        Outcome::Applied
    );
    assert_eq!(
        t.apply(&add("web", 11, vec![backend("b", 2)])),
        Outcome::Applied
    );
    assert_eq!(t.len(), 2);
    let names: Vec<_> = t.services().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, ["api", "web"]);
}

#[test]
fn reset_with_empty_backends_keeps_the_route() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 1, vec![backend("a", 1)]));
    t.apply(&reset("web", 2, vec![]));
    assert!(t.get("web").unwrap().backends.is_empty());
}

// ---- matching ------------------------------------------------------------------------

fn router(routes: &[Route]) -> Router {
    Router::build(routes.iter())
}

#[test]
fn prefix_matching_respects_segments() {
    assert!(prefix_matches("/api", "/api"));
    assert!(prefix_matches("/api", "/api/v1"));
    assert!(!prefix_matches("/api", "/apix"));
    assert!(prefix_matches("/api/", "/api/x"));
    assert!(!prefix_matches("/api/", "/api"));
    assert!(prefix_matches("/", "/anything"));
    assert!(!prefix_matches("/api", "/"));
}

#[test]
fn host_match_ignores_case_and_port() {
    let r = router(&[route(Some("Example.com"), None)]);
    assert_eq!(r.lookup(Some(b"example.com"), "/"), Some(0));
    assert_eq!(r.lookup(Some(b"EXAMPLE.COM:8080"), "/x"), Some(0));
    assert_eq!(r.lookup(Some(b"example.com."), "/x"), Some(0));
    assert_eq!(r.lookup(Some(b"other.com"), "/"), None);
    assert_eq!(r.lookup(None, "/"), None);
}

#[test]
fn configured_host_with_port_is_normalized() {
    let r = router(&[route(Some("api.local:9000"), None)]);
    assert_eq!(r.lookup(Some(b"api.local"), "/"), Some(0));
}

#[test]
fn ipv6_hosts() {
    let r = router(&[route(Some("[::1]"), None)]);
    assert_eq!(r.lookup(Some(b"[::1]:8080"), "/"), Some(0));
    assert_eq!(r.lookup(Some(b"[::1]"), "/"), Some(0));
}

#[test]
fn longest_prefix_wins() {
    let r = router(&[
        route(None, Some("/api")),
        route(None, Some("/api/v2")),
        route(None, Some("/")),
    ]);
    assert_eq!(r.lookup(None, "/api/v2/users"), Some(1));
    assert_eq!(r.lookup(None, "/api/v1/users"), Some(0));
    assert_eq!(r.lookup(None, "/api"), Some(0));
    assert_eq!(r.lookup(None, "/static"), Some(2));
}

#[test]
fn host_routes_beat_hostless_routes_and_default() {
    let r = router(&[
        route(None, None),                     // 0: default
        route(Some("a.test"), None),           // 1: host a, any path
        route(Some("a.test"), Some("/admin")), // 2: host a, /admin
        route(None, Some("/admin")),           // 3: any host, /admin
    ]);
    assert_eq!(r.lookup(Some(b"a.test"), "/admin/x"), Some(2));
    assert_eq!(r.lookup(Some(b"a.test"), "/x"), Some(1));
    assert_eq!(r.lookup(Some(b"b.test"), "/admin"), Some(3));
    assert_eq!(r.lookup(Some(b"b.test"), "/x"), Some(0));
    assert_eq!(r.lookup(None, "/x"), Some(0));
}

#[test]
fn host_with_only_prefix_routes_falls_back_to_hostless() {
    let r = router(&[route(Some("a.test"), Some("/api")), route(None, None)]);
    assert_eq!(r.lookup(Some(b"a.test"), "/api/1"), Some(0));
    assert_eq!(r.lookup(Some(b"a.test"), "/other"), Some(1));
}

#[test]
fn no_default_means_no_match() {
    let r = router(&[route(None, Some("/api"))]);
    assert_eq!(r.lookup(Some(b"x"), "/other"), None);
}

#[test]
fn conflicting_routes_first_service_wins() {
    let r = router(&[
        route(None, Some("/a")),
        route(None, Some("/a")),
        route(None, None),
        route(None, None),
    ]);
    assert_eq!(r.lookup(None, "/a"), Some(0));
    assert_eq!(r.lookup(None, "/b"), Some(2));
    assert_eq!(r.conflicts(), &[(0, 1), (2, 3)]);
}

#[test]
fn weird_hosts_do_not_panic() {
    let r = router(&[route(Some("a.test"), None), route(None, None)]);
    let long = vec![b'a'; 1000];
    assert_eq!(r.lookup(Some(&long), "/"), Some(1));
    assert_eq!(r.lookup(Some(b""), "/"), Some(1));
    assert_eq!(r.lookup(Some(b":80"), "/"), Some(1));
    assert_eq!(r.lookup(Some(&[0xff, 0xfe]), "/"), Some(1));
    assert_eq!(r.lookup(Some(b"[::1"), "/"), Some(1));
}

#[test]
fn compile_follows_service_order() {
    let mut t = RouteTable::new();
    let mut u = reset("web", 1, vec![]);
    u.change = BackendChange::Reset {
        route: route(Some("web.test"), None),
        backends: vec![],
    };
    t.apply(&u);
    let mut u = reset("api", 1, vec![]);
    u.change = BackendChange::Reset {
        route: route(None, Some("/api")),
        backends: vec![],
    };
    t.apply(&u);
    let r = t.compile();
    // "api" sorts first.
    assert_eq!(r.lookup(Some(b"x"), "/api/1"), Some(0));
    assert_eq!(r.lookup(Some(b"web.test"), "/"), Some(1));
}

#[test]
fn withdraw_drops_the_route_and_older_updates_cannot_bring_it_back() {
    let mut t = RouteTable::new();
    assert_eq!(
        t.apply(&reset("old", 5, vec![backend("a", 9001)])),
        Outcome::Applied
    );
    assert_eq!(
        t.apply(&update("old", 6, BackendChange::Withdraw)),
        Outcome::Applied
    );
    assert!(t.get("old").is_none(), "route gone");
    // A late reset or delta from before the withdrawal is stale, not a resurrection.
    assert_eq!(
        t.apply(&reset("old", 6, vec![backend("a", 9001)])),
        Outcome::Stale
    );
    assert_eq!(
        t.apply(&add("old", 4, vec![backend("b", 9002)])),
        Outcome::Stale
    );
    assert!(t.get("old").is_none());
    // A newer declaration (the service is back in the file) applies.
    assert_eq!(
        t.apply(&reset("old", 7, vec![backend("c", 9003)])),
        Outcome::Applied
    );
    assert_eq!(backend_ids(&t, "old"), ["c"]);
    // A withdrawal older than what the proxy has is stale.
    assert_eq!(
        t.apply(&update("old", 7, BackendChange::Withdraw)),
        Outcome::Stale
    );
}

#[test]
fn retain_only_keeps_the_declared_services() {
    let mut t = RouteTable::new();
    t.apply(&reset("web", 1, vec![]));
    t.apply(&reset("gone", 1, vec![]));
    let keep = [svc("web")].into_iter().collect();
    assert_eq!(t.retain_only(&keep), vec![svc("gone")]);
    assert!(t.get("web").is_some() && t.get("gone").is_none());
}
