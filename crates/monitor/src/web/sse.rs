//! Live data for the dashboard: `GET /api/v1/events` (text/event-stream, axum's `Sse`).
//!
//! [`forward`] subscribes to what the pages show (worker and proxy metrics thinned to one per
//! second per sender, decisions, replica/worker/alarm events, leader elections and step-downs;
//! the leader's lease renewals, several a second, are left out) and [`poll_status`] asks the
//! brain for `acs.status` while anyone watches; both hand each message to the [`Hub`], which
//! gives every event an `id:` and replays what a reconnecting browser missed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use acs_events::{LeaderChange, LeaderEvent, Subjects};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};

pub use super::hub::{Frame, Hub, Kind, CLIENT_QUEUE};
use super::Web;
use crate::service::unix_ms;

/// Worker and proxy metrics: at most one per sender per this many ms.
pub const THIN_MS: u64 = 900;
pub const STATUS_EVERY: Duration = Duration::from_millis(1500);
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long a browser waits before it reconnects.
const RETRY: Duration = Duration::from_millis(2000);

/// The event name a subject is forwarded under, and whether it is thinned (a metrics snapshot)
/// or kept (an event).
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

/// Whether the bus message is worth a line in the feeds: not a leader's lease renewal.
fn wanted(event: &str, payload: &[u8]) -> bool {
    event != "leader"
        || acs_events::decode::<LeaderEvent>(payload)
            .map_or(true, |e| e.change != LeaderChange::Renewed)
}

/// Subscribes and forwards until the NATS client closes.
pub async fn forward(web: Arc<Web>) {
    let s = &web.subjects;
    let subjects = [
        s.worker_metrics_all(),
        s.proxy_metrics_all(),
        s.decisions_all(),
        s.replica_events_all(),
        format!("{}.events.worker.*", s.prefix()),
        s.leader(),
        s.alarm_events_all(),
    ];
    let mut subs = Vec::new();
    for subject in subjects {
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
        let Some((event, thin)) = kind_of(m.subject.as_str(), s) else {
            continue;
        };
        // Events are kept for a reconnect even while nobody watches; snapshots are not.
        if thin && web.hub.clients() == 0 {
            continue;
        }
        if !wanted(event, &m.payload) {
            continue;
        }
        if thin {
            let now = unix_ms();
            let last = last_sent.entry(m.subject.to_string()).or_insert(0);
            if now.saturating_sub(*last) < THIN_MS {
                continue;
            }
            *last = now;
        }
        match compact(&m.payload) {
            Some(json) => {
                let kind = if thin { Kind::Snapshot } else { Kind::Event };
                web.hub.broadcast(event, json, kind)
            }
            None => {
                let total = web.hub.bad_payloads.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(subject = %m.subject, total, "not JSON; not forwarded to the dashboard");
            }
        }
    }
}

/// Asks the brain for `acs.status` every [`STATUS_EVERY`] while a client watches, and forwards
/// it as `status` (the hub keeps the last for new clients) or `status_error`.
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
                web.hub.broadcast("status", json, Kind::Status);
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "dashboard status: the brain does not answer acs.status");
                    failing = true;
                }
                let msg = serde_json::json!({ "error": error, "ts_ms": unix_ms() }).to_string();
                web.hub.broadcast("status_error", msg, Kind::Snapshot);
            }
        }
    }
}

fn event(f: &Frame) -> Event {
    Event::default().id(&f.id).event(f.event).data(&f.data)
}

/// The stream for one client: what it missed (after `Last-Event-ID`) and the last status, then
/// the hub.
pub fn response(
    web: &Web,
    last_event_id: Option<&str>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let sub = web.hub.subscribe(last_event_id);
    tracing::debug!(
        client = sub.client,
        clients = web.hub.clients(),
        resume = last_event_id,
        "dashboard client connected"
    );
    let head = futures::stream::iter(
        std::iter::once(Event::default().retry(RETRY))
            .chain(sub.first.into_iter().map(|f| event(&f))),
    );
    let tail = futures::stream::unfold(sub.rx, |mut rx| async move {
        rx.recv().await.map(|f| (event(&f), rx))
    });
    Sse::new(head.chain(tail).map(Ok)).keep_alive(KeepAlive::new().interval(KEEPALIVE))
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
    fn leader_renewals_stay_out_elections_and_step_downs_come_in() {
        let leader = |change: LeaderChange| {
            acs_events::encode(&LeaderEvent {
                v: 1,
                term: 3,
                brain: "b1".into(),
                ts_ms: 1,
                change,
                lease_ms: 1500,
            })
        };
        assert!(!wanted("leader", &leader(LeaderChange::Renewed)));
        assert!(wanted("leader", &leader(LeaderChange::Elected)));
        assert!(wanted("leader", &leader(LeaderChange::SteppedDown)));
        assert!(wanted("decision", b"{}"));
    }

    #[tokio::test]
    async fn every_event_on_the_wire_has_an_id_and_a_reconnect_resumes() {
        use axum::response::IntoResponse;
        use http_body_util::BodyExt;
        let hub = Hub::new(7);
        hub.broadcast("decision", "{\"a\":1}".into(), Kind::Event);
        hub.broadcast("decision", "{\"a\":2}".into(), Kind::Event);
        let sub = hub.subscribe(Some("7-1"));
        let head = futures::stream::iter(sub.first.iter().map(|f| event(f)).collect::<Vec<_>>());
        let body = Sse::new(head.map(Ok::<_, Infallible>))
            .into_response()
            .into_body();
        let text = body.collect().await.unwrap().to_bytes();
        assert_eq!(&text[..], b"id: 7-2\nevent: decision\ndata: {\"a\":2}\n\n");
    }

    #[test]
    fn payloads_are_compacted() {
        assert_eq!(
            compact(b"{\n \"a\": [1, 2]\n}").as_deref(),
            Some("{\"a\":[1,2]}")
        );
        assert_eq!(compact(b"not json"), None);
    }
}
