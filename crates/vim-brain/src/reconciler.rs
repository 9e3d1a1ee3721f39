//! The thin I/O loop around the pure parts: NATS in, `World::apply`, `plan`, NATS out.

use std::future::Future;
use std::time::{Duration, Instant};

use acs_events::{
    check_sender, decode, encode, BackendDrained, CommandAck, DecodeError, MetricsAssembler,
    ProxyMetricsMsg, Rejection, ReplicaEvent, Subjects, WorkerMetrics,
};
use async_nats::{Client, Message};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::Services;
use crate::inbox::Sub;
use crate::plan::{plan, Plan};
use crate::world::{Event, Now, Settings, World};

mod pace;
mod requests;

const PUBLISH_TIMEOUT: Duration = Duration::from_millis(250);
/// Most queued messages folded in before one plan, so a flood cannot starve the loop.
const MAX_QUEUED_PER_PLAN: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Config {
    /// Servers, credentials and TLS (`acs-node`).
    pub nats: acs_node::NatsOptions,
    pub subjects: Subjects,
    pub settings: Settings,
    /// How often the reconciler plans without being prompted by an event.
    pub tick: Duration,
    /// How long to wait for a worker's answer to a command.
    pub command_timeout: Duration,
    /// The leader lease and the KV bucket that keeps pins and maintenance across brains.
    pub lease: crate::lease::LeaseConfig,
    /// Where `GET /metrics` is served (`--metrics-listen`); `None`: not at all.
    pub metrics: Option<acs_node::MetricsListen>,
    /// Where `/healthz` and `/readyz` alone are served (`--health-listen`).
    pub health_listen: Option<std::net::SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: acs_node::NatsOptions::new(acs_node::nats::DEFAULT_URL),
            subjects: Subjects::default(),
            settings: Settings::default(),
            tick: Duration::from_millis(500),
            command_timeout: Duration::from_secs(5),
            lease: crate::lease::LeaseConfig::default(),
            metrics: None,
            health_listen: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nats(#[from] acs_node::NatsError),
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    #[error(transparent)]
    Metrics(#[from] acs_node::metrics::MetricsError),
}

/// Monotonic and wall clocks, read only here.
struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> Now {
        let unix_ms = acs_node::unix_ms();
        Now {
            mono: self.start.elapsed().as_millis() as u64,
            unix_ms,
        }
    }
}

/// Runs the brain until `shutdown` completes.
pub async fn run(
    config: Config,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let nats = if config.nats.name.is_empty() {
        config.nats.clone().with_name("vim-brain")
    } else {
        config.nats.clone()
    };
    let prom = crate::prom::BrainProm::default();
    // Ready: NATS connected and the loop turning (its tick beats).
    let ready = acs_node::Readiness::new(acs_node::ReadyWhen {
        beat_within: Some((config.tick * 4).max(Duration::from_secs(2))),
        loaded: false,
    });
    let servers = acs_node::metrics::Servers::start(
        config.metrics.as_ref(),
        || prom.registry(),
        config.health_listen,
        &ready,
    )
    .await?;
    let client = nats.connect().await?;
    ready.connected(&client);
    let kv = crate::lease::open_bucket(&client, &config.lease).await?;
    let mut inbox = Inbox::subscribe(&client, &config.subjects).await?;
    let (lease, mut elections, lease_task) = crate::lease::spawn(
        client.clone(),
        kv.clone(),
        config.subjects.clone(),
        config.lease.clone(),
    );
    info!(
        nats = %config.nats.servers_display(), services = ?services.names(), instance = %lease.instance,
        bucket = %config.lease.bucket, lease_ms = config.lease.lease_ms, "vim-brain running (standby until elected)"
    );

    let clock = Clock {
        start: Instant::now(),
    };
    let world = World::new(config.settings.clone(), clock.now());
    let mut brain = Brain {
        client: client.clone(),
        subjects: config.subjects.clone(),
        world,
        services,
        command_timeout: config.command_timeout,
        kv,
        lease,
        rejected: 0,
        prom,
        pace: pace::Pace::default(),
        proxy_parts: MetricsAssembler::default(),
    };
    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);

    loop {
        let deferred = brain.pace.due();
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            // A plan put off after an expensive one (see `prompt`).
            _ = tokio::time::sleep_until(deferred.unwrap_or_else(Instant::now).into()), if deferred.is_some() => {
                brain.prompt(&clock, &mut inbox, Instant::now()).await;
            }
            _ = tick.tick() => {
                ready.beat();
                let taken = Instant::now();
                for sub in inbox.subs() {
                    sub.revive(&client).await;
                }
                brain.prompt(&clock, &mut inbox, taken).await;
            }
            m = inbox.metrics.recv() => brain.on_metrics(&m, clock.now()).await,
            m = inbox.replica_events.recv() => {
                let taken = Instant::now();
                brain.on_replica_event(&m, clock.now()).await;
                brain.prompt(&clock, &mut inbox, taken).await;
            }
            // New traffic figures: a spike is acted on now rather than on the next tick (the
            // plan's stabilisation windows still decide; `prompt` spaces costly plans).
            m = inbox.proxies.recv() => {
                let taken = Instant::now();
                brain.on_proxy(&m, clock.now()).await;
                brain.prompt(&clock, &mut inbox, taken).await;
            }
            // A drain may be done: plan now rather than on the next tick.
            m = inbox.drained.recv() => {
                let taken = Instant::now();
                brain.on_drained(&m, clock.now()).await;
                brain.prompt(&clock, &mut inbox, taken).await;
            }
            m = inbox.scale.recv() => {
                let taken = Instant::now();
                brain.handle_scale(&m, clock.now()).await;
                brain.prompt(&clock, &mut inbox, taken).await;
            }
            m = inbox.maintenance.recv() => {
                let taken = Instant::now();
                brain.handle_maintenance(&m, clock.now()).await;
                brain.prompt(&clock, &mut inbox, taken).await;
            }
            m = inbox.replica_cmd.recv() => {
                let taken = Instant::now();
                brain.handle_replica(&m, clock.now()).await;
                brain.prompt(&clock, &mut inbox, taken).await;
            }
            // Elected: the next plan takes over (see `reconcile`), at once.
            Some(t) = elections.recv() => {
                let taken = Instant::now();
                if let crate::lease::Transition::Elected(_) = t {
                    brain.prompt(&clock, &mut inbox, taken).await;
                }
            }
            m = inbox.status.recv() => brain.handle_status(&m, clock.now()).await,
            m = inbox.sync.recv() => brain.handle_sync(&m, clock.now()).await,
            Some(ev) = inbox.results.recv() => {
                let taken = Instant::now();
                brain.world.apply(ev, clock.now().mono);
                brain.prompt(&clock, &mut inbox, taken).await;
            }
        }
    }
    info!("vim-brain stopping");
    lease_task.abort();
    drop(servers);
    crate::lease::release(&brain.kv, &brain.lease).await;
    match tokio::time::timeout(Duration::from_secs(2), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "flush on shutdown failed"),
        Err(_) => warn!("NATS unreachable; unsent messages dropped on shutdown"),
    }
    Ok(())
}

