//! The immutable value the request path reads: the compiled [`Router`] plus, per service, the
//! backends with their runtime state and a ready-made Pingora peer.
//!
//! The live snapshot sits in an `ArcSwap` ([`crate::service::Shared`]); updates build a new one
//! with [`Snapshot::build`] and swap it in. Building reuses the `Arc<BackendState>` of every
//! backend the previous snapshot held (by service and replica id) and the previous address
//! resolution when the address did not change.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use acs_events::{ReplicaId, Selection, ServiceName, WorkerId};
use pingora::upstreams::peer::HttpPeer;

use crate::backend::{BackendState, DrainWatch, ServiceState};
use crate::routes::{RouteTable, Router};
use crate::select::Candidate;

/// Timeouts put on every upstream peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTimeouts {
    pub connect: Duration,
    /// Read / write timeout on an upstream connection (a stuck backend).
    pub io: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub idle: Duration,
}

impl Default for PeerTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            io: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// One backend in a snapshot.
#[derive(Debug)]
pub struct BackendRt {
    pub state: Arc<BackendState>,
    pub worker: WorkerId,
    pub addr: String,
    pub draining: bool,
    /// `None` when the address did not resolve: the backend is then never picked.
    pub peer: Option<HttpPeer>,
}

impl BackendRt {
    pub fn id(&self) -> &ReplicaId {
        &self.state.id
    }
}

impl Candidate for BackendRt {
    fn available(&self) -> bool {
        !self.draining && self.peer.is_some()
    }
    fn ejected(&self, now_ms: u64) -> bool {
        self.state.is_ejected(now_ms)
    }
    fn in_flight(&self) -> u64 {
        self.state.in_flight()
    }
}

/// One service in a snapshot.
#[derive(Debug)]
pub struct ServiceRt {
    pub name: ServiceName,
    pub version: u64,
    pub selection: Selection,
    pub state: Arc<ServiceState>,
    pub backends: Vec<BackendRt>,
}

/// The whole routing state at one version.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub router: Router,
    /// In [`RouteTable::services`] order (the router's indices).
    pub services: Vec<Arc<ServiceRt>>,
    /// The proxy's one drain watch, handed from each snapshot to the next.
    pub drains: Arc<DrainWatch>,
}

impl Snapshot {
    /// Builds from `table`, reusing runtime state from `prev`.
    pub fn build(table: &RouteTable, prev: &Snapshot, timeouts: &PeerTimeouts) -> Snapshot {
        let prev_services: HashMap<&str, &ServiceRt> = prev
            .services
            .iter()
            .map(|s| (s.name.as_str(), &**s))
            .collect();
        let services = table
            .services()
            .map(|(name, entry)| {
                let old = prev_services.get(name.as_str());
                let old_backends: HashMap<&str, &BackendRt> = old
                    .map(|s| s.backends.iter().map(|b| (b.id().as_str(), b)).collect())
                    .unwrap_or_default();
                let backends = entry
                    .backends
                    .values()
                    .map(|b| {
                        let prev_b = old_backends.get(b.id.as_str());
                        let state = prev_b.map(|p| p.state.clone()).unwrap_or_else(|| {
                            Arc::new(BackendState::new(
                                name.clone(),
                                b.id.clone(),
                                prev.drains.clone(),
                            ))
                        });
                        state.set_draining(b.draining);
                        let peer = match prev_b {
                            Some(p) if p.addr == b.addr && p.peer.is_some() => p.peer.clone(),
                            _ => make_peer(&b.addr, timeouts),
                        };
                        if peer.is_none() {
                            tracing::warn!(service = %name, backend = %b.id, addr = %b.addr,
                                "backend address does not resolve; not routing to it");
                        }
                        BackendRt {
                            state,
                            worker: b.worker.clone(),
                            addr: b.addr.clone(),
                            draining: b.draining,
                            peer,
                        }
                    })
                    .collect();
                Arc::new(ServiceRt {
                    name: name.clone(),
                    version: entry.version,
                    selection: entry.selection,
                    state: old.map(|s| s.state.clone()).unwrap_or_default(),
                    backends,
                })
            })
            .collect::<Vec<_>>();
        let router = table.compile();
        for &(winner, loser) in router.conflicts() {
            tracing::warn!(
                service = %services[loser].name,
                shadowed_by = %services[winner].name,
                "two services declare the same route; the first (by name) gets the traffic"
            );
        }
        Snapshot {
            router,
            services,
            drains: prev.drains.clone(),
        }
    }

