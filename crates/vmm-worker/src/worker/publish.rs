//! Everything the worker publishes: replica events, the metrics heartbeat, and the
//! [`Publisher`] queue in front of the NATS client that sends them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acs_events::{encode, Capacity, ReplicaEvent, ReplicaId, WorkerMetrics, SCHEMA_VERSION};
use async_nats::connection::State as ConnState;
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Worker;
use crate::clock::unix_now_ms;
use crate::metrics::Sampler;
use crate::replicas::{running, Replica};

impl Worker {
    pub(super) fn publish_event(&self, id: &ReplicaId, reason: String) {
        if let Some(r) = self.replicas.get(id) {
            self.publish_status(r, reason);
        }
    }

    pub(super) fn publish_status(&self, r: &Replica, reason: String) {
        let ev = ReplicaEvent {
            v: SCHEMA_VERSION,
            worker: self.config.worker_id.clone(),
            ts_ms: unix_now_ms(),
            replica: r.status(),
            reason,
        };
        self.publisher.send(
            self.config.subjects.replica_events(&self.config.worker_id),
            encode(&ev),
            false,
        );
    }

    pub(super) async fn publish_metrics(&mut self) {
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
            ts_ms: unix_now_ms(),
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
}

struct Outgoing {
    subject: String,
    payload: Bytes,
    /// Heartbeats are worthless once stale: dropped while NATS is disconnected.
    heartbeat: bool,
}

/// Queue in front of the NATS client; `send` never blocks.
pub(super) struct Publisher {
    tx: mpsc::Sender<Outgoing>,
    dropped: Arc<AtomicU64>,
}

impl Publisher {
    const QUEUE: usize = 1024;

    pub(super) fn start(client: async_nats::Client) -> (Self, tokio::task::JoinHandle<()>) {
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

    pub(super) fn send(&self, subject: String, payload: Vec<u8>, heartbeat: bool) {
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
