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
//! addresses and service names spent most of its time on cache misses (issue 10, P6).
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

mod liveness;
mod sent;
mod settings;

use std::collections::{BTreeMap, VecDeque};

use acs_events::{
    Backend, BackendDrained, CommandAck, ProxyId, ProxyMetrics, ReplicaEvent, ReplicaId,
    ReplicaState, ReplicaStatus, ServiceName, UnixMs, WorkerId, WorkerMetrics,
};

use crate::plan::backoff::{self, CrashLoop};
use crate::plan::{Bookkeeping, RecordChange};
use crate::policy;

pub use liveness::{duplicate_event, is_full_disruption, Duplicate, Link};
pub use settings::Settings;

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

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    pub last: WorkerMetrics,
    pub last_seen: Millis,
    /// Health as last announced in a `WorkerEvent` (the plan announces transitions).
    pub announced_up: bool,
    /// Not chosen for placement before this time (it refused a start).
    pub backoff_until: Millis,
    /// When each replica on it was first seen unhealthy.
    pub unhealthy_since: BTreeMap<ReplicaId, Millis>,
    /// What a plan reads of each of `last.replicas` (same order) without touching its strings,
    /// computed when a report or event is folded in, while they are in the cache: at P6's
    /// 100,000 replicas, a plan's reads of ids, addresses and service names were cache misses
    /// and most of its time (issue 10). Kept by [`Self::reindex`].
    keys: Vec<ReplicaKeys>,
}

/// A replica as a plan finds it: its route hash and its service's interned number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ReplicaKeys {
    /// `plan::backends::route_hash` of its id, address and worker.
    pub route: u64,
    /// Its service's number ([`World::service_numbers`]), or `None` past the cap.
    pub service: Option<u32>,
}

impl WorkerView {
    /// Recomputes `keys` after `last.replicas` changed.
    fn reindex(&mut self, id: &WorkerId, names: &mut ServiceNumbers) {
        self.keys.clear();
        for r in &self.last.replicas {
            self.keys.push(ReplicaKeys {
                route: crate::plan::route_hash(&r.id, &r.addr, id),
                service: names.number(&r.service),
            });
        }
    }

    /// The keys of `last.replicas[i]`.
    pub(crate) fn keys(&self, i: usize) -> ReplicaKeys {
        match self.keys.get(i) {
            Some(&keys) => keys,
            None => {
                debug_assert!(false, "keys not reindexed");
                let r = &self.last.replicas[i];
                ReplicaKeys {
                    route: crate::plan::route_hash(&r.id, &r.addr, &self.last.worker),
                    service: None,
                }
            }
        }
    }
}

/// Every service name workers have reported, numbered in order of first sight. Bounded by
/// `max_ids`: names past it get no number, and a plan looks those up by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ServiceNumbers {
    numbers: BTreeMap<ServiceName, u32>,
    cap: usize,
}

impl ServiceNumbers {
    fn number(&mut self, name: &ServiceName) -> Option<u32> {
        if let Some(&n) = self.numbers.get(name) {
            return Some(n);
        }
        if self.numbers.len() >= self.cap {
            return None;
        }
        let n = self.numbers.len() as u32;
        self.numbers.insert(name.clone(), n);
        Some(n)
    }

    pub(crate) fn get(&self, name: &ServiceName) -> Option<u32> {
        self.numbers.get(name).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.numbers.len()
    }
}

