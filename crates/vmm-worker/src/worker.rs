//! The run loop: one task owns the replica table and reacts to commands, health reports, runtime
//! exits, the metrics tick and shutdown. Publishing goes through a [`Publisher`] task, so a NATS
//! outage never blocks the loop (heartbeats are dropped while disconnected; events and replies
//! are queued, up to a bound).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{
    encode, Capacity, Rejection, ReplicaEvent, ReplicaId, ReplicaState, WorkerMetrics,
    SCHEMA_VERSION,
};
use async_nats::connection::State as ConnState;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, error, info, warn};

use crate::commands::{running, Commands, Effect, Replica, Replicas};
use crate::config::{Config, ConfigError};
use crate::health::{self, HealthChange, HealthReport};
use crate::metrics::Sampler;
use crate::runtime::docker::{DockerOptions, DockerRuntime};
use crate::runtime::process::{now_ms, ProcessRuntime};
use crate::runtime::{Runtime, RuntimeError, RuntimeEvent};

/// Name used in `acs.events.error.<component>` and in `Rejection::component`.
pub const COMPONENT: &str = "vmm-worker";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
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
    let sub = client
        .subscribe(cmd_subject.clone())
        .await
        .map_err(|e| Error::Subscribe {
            subject: cmd_subject.clone(),
            message: e.to_string(),
        })?;
    let runtime_events = runtime.take_events();
    let (publisher, publisher_task) = Publisher::start(client.clone());
    let (health_tx, health_rx) = mpsc::unbounded_channel();

    let mut w = Worker {
        commands: Commands::new(id.clone(), config.max_replicas),
        config,
        runtime,
        client,
        publisher,
        replicas: Replicas::new(),
        health_tasks: HashMap::new(),
        health_tx,
        stops: JoinSet::new(),
        sampler: Arc::new(Mutex::new(None)),
        seq: 0,
        rejected: 0,
        started_ms: now_ms(),
    };
    info!(
        worker = %id,
        runtime = ?w.runtime.kind(),
        max_replicas = w.config.max_replicas,
        subject = %cmd_subject,
        state_dir = %w.config.state_dir.display(),
        "worker started"
    );
    w.adopt().await;
    w.run_loop(sub, runtime_events, health_rx, shutdown).await;
    w.shutdown().await;

    drop(w.publisher);
    let _ = tokio::time::timeout(Duration::from_secs(3), publisher_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), w.client.flush()).await;
    info!(worker = %id, "worker stopped");
    Ok(())
}

async fn connect(config: &Config) -> Result<async_nats::Client, Error> {
    let worker = config.worker_id.to_string();
    async_nats::ConnectOptions::new()
        .name(format!("vmm-worker {worker}"))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let worker = worker.clone();
            async move {
                match event {
                    async_nats::Event::Connected => info!(worker = %worker, "connected to NATS"),
                    async_nats::Event::Disconnected => {
                        warn!(worker = %worker, "disconnected from NATS; replicas keep running, reconnecting")
                    }
                    other => info!(worker = %worker, event = %other, "NATS event"),
                }
            }
        })
        .connect(config.nats_url.as_str())
        .await
        .map_err(|e| Error::Connect { url: config.nats_url.clone(), message: e.to_string() })
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
    /// Created lazily on the blocking pool (the first refresh reads all of /proc).
    sampler: Arc<Mutex<Option<Sampler>>>,
    seq: u64,
    rejected: u64,
    started_ms: u64,
}

