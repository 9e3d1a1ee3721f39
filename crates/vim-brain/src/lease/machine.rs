//! The leader lease as a pure state machine: plain data in (reads of the KV entry, outcomes of
//! compare-and-set writes, the monotonic time), plain data out (the write to try, transitions).
//! The driver in `lease.rs` does the KV I/O.
//!
//! - A standby judges expiry on its OWN monotonic clock: a revision unchanged for the holder's
//!   `lease_ms` since this brain first saw it is expired. A released lease is taken at once.
//! - Taking or renewing is a CAS on the entry revision; the term lives in the value and only grows.
//! - A leader acts until `sent + lease_ms - margin_ms`, `sent` being when it sent the last
//!   renewal the server confirmed. A standby cannot see that revision before `sent`, so it
//!   cannot take over before `sent + lease_ms`: the leader has stopped `margin_ms` earlier.
//! - A refused CAS (someone else wrote) steps the leader down at once.

use serde::{Deserialize, Serialize};

use crate::world::Millis;
use acs_events::Term;

/// The `leader` key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    /// The brain instance holding the lease.
    pub holder: String,
    pub term: Term,
    pub lease_ms: u64,
    /// Given up on a clean shutdown: the next brain takes it at once (with term + 1).
    #[serde(default)]
    pub released: bool,
}

/// What a read of the `leader` key found.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// No entry (or a delete marker): the lease is free.
    Absent,
    /// An entry at `revision`; `Err` holds why its value could not be parsed.
    Entry {
        revision: u64,
        value: Result<Value, String>,
    },
}

/// The write to try next.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// `kv.create`: the key is absent.
    Create(Value),
    /// `kv.update(key, value, revision)`.
    Update { revision: u64, value: Value },
}

impl Write {
    pub fn value(&self) -> &Value {
        match self {
            Write::Create(v) | Write::Update { value: v, .. } => v,
        }
    }
}

/// A change of role, to log and announce (`LeaderEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Elected(Term),
    Renewed(Term),
    SteppedDown(Term),
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Standby,
    Leader {
        term: Term,
        revision: u64,
        acting_until: Millis,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    me: String,
    lease_ms: u64,
    margin_ms: u64,
    role: Role,
    /// The revision last seen, and when this brain first saw it (own clock).
    seen: Option<(u64, Millis)>,
    /// The highest term ever seen, so a new term is always higher.
    max_term: Term,
    /// Values that could not be parsed (counted, logged by the driver).
    pub corrupt: u64,
}

impl Machine {
    pub fn new(me: impl Into<String>, lease_ms: u64, margin_ms: u64) -> Self {
        let margin_ms = margin_ms.min(lease_ms);
        Self {
            me: me.into(),
            lease_ms,
            margin_ms,
            role: Role::Standby,
            seen: None,
            max_term: 0,
            corrupt: 0,
        }
    }

    /// The term this brain leads in, if it may act at `now`.
    pub fn acting(&self, now: Millis) -> Option<Term> {
        match self.role {
            Role::Leader {
                term, acting_until, ..
            } if now < acting_until => Some(term),
            _ => None,
        }
    }

