//! The brain's model of the cluster, folded from events by a synchronous [`World::apply`].
//!
//! Two kinds of state live here:
//! - what others report: workers' last metrics (with their replicas), proxies' traffic and
//!   their drained backends;
//! - the brain's own bookkeeping: replicas it asked for but has not yet seen healthy, drains in
//!   progress, stops in flight, per-service desired counts, manual pins, recommendation history
//!   and the backend sets it has published (each with its digest, so a steady plan need not
//!   compare them backend by backend).
//!
//! Beside each worker's report it keeps `ReplicaKeys` per replica (route hash, service
//! number), computed when the report is folded in: at 100,000 replicas, a plan that read ids,
//! addresses and service names spent most of its time on cache misses.
//!
//! Files: `views.rs` (workers, proxies, replicas' records, maintenance), `service.rs` (each
//! service's state, by concern), `fold.rs` (how reports and answers fold in), `sent.rs` (a sent
//! plan's [`Bookkeeping`] and how it folds in), `crash.rs` (the crash-loop counts),
//! `digest.rs` (route hashes and backend-set digests), `liveness.rs` (the link, the
//! full-disruption rule, duplicate worker ids), `settings.rs`.
//!
//! # One door
//!
//! Like kube-rs's reflector `Store` (`apply_watcher_event`), the world changes only through:
//! - [`World::new`]: an empty world at brain start;
//! - [`World::apply`]: one [`Event`]: a worker's or proxy's report, a command's result, a manual
//!   pin ([`Event::Pin`], from `acs.cmd.scale` or KV) or one KV could not give back
//!   ([`Event::PinUnreadable`]), a maintenance state, a replace request
//!   ([`Event::Replace`]), a new term, or the bookkeeping of a plan once it has been sent
//!   ([`Event::PlanSent`]).
//!
//! The fields are private; everything else is a read ([`World::settings`], [`World::workers`],
//! [`World::records`], [`World::service`], ...).
//!
//! Time is a plain number of milliseconds on a monotonic clock that the caller passes in.

mod crash;
mod digest;
mod fold;
mod liveness;
mod sent;
mod service;
mod settings;
mod views;

use std::collections::BTreeMap;

use acs_events::{
    BackendDrained, CommandAck, ProxyId, ProxyMetrics, ReplicaEvent, ReplicaId, ReplicaStatus,
    ServiceName, UnixMs, WorkerId, WorkerMetrics,
};

pub use crash::{
    on_exit, on_start_refused, CrashLoop, CrashStep, BASE_MS, CAP_MS, MIN_UPTIME_MS, RESET_AFTER_MS,
};
pub use digest::route_hash;
pub(crate) use digest::{digest, entry_hash};
pub use liveness::{duplicate_event, is_full_disruption, Duplicate, Link};
pub use sent::Bookkeeping;
pub(crate) use sent::{
    BlockedChange, DesiredChange, HealthAnnounced, LifecycleChange, Published, RecordChange,
};
pub use service::{Moves, Routing, Scale, ServiceState, Status};
pub use settings::Settings;
pub(crate) use views::ServiceNumbers;
pub use views::{Drained, Intent, Maintenance, ProxyView, Record, WorkerView};

/// Added to the worker timeout as the grace after the brain reconnects to NATS.
pub const RECONNECT_SLACK_MS: Millis = 5_000;

/// Milliseconds on the brain's monotonic clock.
pub type Millis = u64;

/// The time, as the reconciler passes it to the pure code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic, for every interval and deadline.
    pub mono: Millis,
    /// Wall clock, only for timestamps in messages.
    pub unix_ms: UnixMs,
}

/// Everything the brain knows. `BTreeMap`s everywhere: iteration order decides outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    settings: Settings,
    /// Brain start, on the monotonic clock.
    started: Millis,
    /// Brain start, wall clock in ms; makes replica ids unique across brain restarts and seeds
    /// backend versions so they keep growing across restarts.
    epoch: UnixMs,
    next_seq: u64,
    workers: BTreeMap<WorkerId, WorkerView>,
    proxies: BTreeMap<ProxyId, ProxyView>,
    records: BTreeMap<ReplicaId, Record>,
    services: BTreeMap<ServiceName, ServiceState>,
    /// The brain's own connection to NATS; holds down-marking while it cannot hear.
    link: Link,
    /// Reports refused because `max_ids` workers or proxies are known already.
    refused_ids: u64,
    /// Workers under maintenance (`acs.cmd.maintenance`): cordoned, and whether draining. Kept
    /// apart from `workers` so a cordon outlives the worker's entry and survives a failover.
    maintenance: BTreeMap<WorkerId, Maintenance>,
    /// The leader term (0 until elected).
    term: acs_events::Term,
    /// Second processes reporting under a worker id another live instance holds (refused).
    duplicates: BTreeMap<WorkerId, Duplicate>,
    /// Reported service names, numbered for the plan (`ReplicaKeys::service`).
    service_numbers: ServiceNumbers,
}