impl WorkerView {
    pub fn is_up(&self, now: Millis, s: &Settings) -> bool {
        now.saturating_sub(self.last_seen) <= s.worker_timeout_ms
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyView {
    pub last: ProxyMetrics,
    pub last_seen: Millis,
    /// Drain evidence from `BackendDrained` events, by replica: the newest version the proxy
    /// said it had drained at, and when the brain heard it. Kept only for backends the proxy
    /// still lists (pruned on each metrics report).
    pub drained: BTreeMap<ReplicaId, Drained>,
}

/// One proxy's word that a draining replica has nothing in flight there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// The service's backend-set version the proxy had applied.
    pub version: u64,
    /// When the brain received it (monotonic).
    pub seen: Millis,
}

/// What the brain is doing with a replica, beyond what its worker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Start sent; not yet healthy.
    Starting { since: Millis },
    /// Out of rotation since `version`; waiting for in-flight requests to finish.
    Draining {
        since: Millis,
        version: u64,
        deadline: Millis,
    },
    /// Stop sent at `sent`.
    Stopping { sent: Millis, attempt: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub service: ServiceName,
    pub worker: WorkerId,
    pub intent: Intent,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceState {
    /// Current desired count; `None` until the first plan after warm-up.
    pub desired: Option<u32>,
    /// Pinned by a manual scale.
    pub manual: Option<u32>,
    /// Its pin in KV was unreadable at take-over ([`Event::PinUnreadable`]): it holds its
    /// desired count (what ran at the first plan) as if pinned, until the next scale request.
    pub pin_unreadable: bool,
    /// When the desired count last changed.
    pub last_change: Option<Millis>,
    /// Policy recommendations with their time, for the stabilisation windows.
    pub history: VecDeque<(Millis, u32)>,
    /// Version of the last backend update published.
    pub version: u64,
    /// Backend set the proxies have been told.
    pub published: BTreeMap<ReplicaId, Backend>,
    /// `published`'s digest (`plan::backends::digest`), kept with it by `World::apply`: a steady
    /// plan compares it with the members' instead of looking up every backend. One that does
    /// not match (a state built by hand) only costs that plan the full diff.
    pub published_digest: u64,
    pub last_reset: Option<Millis>,
    /// A fresh `reset` is wanted at the next plan: a proxy's sync reply could not carry the
    /// whole set under the payload limit ([`Event::ResetDue`]).
    pub reset_requested: bool,
    /// Why the service cannot reach its desired count, if it cannot (announced once).
    pub blocked: Option<String>,
    /// Its lifecycle state as the last plan saw it, and whether a replica was ever healthy.
    pub lifecycle: acs_events::Lifecycle,
    pub ever_ready: bool,
    /// Its crashes in a row, for the crash-loop backoff.
    pub crash: CrashLoop,
    /// The replica a rebalance is moving (until it is gone), and when moves started (budget).
    pub rebalancing: Option<ReplicaId>,
    pub rebalance_moves: VecDeque<Millis>,
    /// Set while `rebalancing` is an operator's replace (`acs.cmd.replica`), with its reason:
    /// the replacement may then go on the same worker, and no rebalance budget is spent.
    pub replacing: Option<String>,
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

/// A worker's maintenance state: cordoned (no new placements), and draining (its replicas move
/// off, make-before-break). A drain implies a cordon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Maintenance {
    pub cordoned: bool,
    pub draining: bool,
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
            service_numbers: ServiceNumbers {
                numbers: BTreeMap::new(),
                cap: settings.max_ids,
            },
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

    /// What the brain is doing with replicas beyond what workers report.
    /// Reported service names, numbered (`ReplicaKeys::service`).
    pub(crate) fn service_numbers(&self) -> &ServiceNumbers {
        &self.service_numbers
    }

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
            .filter_map(|(name, st)| st.manual.map(|n| (name, n)))
    }

    pub fn warmed_up(&self, now: Millis) -> bool {
        now >= self.started + self.settings.warmup_ms
    }

    /// Folds one event in. Never fails: events were validated at decode time.
    pub fn apply(&mut self, event: Event, now: Millis) {
        match event {
            Event::WorkerMetrics(m) => self.worker_metrics(m, now),
            Event::Replica(ev) => self.replica_event(ev, now),
            Event::Proxy(m) => {
                if !self.proxies.contains_key(&m.proxy)
                    && self.proxies.len() >= self.settings.max_ids
                {
                    self.refused_ids += 1;
                    return;
                }
                let mut drained = self
                    .proxies
                    .remove(&m.proxy)
                    .map(|p| p.drained)
                    .unwrap_or_default();
                if !drained.is_empty() {
                    let listed = |r: &ReplicaId| {
                        m.services
                            .iter()
                            .any(|s| s.backends.iter().any(|b| &b.id == r))
                    };
                    drained.retain(|r, _| listed(r));
                }
                let id = m.proxy.clone();
                self.proxies.insert(
                    id,
                    ProxyView {
                        last: m,
                        last_seen: now,
                        drained,
                    },
                );
            }
            // From a proxy the brain does not know (no metrics yet) it is no evidence: a drain
            // waits for every live proxy, and this one is not live yet.
            Event::Drained(d) => {
                if let Some(p) = self.proxies.get_mut(&d.proxy) {
                    let e = p.drained.entry(d.replica).or_insert(Drained {
                        version: 0,
                        seen: 0,
                    });
                    if d.version >= e.version {
                        *e = Drained {
                            version: d.version,
                            seen: now,
                        };
                    }
                }
            }
            Event::CommandResult {
                worker,
                replica,
                start,
                result,
            } => self.command_result(worker, replica, start, result, now),
            Event::Pin { service, replicas } => {
                let st = self.services.entry(service).or_default();
                st.manual = replicas;
                st.pin_unreadable = false;
                if replicas.is_none() {
                    // Restart the stabilisation history: the pinned period says nothing about the load.
                    st.history.clear();
                }
            }
            Event::PinUnreadable { service } => {
                self.services.entry(service).or_default().pin_unreadable = true
            }
            Event::PlanSent(bookkeeping) => self.plan_sent(bookkeeping, now),
            Event::Maintenance { worker, state } => {
                if state == Maintenance::default() {
                    self.maintenance.remove(&worker);
                } else {
                    self.maintenance.insert(
                        worker,
                        Maintenance {
                            cordoned: true,
                            ..state
                        },
                    );
                }
            }
            // Workers reconnect on their own backoff (async-nats waits up to 4 s between
            // attempts), so they get the slack on top of the worker timeout to report again.
            Event::Term(term) => self.term = self.term.max(term),
            Event::ResetDue(services) => {
                for service in services {
                    if let Some(st) = self.services.get_mut(&service) {
                        st.reset_requested = true;
                    }
                }
            }
            Event::Replace {
                service,
                replica,
                reason,
            } => {
                let st = self.services.entry(service).or_default();
                st.rebalancing = Some(replica);
                st.replacing = Some(reason);
            }
            Event::Connection { connected } => self.link.set(
                connected,
                now,
                self.settings.worker_timeout_ms + RECONNECT_SLACK_MS,
            ),
        }
    }

    /// The instance the brain accepted for `worker` (`None`: unknown, or an older worker
    /// that reports none); stamped in commands so only that process acts on them.
    pub fn instance_of(&self, worker: &WorkerId) -> Option<String> {
        let i = &self.workers.get(worker)?.last.instance;
        (!i.is_empty()).then(|| i.clone())
    }

    /// Refused second instances, by worker id.
    pub fn duplicates(&self) -> &BTreeMap<WorkerId, Duplicate> {
        &self.duplicates
    }

    fn worker_metrics(&mut self, m: WorkerMetrics, now: Millis) {
        let id = m.worker.clone();
        if let Some(w) = self.workers.get(&id) {
            if liveness::is_duplicate(w, &m, now, &self.settings) {
                liveness::note_duplicate(&mut self.duplicates, w, &m, now);
                return;
            }
            if w.last.instance != m.instance {
                // A restart (the first instance went silent or stopped before this one started).
                self.duplicates.remove(&id);
            }
        }
        let full = self.workers.len() >= self.settings.max_ids;
        match self.workers.get_mut(&id) {
            Some(w) => {
                w.last = m;
                w.last_seen = now;
            }
            None if full => {
                self.refused_ids += 1;
                return;
            }
            None => {
                self.workers.insert(
                    id.clone(),
                    WorkerView {
                        last: m,
                        last_seen: now,
                        announced_up: false,
                        backoff_until: 0,
                        unhealthy_since: BTreeMap::new(),
                        keys: Vec::new(),
                    },
                );
            }
        }
        let w = self.workers.get_mut(&id).expect("just inserted");
        w.reindex(&id, &mut self.service_numbers);
        let unhealthy: Vec<ReplicaId> = w
            .last
            .replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Unhealthy)
            .map(|r| r.id.clone())
            .collect();
        w.unhealthy_since.retain(|id, _| unhealthy.contains(id));
        for id in unhealthy {
            w.unhealthy_since.entry(id).or_insert(now);
        }
    }

