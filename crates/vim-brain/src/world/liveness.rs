//! The brain's own link to the bus, and what it means for down-marking.
//!
//! Liveness is `now - last_seen` on the brain's clock, so a brain that cannot hear (NATS lost,
//! or its own loop stalled) would see every worker fall silent at once. Two guards:
//! - [`Link`]: while the brain is disconnected, and for one worker timeout plus 5 s after it
//!   reconnects (time for every worker to reconnect and report again), no worker is marked down;
//! - full disruption (like Kubernetes' node controller): when most workers go silent at once,
//!   the brain takes it for its own problem and marks none of them down until reports resume.
//!   The plan's `health` step decides it; the world only remembers that it was announced.

use super::Millis;

/// The brain's connection to NATS, as the reconciler reports it (`Event::Connection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Connected now.
    pub connected: bool,
    /// When the link was lost, while it is.
    pub lost_at: Option<Millis>,
    /// No worker is marked down before this (the grace after a reconnect).
    pub hold_until: Millis,
    /// A full disruption has been announced and not yet ended.
    pub disruption: bool,
}

impl Default for Link {
    fn default() -> Self {
        Self { connected: true, lost_at: None, hold_until: 0, disruption: false }
    }
}

impl Link {
    /// Folds a connection change in; `grace_ms` is the hold after a reconnect.
    pub(super) fn set(&mut self, connected: bool, now: Millis, grace_ms: Millis) {
        match (self.connected, connected) {
            (true, false) => self.lost_at = Some(now),
            (false, true) => {
                self.lost_at = None;
                self.hold_until = now.saturating_add(grace_ms);
            }
            _ => {}
        }
        self.connected = connected;
    }

    /// Why no worker may be marked down now, if none may (full disruption aside).
    pub fn hold_reason(&self, now: Millis) -> Option<String> {
        if !self.connected {
            let since = self.lost_at.map_or(0, |at| now.saturating_sub(at));
            return Some(format!("the brain has been disconnected from NATS for {since} ms"));
        }
        (now < self.hold_until).then(|| {
            format!("the brain reconnected to NATS; every worker has {} ms more to report", self.hold_until - now)
        })
    }
}

/// Most workers silent at once: at least 2, and more than half of those believed up.
pub fn is_full_disruption(silent: usize, believed_up: usize) -> bool {
    silent >= 2 && silent * 2 > believed_up
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_while_disconnected_and_for_the_grace_after() {
        let mut link = Link::default();
        assert_eq!(link.hold_reason(0), None);
        link.set(false, 1_000, 3_000);
        assert_eq!(link.hold_reason(5_000).unwrap(), "the brain has been disconnected from NATS for 4000 ms");
        link.set(true, 6_000, 3_000);
        assert!(link.hold_reason(8_999).unwrap().contains("1 ms more to report"));
        assert_eq!(link.hold_reason(9_000), None);
        // A second "connected" changes nothing.
        link.set(true, 9_500, 3_000);
        assert_eq!(link.hold_reason(9_500), None);
    }

    #[test]
    fn full_disruption_is_most_workers_and_at_least_two() {
        assert!(!is_full_disruption(1, 1), "one worker alone can die");
        assert!(!is_full_disruption(1, 3));
        assert!(!is_full_disruption(2, 4), "half is not most");
        assert!(is_full_disruption(2, 3));
        assert!(is_full_disruption(2, 2));
    }
}
