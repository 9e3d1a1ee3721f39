//! What the brain keeps per service, grouped by concern: its scale (desired count, pin,
//! recommendation history), the backend set published to the proxies, what the last plan made
//! of it (blocked, lifecycle), its crash history and a replica being moved.

use std::collections::{BTreeMap, VecDeque};

use acs_events::{Backend, ReplicaId};

use super::{CrashLoop, Millis};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceState {
    pub scale: Scale,
    pub routing: Routing,
    pub status: Status,
    /// Its crashes in a row, for the crash-loop backoff.
    pub crash: CrashLoop,
    pub moves: Moves,
}

/// How many replicas a service should run, and what that was decided from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scale {
    /// Current desired count; `None` until the first plan after warm-up.
    pub desired: Option<u32>,
    /// Pinned by a manual scale.
    pub manual: Option<u32>,
    /// Its pin in KV was unreadable at take-over ([`super::Event::PinUnreadable`]): it holds its
    /// desired count (what ran at the first plan) as if pinned, until the next scale request.
    pub pin_unreadable: bool,
    /// When the desired count last changed.
    pub last_change: Option<Millis>,
    /// Policy recommendations with their time, for the stabilisation windows.
    pub history: VecDeque<(Millis, u32)>,
}

impl Scale {
    /// Pinned by hand, or held as if pinned.
    pub fn pinned(&self) -> bool {
        self.manual.is_some() || self.pin_unreadable
    }
}

/// The backend set the proxies have been told.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    /// Version of the last backend update published.
    pub version: u64,
    pub published: BTreeMap<ReplicaId, Backend>,
    /// `published`'s digest (`world::digest`), kept with it by `World::apply`: a steady plan
    /// compares it with the members' instead of looking up every backend. One that does not
    /// match (a state built by hand) only costs that plan the full diff.
    pub digest: u64,
    pub last_reset: Option<Millis>,
    /// A fresh `reset` is wanted at the next plan: a proxy's sync reply could not carry the
    /// whole set under the payload limit ([`super::Event::ResetDue`]).
    pub reset_requested: bool,
}

/// What the last plan made of the service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Why the service cannot reach its desired count, if it cannot (announced once).
    pub blocked: Option<String>,
    /// Its lifecycle state as the last plan saw it.
    pub lifecycle: acs_events::Lifecycle,
    /// Whether a replica of it was ever healthy.
    pub ever_ready: bool,
}

/// A replica being moved: by a rebalance, or by an operator's replace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Moves {
    /// The replica being moved (until it is gone).
    pub moving: Option<ReplicaId>,
    /// When rebalance moves began, for the budget.
    pub begun: VecDeque<Millis>,
    /// Set while `moving` is an operator's replace (`acs.cmd.replica`), with its reason: the
    /// replacement may then go on the same worker, and no rebalance budget is spent.
    pub replacing: Option<String>,
}