/// Everything that can change the world.
#[derive(Debug, Clone)]
pub enum Event {
    WorkerMetrics(WorkerMetrics),
    Replica(ReplicaEvent),
    Proxy(ProxyMetrics),
    /// A proxy's draining backend has nothing in flight (`acs.events.drained.<proxy>`).
    Drained(BackendDrained),
    /// A worker's answer to a command (or the failure to get one).
    CommandResult {
        worker: WorkerId,
        replica: ReplicaId,
        start: bool,
        result: Result<CommandAck, String>,
    },
    /// A manual pin at `replicas`, or (`None`) the service handed back to its policy.
    Pin {
        service: ServiceName,
        replicas: Option<u32>,
    },
    /// The pin kept in KV for a service could not be read when this brain took over: an
    /// operator had set something, so the service holds its count as if pinned (not handed to
    /// its policy) until the next `acs.cmd.scale` for it.
    PinUnreadable {
        service: ServiceName,
    },
    /// A plan has been sent: record what it started, drained, stopped, decided and published.
    PlanSent(Bookkeeping),
    /// The brain's own NATS connection went down (`false`) or came back (`true`).
    Connection {
        connected: bool,
    },
    /// A worker's maintenance state (`acs.cmd.maintenance`, or restored from KV); the default
    /// (neither cordoned nor draining) clears it.
    Maintenance {
        worker: WorkerId,
        state: Maintenance,
    },
    /// This brain now leads in `term` (elected); stamps versions and replica ids.
    Term(acs_events::Term),
    /// Publish a fresh (split) `reset` of these services at the next plan: a sync reply
    /// carried only part of their backends.
    ResetDue(Vec<ServiceName>),
    /// An operator asked to replace `replica` (`acs.cmd.replica`): it moves make-before-break,
    /// as a rebalance pick does. `control::replace` checks it first.
    Replace {
        service: ServiceName,
        replica: ReplicaId,
        reason: String,
    },
}

impl World {
    pub fn new(settings: Settings, now: Now) -> Self {
        Self {
            service_numbers: ServiceNumbers::new(settings.max_ids),
            settings,
            started: now.mono,
            epoch: now.unix_ms,
            next_seq: 1,
            workers: BTreeMap::new(),
            proxies: BTreeMap::new(),
            records: BTreeMap::new(),
            services: BTreeMap::new(),
            link: Link::default(),
            refused_ids: 0,
            duplicates: BTreeMap::new(),
            maintenance: BTreeMap::new(),
            term: 0,
        }
    }

    /// The leader term this world plans for (0: never elected).
    pub fn term(&self) -> acs_events::Term {
        self.term
    }

    /// Workers under maintenance (cordoned or draining). This is what must survive a brain
    /// failover, next to the pins: restore it with [`Event::Maintenance`].
    pub fn maintenance(&self) -> &BTreeMap<WorkerId, Maintenance> {
        &self.maintenance
    }

    /// The maintenance state of one worker (default: none).
    pub fn maintenance_of(&self, worker: &WorkerId) -> Maintenance {
        self.maintenance.get(worker).copied().unwrap_or_default()
    }

    /// Reports refused so far because `max_ids` distinct workers or proxies are known already.
    pub fn refused_ids(&self) -> u64 {
        self.refused_ids
    }

    pub fn proxies(&self) -> &BTreeMap<ProxyId, ProxyView> {
        &self.proxies
    }

