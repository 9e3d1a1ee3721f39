//! Backend selection per service: round-robin, least-connections, power of two choices.
//!
//! Pure over a slice of [`Candidate`]s (Pingora tests its selection the same way, over a plain
//! set of backends). Rules shared by every algorithm:
//!
//! - draining (or unusable) backends and the ones the caller skips (already tried) never get
//!   picked;
//! - ejected backends are avoided, but when every remaining backend is ejected we pick among the
//!   ejected ones rather than fail;
//! - nothing allocates: candidates are counted and indexed in place.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use acs_events::Selection;

type Filter<'a, C> = &'a dyn Fn(usize, &C) -> bool;

/// What selection needs to know about a backend.
pub trait Candidate {
    /// Not draining and has a usable address.
    fn available(&self) -> bool;
    fn ejected(&self, now_ms: u64) -> bool;
    fn in_flight(&self) -> u64;
}

/// Picks a backend index, or `None` when no candidate is left.
///
/// `rr` is the service's counter (round-robin position, tie-breaks); `random(n)` returns a
/// uniform number in `0..n` (injected so tests are deterministic).
pub fn pick<C: Candidate>(
    selection: Selection,
    cands: &[C],
    skip: impl Fn(usize) -> bool,
    rr: &AtomicUsize,
    now_ms: u64,
    mut random: impl FnMut(usize) -> usize,
) -> Option<usize> {
    let healthy = |i: usize, c: &C| c.available() && !skip(i) && !c.ejected(now_ms);
    let any = |i: usize, c: &C| c.available() && !skip(i);
    let n_healthy = count(cands, healthy);
    let (n, eligible): (usize, Filter<C>) = if n_healthy > 0 {
        (n_healthy, &healthy)
    } else {
        (count(cands, any), &any)
    };
    if n == 0 {
        return None;
    }
    match selection {
        Selection::RoundRobin => {
            let k = rr.fetch_add(1, Relaxed) % n;
            nth(cands, eligible, k)
        }
        Selection::LeastConn => {
            // Rotate the scan start so that ties spread instead of piling on the first backend.
            let start = rr.fetch_add(1, Relaxed) % cands.len();
            let mut best: Option<(usize, u64)> = None;
            for off in 0..cands.len() {
                let i = (start + off) % cands.len();
                let c = &cands[i];
                if !eligible(i, c) {
                    continue;
                }
                let load = c.in_flight();
                if best.is_none_or(|(_, b)| load < b) {
                    best = Some((i, load));
                }
            }
            best.map(|(i, _)| i)
        }
        Selection::P2c => {
            if n == 1 {
                return nth(cands, eligible, 0);
            }
            let a = random(n) % n;
            let mut b = random(n - 1) % (n - 1);
            if b >= a {
                b += 1;
            }
            let ia = nth(cands, eligible, a)?;
            let ib = nth(cands, eligible, b)?;
            if cands[ib].in_flight() < cands[ia].in_flight() {
                Some(ib)
            } else {
                Some(ia)
            }
        }
    }
}

/// `true` when [`pick`] would find a candidate (used to decide whether a retry is worth it).
pub fn has_candidate<C: Candidate>(cands: &[C], skip: impl Fn(usize) -> bool) -> bool {
    cands
        .iter()
        .enumerate()
        .any(|(i, c)| c.available() && !skip(i))
}

fn count<C>(cands: &[C], f: impl Fn(usize, &C) -> bool) -> usize {
    cands.iter().enumerate().filter(|(i, c)| f(*i, c)).count()
}

fn nth<C>(cands: &[C], f: Filter<C>, k: usize) -> Option<usize> {
    cands
        .iter()
        .enumerate()
        .filter(|(i, c)| f(*i, c))
        .nth(k)
        .map(|(i, _)| i)
}