struct Brain {
    client: Client,
    subjects: Subjects,
    world: World,
    services: Services,
    command_timeout: Duration,
    /// The bucket holding the lease, pins and maintenance.
    kv: async_nats::jetstream::kv::Store,
    /// Only a brain inside its acting window plans, sends and answers; the others listen.
    lease: crate::lease::Lease,
    /// Messages refused since start (malformed input, refused requests); reported in status.
    rejected: u64,
    /// Prometheus metrics (`--metrics-listen`).
    prom: crate::prom::BrainProm,
    /// Whether the loop keeps up: pass latency, inbox lag and backlog.
    pace: pace::Pace,
    /// Puts split proxy reports back together; only whole ones reach the world.
    proxy_parts: MetricsAssembler,
}

/// The brain's subscriptions, and the channel command results come back on.
struct Inbox {
    metrics: Sub,
    replica_events: Sub,
    proxies: Sub,
    drained: Sub,
    scale: Sub,
    maintenance: Sub,
    replica_cmd: Sub,
    status: Sub,
    sync: Sub,
    results_tx: mpsc::UnboundedSender<Event>,
    results: mpsc::UnboundedReceiver<Event>,
}

impl Inbox {
    async fn subscribe(client: &Client, s: &Subjects) -> Result<Self, Error> {
        let sub = |subject: String| async move {
            Sub::new(client, subject.clone())
                .await
                .map_err(|source| Error::Subscribe { subject, source })
        };
        let (results_tx, results) = mpsc::unbounded_channel::<Event>();
        Ok(Self {
            metrics: sub(s.worker_metrics_all()).await?,
            replica_events: sub(s.replica_events_all()).await?,
            proxies: sub(s.proxy_metrics_all()).await?,
            drained: sub(s.backend_drained_all()).await?,
            scale: sub(s.scale()).await?,
            maintenance: sub(s.maintenance()).await?,
            replica_cmd: sub(s.replica_command()).await?,
            status: sub(s.status()).await?,
            sync: sub(s.backends_sync()).await?,
            results_tx,
            results,
        })
    }

