//! [`Router`]: the lookup structure compiled from the route table. Matches by `Host` (port and
//! trailing dot ignored, case-insensitive), then by the longest path prefix on a segment
//! boundary, without allocating per request.

use std::collections::HashMap;

use acs_events::Route;

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
