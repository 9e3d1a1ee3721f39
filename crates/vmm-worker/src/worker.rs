//! The run loop: one task owns the replica table and reacts to commands, health reports, runtime
//! exits, finished starts and stops, and shutdown; it never waits for the runtime (starts and
//! stops run in tasks of their own). The heartbeat is a task of its own too, reading a snapshot
//! of the table the loop refreshes after every step. Publishing goes through a `Publisher`
//! task, so a NATS outage never blocks the loop (heartbeats are dropped while disconnected;
//! events and replies are queued, up to a bound).
//!
//! Here: start-up, the `select!` loop and shutdown. `handle`: what the loop does with each
//! input. `starts`: background starts, bounded and with deadlines. `heartbeat`: the metrics
//! task. `publish`: events and the publish queue.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use acs_events::{ReplicaId, ReplicaState};
use futures::StreamExt;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{error, info, warn};

use crate::clock::unix_now_ms;
use crate::commands::{Commands, InFlight};
use crate::config::{Config, ConfigError};
use crate::health::HealthReport;
use crate::replicas::{Replica, Replicas};
use crate::runtime::docker::{DockerOptions, DockerRuntime};
use crate::runtime::process::ProcessRuntime;
use crate::runtime::{Runtime, RuntimeError, RuntimeEvent};

mod handle;
mod heartbeat;
mod publish;
mod starts;

use heartbeat::{snapshot_of, Heartbeat, Measured, Snapshot};
use publish::Publisher;

/// Name used in `acs.events.error.<component>` and in `Rejection::component`.
pub const COMPONENT: &str = "vmm-worker";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Nats(#[from] acs_node::NatsError),
    #[error(transparent)]
    Metrics(#[from] acs_node::metrics::MetricsError),
    #[error("cannot subscribe to {subject}: {message}")]
    Subscribe { subject: String, message: String },
}

/// Runs the worker with the runtime named in `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    config.validate()?;
    let runtime: Arc<dyn Runtime> = match config.runtime {
        acs_events::RuntimeKind::Process => Arc::new(ProcessRuntime::new(
            &config.state_dir,
            &config.advertise_host,
        )?),
        acs_events::RuntimeKind::Docker => Arc::new(
            DockerRuntime::connect(DockerOptions {
                worker: config.worker_id.clone(),
                advertise: config.advertise,
                advertise_host: config.advertise_host.clone(),
                network: config.docker_network.clone(),
                caps: config.policy.docker_caps(),
                pids_limit: config.pids_limit,
            })
            .await?,
        ),
    };
    run_with_runtime(config, runtime, shutdown).await
}

/// Runs the worker with a given runtime (tests pass a fake or a prepared one).
pub async fn run_with_runtime(
    config: Config,
    runtime: Arc<dyn Runtime>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    config.validate()?;
    let id = config.worker_id.clone();
    let client = connect(&config).await?;
    let cmd_subject = config.subjects.worker_command(&id);
    let sub = subscribe_commands(&client, &cmd_subject).await?;
    let runtime_events = runtime.take_events();
    let (publisher, publisher_task) = Publisher::start(client.clone());
    let (health_tx, health_rx) = mpsc::unbounded_channel();
    let (snapshot, snapshot_rx) = watch::channel(Snapshot::default());
    let order = Arc::new(std::sync::Mutex::new(()));
    let (measured_tx, measured_rx) = mpsc::unbounded_channel();
    let instance = new_instance();
    let prom = crate::prom::WorkerProm::new(runtime.kind());
    // Ready: NATS connected and the runtime answering (the heartbeat pings it each interval).
    let ready = acs_node::Readiness::new(acs_node::ReadyWhen {
        beat_within: Some(config.interval * 3 + Duration::from_secs(2)),
        loaded: false,
    });
    ready.connected(&client);
    let registry = || {
        let view = table_view(snapshot_rx.clone(), config.max_replicas);
        prom.registry(id.as_str(), &instance, view)
    };
    let servers = acs_node::metrics::Servers::start(
        config.metrics.as_ref(),
        registry,
        config.health_listen,
        &ready,
    )
    .await?;
    let leader = subscribe_leader(&client, &config).await;
    let heartbeat = Heartbeat {
        worker: id.clone(),
        subject: config.subjects.worker_metrics(&id),
        interval: config.interval,
        max_replicas: config.max_replicas,
        runtime: runtime.clone(),
        publisher: publisher.clone(),
        snapshot: snapshot_rx,
        measured: measured_tx,
        started_ms: unix_now_ms(),
        instance: instance.clone(),
        order: order.clone(),
        ready,
    };

    let mut w = Worker {
        commands: Commands::new(id.clone(), config.max_replicas, config.policy.clone())
            .with_max_age(config.command_max_age)
            .with_instance(instance.clone()),
        start_slots: Arc::new(Semaphore::new(config.max_concurrent_starts as usize)),
        config,
        runtime,
        client,
        publisher,
        replicas: Replicas::new(),
        health_tasks: HashMap::new(),
        health_tx,
        stops: JoinSet::new(),
        in_flight: InFlight::new(),
        early_exits: HashMap::new(),
        launches: JoinSet::new(),
        snapshot,
        order,
        rejected: 0,
        prom,
    };
    w.log_start(&instance, &cmd_subject);
    warn_if_nothing_allowed(&w.config, w.runtime.kind());
    w.adopt().await;
    w.share();
    let heartbeat = heartbeat.spawn();
    w.run_loop(
        sub,
        leader,
        runtime_events,
        health_rx,
        measured_rx,
        shutdown,
    )
    .await;
    heartbeat.abort();
    let _ = heartbeat.await;
    w.shutdown().await;
    drop(servers);

    drop(w.publisher);
    let _ = tokio::time::timeout(Duration::from_secs(3), publisher_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), w.client.flush()).await;
    info!(worker = %id, "worker stopped");
    Ok(())
}