    fn replica_event(&mut self, ev: ReplicaEvent, now: Millis) {
        // A replica event is news from a live worker; fold it into its last report so
        // the plan sees it before the next metrics tick. Unknown worker: wait for metrics.
        let Some(w) = self.workers.get_mut(&ev.worker) else {
            return;
        };
        w.last_seen = w.last_seen.max(now);
        let r = ev.replica;
        match r.state {
            ReplicaState::Exited => {
                if let Some(st) = self.services.get_mut(&r.service) {
                    let intent = self.records.get(&r.id).map(|rec| &rec.intent);
                    backoff::on_exit(&mut st.crash, &r, intent, &ev.reason, ev.ts_ms, now);
                }
                w.last.replicas.retain(|x| x.id != r.id);
                w.unhealthy_since.remove(&r.id);
                // Exited while starting (crashed, or its health check timed out): forget
                // the start, so the next plan replaces it now rather than after the
                // start timeout.
                if matches!(
                    self.records.get(&r.id),
                    Some(Record {
                        intent: Intent::Starting { .. },
                        ..
                    })
                ) {
                    self.records.remove(&r.id);
                }
            }
            state => {
                if state == ReplicaState::Unhealthy {
                    w.unhealthy_since.entry(r.id.clone()).or_insert(now);
                } else {
                    w.unhealthy_since.remove(&r.id);
                }
                upsert(&mut w.last.replicas, r);
            }
        }
        w.last.capacity.running = slots_taken(&w.last.replicas);
        w.reindex(&ev.worker, &mut self.service_numbers);
    }

