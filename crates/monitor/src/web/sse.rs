//! Live data for the dashboard: `GET /api/v1/events` (text/event-stream).
//!
//! One [`Hub`] per monitor. [`forward`] subscribes to what the pages show (worker and proxy
//! metrics thinned to one per second per sender, decisions, replica/worker/leader events, alarm
//! events) and [`poll_status`] asks the brain for `acs.status` while anyone watches; both hand
//! each message to every client's bounded queue. A client whose queue is full is dropped (the
//! browser's EventSource reconnects), logged and counted: one slow tab never holds memory or
//! delays the others.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::Subjects;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{header, Response};
use tokio::sync::mpsc;

use super::Web;
use crate::http::Body;
use crate::service::unix_ms;

/// Messages a client may have waiting before it counts as slow.
pub const CLIENT_QUEUE: usize = 256;
/// Worker and proxy metrics: at most one per sender per this many ms.
pub const THIN_MS: u64 = 900;
pub const STATUS_EVERY: Duration = Duration::from_millis(1500);
const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
pub struct Hub {
    clients: Mutex<Vec<(u64, mpsc::Sender<Bytes>)>>,
    next: AtomicU64,
    /// Clients dropped for a full queue.
    pub dropped: AtomicU64,
    /// Messages from the bus that were not JSON (not forwarded).
    pub bad_payloads: AtomicU64,
}

/// One SSE frame. `data` must be one line (compact JSON is).
pub fn frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

impl Hub {
    pub fn subscribe(&self) -> (u64, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.clients.lock().unwrap().push((id, tx));
        (id, rx)
    }

    pub fn clients(&self) -> usize {
        self.clients.lock().unwrap().len()
    }

    /// Queues `bytes` for every client; drops those that are full or gone.
    pub fn broadcast(&self, bytes: Bytes) {
        self.clients
            .lock()
            .unwrap()
            .retain(|(id, tx)| match tx.try_send(bytes.clone()) {
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

/// The event name a subject is forwarded under, and whether it is thinned.
fn kind_of(subject: &str, s: &Subjects) -> Option<(&'static str, bool)> {
    let rest = subject.strip_prefix(s.prefix())?.strip_prefix('.')?;
    let (kind, _) = rest.rsplit_once('.').unwrap_or((rest, ""));
    Some(match (kind, rest) {
        ("metrics.worker", _) => ("worker_metrics", true),
        ("metrics.proxy", _) => ("proxy_metrics", true),
        ("events.decision", _) => ("decision", false),
        ("events.replica", _) => ("replica", false),
        ("events.worker", _) => ("worker", false),
        ("events.alarm", _) => ("alarm", false),
        (_, "events.leader") => ("leader", false),
        _ => return None,
    })
}

/// Bus payload → one-line JSON, or `None` when it is not JSON.
fn compact(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .map(|v| v.to_string())
}

/// Subscribes and forwards until the NATS client closes.
pub async fn forward(web: Arc<Web>) {
    let s = &web.subjects;
    let wanted = [
        s.worker_metrics_all(),
        s.proxy_metrics_all(),
        s.decisions_all(),
        s.replica_events_all(),
        format!("{}.events.worker.*", s.prefix()),
        s.leader(),
        s.alarm_events_all(),
    ];
    let mut subs = Vec::new();
    for subject in wanted {
        match web.nats.subscribe(subject.clone()).await {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                tracing::warn!(%subject, error = %e, "dashboard cannot subscribe; that data stays off the live pages")
            }
        }
    }
    let mut all = futures::stream::select_all(subs);
    let mut last_sent: HashMap<String, u64> = HashMap::new();
    while let Some(m) = all.next().await {
        if web.hub.clients() == 0 {
            continue;
        }
        let Some((event, thin)) = kind_of(m.subject.as_str(), s) else {
            continue;
        };
        if thin {
            let now = unix_ms();
            let last = last_sent.entry(m.subject.to_string()).or_insert(0);
            if now.saturating_sub(*last) < THIN_MS {
                continue;
            }
            *last = now;
        }
        match compact(&m.payload) {
            Some(json) => web.hub.broadcast(frame(event, &json)),
            None => {
                let total = web.hub.bad_payloads.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(subject = %m.subject, total, "not JSON; not forwarded to the dashboard");
            }
        }
    }
}

/// Asks the brain for `acs.status` every [`STATUS_EVERY`] while a client watches, keeps the
/// last answer for new clients and forwards it as `status` (or `status_error`).
pub async fn poll_status(web: Arc<Web>) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        if web.hub.clients() == 0 {
            continue;
        }
        match super::actions::status(&web).await {
            Ok(json) => {
                if failing {
                    tracing::info!("the brain answers acs.status again");
                    failing = false;
                }
                let f = frame("status", &json);
                *web.last_status.lock().unwrap() = Some(f.clone());
                web.hub.broadcast(f);
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "dashboard status: the brain does not answer acs.status");
                    failing = true;
                }
                let msg = serde_json::json!({ "error": error, "ts_ms": unix_ms() }).to_string();
                web.hub.broadcast(frame("status_error", &msg));
            }
        }
    }
}

