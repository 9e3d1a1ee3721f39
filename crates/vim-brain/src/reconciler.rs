//! The thin I/O loop around the pure parts: NATS in, `World::apply`, `plan`, NATS out.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acs_events::{
    check_sender, decode, encode, CommandAck, DecodeError, ProxyMetrics, ReplicaEvent, Rejection,
    ScaleReply, ScaleRequest, StatusReply, StatusRequest, Subjects, SyncRequest, WorkerMetrics, SCHEMA_VERSION,
};
use async_nats::{Client, Message};
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::Services;
use crate::control;
use crate::plan::{plan, Plan};
use crate::world::{Event, Now, Settings, World};

const PUBLISH_TIMEOUT: Duration = Duration::from_millis(250);

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
    /// Where manual pins are kept across restarts (`None`: not kept).
    pub state_file: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: acs_node::NatsOptions::new(acs_node::nats::DEFAULT_URL),
            subjects: Subjects::default(),
            settings: Settings::default(),
            tick: Duration::from_millis(500),
            command_timeout: Duration::from_secs(5),
            state_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nats(#[from] acs_node::NatsError),
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe { subject: String, source: async_nats::SubscribeError },
}

/// Monotonic and wall clocks, read only here.
struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> Now {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Now { mono: self.start.elapsed().as_millis() as u64, unix_ms }
    }
}

