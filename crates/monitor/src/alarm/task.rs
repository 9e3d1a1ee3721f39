//! The alarm loop: every tick, take or renew the lease; the holder evaluates every rule against
//! the store, saves what changed, publishes the events and queues the notices (saving first, so
//! a monitor that dies between the two sends nothing twice). Only the holder subscribes to
//! `acs.monitor.alarms`, so every request meets the one copy of the truth; the others stand by.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{decode, encode, AlarmReply, AlarmRequest, Subjects};
use futures::StreamExt;
use tokio::sync::watch;

use super::book::{Book, Effects};
use super::kv::{self, Lease};
use super::notify::Notifier;
use super::rules::Rules;
use crate::service::unix_ms;
use crate::store::Store;

/// What the alarm engine needs besides the store.
#[derive(Debug, Clone)]
pub struct AlarmConfig {
    pub rules: Rules,
    pub bucket: String,
    /// Replicas of the bucket's stream (3 on a 3-node NATS cluster).
    pub replicas: usize,
    /// A lease not renewed for this long passes to a standby monitor.
    pub lease_ms: u64,
    pub tick: Duration,
    pub retry: super::notify::Retry,
    /// This monitor in the lease (unique per process).
    pub instance: String,
}

impl AlarmConfig {
    pub fn new(rules: Rules) -> Self {
        AlarmConfig {
            rules,
            bucket: kv::BUCKET.into(),
            replicas: 1,
            lease_ms: 5_000,
            tick: Duration::from_secs(1),
            retry: Default::default(),
            instance: default_instance(),
        }
    }
}

/// `<host>-<pid>-<nanos>`: unique per process, readable in logs.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "monitor".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}-{}-{nanos:x}", std::process::id())
}

#[derive(Debug, Default)]
pub struct AlarmCounters {
    pub leader: AtomicBool,
    pub ticks: AtomicU64,
    pub events: AtomicU64,
    pub requests: AtomicU64,
    /// Bad requests, unreadable saved values.
    pub rejected: AtomicU64,
    pub save_errors: AtomicU64,
}

/// What the alarm task shares with the rest of the monitor.
pub struct Wiring {
    pub client: async_nats::Client,
    pub subjects: Subjects,
    pub store: Arc<Mutex<Store>>,
    /// True once the store has replayed the whole stream.
    pub caught_up: watch::Receiver<bool>,
    /// Turns true on shutdown.
    pub stop: watch::Receiver<bool>,
}

