//! What the run loop publishes (replica events) and the [`Publisher`] queue in front of the NATS
//! client that sends everything, the heartbeat's metrics included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acs_events::{encode, ReplicaEvent, ReplicaId, SCHEMA_VERSION};
use async_nats::connection::State as ConnState;
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Worker;
use crate::clock::unix_now_ms;
use crate::replicas::Replica;

impl Worker {
    pub(super) fn publish_event(&self, id: &ReplicaId, reason: String) {
        if let Some(r) = self.replicas.get(id) {
            self.publish_status(r, reason);
        }
    }

    pub(super) fn publish_status(&self, r: &Replica, reason: String) {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        self.share();
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
}

struct Outgoing {
    subject: String,
    payload: Bytes,
    /// Heartbeats are worthless once stale: dropped while NATS is disconnected.
    heartbeat: bool,
}

/// Queue in front of the NATS client; `send` never blocks.
#[derive(Clone)]
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
