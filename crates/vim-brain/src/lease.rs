//! The leader lease in JetStream KV, and the state that must outlive a brain.
//!
//! [`machine`] is the lease as plain data; this file is its driver: a task of its own (so a
//! busy decision loop never delays a renewal) that reads and compare-and-sets the `leader` key
//! of the bucket and publishes each change as a [`LeaderEvent`] on `acs.events.leader`. The
//! loop asks [`Lease::acting`] before every command, backend update and reply: only a brain
//! inside its acting window does anything but listen.
//!
//! The same bucket keeps manual pins (`pin.<service>`), written by the leader on every manual
//! scale and read by each new leader when it takes over.

pub mod machine;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acs_events::{encode, LeaderChange, LeaderEvent, ServiceName, Subjects, Term, SCHEMA_VERSION};
use async_nats::jetstream::kv::{CreateErrorKind, Store, UpdateErrorKind};
use async_nats::Client;
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use machine::{Machine, Read, Transition, Value, Write};

use crate::world::Millis;

/// The key holding the lease.
const LEADER_KEY: &str = "leader";

/// How a brain takes part in the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// KV bucket for the lease and the pins.
    pub bucket: String,
    /// A lease not renewed for this long passes to a standby.
    pub lease_ms: u64,
    /// Replicas of the bucket's stream (3 on a 3-node NATS cluster).
    pub replicas: usize,
    /// This brain's instance id (unique per process).
    pub instance: String,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            bucket: "acs_brain".into(),
            lease_ms: 1500,
            replicas: 1,
            instance: default_instance(),
        }
    }
}

/// `<host>-<pid>-<random>`: unique per process, readable in logs.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "brain".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{host}-{}-{:x}",
        std::process::id(),
        nanos ^ (std::process::id() << 7)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "cannot open the brain's KV bucket {bucket:?}: {message}; the brains keep their lease and pins in \
         JetStream: run nats-server with JetStream on (`-js`, or `jetstream {{}}` in its config)"
    )]
    Open { bucket: String, message: String },
}

/// Opens (creating if needed) the bucket. Its stream is made by hand: async-nats 0.51's
/// `create_key_value` cannot read nats-server 2.9's answer, while every other KV call works.
pub async fn open_bucket(client: &Client, cfg: &LeaseConfig) -> Result<Store, LeaseError> {
    let err = |message: String| LeaseError::Open {
        bucket: cfg.bucket.clone(),
        message,
    };
    let js = async_nats::jetstream::new(client.clone());
    let stream = async_nats::jetstream::stream::Config {
        name: format!("KV_{}", cfg.bucket),
        subjects: vec![format!("$KV.{}.>", cfg.bucket)],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: cfg.replicas.max(1),
        ..Default::default()
    };
    tokio::time::timeout(Duration::from_secs(10), js.get_or_create_stream(stream))
        .await
        .map_err(|_| err("no answer from JetStream within 10 s".into()))?
        .map_err(|e| err(e.to_string()))?;
    js.get_key_value(&cfg.bucket)
        .await
        .map_err(|e| err(e.to_string()))
}

/// The brain's view of its leadership, shared with the driver task.
#[derive(Clone)]
pub struct Lease {
    machine: Arc<Mutex<Machine>>,
    start: Instant,
    pub instance: String,
}

impl Lease {
    /// The term this brain leads in, if it may act now.
    pub fn acting(&self) -> Option<Term> {
        let now = self.now();
        self.machine.lock().ok().and_then(|m| m.acting(now))
    }

    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }
}

