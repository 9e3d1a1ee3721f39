//! The fan-out behind `GET /api/v1/events`: every frame goes to each client's bounded queue,
//! and the events among them (decisions, replica/worker/leader/alarm events) are also kept in a
//! bounded ring, so a browser that reconnects with `Last-Event-ID` gets what it missed.
//!
//! Ids are `<boot>-<seq>`: `boot` is when this hub started (unix ms), `seq` counts the kept
//! events. Snapshots (metrics, status) are not kept and carry the id of the newest kept event,
//! so an id always says "everything up to here". An id from another boot, from the future, or
//! older than the ring is a gap: the stream says so (event `gap`) instead of replaying.
//! A client whose queue is full is dropped (its EventSource reconnects and resumes), logged and
//! counted: one slow tab never holds memory or delays the others.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Messages a client may have waiting before it counts as slow.
pub const CLIENT_QUEUE: usize = 256;
/// Events kept for replay after a reconnect.
pub const RING: usize = 1024;

/// One SSE event. `data` is one line (compact JSON is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: String,
    pub event: &'static str,
    pub data: String,
}

#[derive(Debug, Default)]
struct Inner {
    clients: Vec<(u64, mpsc::Sender<Arc<Frame>>)>,
    /// Kept events, oldest first, with their `seq`.
    ring: VecDeque<(u64, Arc<Frame>)>,
    seq: u64,
    /// The newest status snapshot, sent first to a new client.
    status: Option<Arc<Frame>>,
}

#[derive(Debug)]
pub struct Hub {
    boot: u64,
    inner: Mutex<Inner>,
    next_client: AtomicU64,
    /// Clients dropped for a full queue.
    pub dropped: AtomicU64,
    /// Messages from the bus that were not JSON (not forwarded).
    pub bad_payloads: AtomicU64,
    /// Reconnects whose `Last-Event-ID` could not be resumed.
    pub gaps: AtomicU64,
}

/// What a new client gets: its queue, and what to send before the live frames.
pub struct Subscription {
    pub client: u64,
    pub first: Vec<Arc<Frame>>,
    pub rx: mpsc::Receiver<Arc<Frame>>,
}

/// How a frame is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kept for replay, with a new id.
    Event,
    /// Live only (metrics).
    Snapshot,
    /// Live only, and the newest is sent to each new client.
    Status,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(crate::service::unix_ms())
    }
}

impl Hub {
    pub fn new(boot: u64) -> Self {
        Hub {
            boot,
            inner: Mutex::default(),
            next_client: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            bad_payloads: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.boot)
    }

    pub fn clients(&self) -> usize {
        self.inner.lock().unwrap().clients.len()
    }