    fn subs(&mut self) -> [&mut Sub; 9] {
        [
            &mut self.metrics,
            &mut self.replica_events,
            &mut self.proxies,
            &mut self.drained,
            &mut self.scale,
            &mut self.maintenance,
            &mut self.replica_cmd,
            &mut self.status,
            &mut self.sync,
        ]
    }
}

impl Brain {
    /// Plans now, or, right after an expensive plan, a little later (`pace::Pace::admit`): a
    /// stream of events must not keep the loop planning while reports pile up in its inbox.
    /// The deferred plan still measures from the first event that asked for it.
    async fn prompt(&mut self, clock: &Clock, inbox: &mut Inbox, taken: Instant) {
        if let Some(taken) = self.pace.admit(taken, Instant::now()) {
            self.reconcile(clock, inbox, taken).await;
        }
    }

    /// Tells the world about the link, folds in what is already queued, then plans and sends.
    /// `taken`: when the event that prompted this pass was taken off the inbox.
    async fn reconcile(&mut self, clock: &Clock, inbox: &mut Inbox, taken: Instant) {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if connected != self.world.link().connected {
            if connected {
                info!(
                    grace_ms = self.world.settings().worker_timeout_ms,
                    "NATS link back; no worker is marked down during the grace"
                );
            } else {
                warn!("NATS link lost; no worker is marked down while the brain cannot hear");
            }
            self.world
                .apply(Event::Connection { connected }, clock.now().mono);
        }
        self.drain_queued(clock, inbox).await;
        self.pace.report_inbox(&self.prom);
        self.report_standing(clock.now());
        // A standby keeps its world warm and sends nothing.
        let Some(term) = self.lease.acting() else {
            return;
        };
        // The lease may be won between two turns of the loop: whichever plan comes first after
        // an election stamps the new term (versions, replica ids) and reads the KV state first.
        if self.world.term() < term {
            self.take_over(term, clock.now()).await;
        }
        let now = clock.now();
        let planning = Instant::now();
        let mut plan = plan(&self.world, &self.services, now);
        let took = planning.elapsed();
        for c in &mut plan.commands {
            c.cmd.term = term;
            // Stops too are for the instance the brain accepted under that worker id.
            if c.cmd.instance.is_none() {
                c.cmd.instance = self.world.instance_of(&c.worker);
            }
        }
        for d in &mut plan.decisions {
            d.term = term;
        }
        match &plan.disruption {
            Some((true, reason)) => warn!(%reason, "full disruption"),
            Some((false, reason)) => info!(%reason, "full disruption over"),
            None => {}
        }
        let b = &plan.bookkeeping;
        if !b.forget_workers.is_empty() || !b.forget_proxies.is_empty() {
            let forget_after_ms = self.world.settings().forget_after_ms;
            info!(workers = ?b.forget_workers, proxies = ?b.forget_proxies, forget_after_ms, "forgotten: silent too long");
        }
        for service in &plan.withdrawn {
            info!(%service, "withdrawn from the proxies: no longer declared in the services file");
        }
        // The lease may have lapsed while planning; a plan not sent is not recorded.
        if self.lease.acting() != Some(term) {
            return;
        }
        self.send(&plan, &inbox.results_tx).await;
        self.prom.plan_sent(&plan, took);
        self.world
            .apply(Event::PlanSent(plan.bookkeeping), now.mono);
        self.pace.pass(&self.prom, taken.elapsed(), took);
    }