/// Starts the driver. Transitions also come back on the returned channel, so the loop can load
/// the pins and stamp the new term the moment it is elected.
pub fn spawn(
    client: Client,
    kv: Store,
    subjects: Subjects,
    cfg: LeaseConfig,
) -> (
    Lease,
    mpsc::UnboundedReceiver<Transition>,
    tokio::task::JoinHandle<()>,
) {
    // A third of the lease: renewals every fifth still leave two retries inside the window.
    let margin = cfg.lease_ms / 3;
    let lease = Lease {
        machine: Arc::new(Mutex::new(Machine::new(
            cfg.instance.clone(),
            cfg.lease_ms,
            margin,
        ))),
        start: Instant::now(),
        instance: cfg.instance.clone(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = Driver {
        client,
        kv,
        subjects,
        cfg,
        lease: lease.clone(),
        tx,
    };
    let task = tokio::spawn(driver.run());
    (lease, rx, task)
}

struct Driver {
    client: Client,
    kv: Store,
    subjects: Subjects,
    cfg: LeaseConfig,
    lease: Lease,
    tx: mpsc::UnboundedSender<Transition>,
}

impl Driver {
    async fn run(self) {
        // A fifth of the lease, and at most 250 ms so a released lease is seen quickly even
        // when the lease is long.
        let period = Duration::from_millis((self.cfg.lease_ms / 5).clamp(20, 250));
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // The brain's loop is gone (stopped, or its task aborted): so is this brain.
            if self.tx.is_closed() {
                return;
            }
            self.step(period).await;
        }
    }

    /// One turn: the deadline check, then a renewal (leader) or a read and maybe a claim.
    async fn step(&self, period: Duration) {
        let now = self.lease.now();
        let (stepped, renewal) = {
            let Ok(mut m) = self.lease.machine.lock() else {
                return;
            };
            (m.tick(now), m.renewal())
        };
        if let Some(t) = stepped {
            self.announce(t);
        }
        let write = match renewal {
            Some(w) => Some(w),
            None => match tokio::time::timeout(period * 2, self.kv.entry(LEADER_KEY)).await {
                Ok(Ok(entry)) => {
                    let read = match entry {
                        Some(e) if e.operation == async_nats::jetstream::kv::Operation::Put => {
                            Read::Entry {
                                revision: e.revision,
                                value: serde_json::from_slice::<Value>(&e.value)
                                    .map_err(|e| e.to_string()),
                            }
                        }
                        _ => Read::Absent,
                    };
                    let Ok(mut m) = self.lease.machine.lock() else {
                        return;
                    };
                    let corrupt = m.corrupt;
                    let w = m.observed(read, self.lease.now());
                    if m.corrupt > corrupt {
                        warn!(bucket = %self.cfg.bucket, key = LEADER_KEY, "the lease value is unreadable; it expires like any other");
                    }
                    w
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot read the leader lease");
                    None
                }
                Err(_) => {
                    warn!("no answer reading the leader lease");
                    None
                }
            },
        };
        if let Some(w) = write {
            self.write(w).await;
        }
    }

    /// Sends one compare-and-set write, bounded so a confirmation cannot come after the point
    /// where it would no longer be of use.
    async fn write(&self, w: Write) {
        let sent = self.lease.now();
        let payload = Bytes::from(serde_json::to_vec(w.value()).unwrap_or_default());
        let timeout = Duration::from_millis(self.cfg.lease_ms / 3);
        let outcome = match &w {
            Write::Create(_) => {
                match tokio::time::timeout(timeout, self.kv.create(LEADER_KEY, payload)).await {
                    Ok(Ok(rev)) => Ok(rev),
                    Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => Err(true),
                    Ok(Err(e)) => {
                        warn!(error = %e, "lease claim failed");
                        Err(false)
                    }
                    Err(_) => Err(false),
                }
            }
            Write::Update { revision, .. } => {
                match tokio::time::timeout(timeout, self.kv.update(LEADER_KEY, payload, *revision))
                    .await
                {
                    Ok(Ok(rev)) => Ok(rev),
                    Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => Err(true),
                    Ok(Err(e)) => {
                        warn!(error = %e, "lease write failed");
                        Err(false)
                    }
                    Err(_) => Err(false),
                }
            }
        };
        let t = {
            let Ok(mut m) = self.lease.machine.lock() else {
                return;
            };
            match outcome {
                Ok(rev) => m.confirmed(&w, rev, sent, self.lease.now()),
                // Someone else wrote the key: a leader steps down at once.
                Err(true) => m.refused(),
                // No answer: the deadline check steps down in time if it lasts.
                Err(false) => None,
            }
        };
        if let Some(t) = t {
            self.announce(t);
        }
    }

    fn announce(&self, t: Transition) {
        let (term, change) = match t {
            Transition::Elected(term) => {
                info!(term, instance = %self.cfg.instance, lease_ms = self.cfg.lease_ms, "elected leader");
                (term, LeaderChange::Elected)
            }
            Transition::Renewed(term) => (term, LeaderChange::Renewed),
            Transition::SteppedDown(term) => {
                warn!(term, instance = %self.cfg.instance, "stepped down: no longer the leader");
                (term, LeaderChange::SteppedDown)
            }
        };
        let ev = LeaderEvent {
            v: SCHEMA_VERSION,
            term,
            brain: self.cfg.instance.clone(),
            ts_ms: crate::reconciler::now_unix_ms(),
            change,
            lease_ms: self.cfg.lease_ms,
        };
        let client = self.client.clone();
        let subject = self.subjects.leader();
        // Fire and forget: the event informs, the fencing does not depend on it arriving.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_millis(250),
                client.publish(subject, encode(&ev).into()),
            )
            .await;
        });
        if !matches!(t, Transition::Renewed(_)) {
            let _ = self.tx.send(t);
        }
    }
}