    /// The brain's own connection, and the hold on down-marking it implies.
    pub fn link(&self) -> &Link {
        &self.link
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn workers(&self) -> &BTreeMap<WorkerId, WorkerView> {
        &self.workers
    }

    /// Reported service names, numbered (`ReplicaKeys::service`).
    pub(crate) fn service_numbers(&self) -> &ServiceNumbers {
        &self.service_numbers
    }

    /// What the brain is doing with replicas beyond what workers report.
    pub fn records(&self) -> &BTreeMap<ReplicaId, Record> {
        &self.records
    }

    pub fn services(&self) -> &BTreeMap<ServiceName, ServiceState> {
        &self.services
    }

    pub fn service(&self, name: &ServiceName) -> Option<&ServiceState> {
        self.services.get(name)
    }

    /// The sequence number the next new replica id takes.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Manual pins, by service.
    pub fn pins(&self) -> impl Iterator<Item = (&ServiceName, u32)> {
        self.services
            .iter()
            .filter_map(|(name, st)| st.scale.manual.map(|n| (name, n)))
    }

    pub fn warmed_up(&self, now: Millis) -> bool {
        now >= self.started + self.settings.warmup_ms
    }

    /// Folds one event in. Never fails: events were validated at decode time.
    pub fn apply(&mut self, event: Event, now: Millis) {
        match event {
            Event::WorkerMetrics(m) => self.worker_metrics(m, now),
            Event::Replica(ev) => self.replica_event(ev, now),
            Event::Proxy(m) => self.proxy_metrics(m, now),
            Event::Drained(d) => self.drained(d, now),
            Event::CommandResult {
                worker,
                replica,
                start,
                result,
            } => self.command_result(worker, replica, start, result, now),
            Event::Pin { service, replicas } => self.pin(service, replicas),
            Event::PinUnreadable { service } => {
                self.services
                    .entry(service)
                    .or_default()
                    .scale
                    .pin_unreadable = true
            }
            Event::PlanSent(bookkeeping) => self.plan_sent(bookkeeping, now),
            Event::Maintenance { worker, state } => self.set_maintenance(worker, state),
            Event::Term(term) => self.term = self.term.max(term),
            Event::ResetDue(services) => {
                for service in services {
                    if let Some(st) = self.services.get_mut(&service) {
                        st.routing.reset_requested = true;
                    }
                }
            }
            Event::Replace {
                service,
                replica,
                reason,
            } => self.replace(service, replica, reason),
            // Workers reconnect on their own backoff (async-nats waits up to 4 s between
            // attempts), so they get the slack on top of the worker timeout to report again.
            Event::Connection { connected } => self.link.set(
                connected,
                now,
                self.settings.worker_timeout_ms + RECONNECT_SLACK_MS,
            ),
        }
    }

    /// that reports none); stamped in commands so only that process acts on them.
    pub fn instance_of(&self, worker: &WorkerId) -> Option<String> {
        let i = &self.workers.get(worker)?.last.instance;
        (!i.is_empty()).then(|| i.clone())
    }

    /// Refused second instances, by worker id.
    pub fn duplicates(&self) -> &BTreeMap<WorkerId, Duplicate> {
        &self.duplicates
    }

    /// Replicas a worker reports, if the worker is known.
    pub fn reported(&self, worker: &WorkerId) -> &[ReplicaStatus] {
        self.workers
            .get(worker)
            .map(|w| w.last.replicas.as_slice())
            .unwrap_or(&[])
    }

    /// Proxies that reported recently.
    pub fn live_proxies(&self, now: Millis) -> impl Iterator<Item = &ProxyView> {
        let timeout = self.settings.proxy_timeout_ms;
        self.proxies
            .values()
            .filter(move |p| now.saturating_sub(p.last_seen) <= timeout)
    }

    /// A fresh replica id: `<service>-t<term base36>-<seq>`. Unique because a term has one
    /// leader and one world (a restarted or re-elected brain gets a new term). Without a term
    /// (plain-data tests): `<service>-<epoch base36>-<seq>`.
    pub fn replica_id(&self, service: &ServiceName, seq: u64) -> ReplicaId {
        let id = if self.term == 0 {
            format!("{service}-{}-{seq}", base36(self.epoch / 1000))
        } else {
            format!("{service}-t{}-{seq}", base36(self.term))
        };
        ReplicaId::new(id).expect("service names are <= 40 bytes, so replica ids fit")
    }

    /// Where backend versions start in this term: `(term, 0)`, above anything an older leader
    /// could have published. A brain that never held a lease (term 0, plain-data tests) seeds
    /// from the clock as before.
    pub fn first_version(&self) -> u64 {
        if self.term == 0 {
            self.epoch.saturating_mul(1000)
        } else {
            acs_events::pack_version(self.term, 0)
        }
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