    /// Leader or not, term, workers up and down, refusals: for `GET /metrics`.
    fn report_standing(&self, now: Now) {
        let settings = self.world.settings();
        let up = self
            .world
            .workers()
            .values()
            .filter(|w| w.is_up(now.mono, settings))
            .count();
        let down = self.world.workers().len() - up;
        self.prom.standing(
            self.lease.acting().is_some(),
            self.world.term(),
            up,
            down,
            self.rejected,
        );
    }

    /// Elected: stamp the new term, and read what the previous leader kept in KV (pins and
    /// maintenance) before the first plan.
    async fn take_over(&mut self, term: acs_events::Term, now: Now) {
        self.world.apply(Event::Term(term), now.mono);
        let loaded =
            crate::lease::load_pins(&self.kv, self.services.iter().map(|(name, _)| name)).await;
        for (service, replicas) in loaded.pins {
            if let Some(n) = replicas {
                info!(%service, replicas = n, term, "manual pin taken over");
            }
            self.world.apply(Event::Pin { service, replicas }, now.mono);
        }
        for (service, error) in loaded.errors {
            self.rejected += 1;
            warn!(
                %service, %error, total = self.rejected,
                "cannot read the manual pin kept in KV; the service holds its current count as if pinned until `acsctl scale` sets it again"
            );
            self.world.apply(Event::PinUnreadable { service }, now.mono);
        }
        let maintenance = crate::lease::load_maintenance(&self.kv).await;
        for (worker, state) in maintenance.states {
            info!(%worker, ?state, term, "maintenance taken over");
            self.world
                .apply(Event::Maintenance { worker, state }, now.mono);
        }
        for (key, error) in maintenance.errors {
            self.rejected += 1;
            warn!(%key, %error, total = self.rejected, "cannot read a maintenance entry kept in KV");
        }
    }

    /// Reports and command results already queued, folded in without waiting, so that a plan
    /// after a stall does not run on a stale world. Requests wait for the loop.
    async fn drain_queued(&mut self, clock: &Clock, inbox: &mut Inbox) {
        for n in 0..MAX_QUEUED_PER_PLAN {
            if let Some(m) = inbox.metrics.try_next() {
                self.on_metrics(&m, clock.now()).await;
            } else if let Some(m) = inbox.replica_events.try_next() {
                self.on_replica_event(&m, clock.now()).await;
            } else if let Some(m) = inbox.proxies.try_next() {
                self.on_proxy(&m, clock.now()).await;
            } else if let Some(m) = inbox.drained.try_next() {
                self.on_drained(&m, clock.now()).await;
            } else if let Ok(ev) = inbox.results.try_recv() {
                self.world.apply(ev, clock.now().mono);
            } else {
                self.pace.drained(n as u64, false);
                return;
            }
        }
        // Said by the pace's throttled warning: the rest comes after this plan.
        self.pace.drained(MAX_QUEUED_PER_PLAN as u64, true);
    }