impl Worker {
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
        runtime_events: Option<mpsc::UnboundedReceiver<RuntimeEvent>>,
        mut health_rx: mpsc::UnboundedReceiver<HealthReport>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut sub = Some(sub);
        let mut resubscribe = tokio::time::interval(Duration::from_secs(1));
        let mut runtime_events = runtime_events;
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Shutdown first, then the heartbeat, so a flood of commands cannot delay it.
                biased;
                _ = &mut shutdown => break,
                _ = tick.tick() => self.publish_metrics().await,
                msg = next_message(&mut sub) => match msg {
                    Some(msg) => self.on_command(msg).await,
                    None => {
                        error!("command subscription ended; subscribing again");
                        sub = None;
                    }
                },
                Some(ev) = recv_opt(&mut runtime_events) => self.on_runtime_event(ev),
                Some(report) = health_rx.recv() => self.on_health(report),
                Some(done) = self.stops.join_next(), if !self.stops.is_empty() => match done {
                    Ok((replica, Err(e))) => {
                        error!(replica = %replica, error = %e, "stop failed; a repeated stop command tries again");
                        // Leave `stopping`, or every later stop would be answered "already
                        // stopping" and the replica would never stop. Its health check decides
                        // whether it is still healthy.
                        if let Some(r) = self.replicas.get_mut(&replica) {
                            if r.state == ReplicaState::Stopping {
                                r.state = ReplicaState::Unhealthy;
                            }
                        }
                    }
                    Ok((replica, Ok(()))) => debug!(replica = %replica, "stop finished"),
                    Err(e) => error!(error = %e, "stop task failed"),
                },
                _ = resubscribe.tick(), if sub.is_none() => {
                    let subject = self.config.subjects.worker_command(&self.config.worker_id);
                    match self.client.subscribe(subject.clone()).await {
                        Ok(s) => { info!(%subject, "subscribed again"); sub = Some(s); }
                        Err(e) => warn!(%subject, error = %e, "subscribe failed; retrying"),
                    }
                }
            }
        }
    }

    async fn on_command(&mut self, msg: async_nats::Message) {
        let Some(reply) = msg.reply.clone() else {
            self.rejected += 1;
            let error =
                "command without a reply subject refused; send commands as requests".to_string();
            warn!(subject = %msg.subject, bytes = msg.payload.len(), total = self.rejected, "{error}");
            let rej = Rejection {
                v: SCHEMA_VERSION,
                component: format!("{COMPONENT} {}", self.config.worker_id),
                subject: msg.subject.to_string(),
                ts_ms: now_ms(),
                kind: "no_reply".into(),
                error,
                total: self.rejected,
            };
            self.publisher.send(
                self.config.subjects.rejections(COMPONENT),
                encode(&rej),
                false,
            );
            return;
        };
        let out = self
            .commands
            .handle(&msg.payload, &mut self.replicas, &*self.runtime)
            .await;
        if let Some((kind, error)) = &out.rejected {
            self.rejected += 1;
            warn!(kind, %error, total = self.rejected, "rejected a malformed command");
        }
        self.publisher
            .send(reply.to_string(), encode(&out.ack), false);
        for effect in out.effects {
            match effect {
                Effect::WatchHealth(id) => {
                    self.publish_event(&id, "launched; waiting for the health check".into());
                    self.watch_health(&id);
                }
                Effect::Stop { replica, grace } => {
                    self.stop_health(&replica);
                    self.publish_event(
                        &replica,
                        format!("stop requested (grace {} ms)", grace.as_millis()),
                    );
                    self.spawn_stop(replica, grace);
                }
            }
        }
    }

    fn spawn_stop(&mut self, replica: ReplicaId, grace: Duration) {
        let runtime = self.runtime.clone();
        self.stops.spawn(async move {
            let r = runtime.stop(&replica, grace).await;
            (replica, r)
        });
    }

    fn watch_health(&mut self, id: &ReplicaId) {
        let Some(r) = self.replicas.get(id) else {
            return;
        };
        let (addr, path) = (r.info.health_addr.clone(), r.info.health_path.clone());
        self.stop_health(id);
        let task = tokio::spawn(health::watch(
            id.clone(),
            addr,
            path,
            self.config.health.clone(),
            self.health_tx.clone(),
        ));
        self.health_tasks.insert(id.clone(), task.abort_handle());
    }

    fn stop_health(&mut self, id: &ReplicaId) {
        if let Some(t) = self.health_tasks.remove(id) {
            t.abort();
        }
    }

    fn on_runtime_event(&mut self, ev: RuntimeEvent) {
        match ev {
            RuntimeEvent::Exited {
                replica,
                code,
                reason,
            } => {
                self.stop_health(&replica);
                let Some(mut r) = self.replicas.remove(&replica) else {
                    debug!(replica = %replica, %reason, "exit of a replica already forgotten");
                    return;
                };
                let reason = if r.state == ReplicaState::Stopping {
                    format!("stopped: {reason}")
                } else {
                    reason
                };
                if r.state == ReplicaState::Stopping {
                    info!(replica = %replica, ?code, %reason, "replica stopped");
                } else {
                    warn!(replica = %replica, ?code, %reason, "replica exited");
                }
                r.state = ReplicaState::Exited;
                self.publish_status(&r, reason);
            }
        }
    }

    fn on_health(&mut self, report: HealthReport) {
        let id = report.replica;
        let Some(r) = self.replicas.get_mut(&id) else {
            return;
        };
        match report.change {
            HealthChange::Passed => {
                let reason = match r.state {
                    ReplicaState::Starting => "health check passed",
                    ReplicaState::Unhealthy => "health check passes again",
                    _ => return,
                };
                r.state = ReplicaState::Healthy;
                info!(replica = %id, addr = %r.info.addr, "{reason}");
                self.publish_event(&id, reason.into());
            }
            HealthChange::Unhealthy { last_error } => {
                if r.state != ReplicaState::Healthy {
                    return;
                }
                r.state = ReplicaState::Unhealthy;
                let reason = format!(
                    "health check failed {} times in a row: {last_error}",
                    self.config.health.failures
                );
                warn!(replica = %id, %reason, "replica unhealthy");
                self.publish_event(&id, reason);
            }
            HealthChange::StartTimedOut { last_error } => {
                if r.state != ReplicaState::Starting {
                    return;
                }
                let mut r = self.replicas.remove(&id).expect("present");
                self.health_tasks.remove(&id);
                let reason = format!(
                    "health check GET {} did not pass within {} s ({last_error}); stopped",
                    r.info.health_path,
                    self.config.health.start_timeout.as_secs()
                );
                warn!(replica = %id, %reason, "replica never became healthy");
                r.state = ReplicaState::Exited;
                self.publish_status(&r, reason);
                self.spawn_stop(id, self.config.shutdown_grace);
            }
        }
    }

    fn publish_event(&self, id: &ReplicaId, reason: String) {
        if let Some(r) = self.replicas.get(id) {
            self.publish_status(r, reason);
        }
    }

    fn publish_status(&self, r: &Replica, reason: String) {
        let ev = ReplicaEvent {
            v: SCHEMA_VERSION,
            worker: self.config.worker_id.clone(),
            ts_ms: now_ms(),
            replica: r.status(),
            reason,
        };
        self.publisher.send(
            self.config.subjects.replica_events(&self.config.worker_id),
            encode(&ev),
            false,
        );
    }

    async fn publish_metrics(&mut self) {
        let pids: Vec<u32> = self.replicas.values().filter_map(|r| r.info.pid).collect();
        let sampler = self.sampler.clone();
        let sample = tokio::task::spawn_blocking(move || {
            let mut guard = sampler.lock().unwrap_or_else(|e| e.into_inner());
            guard.get_or_insert_with(Sampler::new).sample(&pids)
        })
        .await
        .unwrap_or_else(|e| {
            warn!(error = %e, "sampling failed; publishing without measurements");
            Default::default()
        });
        for (id, r) in self.replicas.iter_mut() {
            if let Some(stats) = self.runtime.stats(id).await {
                r.cpu_pct = stats.cpu_pct;
                r.mem_bytes = stats.mem_bytes;
            } else if let Some(stats) = r.info.pid.and_then(|p| sample.procs.get(&p)) {
                r.cpu_pct = stats.cpu_pct;
                r.mem_bytes = stats.mem_bytes;
            }
        }
        self.seq += 1;
        let m = WorkerMetrics {
            v: SCHEMA_VERSION,
            worker: self.config.worker_id.clone(),
            seq: self.seq,
            ts_ms: now_ms(),
            started_ms: self.started_ms,
            interval_ms: self.config.interval.as_millis() as u64,
            runtime: self.runtime.kind(),
            host: sample.host,
            capacity: Capacity {
                max_replicas: self.config.max_replicas,
                running: running(&self.replicas),
            },
            replicas: self.replicas.values().map(Replica::status).collect(),
            rejected: self.rejected,
        };
        self.publisher.send(
            self.config.subjects.worker_metrics(&self.config.worker_id),
            encode(&m),
            true,
        );
    }

    async fn shutdown(&mut self) {
        for (_, t) in self.health_tasks.drain() {
            t.abort();
        }
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

struct Outgoing {
    subject: String,
    payload: Bytes,
    /// Heartbeats are worthless once stale: dropped while NATS is disconnected.
    heartbeat: bool,
}

/// Queue in front of the NATS client; `send` never blocks.
struct Publisher {
    tx: mpsc::Sender<Outgoing>,
    dropped: Arc<AtomicU64>,
}

impl Publisher {
    const QUEUE: usize = 1024;

    fn start(client: async_nats::Client) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Outgoing>(Self::QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(async move {
            while let Some(o) = rx.recv().await {
                if o.heartbeat && client.connection_state() != ConnState::Connected {
                    debug!(subject = %o.subject, "NATS disconnected: heartbeat skipped");
                    continue;
                }
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    client.publish(o.subject.clone(), o.payload),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(subject = %o.subject, error = %e, "publish failed"),
                    Err(_) => {
                        warn!(subject = %o.subject, "publish timed out (NATS unavailable); message dropped")
                    }
                }
            }
        });
        (Self { tx, dropped }, task)
    }

    fn send(&self, subject: String, payload: Vec<u8>, heartbeat: bool) {
        if let Err(e) = self.tx.try_send(Outgoing {
            subject,
            payload: payload.into(),
            heartbeat,
        }) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(dropped = n, error = %e, "publish queue full (NATS unavailable?); dropping messages");
            }
        }
    }
}