/// Runs until `stop` turns true, then releases the lease.
pub async fn run(
    wiring: Wiring,
    cfg: AlarmConfig,
    notifier: Notifier,
    counters: Arc<AlarmCounters>,
) {
    let Wiring {
        client,
        subjects,
        store,
        mut caught_up,
        mut stop,
    } = wiring;
    // Rules judged on a partial history would resolve and re-fire what a restart interrupted.
    tokio::select! {
        ok = async { caught_up.wait_for(|c| *c).await.is_ok() } => if !ok { return },
        _ = stopped(&mut stop) => return,
    }
    let kv = loop {
        match kv::open_bucket(&client, &cfg.bucket, cfg.replicas).await {
            Ok(kv) => break kv,
            Err(e) => tracing::error!(error = %e, "alarms wait for their KV bucket"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stopped(&mut stop) => return,
        }
    };
    let mut engine = Engine {
        client,
        subjects,
        cfg,
        kv: kv.clone(),
        notifier,
        counters,
        book: None,
        requests: None,
    };
    let mut lease = Lease::new(kv, engine.cfg.instance.clone(), engine.cfg.lease_ms);
    let mut every = tokio::time::interval(engine.cfg.tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(rules = engine.cfg.rules.rules.len(), channels = engine.cfg.rules.channels.len(), instance = %engine.cfg.instance, "alarms: waiting for the lease");
    loop {
        tokio::select! {
            _ = every.tick() => {
                let holding = lease.turn().await;
                engine.lease_changed(holding).await;
                engine.tick(&store).await;
            }
            msg = next(&mut engine.requests) => match msg {
                Some(msg) => engine.request(msg).await,
                None => {
                    tracing::warn!("the alarm request subscription ended; resubscribing on the next tick");
                    engine.requests = None;
                    engine.book = None;
                }
            },
            _ = stopped(&mut stop) => break,
        }
    }
    engine.requests = None;
    lease.release().await;
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn next(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

struct Engine {
    client: async_nats::Client,
    subjects: Subjects,
    cfg: AlarmConfig,
    kv: async_nats::jetstream::kv::Store,
    notifier: Notifier,
    counters: Arc<AlarmCounters>,
    /// Loaded only while holding the lease.
    book: Option<Book>,
    requests: Option<async_nats::Subscriber>,
}

impl Engine {
    async fn lease_changed(&mut self, holding: bool) {
        self.counters.leader.store(holding, Ordering::Relaxed);
        match (holding, self.book.is_some()) {
            (true, false) => {
                let (book, errors) = match kv::load(&self.kv).await {
                    Ok(l) => l,
                    Err(error) => {
                        tracing::warn!(%error, "cannot load the saved alarms; trying again next tick");
                        return;
                    }
                };
                for (key, error) in errors {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%key, %error, "a saved alarm is unreadable; it starts afresh");
                }
                let sub = match self.client.subscribe(self.subjects.monitor_alarms()).await {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::warn!(%error, "cannot subscribe to the alarm requests; trying again next tick");
                        return;
                    }
                };
                tracing::info!(alarms = book.alarms.len(), silences = book.silences.len(), subject = %self.subjects.monitor_alarms(), "alarm state loaded; evaluating and answering");
                self.book = Some(book);
                self.requests = Some(sub);
            }
            (false, true) => {
                tracing::warn!("no longer holding the alarm lease: standing by");
                self.book = None;
                self.requests = None;
            }
            _ => {}
        }
    }

    async fn tick(&mut self, store: &Mutex<Store>) {
        let Some(book) = self.book.as_mut() else {
            return;
        };
        let now = unix_ms();
        let fx = {
            let Ok(store) = store.lock() else { return };
            book.tick_store(&self.cfg.rules, &store, now)
        };
        self.counters.ticks.fetch_add(1, Ordering::Relaxed);
        for rule in &fx.capped {
            tracing::warn!(%rule, max = super::book::MAX_TARGETS_PER_RULE, "rule matches more targets than tracked; the rest are not evaluated");
        }
        self.effects(fx).await;
    }

    /// Save first, then publish and notify.
    async fn effects(&self, fx: Effects) {
        for (key, error) in kv::save(&self.kv, &fx).await {
            self.counters.save_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%key, %error, "could not save alarm state; a restart may repeat its notices");
        }
        for e in &fx.events {
            self.counters.events.fetch_add(1, Ordering::Relaxed);
            tracing::info!(rule = %e.rule, id = %e.id, state = e.state.as_str(), severity = e.severity.as_str(), value = e.value, "{}", e.message);
            if let Err(error) = self
                .client
                .publish(self.subjects.alarm_events(&e.rule), encode(e).into())
                .await
            {
                tracing::warn!(%error, rule = %e.rule, "could not publish an alarm event");
            }
        }
        for n in fx.notices {
            self.notifier.send(n);
        }
    }

    async fn request(&mut self, msg: async_nats::Message) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let Some(reply_to) = msg.reply.clone() else {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subject = %msg.subject, "alarm request without a reply subject ignored");
            return;
        };
        let (reply, fx) = match (decode::<AlarmRequest>(&msg.payload), self.book.as_mut()) {
            (Ok(req), Some(book)) => {
                let (reply, fx) = book.request(&self.cfg.rules, &req, unix_ms());
                if reply.ok {
                    tracing::info!(action = req.action.as_str(), rule = ?req.rule, id = ?req.id, by = ?req.by, "alarm request");
                }
                (reply, Some(fx))
            }
            (Ok(_), None) => (
                AlarmReply::error("this monitor is not holding the alarm lease; ask again"),
                None,
            ),
            (Err(e), _) => (AlarmReply::error(e.to_string()), None),
        };
        if !reply.ok {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = ?reply.error, "refused an alarm request");
        }
        if let Some(fx) = fx {
            self.effects(fx).await;
        }
        if let Err(error) = self.client.publish(reply_to, encode(&reply).into()).await {
            tracing::warn!(%error, "could not answer an alarm request");
        }
    }
}