/// The subscription to this worker's command subject.
async fn subscribe_commands(
    client: &async_nats::Client,
    cmd_subject: &str,
) -> Result<async_nats::Subscriber, Error> {
    client
        .subscribe(cmd_subject.to_string())
        .await
        .map_err(|e| Error::Subscribe {
            subject: cmd_subject.to_string(),
            message: e.to_string(),
        })
}

impl Worker {
    /// The settings a worker starts with, in one log line.
    fn log_start(&self, instance: &str, cmd_subject: &str) {
        info!(
            worker = %self.config.worker_id,
            %instance,
            runtime = ?self.runtime.kind(),
            max_replicas = self.config.max_replicas,
            max_concurrent_starts = self.config.max_concurrent_starts,
            start_deadline_ms = self.config.start_deadline.as_millis() as u64,
            command_max_age_ms = self.config.command_max_age.as_millis() as u64,
            subject = %cmd_subject,
            state_dir = %self.config.state_dir.display(),
            allow_images = ?self.config.policy.allow_images,
            allow_commands = ?self.config.policy.allow_commands,
            "worker started"
        );
    }
}

/// What a scrape reads: the snapshot the heartbeat reads too.
fn table_view(
    snapshot: watch::Receiver<Snapshot>,
    max_replicas: u32,
) -> impl Fn() -> crate::prom::TableView + Send + Sync + 'static {
    move || {
        let s = snapshot.borrow();
        crate::prom::TableView {
            states: s.replicas.values().map(|r| r.state).collect(),
            starting: u64::from(s.starting),
            max_replicas: u64::from(max_replicas),
            rejected: s.rejected,
        }
    }
}

/// Secure by default means a worker without an allow-list for its runtime refuses every start:
/// say so once, with the flag that changes it.
fn warn_if_nothing_allowed(config: &Config, kind: acs_events::RuntimeKind) {
    let (empty, flag) = match kind {
        acs_events::RuntimeKind::Docker => (config.policy.allow_images.is_empty(), "--allow-image"),
        acs_events::RuntimeKind::Process => {
            (config.policy.allow_commands.is_empty(), "--allow-command")
        }
    };
    if empty {
        warn!(worker = %config.worker_id, flag, "nothing is allowed to run on this worker: every start is refused until {flag} names what may run");
    }
}

/// A random id for this process: a second process started under the same worker id has another
/// one, so the brain can tell them apart and address commands to the one it accepted.
fn new_instance() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Leader events raise the fencing floor. Without them fencing still works from the terms in
/// commands, so a failed subscription is logged and retried by the loop, not fatal.
async fn subscribe_leader(
    client: &async_nats::Client,
    config: &Config,
) -> Option<async_nats::Subscriber> {
    let subject = config.subjects.leader();
    match client.subscribe(subject.clone()).await {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(%subject, error = %e, "cannot subscribe to leader events; retrying");
            None
        }
    }
}

async fn connect(config: &Config) -> Result<async_nats::Client, Error> {
    let mut nats = config.nats.clone();
    if nats.name.is_empty() {
        nats = nats.with_name(format!("vmm-worker {}", config.worker_id));
    }
    Ok(nats.connect().await?)
}

struct Worker {
    config: Config,
    runtime: Arc<dyn Runtime>,
    client: async_nats::Client,
    publisher: Publisher,
    commands: Commands,
    replicas: Replicas,
    health_tasks: HashMap<ReplicaId, AbortHandle>,
    health_tx: mpsc::UnboundedSender<HealthReport>,
    stops: JoinSet<(ReplicaId, Result<(), RuntimeError>)>,
    /// Starts launched and not finished; each takes a slot.
    in_flight: InFlight,
    /// Exits the runtime reported while the replica's start was still in flight: applied the
    /// moment the start is recorded, so a replica that dies at once is not left `starting`.
    early_exits: HashMap<ReplicaId, RuntimeEvent>,
    launches: starts::Launches,
    /// At most `--max-concurrent-starts` runtime starts at once.
    start_slots: Arc<Semaphore>,
    /// What the heartbeat reports; refreshed after every step of the loop.
    snapshot: watch::Sender<Snapshot>,
    /// Held while the snapshot is shared and an event queued, and by the heartbeat while it
    /// reads the snapshot and queues its metrics: so a heartbeat never goes out after an event
    /// with a table older than that event (the brain would see a replica come and go).
    order: Arc<std::sync::Mutex<()>>,
    rejected: u64,
    /// Prometheus counters (`--metrics-listen`).
    prom: crate::prom::WorkerProm,
}