    fn command_result(
        &mut self,
        worker: WorkerId,
        replica: ReplicaId,
        start: bool,
        result: Result<CommandAck, String>,
        now: Millis,
    ) {
        let failed = match &result {
            Ok(ack) if ack.ok => None,
            Ok(ack) => Some(ack.error.clone().unwrap_or_else(|| "refused".into())),
            Err(e) => Some(e.clone()),
        };
        if start {
            match failed {
                // The worker said no (full, bad spec, runtime error): forget the
                // attempt so the next plan places it again, elsewhere for a while.
                Some(error) => {
                    // A worker's own refusal may be the image's fault; no answer at all is not.
                    if let (Some(rec), true) = (self.records.remove(&replica), result.is_ok()) {
                        if let Some(st) = self.services.get_mut(&rec.service) {
                            backoff::on_start_refused(
                                &mut st.crash,
                                replica.as_str(),
                                worker.as_str(),
                                &error,
                                now,
                            );
                        }
                    }
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.backoff_until = now + self.settings.refusal_backoff_ms;
                    }
                }
                None => {
                    if let (Ok(ack), Some(w)) = (&result, self.workers.get_mut(&worker)) {
                        if let Some(r) = &ack.replica {
                            if !w.last.replicas.iter().any(|x| x.id == r.id) {
                                w.last.replicas.push(r.clone());
                                w.last.capacity.running = slots_taken(&w.last.replicas);
                                w.reindex(&worker, &mut self.service_numbers);
                            }
                        }
                    }
                }
            }
        } else if failed.is_some() {
            // Retry the stop on the next plan.
            if let Some(Record {
                intent: Intent::Stopping { sent, .. },
                ..
            }) = self.records.get_mut(&replica)
            {
                *sent = 0;
            }
        }
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

/// Replicas that occupy one of the worker's slots.
fn slots_taken(replicas: &[ReplicaStatus]) -> u32 {
    replicas.iter().filter(|r| r.state.takes_slot()).count() as u32
}

fn upsert(list: &mut Vec<ReplicaStatus>, r: ReplicaStatus) {
    match list.iter_mut().find(|x| x.id == r.id) {
        Some(x) => *x = r,
        None => list.push(r),
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