/// A uniform random number in `0..n` from the thread-local generator.
pub fn thread_random(n: usize) -> usize {
    use rand::Rng;
    if n <= 1 {
        return 0;
    }
    rand::rng().random_range(0..n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Fake {
        draining: bool,
        ejected: bool,
        in_flight: u64,
    }

    impl Candidate for Fake {
        fn available(&self) -> bool {
            !self.draining
        }
        fn ejected(&self, _now: u64) -> bool {
            self.ejected
        }
        fn in_flight(&self) -> u64 {
            self.in_flight
        }
    }

    fn plain(n: usize) -> Vec<Fake> {
        vec![Fake::default(); n]
    }

    fn none(_: usize) -> bool {
        false
    }

    /// A deterministic "random" source cycling through 0, 1, 2, ...
    fn seq() -> impl FnMut(usize) -> usize {
        let mut i = 0;
        move |n| {
            i += 1;
            (i * 7919) % n
        }
    }

    fn spread(sel: Selection, cands: &[Fake], rounds: usize) -> Vec<usize> {
        let rr = AtomicUsize::new(0);
        let mut hits = vec![0; cands.len()];
        let mut r = seq();
        for _ in 0..rounds {
            let i = pick(sel, cands, none, &rr, 0, &mut r).unwrap();
            hits[i] += 1;
        }
        hits
    }

    #[test]
    fn round_robin_cycles_evenly() {
        assert_eq!(
            spread(Selection::RoundRobin, &plain(3), 300),
            [100, 100, 100]
        );
    }

    #[test]
    fn round_robin_skips_draining_and_ejected() {
        let mut c = plain(4);
        c[1].draining = true;
        c[2].ejected = true;
        assert_eq!(spread(Selection::RoundRobin, &c, 100), [50, 0, 0, 50]);
    }

    #[test]
    fn all_ejected_falls_back_to_ejected() {
        let mut c = plain(2);
        c[0].ejected = true;
        c[1].ejected = true;
        assert_eq!(spread(Selection::RoundRobin, &c, 10), [5, 5]);
        // ... but draining ones stay out even then.
        c[1].draining = true;
        assert_eq!(spread(Selection::RoundRobin, &c, 10), [10, 0]);
    }

    #[test]
    fn nothing_available_is_none() {
        let rr = AtomicUsize::new(0);
        let mut c = plain(2);
        c[0].draining = true;
        c[1].draining = true;
        for sel in [Selection::RoundRobin, Selection::LeastConn, Selection::P2c] {
            assert_eq!(pick(sel, &c, none, &rr, 0, seq()), None);
            assert_eq!(pick(sel, &plain(0), none, &rr, 0, seq()), None);
        }
        assert!(!has_candidate(&c, none));
    }

    #[test]
    fn skip_excludes_tried_backends() {
        let rr = AtomicUsize::new(0);
        let c = plain(3);
        for sel in [Selection::RoundRobin, Selection::LeastConn, Selection::P2c] {
            for _ in 0..20 {
                let i = pick(sel, &c, |i| i != 2, &rr, 0, seq());
                assert_eq!(i, Some(2), "{sel:?}");
            }
            assert_eq!(pick(sel, &c, |_| true, &rr, 0, seq()), None);
        }
        assert!(has_candidate(&c, |i| i != 1));
        assert!(!has_candidate(&c, |_| true));
    }

    #[test]
    fn skip_prefers_untried_ejected_over_nothing() {
        let rr = AtomicUsize::new(0);
        let mut c = plain(2);
        c[1].ejected = true;
        // Backend 0 was tried; only the ejected one is left: use it.
        assert_eq!(
            pick(Selection::RoundRobin, &c, |i| i == 0, &rr, 0, seq()),
            Some(1)
        );
    }

    #[test]
    fn least_conn_picks_the_least_loaded() {
        let rr = AtomicUsize::new(0);
        let mut c = plain(3);
        c[0].in_flight = 5;
        c[1].in_flight = 1;
        c[2].in_flight = 3;
        for _ in 0..10 {
            assert_eq!(pick(Selection::LeastConn, &c, none, &rr, 0, seq()), Some(1));
        }
        c[1].draining = true;
        assert_eq!(pick(Selection::LeastConn, &c, none, &rr, 0, seq()), Some(2));
    }

    #[test]
    fn least_conn_spreads_ties() {
        let hits = spread(Selection::LeastConn, &plain(4), 400);
        assert_eq!(hits, [100, 100, 100, 100]);
    }

    #[test]
    fn p2c_never_picks_the_most_loaded_of_two() {
        let rr = AtomicUsize::new(0);
        let mut c = plain(2);
        c[0].in_flight = 10;
        for _ in 0..50 {
            assert_eq!(pick(Selection::P2c, &c, none, &rr, 0, seq()), Some(1));
        }
    }

    #[test]
    fn p2c_avoids_a_hot_backend_and_spreads_the_rest() {
        let mut c = plain(4);
        c[3].in_flight = 100;
        let rr = AtomicUsize::new(0);
        let mut hits = [0; 4];
        for _ in 0..3000 {
            hits[pick(Selection::P2c, &c, none, &rr, 0, thread_random).unwrap()] += 1;
        }
        assert_eq!(hits[3], 0, "{hits:?}");
        for h in &hits[..3] {
            assert!(*h > 500, "{hits:?}");
        }
    }

    #[test]
    fn p2c_picks_two_distinct_candidates() {
        // With two candidates and equal load, both must get traffic whatever the random source.
        let c = plain(2);
        let rr = AtomicUsize::new(0);
        let mut hits = [0; 2];
        for _ in 0..100 {
            hits[pick(Selection::P2c, &c, none, &rr, 0, thread_random).unwrap()] += 1;
        }
        assert!(hits[0] > 0 && hits[1] > 0, "{hits:?}");
    }

    #[test]
    fn thread_random_in_range() {
        for n in 1..20 {
            for _ in 0..50 {
                assert!(thread_random(n) < n);
            }
        }
        assert_eq!(thread_random(0), 0);
    }
}