/// Gives the lease up on a clean shutdown, so a standby takes over at once (the term is kept).
pub async fn release(kv: &Store, lease: &Lease) {
    let w = lease.machine.lock().ok().and_then(|m| m.release());
    if let Some(w @ Write::Update { revision, .. }) = w {
        let payload = Bytes::from(serde_json::to_vec(w.value()).unwrap_or_default());
        match tokio::time::timeout(
            Duration::from_secs(1),
            kv.update(LEADER_KEY, payload, revision),
        )
        .await
        {
            Ok(Ok(_)) => info!("lease released"),
            Ok(Err(e)) => {
                warn!(error = %e, "could not release the lease; a standby takes over when it expires")
            }
            Err(_) => warn!("no answer releasing the lease; a standby takes over when it expires"),
        }
    }
}

fn pin_key(service: &ServiceName) -> String {
    format!("pin.{service}")
}

/// Saves one pin (`None`: back to auto).
pub async fn save_pin(
    kv: &Store,
    service: &ServiceName,
    replicas: Option<u32>,
) -> Result<(), String> {
    let io = async {
        match replicas {
            Some(n) => kv
                .put(pin_key(service), Bytes::from(n.to_string()))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => kv.delete(pin_key(service)).await.map_err(|e| e.to_string()),
        }
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .map_err(|_| "no answer from JetStream within 2 s".to_string())?
}

/// What a new leader reads: the pin of each declared service. A value that cannot be read is
/// reported in `errors` (service, why) and left out, without losing the others.
#[derive(Debug, Default)]
pub struct LoadedPins {
    pub pins: BTreeMap<ServiceName, Option<u32>>,
    pub errors: Vec<(ServiceName, String)>,
}

pub async fn load_pins<'a>(
    kv: &Store,
    services: impl Iterator<Item = &'a ServiceName>,
) -> LoadedPins {
    let mut out = LoadedPins::default();
    for service in services {
        match tokio::time::timeout(Duration::from_secs(2), kv.get(pin_key(service))).await {
            Ok(Ok(None)) => {
                out.pins.insert(service.clone(), None);
            }
            Ok(Ok(Some(v))) => match std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                Some(n) if i64::from(n) <= acs_events::MAX_REPLICAS => {
                    out.pins.insert(service.clone(), Some(n));
                }
                _ => out.errors.push((
                    service.clone(),
                    format!(
                        "pin value {:?} is not a replica count 0..={}",
                        String::from_utf8_lossy(&v),
                        acs_events::MAX_REPLICAS
                    ),
                )),
            },
            Ok(Err(e)) => out.errors.push((service.clone(), e.to_string())),
            Err(_) => out.errors.push((
                service.clone(),
                "no answer from JetStream within 2 s".into(),
            )),
        }
    }
    out
}

/// The key holding every worker's maintenance state, as one JSON map (few entries, written
/// only on an operator's request, so one key keeps reads and writes atomic).
const MAINTENANCE_KEY: &str = "maintenance";

/// Saves the whole maintenance map.
pub async fn save_maintenance(
    kv: &Store,
    states: &BTreeMap<acs_events::WorkerId, crate::world::Maintenance>,
) -> Result<(), String> {
    let payload = Bytes::from(serde_json::to_vec(states).map_err(|e| e.to_string())?);
    match tokio::time::timeout(Duration::from_secs(2), kv.put(MAINTENANCE_KEY, payload)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer from JetStream within 2 s".into()),
    }
}

#[derive(Debug, Default)]
pub struct LoadedMaintenance {
    pub states: BTreeMap<acs_events::WorkerId, crate::world::Maintenance>,
    /// (key, why) for what could not be read.
    pub errors: Vec<(String, String)>,
}

pub async fn load_maintenance(kv: &Store) -> LoadedMaintenance {
    let mut out = LoadedMaintenance::default();
    match tokio::time::timeout(Duration::from_secs(2), kv.get(MAINTENANCE_KEY)).await {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(v))) => match serde_json::from_slice(&v) {
            Ok(states) => out.states = states,
            Err(e) => out.errors.push((
                MAINTENANCE_KEY.into(),
                format!("not a map of worker states: {e}"),
            )),
        },
        Ok(Err(e)) => out.errors.push((MAINTENANCE_KEY.into(), e.to_string())),
        Err(_) => out.errors.push((
            MAINTENANCE_KEY.into(),
            "no answer from JetStream within 2 s".into(),
        )),
    }
    out
}
