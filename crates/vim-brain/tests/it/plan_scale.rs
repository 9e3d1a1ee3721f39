//! The plan over a plain-data fleet (`vim_brain::fleet`): steady passes over changing CPU
//! figures stay quiet. Its timing at 10,000 workers is the `plan` bench
//! (`cargo bench -p vim-brain --bench plan`).

use acs_events::BackendChange;
use vim_brain::fleet::{Fleet, Ids};

#[test]
fn steady_passes_over_changing_cpu_figures_change_nothing() {
    let mut fleet = Fleet::new(200, 10, 10, Ids::Brain);
    let first = fleet.step();
    assert!(first.commands.is_empty(), "{:?}", first.commands);
    assert_eq!(first.updates.len(), 10, "one reset per service");
    for pass in 1..=6 {
        fleet.now += 1_000;
        fleet.reports(|_| true);
        let p = fleet.step();
        assert!(p.commands.is_empty(), "pass {pass}: {:?}", p.commands);
        // Resets are due every 5 s (the default); nothing else is published.
        let resets = p
            .updates
            .iter()
            .filter(|u| matches!(u.change, BackendChange::Reset { .. }))
            .count();
        assert_eq!(
            (p.updates.len(), resets),
            if pass == 5 { (10, 10) } else { (0, 0) },
            "pass {pass}"
        );
        assert!(p.decisions.is_empty(), "pass {pass}: {:?}", p.decisions);
    }
}