impl Worker {
    /// Hands the heartbeat the table as it is now.
    fn share(&self) {
        self.snapshot.send_replace(snapshot_of(
            &self.replicas,
            self.in_flight.len(),
            self.rejected,
        ));
    }

    async fn adopt(&mut self) {
        match self.runtime.adopt().await {
            Ok(found) => {
                for info in found {
                    let id = info.id.clone();
                    let reason = match info.pid {
                        Some(pid) => format!("adopted from a previous worker (pid {pid})"),
                        None => "adopted from a previous worker".to_string(),
                    };
                    self.replicas.insert(id.clone(), Replica::new(info));
                    self.publish_event(&id, reason);
                    self.watch_health(&id);
                }
                if !self.replicas.is_empty() {
                    info!(replicas = self.replicas.len(), "adopted running replicas");
                }
            }
            Err(e) => error!(error = %e, "cannot look for replicas of a previous worker"),
        }
    }

    async fn run_loop(
        &mut self,
        sub: async_nats::Subscriber,
        mut leader: Option<async_nats::Subscriber>,
        runtime_events: Option<mpsc::UnboundedReceiver<RuntimeEvent>>,
        mut health_rx: mpsc::UnboundedReceiver<HealthReport>,
        mut measured_rx: mpsc::UnboundedReceiver<Measured>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut sub = Some(sub);
        let mut resubscribe = tokio::time::interval(Duration::from_secs(1));
        let mut runtime_events = runtime_events;
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                msg = next_message(&mut sub) => match msg {
                    Some(msg) => self.on_command(msg).await,
                    None => {
                        error!("command subscription ended; subscribing again");
                        sub = None;
                    }
                },
                msg = next_message(&mut leader) => match msg {
                    Some(msg) => self.on_leader(&msg.payload),
                    None => {
                        error!("leader subscription ended; subscribing again");
                        leader = None;
                    }
                },
                Some(ev) = recv_opt(&mut runtime_events) => self.on_runtime_event(ev),
                Some(report) = health_rx.recv() => self.on_health(report),
                Some(done) = self.stops.join_next(), if !self.stops.is_empty() => self.on_stop_done(done),
                Some(done) = self.launches.join_next(), if !self.launches.is_empty() => self.on_launch_done(done),
                Some(m) = measured_rx.recv() => self.on_measured(m),
                _ = resubscribe.tick(), if sub.is_none() || leader.is_none() => {
                    if sub.is_none() {
                        let subject = self.config.subjects.worker_command(&self.config.worker_id);
                        match self.client.subscribe(subject.clone()).await {
                            Ok(s) => { info!(%subject, "subscribed again"); sub = Some(s); }
                            Err(e) => warn!(%subject, error = %e, "subscribe failed; retrying"),
                        }
                    }
                    if leader.is_none() {
                        leader = subscribe_leader(&self.client, &self.config).await;
                    }
                }
            }
            self.share();
        }
    }

    async fn shutdown(&mut self) {
        for (_, t) in self.health_tasks.drain() {
            t.abort();
        }
        self.abandon_launches().await;
        if self.config.keep_replicas {
            info!(
                replicas = self.replicas.len(),
                "shutting down; replicas keep running for the next worker to adopt"
            );
        } else {
            info!(
                replicas = self.replicas.len(),
                "shutting down; stopping replicas"
            );
            let grace = self.config.shutdown_grace;
            let ids: Vec<ReplicaId> = self.replicas.keys().cloned().collect();
            let stops = ids.iter().map(|id| {
                let rt = self.runtime.clone();
                async move { (id.clone(), rt.stop(id, grace).await) }
            });
            for (id, res) in futures::future::join_all(stops).await {
                if let Err(e) = res {
                    error!(replica = %id, error = %e, "stop at shutdown failed");
                }
                if let Some(mut r) = self.replicas.remove(&id) {
                    r.state = ReplicaState::Exited;
                    self.publish_status(&r, "stopped: worker shutting down".into());
                }
            }
        }
        // Stops already under way finish (bounded), so no replica is left half-stopped.
        let wait = self.config.shutdown_grace + Duration::from_secs(5);
        let _ = tokio::time::timeout(wait, async {
            while let Some(done) = self.stops.join_next().await {
                if let Ok((replica, Err(e))) = done {
                    error!(replica = %replica, error = %e, "stop failed");
                }
            }
        })
        .await;
        self.runtime.detach().await;
    }
}

async fn next_message(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
