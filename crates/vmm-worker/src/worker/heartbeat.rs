//! The heartbeat: `acs.metrics.worker.<id>` every interval, from a task of its own. It reads a
//! [`Snapshot`] of the replica table that the run loop keeps current and never waits for the
//! loop, a command or a start, so a slow engine cannot make a healthy worker look dead. The
//! CPU / memory it samples go back to the loop, which owns the table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{encode, Capacity, ReplicaId, WorkerId, WorkerMetrics, SCHEMA_VERSION};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::publish::Publisher;
use crate::clock::unix_now_ms;
use crate::metrics::{Sample, Sampler};
use crate::replicas::{running, Replica, Replicas};
use crate::runtime::{ReplicaStats, Runtime};

/// What the heartbeat reports, as the run loop last left it.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    pub replicas: Replicas,
    /// Starts in flight: each takes a slot.
    pub starting: u32,
    pub rejected: u64,
}

/// CPU / memory per replica, measured by the heartbeat, for the loop's table.
pub(super) type Measured = BTreeMap<ReplicaId, ReplicaStats>;

pub(super) struct Heartbeat {
    pub worker: WorkerId,
    pub subject: String,
    pub interval: Duration,
    pub max_replicas: u32,
    pub runtime: Arc<dyn Runtime>,
    pub publisher: Publisher,
    pub snapshot: watch::Receiver<Snapshot>,
    pub measured: mpsc::UnboundedSender<Measured>,
    pub started_ms: u64,
    /// This process's random instance id (tells two processes under one worker id apart).
    pub instance: String,
    /// See `Worker::order`.
    pub order: Arc<Mutex<()>>,
    /// Beaten each interval the runtime answered a ping within half an interval.
    pub ready: acs_node::Readiness,
}

impl Heartbeat {
    pub(super) fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        // Created lazily on the blocking pool (the first refresh reads all of /proc).
        let sampler = Arc::new(Mutex::new(None::<Sampler>));
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut answering = true;
        loop {
            tick.tick().await;
            let answered = tokio::time::timeout(self.interval / 2, self.runtime.ping()).await;
            let now_answering = matches!(answered, Ok(true));
            if now_answering {
                self.ready.beat();
            }
            // Said once per change, not every interval.
            if now_answering != answering {
                if now_answering {
                    info!("the runtime answers again; ready");
                } else {
                    warn!("the runtime did not answer a ping; not ready");
                }
                answering = now_answering;
            }
            let measuring = self.snapshot.borrow().clone();
            let sample = sample(&sampler, &measuring.replicas).await;
            let measured = self.measure(&measuring.replicas, &sample).await;
            seq += 1;
            // The table as it is now, not as it was before measuring; read and queued under
            // the loop's ordering lock, so no event has gone out with a newer table.
            let order = self.order.lock().unwrap_or_else(|p| p.into_inner());
            let snap = self.snapshot.borrow().clone();
            let replicas = snap
                .replicas
                .values()
                .map(|r| {
                    let mut r = r.clone();
                    if let Some(s) = measured.get(&r.info.id) {
                        (r.cpu_pct, r.mem_bytes) = (s.cpu_pct, s.mem_bytes);
                    }
                    r.status()
                })
                .collect();
            let m = WorkerMetrics {
                v: SCHEMA_VERSION,
                worker: self.worker.clone(),
                seq,
                ts_ms: unix_now_ms(),
                started_ms: self.started_ms,
                instance: self.instance.clone(),
                interval_ms: self.interval.as_millis() as u64,
                runtime: self.runtime.kind(),
                host: sample.host,
                capacity: Capacity {
                    max_replicas: self.max_replicas,
                    running: running(&snap.replicas) + snap.starting,
                },
                replicas,
                rejected: snap.rejected,
            };
            self.publisher.send(self.subject.clone(), encode(&m), true);
            drop(order);
            if !measured.is_empty() {
                let _ = self.measured.send(measured);
            }
        }
    }

    /// CPU / memory of each replica: the runtime's own figures, else its pid's. Bounded: a
    /// runtime that does not answer in half an interval is left out of this beat.
    async fn measure(&self, replicas: &Replicas, sample: &Sample) -> Measured {
        let mut out = Measured::new();
        let budget = self.interval / 2;
        let asked = tokio::time::timeout(budget, async {
            for (id, r) in replicas {
                let stats = match self.runtime.stats(id).await {
                    Some(s) => Some(s),
                    None => r.info.pid.and_then(|p| sample.procs.get(&p).copied()),
                };
                if let Some(s) = stats {
                    out.insert(id.clone(), s);
                }
            }
        })
        .await;
        if asked.is_err() {
            warn!(
                budget_ms = budget.as_millis() as u64,
                "runtime stats too slow; heartbeat sent without some of them"
            );
        }
        out
    }
}

/// The host and the replicas' pids, on the blocking pool.
async fn sample(sampler: &Arc<Mutex<Option<Sampler>>>, replicas: &Replicas) -> Sample {
    let pids: Vec<u32> = replicas.values().filter_map(|r| r.info.pid).collect();
    let sampler = sampler.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = sampler.lock().unwrap_or_else(|e| e.into_inner());
        guard.get_or_insert_with(Sampler::new).sample(&pids)
    })
    .await
    .unwrap_or_else(|e| {
        warn!(error = %e, "sampling failed; publishing without measurements");
        Default::default()
    })
}

/// Used by the loop: the snapshot of a table.
pub(super) fn snapshot_of(replicas: &Replicas, starting: usize, rejected: u64) -> Snapshot {
    Snapshot {
        replicas: replicas.clone(),
        starting: starting as u32,
        rejected,
    }
}

impl Replica {
    /// Takes the heartbeat's latest measurement.
    pub(super) fn measured(&mut self, s: ReplicaStats) {
        self.cpu_pct = s.cpu_pct;
        self.mem_bytes = s.mem_bytes;
    }
}