    /// The deadline of the current leadership, if leading.
    pub fn acting_until(&self) -> Option<Millis> {
        match self.role {
            Role::Leader { acting_until, .. } => Some(acting_until),
            Role::Standby => None,
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    fn mine(&self, term: Term, released: bool) -> Value {
        Value {
            holder: self.me.clone(),
            term,
            lease_ms: self.lease_ms,
            released,
        }
    }

    /// A standby's read at `now`: the write that takes the lease, if it is free or expired.
    pub fn observed(&mut self, read: Read, now: Millis) -> Option<Write> {
        if self.is_leader() {
            return None;
        }
        match read {
            Read::Absent => {
                self.seen = None;
                Some(Write::Create(self.mine(self.max_term + 1, false)))
            }
            Read::Entry { revision, value } => {
                if self.seen.is_none_or(|(r, _)| r != revision) {
                    self.seen = Some((revision, now));
                }
                let first_seen = self.seen.map_or(now, |(_, at)| at);
                let (lease_ms, released) = match &value {
                    Ok(v) => {
                        self.max_term = self.max_term.max(v.term);
                        (v.lease_ms, v.released)
                    }
                    Err(_) => {
                        self.corrupt += 1;
                        (self.lease_ms, false)
                    }
                };
                let expired = now.saturating_sub(first_seen) >= lease_ms;
                (released || expired).then(|| Write::Update {
                    revision,
                    value: self.mine(self.max_term + 1, false),
                })
            }
        }
    }

    /// The renewal a leader sends now (same term, its last revision).
    pub fn renewal(&self) -> Option<Write> {
        match self.role {
            Role::Leader { term, revision, .. } => Some(Write::Update {
                revision,
                value: self.mine(term, false),
            }),
            Role::Standby => None,
        }
    }

    /// The write that gives the lease up on a clean shutdown (keeps the term).
    pub fn release(&self) -> Option<Write> {
        match self.role {
            Role::Leader { term, revision, .. } => Some(Write::Update {
                revision,
                value: self.mine(term, true),
            }),
            Role::Standby => None,
        }
    }

    /// A write sent at `sent` was confirmed at `revision`; `now` is when the answer came.
    pub fn confirmed(
        &mut self,
        write: &Write,
        revision: u64,
        sent: Millis,
        now: Millis,
    ) -> Option<Transition> {
        let v = write.value();
        self.max_term = self.max_term.max(v.term);
        self.seen = Some((revision, sent));
        let acting_until = sent + self.lease_ms - self.margin_ms;
        if v.released {
            self.role = Role::Standby;
            return Some(Transition::SteppedDown(v.term));
        }
        match self.role {
            Role::Leader { term, .. } if term == v.term => {
                if now >= acting_until {
                    // Confirmed too late to act on: stay down (tick already stepped down).
                    return self.step_down();
                }
                self.role = Role::Leader {
                    term,
                    revision,
                    acting_until,
                };
                Some(Transition::Renewed(term))
            }
            // A late confirmation of a renewal after stepping down: the standby rule applies.
            Role::Leader { .. } => None,
            // A claim confirmed in time: elected.
            Role::Standby if now < acting_until && v.holder == self.me && v.term > 0 => {
                self.role = Role::Leader {
                    term: v.term,
                    revision,
                    acting_until,
                };
                Some(Transition::Elected(v.term))
            }
            Role::Standby => None,
        }
    }

    /// The CAS was refused: someone else wrote the key. A leader steps down at once.
    pub fn refused(&mut self) -> Option<Transition> {
        self.step_down()
    }

    /// The deadline check, at every turn: a leader past `acting_until` steps down.
    pub fn tick(&mut self, now: Millis) -> Option<Transition> {
        match self.role {
            Role::Leader { acting_until, .. } if now >= acting_until => self.step_down(),
            _ => None,
        }
    }

    fn step_down(&mut self) -> Option<Transition> {
        match std::mem::replace(&mut self.role, Role::Standby) {
            Role::Leader { term, .. } => Some(Transition::SteppedDown(term)),
            Role::Standby => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: u64 = 1500;
    const MARGIN: u64 = 500;

    fn entry(revision: u64, holder: &str, term: Term) -> Read {
        Read::Entry {
            revision,
            value: Ok(Value {
                holder: holder.into(),
                term,
                lease_ms: LEASE,
                released: false,
            }),
        }
    }

    /// `me` elected at `now` on an absent key, at revision 1.
    fn elected(me: &str, now: Millis) -> Machine {
        let mut m = Machine::new(me, LEASE, MARGIN);
        let w = m.observed(Read::Absent, now).expect("free: take it");
        assert_eq!(
            w,
            Write::Create(Value {
                holder: me.into(),
                term: 1,
                lease_ms: LEASE,
                released: false
            })
        );
        assert_eq!(
            m.confirmed(&w, 1, now, now + 5),
            Some(Transition::Elected(1))
        );
        m
    }

    #[test]
    fn renewals_keep_the_term_and_push_the_deadline() {
        let mut m = elected("a", 0);
        assert_eq!(m.acting(10), Some(1));
        assert_eq!(m.acting_until(), Some(LEASE - MARGIN));
        let w = m.renewal().unwrap();
        assert_eq!(
            w,
            Write::Update {
                revision: 1,
                value: Value {
                    holder: "a".into(),
                    term: 1,
                    lease_ms: LEASE,
                    released: false
                }
            }
        );
        assert_eq!(m.confirmed(&w, 2, 300, 310), Some(Transition::Renewed(1)));
        assert_eq!(m.acting_until(), Some(300 + LEASE - MARGIN));
        assert_eq!(
            m.renewal().unwrap(),
            Write::Update {
                revision: 2,
                value: w.value().clone()
            }
        );
        assert_eq!(m.tick(1200), None, "still inside the renewed window");
    }

    #[test]
    fn a_standby_judges_expiry_on_its_own_clock_from_first_sight() {
        let mut b = Machine::new("b", LEASE, MARGIN);
        // The entry may be old already; b's clock starts when b first sees this revision.
        assert_eq!(b.observed(entry(7, "a", 4), 10_000), None);
        assert_eq!(b.observed(entry(7, "a", 4), 11_000), None);
        // A renewal (new revision) restarts the count.
        assert_eq!(b.observed(entry(8, "a", 4), 11_400), None);
        assert_eq!(b.observed(entry(8, "a", 4), 12_899), None);
        let w = b
            .observed(entry(8, "a", 4), 12_900)
            .expect("unchanged for lease_ms: expired");
        assert_eq!(
            w,
            Write::Update {
                revision: 8,
                value: Value {
                    holder: "b".into(),
                    term: 5,
                    lease_ms: LEASE,
                    released: false
                }
            }
        );
        assert_eq!(
            b.confirmed(&w, 9, 12_900, 12_905),
            Some(Transition::Elected(5))
        );
        assert_eq!(b.acting(12_910), Some(5));
    }

    #[test]
    fn the_leader_stops_before_any_standby_could_take_over() {
        let mut a = elected("a", 0);
        let mut b = Machine::new("b", LEASE, MARGIN);
        // The renewal sent at 300 is confirmed; b can see revision 2 only after it was written.
        let w = a.renewal().unwrap();
        a.confirmed(&w, 2, 300, 320);
        // Then every renewal fails (a is cut off): no confirmation after 300.
        let b_first_seen = 301;
        assert_eq!(b.observed(entry(2, "a", 1), b_first_seen), None);
        let a_stops = a.acting_until().unwrap();
        assert_eq!(a.tick(a_stops - 1), None);
        assert_eq!(
            a.acting(a_stops),
            None,
            "not acting at its deadline, even before tick"
        );
        assert_eq!(a.tick(a_stops), Some(Transition::SteppedDown(1)));
        let mut t = b_first_seen;
        let b_takes = loop {
            if b.observed(entry(2, "a", 1), t).is_some() {
                break t;
            }
            t += 50;
        };
        assert!(
            b_takes >= a_stops + MARGIN,
            "b takes at {b_takes}, a stopped at {a_stops}"
        );
        assert_eq!(a.renewal(), None, "a stepped down renews nothing");
    }

    #[test]
    fn a_lost_cas_steps_the_leader_down_at_once() {
        let mut a = elected("a", 0);
        assert_eq!(a.refused(), Some(Transition::SteppedDown(1)));
        assert_eq!(a.acting(1), None);
        assert_eq!(a.refused(), None, "once");
        // Back to standby: it sees the new holder's higher term and waits for it to expire.
        assert_eq!(a.observed(entry(5, "b", 2), 10), None);
        let w = a.observed(entry(5, "b", 2), 10 + LEASE).unwrap();
        assert_eq!(w.value().term, 3, "terms only grow");
    }

    #[test]
    fn a_late_confirmation_does_not_revive_a_leader() {
        let mut a = elected("a", 0);
        let w = a.renewal().unwrap();
        assert_eq!(a.tick(LEASE), Some(Transition::SteppedDown(1)));
        assert_eq!(a.confirmed(&w, 2, 100, LEASE + 10), None);
        assert_eq!(a.acting(LEASE + 20), None);
    }

    #[test]
    fn a_released_lease_is_taken_at_once_with_a_higher_term() {
        let a = elected("a", 0);
        let release = a.release().unwrap();
        assert!(release.value().released && release.value().term == 1);
        let mut b = Machine::new("b", LEASE, MARGIN);
        let read = Read::Entry {
            revision: 2,
            value: Ok(release.value().clone()),
        };
        assert_eq!(b.observed(read, 50).map(|w| w.value().term), Some(2));
    }

    #[test]
    fn a_corrupt_value_is_counted_and_expires_like_any_other() {
        let mut b = Machine::new("b", LEASE, MARGIN);
        let bad = || Read::Entry {
            revision: 3,
            value: Err("expected value at line 1".into()),
        };
        assert_eq!(b.observed(bad(), 0), None);
        assert!(b.observed(bad(), LEASE).is_some());
        assert_eq!(b.corrupt, 2);
    }

    #[test]
    fn a_standby_whose_claim_lost_stays_standby() {
        let mut b = Machine::new("b", LEASE, MARGIN);
        assert!(b.observed(Read::Absent, 0).is_some());
        assert_eq!(b.refused(), None);
        assert!(!b.is_leader());
    }
}
