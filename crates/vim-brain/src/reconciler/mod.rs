//! The thin I/O loop around the pure parts: NATS in, `World::apply`, `plan`, NATS out.
//!
//! The loop takes one `Input` at a time from the `Inbox` and dispatches it once
//! (`Brain::handle`); an input that can change the decision asks for a plan. Every event that
//! changes the world, heard or made here, goes through `Brain::fold`, the one caller of
//! `World::apply`.
//!
//! Files: `inbox.rs` (what the loop waits on), `pass.rs` (one plan-and-send pass, take-over),
//! `reports.rs` (workers' and proxies' reports), `requests.rs` (what only the leader answers),
//! `send.rs` (publishing a plan), `pace.rs` (whether the loop keeps up).

use std::future::Future;
use std::time::{Duration, Instant};

use acs_events::{MetricsAssembler, Subjects};
use async_nats::Client;
use tracing::{info, warn};

use crate::config::Services;
use crate::lease::Transition;
use crate::world::{Event, Now, Settings, World};
use inbox::{Inbox, Input};

mod inbox;
mod pace;
mod pass;
mod reports;
mod requests;
mod send;

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
    let mut inbox = Inbox::subscribe(&client, &config.subjects, config.tick).await?;
    let (lease, elections, lease_task) = crate::lease::spawn(
        client.clone(),
        kv.clone(),
        config.subjects.clone(),
        config.lease.clone(),
    );
    inbox.listen_to(elections);
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
    tokio::pin!(shutdown);
    loop {
        let deferred = brain.pace.due();
        let input = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            input = inbox.next(deferred) => input,
        };
        // A pass's latency counts from when what asked for it was taken off the inbox.
        let taken = Instant::now();
        if matches!(input, Input::Tick) {
            ready.beat();
        }
        if brain.handle(input, &clock, &mut inbox).await {
            brain.prompt(&clock, &mut inbox, taken).await;
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

impl Brain {
    /// Handles one input; returns whether it asks for a plan now rather than at the next tick.
    async fn handle(&mut self, input: Input, clock: &Clock, inbox: &mut Inbox) -> bool {
        let now = clock.now();
        match input {
            Input::Tick => {
                inbox.revive(&self.client).await;
                true
            }
            // A plan put off after an expensive one (see `prompt`).
            Input::Deferred => true,
            Input::WorkerMetrics(m) => {
                self.on_metrics(&m, now).await;
                false
            }
            Input::ReplicaEvent(m) => {
                self.on_replica_event(&m, now).await;
                true
            }
            // New traffic figures: a spike is acted on now rather than on the next tick (the
            // plan's stabilisation windows still decide; `prompt` spaces costly plans).
            Input::ProxyMetrics(m) => {
                self.on_proxy(&m, now).await;
                true
            }
            // A drain may be done: plan now rather than on the next tick.
            Input::Drained(m) => {
                self.on_drained(&m, now).await;
                true
            }
            Input::Scale(m) => {
                self.handle_scale(&m, now).await;
                true
            }
            Input::Maintenance(m) => {
                self.handle_maintenance(&m, now).await;
                true
            }
            Input::Replace(m) => {
                self.handle_replica(&m, now).await;
                true
            }
            Input::Status(m) => {
                self.handle_status(&m, now).await;
                false
            }
            Input::Sync(m) => {
                self.handle_sync(&m, now).await;
                false
            }
            Input::CommandResult(event) => {
                self.fold([event], now);
                true
            }
            // Elected: the next plan takes over (see `reconcile`), at once.
            Input::Election(t) => matches!(t, Transition::Elected(_)),
        }
    }

    /// The one door into the world: every event the loop hears or makes is folded in here.
    fn fold(&mut self, events: impl IntoIterator<Item = Event>, now: Now) {
        for event in events {
            self.world.apply(event, now.mono);
        }
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    acs_node::unix_ms()
}
