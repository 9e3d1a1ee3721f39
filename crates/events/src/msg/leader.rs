//! Leadership of the brains (`acs.events.leader`), and the fencing term every brain message
//! carries.
//!
//! Brains hold a lease in JetStream KV; each new leader takes a higher term. Workers and proxies
//! remember the newest term they have seen (from this event, from commands and from backend
//! versions) and refuse anything stamped with an older one.

use serde::{Deserialize, Serialize};

use super::{v1, versioned};
use crate::codec::Validate;
use crate::UnixMs;

/// A leader term. Grows by one for each new leader, never reused.
pub type Term = u64;

/// Backend versions are `(term, sequence)` packed into one `u64`: the term in the top
/// [`TERM_BITS`] bits, the sequence in the rest. Numeric order is then (term, sequence) order, so
/// every update from a newer leader is newer than any from an older one, whatever the clocks say.
pub const TERM_BITS: u32 = 24;
const SEQ_BITS: u32 = 64 - TERM_BITS;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// The version `(term, seq)`. A term or sequence too large to fit is clamped, so order holds.
pub fn pack_version(term: Term, seq: u64) -> u64 {
    let term = term.min((1 << TERM_BITS) - 1);
    (term << SEQ_BITS) | seq.min(SEQ_MASK)
}

/// The term a backend version was issued in.
pub fn version_term(version: u64) -> Term {
    version >> SEQ_BITS
}

/// The sequence of a backend version within its term.
pub fn version_seq(version: u64) -> u64 {
    version & SEQ_MASK
}

/// Published by a brain when it takes or gives up the lease, and again on every renewal so a
/// component that just started learns the current term within one renewal period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderEvent {
    #[serde(default = "v1")]
    pub v: u32,
    pub term: Term,
    /// The brain instance holding (or leaving) the lease.
    pub brain: String,
    pub ts_ms: UnixMs,
    pub change: LeaderChange,
    /// How long the lease lasts without renewal.
    pub lease_ms: u64,
}
versioned!(LeaderEvent);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderChange {
    /// This brain took the lease with a new term.
    Elected,
    /// Still leading; the lease was renewed.
    Renewed,
    /// This brain stopped acting (could not renew in time, or shutting down).
    SteppedDown,
}

impl Validate for LeaderEvent {
    fn validate(&self) -> Result<(), String> {
        if self.brain.is_empty() {
            return Err("brain must not be empty".into());
        }
        if self.term == 0 {
            return Err("term must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_term_then_sequence() {
        let old = pack_version(3, 1_000_000);
        let new = pack_version(4, 1);
        assert!(new > old);
        assert_eq!((version_term(new), version_seq(new)), (4, 1));
        assert_eq!((version_term(old), version_seq(old)), (3, 1_000_000));
        assert_eq!(pack_version(0, 7), 7);
    }

    #[test]
    fn oversized_parts_are_clamped_not_wrapped() {
        let top = pack_version(u64::MAX, u64::MAX);
        assert_eq!(version_term(top), (1 << TERM_BITS) - 1);
        assert_eq!(version_seq(top), SEQ_MASK);
        assert!(pack_version(2, u64::MAX) < pack_version(3, 0));
    }

    #[test]
    fn leader_event_needs_a_term_and_a_brain() {
        let mut e = LeaderEvent {
            v: 1,
            term: 1,
            brain: "b1".into(),
            ts_ms: 0,
            change: LeaderChange::Elected,
            lease_ms: 1500,
        };
        assert!(e.validate().is_ok());
        e.term = 0;
        assert!(e.validate().is_err());
    }
}