    /// Whether any backend is draining (the drain watch then has something to check).
    pub fn has_draining(&self) -> bool {
        self.services
            .iter()
            .any(|s| s.backends.iter().any(|b| b.draining))
    }

    /// Looks a request up: the matching service, if any.
    pub fn route(&self, host: Option<&[u8]>, path: &str) -> Option<&Arc<ServiceRt>> {
        self.router
            .lookup(host, path)
            .and_then(|i| self.services.get(i))
    }

    pub fn service(&self, name: &str) -> Option<&Arc<ServiceRt>> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
}

fn resolve(addr: &str) -> Option<SocketAddr> {
    if let Ok(a) = addr.parse() {
        return Some(a);
    }
    // A host name: resolved once per new address (blocking, but off the request path).
    addr.to_socket_addrs().ok()?.next()
}

fn make_peer(addr: &str, t: &PeerTimeouts) -> Option<HttpPeer> {
    let sa = resolve(addr)?;
    let mut peer = HttpPeer::new(sa, false, String::new());
    peer.options.connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.io);
    peer.options.write_timeout = Some(t.io);
    peer.options.idle_timeout = Some(t.idle);
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::{Backend, BackendChange, BackendUpdate, Route};

    fn backend(id: &str, addr: &str) -> Backend {
        Backend {
            id: ReplicaId::new(id).unwrap(),
            addr: addr.into(),
            worker: WorkerId::new("w1").unwrap(),
            draining: false,
        }
    }

    fn reset(service: &str, version: u64, backends: Vec<Backend>) -> BackendUpdate {
        BackendUpdate {
            v: 1,
            service: ServiceName::new(service).unwrap(),
            version,
            ts_ms: 0,
            selection: Selection::LeastConn,
            change: BackendChange::Reset {
                route: Route::default(),
                backends,
            },
        }
    }

    #[test]
    fn state_survives_rebuilds() {
        let t0 = PeerTimeouts::default();
        let mut table = RouteTable::new();
        table.apply(&reset(
            "web",
            1,
            vec![backend("a", "127.0.0.1:1"), backend("b", "127.0.0.1:2")],
        ));
        let s1 = Snapshot::build(&table, &Snapshot::default(), &t0);
        let a1 = s1.services[0].backends[0].state.clone();
        let guard = a1.begin();
        table.apply(&reset(
            "web",
            2,
            vec![backend("a", "127.0.0.1:1"), backend("c", "127.0.0.1:3")],
        ));
        let s2 = Snapshot::build(&table, &s1, &t0);
        let web = s2.service("web").unwrap();
        assert_eq!(web.version, 2);
        assert_eq!(web.selection, Selection::LeastConn);
        assert!(Arc::ptr_eq(&web.backends[0].state, &a1));
        assert_eq!(web.backends[0].state.in_flight(), 1);
        assert!(Arc::ptr_eq(&web.state, &s1.services[0].state));
        drop(guard);
        assert_eq!(web.backends[0].state.in_flight(), 0);
        let ids: Vec<_> = web.backends.iter().map(|b| b.id().to_string()).collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[test]
    fn unresolvable_backend_is_not_available() {
        let mut table = RouteTable::new();
        table.apply(&reset(
            "web",
            1,
            vec![backend("a", "no-such-host.invalid:80")],
        ));
        let s = Snapshot::build(&table, &Snapshot::default(), &PeerTimeouts::default());
        assert!(s.services[0].backends[0].peer.is_none());
        assert!(!s.services[0].backends[0].available());
    }

    #[test]
    fn route_returns_the_service() {
        let mut table = RouteTable::new();
        table.apply(&reset("web", 1, vec![backend("a", "127.0.0.1:1")]));
        let s = Snapshot::build(&table, &Snapshot::default(), &PeerTimeouts::default());
        assert_eq!(s.route(Some(b"x"), "/").unwrap().name.as_str(), "web");
        assert!(Snapshot::default().route(None, "/").is_none());
    }
}