    async fn on_metrics(&mut self, m: &Message, now: Now) {
        if let Some(ev) = self
            .decode_from_sender::<WorkerMetrics>(m, |ev| ev.worker.as_str())
            .await
        {
            self.pace.report_taken(ev.ts_ms, now.unix_ms);
            let id = ev.worker.clone();
            let refused = self.world.duplicates().get(&id).map_or(0, |d| d.refused);
            self.apply_capped(m, "worker", Event::WorkerMetrics(ev), now)
                .await;
            // A second process under a live worker's id: refused (not applied), counted on every
            // report, announced once.
            if let Some(d) = self
                .world
                .duplicates()
                .get(&id)
                .filter(|d| d.refused > refused)
            {
                self.rejected += 1;
                if refused == 0 {
                    let ev = crate::world::duplicate_event(&id, d, now.unix_ms);
                    warn!(worker = %id, reason = %ev.reason, total = self.rejected, "duplicate worker id refused");
                    if self.lease.acting().is_some() {
                        self.publish(self.subjects.worker_events(&id), encode(&ev))
                            .await;
                    }
                } else {
                    debug!(worker = %id, refused = d.refused, "report from a duplicate worker instance refused");
                }
            }
        }
    }

    /// Applies a report, and says so loudly if the world refused it for its id cap.
    async fn apply_capped(&mut self, m: &Message, kind: &str, event: Event, now: Now) {
        let refused = self.world.refused_ids();
        self.world.apply(event, now.mono);
        if self.world.refused_ids() > refused {
            let max = self.world.settings().max_ids;
            let error = format!(
                "refused a report from a new {kind}: {max} distinct {kind} ids are known already (max_ids); \
                 ids silent for forget_after_ms are forgotten, or raise the cap"
            );
            self.reject(m, "limit", error).await;
        }
    }

    async fn on_replica_event(&mut self, m: &Message, now: Now) {
        if let Some(ev) = self
            .decode_from_sender::<ReplicaEvent>(m, |ev| ev.worker.as_str())
            .await
        {
            debug!(worker = %ev.worker, replica = %ev.replica.id, state = ?ev.replica.state, "replica event");
            self.world.apply(Event::Replica(ev), now.mono);
        }
    }

    /// A report too big for one message comes in parts; the world sees it once it is whole.
    async fn on_proxy(&mut self, m: &Message, now: Now) {
        let Some(msg) = self
            .decode_from_sender::<ProxyMetricsMsg>(m, |ev| ev.metrics.proxy.as_str())
            .await
        else {
            return;
        };
        let before = self.proxy_parts.dropped().total();
        let whole = self.proxy_parts.push(msg, now.mono);
        let dropped = self.proxy_parts.dropped();
        if dropped.total() > before {
            self.prom.proxy_parts_dropped(dropped.total());
            warn!(
                subject = %m.subject, timed_out = dropped.timed_out, superseded = dropped.superseded, stale = dropped.stale,
                evicted = dropped.evicted, inconsistent = dropped.inconsistent, "incomplete split proxy report dropped"
            );
        }
        if let Some(ev) = whole {
            self.apply_capped(m, "proxy", Event::Proxy(ev), now).await;
        }
    }

    async fn on_drained(&mut self, m: &Message, now: Now) {
        if let Some(ev) = self
            .decode_from_sender::<BackendDrained>(m, |ev| ev.proxy.as_str())
            .await
        {
            debug!(proxy = %ev.proxy, service = %ev.service, replica = %ev.replica, version = ev.version, "backend drained");
            self.world.apply(Event::Drained(ev), now.mono);
        }
    }