    /// A new client, resuming after `last_event_id` when it sends one.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let client = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock().unwrap();
        let mut first = Vec::new();
        if let Some(last) = last_event_id {
            match self.resume(&inner, last) {
                Ok(missed) => first.extend(missed),
                Err(reason) => {
                    let total = self.gaps.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::info!(client, last, total, %reason, "dashboard client missed events");
                    let data = serde_json::json!({ "last_event_id": last, "reason": reason });
                    first.push(Arc::new(Frame {
                        id: self.id(inner.seq),
                        event: "gap",
                        data: data.to_string(),
                    }));
                    first.extend(inner.ring.iter().map(|(_, f)| f.clone()));
                }
            }
        }
        first.extend(inner.status.clone());
        // Registered under the same lock as the replay: nothing is missed or sent twice.
        inner.clients.push((client, tx));
        Subscription { client, first, rx }
    }

    /// The kept events after `last`, or why they cannot all be given.
    fn resume(&self, inner: &Inner, last: &str) -> Result<Vec<Arc<Frame>>, String> {
        let (boot, seq) = last
            .split_once('-')
            .and_then(|(b, s)| Some((b.parse::<u64>().ok()?, s.parse::<u64>().ok()?)))
            .ok_or_else(|| format!("{last:?} is not an event id of this monitor"))?;
        if boot != self.boot || seq > inner.seq {
            return Err("the monitor restarted since (or another one answers now); events in between are not replayed".into());
        }
        let oldest = inner.ring.front().map_or(inner.seq + 1, |(s, _)| *s);
        if seq + 1 < oldest {
            return Err(format!(
                "events {} to {} are too old to replay (the last {RING} are kept)",
                seq + 1,
                oldest - 1
            ));
        }
        Ok(inner
            .ring
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|(_, f)| f.clone())
            .collect())
    }

    /// Sends one frame to every client (keeping it as `kind` says); drops those that are full
    /// or gone.
    pub fn broadcast(&self, event: &'static str, data: String, kind: Kind) {
        let mut inner = self.inner.lock().unwrap();
        if kind == Kind::Event {
            inner.seq += 1;
        }
        let seq = inner.seq;
        let frame = Arc::new(Frame {
            id: self.id(seq),
            event,
            data,
        });
        match kind {
            Kind::Event => {
                if inner.ring.len() == RING {
                    inner.ring.pop_front();
                }
                inner.ring.push_back((seq, frame.clone()));
            }
            Kind::Status => inner.status = Some(frame.clone()),
            Kind::Snapshot => {}
        }
        inner
            .clients
            .retain(|(id, tx)| match tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        client = id,
                        queue = CLIENT_QUEUE,
                        total,
                        "dropped a slow dashboard client (queue full)"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::debug!(client = id, "dashboard client left");
                    false
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frames: &[Arc<Frame>]) -> Vec<(&str, &str, &str)> {
        frames
            .iter()
            .map(|f| (f.id.as_str(), f.event, f.data.as_str()))
            .collect()
    }

    #[tokio::test]
    async fn a_slow_client_is_dropped_and_counted_the_others_stay() {
        let hub = Hub::new(7);
        let mut fast = hub.subscribe(None).rx;
        let _slow = hub.subscribe(None).rx;
        for i in 0..CLIENT_QUEUE {
            hub.broadcast("x", i.to_string(), Kind::Snapshot);
            fast.recv().await.unwrap();
        }
        assert_eq!(hub.clients(), 2);
        hub.broadcast("x", "full".into(), Kind::Event);
        assert_eq!(hub.clients(), 1, "the slow client is gone");
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 1);
        let f = fast.recv().await.unwrap();
        assert_eq!(
            (f.id.as_str(), f.event, f.data.as_str()),
            ("7-1", "x", "full")
        );
        drop(fast);
        hub.broadcast("x", "gone".into(), Kind::Snapshot);
        assert_eq!(
            (hub.clients(), hub.dropped.load(Ordering::Relaxed)),
            (0, 1),
            "a closed client is not counted as slow"
        );
    }

    #[test]
    fn snapshots_carry_the_newest_event_id_and_status_comes_first() {
        let hub = Hub::new(7);
        hub.broadcast("worker_metrics", "{}".into(), Kind::Snapshot);
        hub.broadcast("decision", "{\"a\":1}".into(), Kind::Event);
        hub.broadcast("worker_metrics", "{}".into(), Kind::Snapshot);
        hub.broadcast("status", "{\"s\":1}".into(), Kind::Status);
        let mut s = hub.subscribe(None);
        assert_eq!(events(&s.first), [("7-1", "status", "{\"s\":1}")]);
        hub.broadcast("replica", "{}".into(), Kind::Event);
        assert_eq!(s.rx.try_recv().unwrap().id, "7-2");
    }

    #[test]
    fn a_reconnect_gets_what_it_missed_then_the_status() {
        let hub = Hub::new(7);
        for i in 1..=3 {
            hub.broadcast("decision", i.to_string(), Kind::Event);
        }
        hub.broadcast("status", "s".into(), Kind::Status);
        let s = hub.subscribe(Some("7-1"));
        assert_eq!(
            events(&s.first),
            [
                ("7-2", "decision", "2"),
                ("7-3", "decision", "3"),
                ("7-3", "status", "s")
            ]
        );
        assert_eq!(
            events(&hub.subscribe(Some("7-3")).first).len(),
            1,
            "only the status"
        );
        assert_eq!(hub.gaps.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_gap_too_old_or_from_another_boot_is_said_in_the_stream() {
        let hub = Hub::new(7);
        for i in 0..RING as u64 + 5 {
            hub.broadcast("decision", i.to_string(), Kind::Event);
        }
        let s = hub.subscribe(Some("7-2"));
        assert_eq!(s.first[0].event, "gap");
        assert!(
            s.first[0].data.contains("too old to replay"),
            "{}",
            s.first[0].data
        );
        assert_eq!(s.first.len(), 1 + RING, "the gap, then all that is kept");
        assert_eq!(s.first[1].id, "7-6");
        // The oldest kept one's predecessor still resumes without a gap.
        assert_eq!(hub.subscribe(Some("7-5")).first.len(), RING);
        for other in ["6-3", "7-99999", "nonsense"] {
            let s = hub.subscribe(Some(other));
            assert_eq!(s.first[0].event, "gap", "{other}");
        }
        assert_eq!(hub.gaps.load(Ordering::Relaxed), 4);
    }
}
