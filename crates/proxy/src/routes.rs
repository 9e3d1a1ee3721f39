//! The route table: a pure value folded from `BackendUpdate`s, and the lookup structure compiled
//! from it.
//!
//! Modelled on Sōzu's config state and linkerd2-proxy's discovery updates. [`RouteTable::apply`]
//! follows the versioning rules of `acs_events::BackendUpdate`:
//!
//! - a delta (`add`, `drain`, `remove`) applies only when its version is exactly `current + 1`;
//! - an older (or equal) version is [`Outcome::Stale`] and ignored;
//! - a newer delta, or any delta for a service the table does not know, is a [`Outcome::Gap`]:
//!   the caller asks for a snapshot on `Subjects::backends_sync()`;
//! - a `reset` applies whenever it is newer than what the table holds.
//!
//! [`RouteTable::compile`] turns the table into a [`Router`], which matches a request by `Host`
//! (port ignored, case-insensitive) and/or the longest path prefix without allocating.

use std::collections::{BTreeMap, HashMap};

use acs_events::{Backend, BackendChange, BackendUpdate, ReplicaId, Route, Selection, ServiceName};

/// What [`RouteTable::apply`] did with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The table changed (or at least its version moved on).
    Applied,
    /// The version is not newer than what the table holds; nothing changed.
    Stale,
    /// A version was skipped (or the service is unknown): nothing changed, ask for a sync.
    Gap,
}

/// One service as the table knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    pub version: u64,
    pub route: Route,
    pub selection: Selection,
    pub backends: BTreeMap<ReplicaId, Backend>,
}

/// Every service the proxy knows, keyed by name (ordered, so compiling is deterministic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    services: BTreeMap<ServiceName, ServiceEntry>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one update into the table; see the module docs for the rules.
    ///
    /// The service's selection algorithm is taken from `reset`s only: deltas may omit the field
    /// (it then defaults to round-robin) and must not flip the algorithm by accident.
    /// `drain` / `remove` of ids the table does not hold are no-ops (the version still moves on).
    pub fn apply(&mut self, u: &BackendUpdate) -> Outcome {
        let current = self.services.get(&u.service).map(|s| s.version);
        match &u.change {
            BackendChange::Reset { route, backends } => {
                if current.is_some_and(|c| u.version <= c) {
                    return Outcome::Stale;
                }
                let backends = backends.iter().map(|b| (b.id.clone(), b.clone())).collect();
                self.services.insert(
                    u.service.clone(),
                    ServiceEntry {
                        version: u.version,
                        route: route.clone(),
                        selection: u.selection,
                        backends,
                    },
                );
                Outcome::Applied
            }
            change => {
                let Some(entry) = self.services.get_mut(&u.service) else {
                    return Outcome::Gap;
                };
                if u.version <= entry.version {
                    return Outcome::Stale;
                }
                if u.version != entry.version + 1 {
                    return Outcome::Gap;
                }
                entry.version = u.version;
                match change {
                    BackendChange::Add { backends } => {
                        for b in backends {
                            entry.backends.insert(b.id.clone(), b.clone());
                        }
                    }
                    BackendChange::Drain { ids } => {
                        for id in ids {
                            if let Some(b) = entry.backends.get_mut(id) {
                                b.draining = true;
                            }
                        }
                    }
                    BackendChange::Remove { ids } => {
                        for id in ids {
                            entry.backends.remove(id);
                        }
                    }
                    BackendChange::Reset { .. } => unreachable!("handled above"),
                }
                Outcome::Applied
            }
        }
    }

    pub fn get(&self, service: &str) -> Option<&ServiceEntry> {
        self.services.get(service)
    }

    /// The applied version of `service`, if known.
    pub fn version(&self, service: &str) -> Option<u64> {
        self.get(service).map(|s| s.version)
    }

    /// Services in name order; [`Router`] indices refer to this order.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceName, &ServiceEntry)> {
        self.services.iter()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Compiles the routes into a [`Router`] whose indices follow [`services`](Self::services).
    pub fn compile(&self) -> Router {
        Router::build(self.services.values().map(|s| &s.route))
    }
}

/// Routes of one host (or of "any host"): path prefixes longest first, plus a catch-all.
#[derive(Debug, Default, Clone)]
struct PathRoutes {
    /// `(prefix, service index)`, longest prefix first; equal lengths keep service order.
    prefixes: Vec<(Box<str>, usize)>,
    /// A route without a path prefix.
    root: Option<usize>,
}