    async fn send(&self, plan: &Plan, results: &mpsc::UnboundedSender<Event>) {
        for ev in &plan.worker_events {
            info!(worker = %ev.worker, health = ?ev.health, reason = %ev.reason, "worker health");
            self.publish(self.subjects.worker_events(&ev.worker), encode(ev))
                .await;
        }
        for d in &plan.decisions {
            info!(service = %d.service, action = ?d.action, reason = %d.reason, "decision");
            self.publish(self.subjects.decisions(&d.service), encode(d))
                .await;
        }
        for u in &plan.updates {
            debug!(service = %u.service, version = u.version, change = ?u.change, "backends");
            self.publish(self.subjects.backends(&u.service), encode(u))
                .await;
        }
        for c in &plan.commands {
            let client = self.client.clone();
            let subject = self.subjects.worker_command(&c.worker);
            let payload = encode(&c.cmd);
            let timeout = self.command_timeout;
            let (worker, replica, start) = (c.worker.clone(), c.replica.clone(), c.is_start());
            let results = results.clone();
            let prom = self.prom.clone();
            tokio::spawn(async move {
                let result =
                    match tokio::time::timeout(timeout, client.request(subject, payload.into()))
                        .await
                    {
                        Err(_) => Err(format!("no answer from worker {worker} within {timeout:?}")),
                        Ok(Err(e)) => Err(format!("request to worker {worker} failed: {e}")),
                        Ok(Ok(msg)) => decode::<CommandAck>(&msg.payload)
                            .map_err(|e| format!("worker {worker} sent an unreadable ack: {e}")),
                    };
                prom.command_result(start, result.as_ref().map(|ack| ack.ok).map_err(|_| ()));
                match &result {
                    Ok(ack) if ack.ok => debug!(%worker, %replica, start, "command acknowledged"),
                    Ok(ack) => {
                        warn!(%worker, %replica, start, error = ?ack.error, "command refused")
                    }
                    Err(e) => warn!(%worker, %replica, start, error = %e, "command failed"),
                }
                let _ = results.send(Event::CommandResult {
                    worker,
                    replica,
                    start,
                    result,
                });
            });
        }
    }

    /// Publishes without ever holding up the loop: during a NATS outage the client's buffer
    /// fills and a publish would wait; we drop the message instead. Nothing is lost for good:
    /// the loop is level-triggered and republishes snapshots once NATS is back.
    async fn publish(&self, subject: String, payload: Vec<u8>) {
        self.prom.published(&subject, payload.len());
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.client.publish(subject.clone(), payload.into()),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(%subject, error = %e, "publish failed"),
            Err(_) => warn!(%subject, "publish dropped: NATS client buffer full (outage?)"),
        }
    }

    /// Counts and reports a message that was refused and that nobody waits on.
    async fn reject(&mut self, m: &Message, kind: &str, error: String) {
        self.rejected += 1;
        warn!(subject = %m.subject, kind, %error, total = self.rejected, "rejected message");
        let r = Rejection::new(
            "brain",
            m.subject.as_str(),
            kind,
            error,
            now_unix_ms(),
            self.rejected,
        );
        self.publish(self.subjects.rejections("brain"), encode(&r))
            .await;
    }

    async fn reject_decode(&mut self, m: &Message, e: DecodeError) {
        self.reject(m, e.kind(), e.to_string()).await;
    }

    /// Decodes a report whose subject must end in the sender its payload names.
    async fn decode_from_sender<T>(&mut self, m: &Message, sender: fn(&T) -> &str) -> Option<T>
    where
        T: serde::de::DeserializeOwned + acs_events::Validate + acs_events::codec::Versioned,
    {
        match decode::<T>(&m.payload) {
            Ok(ev) => match check_sender(m.subject.as_str(), sender(&ev)) {
                Ok(()) => Some(ev),
                Err(error) => {
                    self.reject(m, "invalid", error).await;
                    None
                }
            },
            Err(e) => {
                self.reject_decode(m, e).await;
                None
            }
        }
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    acs_node::unix_ms()
}
