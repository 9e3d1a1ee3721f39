//! Hashes of backends, computed by the world when a report is folded in and read by the plan:
//! a replica's route hash (its id, address and worker), and an order-free digest of a backend
//! set, so a steady plan compares one number instead of every backend.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::OnceLock;

use acs_events::{Backend, ReplicaId, WorkerId};

/// The seeded hash of a backend's id, address and worker: a plan's member carries it, computed
/// by the world when the report is folded in (`WorkerView::keys`). Digests never leave the
/// process.
pub fn route_hash(id: &ReplicaId, addr: &str, worker: &WorkerId) -> u64 {
    let mut hasher = foldhash::quality::FixedState::with_seed(seeds().0).build_hasher();
    // One write of the fields laid end to end hashes several times faster than one write per
    // field. Ids hold no ':' and an address holds no whitespace, so the layout is unambiguous.
    let (id, worker) = (id.as_str().as_bytes(), worker.as_str().as_bytes());
    let mut buf = [0u8; 192];
    let len = id.len() + 1 + addr.len() + 1 + worker.len();
    if len <= buf.len() {
        let mut at = 0;
        for part in [id, b":", addr.as_bytes(), b"\n", worker] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        hasher.write(&buf[..len]);
    } else {
        (id, addr, worker).hash(&mut hasher);
    }
    hasher.finish()
}

/// The hash seed and the drain mark's key, drawn once per process from the OS's randomness
/// (as `HashMap`'s keys are), so nobody can craft ids that collide.
fn seeds() -> (u64, u64) {
    static SEEDS: OnceLock<(u64, u64)> = OnceLock::new();
    *SEEDS.get_or_init(|| {
        let random = std::collections::hash_map::RandomState::new();
        (random.hash_one(0u8), random.hash_one(1u8) | 1)
    })
}

/// One backend's share of a [`digest`]: its route hash, with the drain mark folded in.
pub(crate) fn entry_hash(route_hash: u64, draining: bool) -> u64 {
    if draining {
        route_hash ^ seeds().1
    } else {
        route_hash
    }
}

/// An order-free digest of a backend set (ids, addresses, workers, drain marks): the wrapping
/// sum of a 64-bit hash of each backend. Equal sets give equal digests; two different sets of
/// the same size give the same one with a chance of about 2^-64. `World::apply` keeps one
/// beside each published set ([`super::Routing::digest`]).
pub(crate) fn digest<'b>(backends: impl IntoIterator<Item = &'b Backend>) -> u64 {
    backends.into_iter().fold(0, |sum, b| {
        sum.wrapping_add(entry_hash(
            route_hash(&b.id, &b.addr, &b.worker),
            b.draining,
        ))
    })
}