/// Runs the brain until `shutdown` completes.
pub async fn run(config: Config, services: Services, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let nats = if config.nats.name.is_empty() { config.nats.clone().with_name("vim-brain") } else { config.nats.clone() };
    let client = nats.connect().await?;
    let s = &config.subjects;
    let sub = |subject: String| {
        let client = client.clone();
        async move {
            client.subscribe(subject.clone()).await.map_err(|source| Error::Subscribe { subject, source })
        }
    };
    let mut metrics = sub(s.worker_metrics_all()).await?;
    let mut replica_events = sub(s.replica_events_all()).await?;
    let mut proxies = sub(s.proxy_metrics_all()).await?;
    let mut scale = sub(s.scale()).await?;
    let mut status = sub(s.status()).await?;
    let mut sync = sub(s.backends_sync()).await?;
    info!(nats = %config.nats.servers_display(), services = ?services.names(), "vim-brain running");

    let clock = Clock { start: Instant::now() };
    let mut world = World::new(config.settings.clone(), clock.now());
    if let Some(path) = &config.state_file {
        match crate::state::load(path) {
            Ok(pins) => {
                for (service, n) in pins {
                    if services.get(&service).is_some() {
                        info!(%service, replicas = n, "manual pin restored");
                        world.apply(Event::Pin { service, replicas: Some(n) }, clock.now().mono);
                    } else {
                        warn!(%service, "manual pin for a service no longer declared; dropped");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read the state file; starting without manual pins"),
        }
    }
    let mut brain = Brain {
        client: client.clone(),
        subjects: config.subjects.clone(),
        world,
        services,
        command_timeout: config.command_timeout,
        state_file: config.state_file.clone(),
        rejected: 0,
    };
    let (results_tx, mut results) = mpsc::unbounded_channel::<Event>();
    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = tick.tick() => brain.reconcile(clock.now(), &results_tx).await,
            Some(m) = metrics.next() => {
                if let Some(ev) = brain.decode_from_sender::<WorkerMetrics>(&m, |ev| ev.worker.as_str()).await {
                    brain.world.apply(Event::WorkerMetrics(ev), clock.now().mono);
                }
            }
            Some(m) = replica_events.next() => {
                if let Some(ev) = brain.decode_from_sender::<ReplicaEvent>(&m, |ev| ev.worker.as_str()).await {
                    debug!(worker = %ev.worker, replica = %ev.replica.id, state = ?ev.replica.state, "replica event");
                    brain.world.apply(Event::Replica(ev), clock.now().mono);
                    brain.reconcile(clock.now(), &results_tx).await;
                }
            }
            Some(m) = proxies.next() => {
                if let Some(ev) = brain.decode_from_sender::<ProxyMetrics>(&m, |ev| ev.proxy.as_str()).await {
                    brain.world.apply(Event::Proxy(ev), clock.now().mono);
                }
            }
            Some(m) = scale.next() => {
                brain.handle_scale(&m, clock.now()).await;
                brain.reconcile(clock.now(), &results_tx).await;
            }
            Some(m) = status.next() => brain.handle_status(&m, clock.now()).await,
            Some(m) = sync.next() => brain.handle_sync(&m, clock.now()).await,
            Some(ev) = results.recv() => {
                brain.world.apply(ev, clock.now().mono);
                brain.reconcile(clock.now(), &results_tx).await;
            }
        }
    }
    info!("vim-brain stopping");
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
    state_file: Option<std::path::PathBuf>,
    /// Messages refused since start (malformed input, refused requests); reported in status.
    rejected: u64,
}

impl Brain {
    async fn reconcile(&mut self, now: Now, results: &mpsc::UnboundedSender<Event>) {
        let plan = plan(&self.world, &self.services, now);
        self.send(&plan, results).await;
        self.world.apply(Event::PlanSent(plan.bookkeeping), now.mono);
    }

    async fn send(&self, plan: &Plan, results: &mpsc::UnboundedSender<Event>) {
        for ev in &plan.worker_events {
            info!(worker = %ev.worker, health = ?ev.health, reason = %ev.reason, "worker health");
            self.publish(self.subjects.worker_events(&ev.worker), encode(ev)).await;
        }
        for d in &plan.decisions {
            info!(service = %d.service, action = ?d.action, reason = %d.reason, "decision");
            self.publish(self.subjects.decisions(&d.service), encode(d)).await;
        }
        for u in &plan.updates {
            debug!(service = %u.service, version = u.version, change = ?u.change, "backends");
            self.publish(self.subjects.backends(&u.service), encode(u)).await;
        }
        for c in &plan.commands {
            let client = self.client.clone();
            let subject = self.subjects.worker_command(&c.worker);
            let payload = encode(&c.cmd);
            let timeout = self.command_timeout;
            let (worker, replica, start) = (c.worker.clone(), c.replica.clone(), c.is_start());
            let results = results.clone();
            tokio::spawn(async move {
                let result = match tokio::time::timeout(timeout, client.request(subject, payload.into())).await {
                    Err(_) => Err(format!("no answer from worker {worker} within {timeout:?}")),
                    Ok(Err(e)) => Err(format!("request to worker {worker} failed: {e}")),
                    Ok(Ok(msg)) => decode::<CommandAck>(&msg.payload)
                        .map_err(|e| format!("worker {worker} sent an unreadable ack: {e}")),
                };
                match &result {
                    Ok(ack) if ack.ok => debug!(%worker, %replica, start, "command acknowledged"),
                    Ok(ack) => warn!(%worker, %replica, start, error = ?ack.error, "command refused"),
                    Err(e) => warn!(%worker, %replica, start, error = %e, "command failed"),
                }
                let _ = results.send(Event::CommandResult { worker, replica, start, result });
            });
        }
    }

    /// Publishes without ever holding up the loop: during a NATS outage the client's buffer
    /// fills and a publish would wait; we drop the message instead. Nothing is lost for good:
    /// the loop is level-triggered and republishes snapshots once NATS is back.
    async fn publish(&self, subject: String, payload: Vec<u8>) {
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.client.publish(subject.clone(), payload.into())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(%subject, error = %e, "publish failed"),
            Err(_) => warn!(%subject, "publish dropped: NATS client buffer full (outage?)"),
        }
    }

    /// Counts and reports a message that was refused and that nobody waits on.
    async fn reject(&mut self, m: &Message, kind: &str, error: String) {
        self.rejected += 1;
        warn!(subject = %m.subject, kind, %error, total = self.rejected, "rejected message");
        let r = Rejection::new("brain", m.subject.as_str(), kind, error, now_unix_ms(), self.rejected);
        self.publish(self.subjects.rejections("brain"), encode(&r)).await;
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

    async fn reply(&mut self, m: &Message, payload: Vec<u8>) {
        match &m.reply {
            Some(reply) => self.publish(reply.to_string(), payload).await,
            None => {
                self.reject(m, "no_reply", "request sent without a reply subject (use request-reply)".into())
                    .await
            }
        }
    }

    async fn handle_scale(&mut self, m: &Message, now: Now) {
        let reply = match decode::<ScaleRequest>(&m.payload) {
            Ok(req) => {
                let mut r = control::manual_scale(&mut self.world, &self.services, &req, now);
                if r.ok {
                    info!(service = %req.service, replicas = ?req.replicas, auto = req.auto, "manual scale");
                    if let Some(path) = &self.state_file {
                        if let Err(e) = crate::state::save(path, &self.world) {
                            warn!(error = %e, "cannot save manual pins");
                            if let Some(note) = r.note.as_mut() {
                                note.push_str(&format!("; warning: not saved, a brain restart forgets it ({e})"));
                            }
                        }
                    }
                } else {
                    self.count_refused(m, r.error.as_deref().unwrap_or_default());
                }
                r
            }
            Err(e) => {
                self.count_refused(m, &e.to_string());
                ScaleReply::error(e.to_string())
            }
        };
        self.reply(m, encode(&reply)).await;
    }

    /// A request answered with an error: the reply carries the message, and we count it.
    fn count_refused(&mut self, m: &Message, error: &str) {
        self.rejected += 1;
        warn!(subject = %m.subject, %error, total = self.rejected, "refused request");
    }

    async fn handle_status(&mut self, m: &Message, now: Now) {
        let payload = match decode_or_default::<StatusRequest>(&m.payload) {
            Ok(_) => {
                let reply = control::status(&self.world, &self.services, now);
                encode(&StatusReply { rejected: self.rejected, ..reply })
            }
            Err(e) => {
                self.count_refused(m, &e.to_string());
                error_reply(&e.to_string())
            }
        };
        self.reply(m, payload).await;
    }

    async fn handle_sync(&mut self, m: &Message, now: Now) {
        let payload = match decode_or_default::<SyncRequest>(&m.payload) {
            Ok(req) => encode(&control::sync(&self.world, &self.services, &req, now)),
            Err(e) => {
                self.count_refused(m, &e.to_string());
                error_reply(&e.to_string())
            }
        };
        self.reply(m, payload).await;
    }
}

/// Requests whose payload is optional: empty means the defaults.
fn decode_or_default<T>(payload: &[u8]) -> Result<T, DecodeError>
where
    T: serde::de::DeserializeOwned + acs_events::Validate + acs_events::codec::Versioned + Default,
{
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    decode(payload)
}

fn error_reply(error: &str) -> Vec<u8> {
    encode(&serde_json::json!({ "v": SCHEMA_VERSION, "ok": false, "error": error }))
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