/// The `text/event-stream` response for one client: the last status at once, then the hub.
pub fn response(web: &Web) -> Response<Body> {
    let (id, rx) = web.hub.subscribe();
    tracing::debug!(
        client = id,
        clients = web.hub.clients(),
        "dashboard client connected"
    );
    let mut first = vec![Bytes::from_static(b"retry: 2000\n\n")];
    if let Some(s) = web.last_status.lock().unwrap().clone() {
        first.push(s);
    }
    let head = futures::stream::iter(first);
    let tail = futures::stream::unfold(rx, |mut rx| async move {
        match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
            Ok(Some(b)) => Some((b, rx)),
            Ok(None) => None,
            Err(_) => Some((Bytes::from_static(b": keepalive\n\n"), rx)),
        }
    });
    let body = StreamBody::new(
        head.chain(tail)
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    let mut r = Response::new(body.boxed_unsync());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_map_to_events() {
        let s = Subjects::default();
        assert_eq!(
            kind_of("acs.metrics.worker.w1", &s),
            Some(("worker_metrics", true))
        );
        assert_eq!(
            kind_of("acs.metrics.proxy.p1", &s),
            Some(("proxy_metrics", true))
        );
        assert_eq!(
            kind_of("acs.events.decision.web", &s),
            Some(("decision", false))
        );
        assert_eq!(
            kind_of("acs.events.alarm.cpu_high", &s),
            Some(("alarm", false))
        );
        assert_eq!(kind_of("acs.events.leader", &s), Some(("leader", false)));
        assert_eq!(kind_of("acs.cmd.scale", &s), None);
        assert_eq!(kind_of("other.metrics.worker.w1", &s), None);
    }

    #[test]
    fn frames_are_one_event_each() {
        assert_eq!(
            &frame("status", "{\"a\":1}")[..],
            b"event: status\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            compact(b"{\n \"a\": [1, 2]\n}").as_deref(),
            Some("{\"a\":[1,2]}")
        );
        assert_eq!(compact(b"not json"), None);
    }

    #[tokio::test]
    async fn a_slow_client_is_dropped_and_counted_the_others_stay() {
        let hub = Hub::default();
        let (_, mut fast) = hub.subscribe();
        let (_, _slow) = hub.subscribe();
        for i in 0..CLIENT_QUEUE {
            hub.broadcast(frame("x", &i.to_string()));
            fast.recv().await.unwrap();
        }
        assert_eq!(hub.clients(), 2);
        hub.broadcast(frame("x", "full"));
        assert_eq!(hub.clients(), 1, "the slow client is gone");
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(&fast.recv().await.unwrap()[..], b"event: x\ndata: full\n\n");
        drop(fast);
        hub.broadcast(frame("x", "gone"));
        assert_eq!(
            (hub.clients(), hub.dropped.load(Ordering::Relaxed)),
            (0, 1),
            "a closed client is not counted as slow"
        );
    }
}