impl PathRoutes {
    fn find(&self, path: &str) -> Option<usize> {
        self.prefixes
            .iter()
            .find(|(p, _)| prefix_matches(p, path))
            .map(|(_, i)| *i)
            .or(self.root)
    }

    /// Adds a route; returns `false` when an earlier service already holds the same key.
    fn insert(&mut self, prefix: Option<&str>, idx: usize) -> bool {
        match prefix {
            None => {
                if self.root.is_some() {
                    return false;
                }
                self.root = Some(idx);
            }
            Some(p) => {
                if self.prefixes.iter().any(|(q, _)| &**q == p) {
                    return false;
                }
                self.prefixes.push((p.into(), idx));
            }
        }
        true
    }

    fn finish(&mut self) {
        // Stable sort: equal lengths keep insertion (service name) order.
        self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }
}

/// `true` when `prefix` matches `path` on a segment boundary: `/api` matches `/api`, `/api/x`
/// and `/api?..` (the query is not part of `path`), but not `/apix`. A prefix ending in `/`
/// matches everything below it; `/` matches every path.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}

/// Longest host name we try to match (DNS names are at most 253 bytes).
const MAX_HOST: usize = 255;

/// The compiled lookup structure. Matching order: routes of the request's host (longest prefix,
/// then the host's catch-all), then host-less routes (longest prefix), then the default route
/// (neither host nor prefix).
#[derive(Debug, Default, Clone)]
pub struct Router {
    hosts: HashMap<Box<str>, PathRoutes>,
    any_host: PathRoutes,
    conflicts: Vec<(usize, usize)>,
}

impl Router {
    /// Builds from routes in service order; index `i` is the `i`-th route.
    pub fn build<'a>(routes: impl IntoIterator<Item = &'a Route>) -> Self {
        let mut r = Router::default();
        for (idx, route) in routes.into_iter().enumerate() {
            let prefix = route.path_prefix.as_deref();
            let table = match route.host.as_deref() {
                Some(h) => r.hosts.entry(normalize_host(h).into()).or_default(),
                None => &mut r.any_host,
            };
            if !table.insert(prefix, idx) {
                let winner = if prefix.is_none() {
                    table.root
                } else {
                    table
                        .prefixes
                        .iter()
                        .find(|(q, _)| Some(&**q) == prefix)
                        .map(|(_, i)| *i)
                };
                r.conflicts.push((winner.unwrap_or(idx), idx));
            }
        }
        r.any_host.finish();
        for t in r.hosts.values_mut() {
            t.finish();
        }
        r
    }

    /// `(winner, loser)` pairs of services that declared the same route; the first service
    /// (in name order) wins.
    pub fn conflicts(&self) -> &[(usize, usize)] {
        &self.conflicts
    }

    /// The service index for a request. `host` is the raw `Host` header (or URI authority), with
    /// or without a port; `path` is the URI path. Allocates nothing.
    pub fn lookup(&self, host: Option<&[u8]>, path: &str) -> Option<usize> {
        if !self.hosts.is_empty() {
            if let Some(raw) = host {
                let mut buf = [0u8; MAX_HOST];
                if let Some(h) = host_key(raw, &mut buf) {
                    if let Some(found) = self.hosts.get(h).and_then(|t| t.find(path)) {
                        return Some(found);
                    }
                }
            }
        }
        self.any_host.find(path)
    }
}

/// Lower-cases a configured host and strips a port and a trailing dot.
fn normalize_host(h: &str) -> String {
    let h = strip_port(h.as_bytes());
    let h = std::str::from_utf8(h).unwrap_or_default();
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The lookup key of a request's host, written lower-cased into `buf`.
fn host_key<'b>(raw: &[u8], buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let mut h = strip_port(raw);
    if let Some(stripped) = h.strip_suffix(b".") {
        h = stripped;
    }
    if h.is_empty() || h.len() > MAX_HOST {
        return None;
    }
    let out = &mut buf[..h.len()];
    for (o, b) in out.iter_mut().zip(h) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`; anything else unchanged.
fn strip_port(h: &[u8]) -> &[u8] {
    if h.first() == Some(&b'[') {
        return match h.iter().position(|&b| b == b']') {
            Some(end) => &h[..=end],
            None => h,
        };
    }
    match h.iter().rposition(|&b| b == b':') {
        Some(colon) if h[colon + 1..].iter().all(u8::is_ascii_digit) => &h[..colon],
        _ => h,
    }
}

#[cfg(test)]
mod tests {
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
}
