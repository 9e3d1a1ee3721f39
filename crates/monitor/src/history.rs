//! Event history: the `ACS_EVENTS` stream keeps every `<prefix>.events.>` message (decisions,
//! replica and worker events, leader changes, alarm states, rejections) for `--events-max-age`
//! (7 days by default, at most [`MAX_BYTES`]), and `acs.monitor.history` / `GET /api/v1/history`
//! read it back by kind, id and window.
//!
//! JetStream stores what is published whether or not a monitor runs, so the history has no gap
//! across monitor restarts; every monitor answers from the same stream (the queue group
//! `acs-monitor` picks one). A query reads the window forward with its own ordered consumer,
//! filtered on the server to one kind (and id) where it names one, and keeps the newest `limit`.

use std::collections::VecDeque;
use std::time::Duration;

use acs_events::{
    decode, encode, HistoryEntry, HistoryReply, HistoryRequest, Subjects, DEFAULT_HISTORY,
};
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

use crate::service::unix_ms;

pub const STREAM: &str = "ACS_EVENTS";
/// Disk the stream may use; the oldest events go first past it. JetStream reserves this against
/// the server's `max_file_store` (1 GB in nats/compose.conf), so it stays well below.
pub const MAX_BYTES: i64 = 256 * 1024 * 1024;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default window: the last hour.
pub const DEFAULT_WINDOW_MS: u64 = 3_600_000;
/// Most matching events one query reads; past it the reply says `truncated`.
pub const MAX_SCAN: u64 = 200_000;
/// How long one query waits for the next message before it answers with an error.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Creates (or finds) the history stream.
pub async fn ensure_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    max_age: Duration,
) -> anyhow::Result<stream::Stream> {
    let cfg = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![subjects.events_all()],
        max_age,
        max_bytes: MAX_BYTES,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    // A changed --events-max-age is applied to the existing stream.
    crate::service::ensure(js, cfg, |have, want| {
        have.subjects == want.subjects && have.max_age == want.max_age
    })
    .await
}

/// The window a request asks for, `[from, to)` in unix ms.
pub fn window(req: &HistoryRequest, now_ms: u64) -> (u64, u64) {
    match (req.from_ms, req.to_ms, req.last_ms) {
        (Some(f), t, _) => (f, t.unwrap_or(now_ms + 1)),
        (None, _, Some(l)) => (now_ms.saturating_sub(l), now_ms + 1),
        (None, _, None) => (now_ms.saturating_sub(DEFAULT_WINDOW_MS), now_ms + 1),
    }
}

/// The server-side filter: one kind (and id), or every event.
pub fn filter(subjects: &Subjects, req: &HistoryRequest) -> String {
    let p = subjects.prefix();
    match (req.kind.as_deref(), req.id.as_deref()) {
        (Some("leader"), _) => subjects.leader(),
        (Some(k), Some(id)) => format!("{p}.events.{k}.{id}"),
        (Some(k), None) => format!("{p}.events.{k}.*"),
        (None, _) => subjects.events_all(),
    }
}

/// `decision` for `acs.events.decision.web`.
pub fn kind_of<'a>(subjects: &Subjects, subject: &'a str) -> &'a str {
    subject
        .strip_prefix(subjects.prefix())
        .and_then(|s| s.strip_prefix(".events."))
        .map(|s| s.split('.').next().unwrap_or(s))
        .unwrap_or("")
}

/// Payload bytes one reply carries at most, under NATS's 1 MB default with room for the rest.
pub const MAX_REPLY_BYTES: usize = 768 * 1024;

/// Keeps the newest `limit` entries pushed (and at most `max_bytes` of their payloads), oldest
/// first, and whether any were let go.
#[derive(Debug)]
pub struct Newest {
    limit: usize,
    max_bytes: usize,
    bytes: usize,
    entries: VecDeque<(usize, HistoryEntry)>,
    pub dropped: bool,
}

impl Newest {
    pub fn new(limit: u32, max_bytes: usize) -> Self {
        Newest {
            limit: limit.max(1) as usize,
            max_bytes,
            bytes: 0,
            entries: VecDeque::new(),
            dropped: false,
        }
    }
    /// `size`: the entry's payload bytes (what it adds to the reply, roughly).
    pub fn push(&mut self, size: usize, e: HistoryEntry) {
        self.entries.push_back((size, e));
        self.bytes += size;
        while self.entries.len() > self.limit
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            let (s, _) = self.entries.pop_front().expect("not empty");
            self.bytes -= s;
            self.dropped = true;
        }
    }
    pub fn into_vec(self) -> Vec<HistoryEntry> {
        self.entries.into_iter().map(|(_, e)| e).collect()
    }
}

/// Answers one request from the stream. Errors become an error reply naming the problem.
pub async fn query(
    js: &jetstream::Context,
    subjects: &Subjects,
    req: &HistoryRequest,
    now_ms: u64,
) -> HistoryReply {
    match read(js, subjects, req, now_ms).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "history query failed");
            HistoryReply::error(format!("reading the event history failed: {e:#}"))
        }
    }
}

async fn read(
    js: &jetstream::Context,
    subjects: &Subjects,
    req: &HistoryRequest,
    now_ms: u64,
) -> anyhow::Result<HistoryReply> {
    let (from, to) = window(req, now_ms);
    let mut reply = HistoryReply {
        v: 1,
        ok: true,
        error: None,
        from_ms: from,
        to_ms: to,
        events: Vec::new(),
        truncated: false,
    };
    let stream = js
        .get_stream(STREAM)
        .await
        .context("finding the ACS_EVENTS stream")?;
    let start = async_nats::datetime::from_nanos(from as i128 * 1_000_000)
        .map_err(|e| anyhow::anyhow!("from_ms {from} is out of range: {e}"))?;
    let mut consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter(subjects, req),
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: start },
            ..Default::default()
        })
        .await
        .context("creating a history reader")?;
    // Nothing matches from the start on: answer now instead of waiting for a message.
    if consumer
        .info()
        .await
        .context("reading the history reader's state")?
        .num_pending
        == 0
    {
        return Ok(reply);
    }
    let mut msgs = consumer.messages().await.context("reading the history")?;
    let mut newest = Newest::new(req.limit.unwrap_or(DEFAULT_HISTORY), MAX_REPLY_BYTES);
    let mut scanned = 0u64;
    loop {
        let m = match tokio::time::timeout(READ_TIMEOUT, msgs.next()).await {
            Err(_) => anyhow::bail!("no message from the history stream for {READ_TIMEOUT:?}"),
            Ok(None) => break,
            Ok(Some(m)) => m.context("reading the history")?,
        };
        let info = m
            .info()
            .map_err(|e| anyhow::anyhow!("a history message without JetStream info: {e}"))?;
        let ts_ms = (info.published.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if ts_ms >= to {
            break;
        }
        let size = m.payload.len() + m.subject.len() + 64;
        let data = serde_json::from_slice(&m.payload).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&m.payload).into_owned())
        });
        let subject = m.subject.to_string();
        let kind = kind_of(subjects, &subject).to_string();
        newest.push(
            size,
            HistoryEntry {
                seq,
                ts_ms,
                subject,
                kind,
                data,
            },
        );
        scanned += 1;
        if pending == 0 {
            break;
        }
        if scanned >= MAX_SCAN {
            tracing::warn!(scanned, "history query stopped at its scan limit");
            reply.truncated = true;
            break;
        }
    }
    reply.truncated |= newest.dropped;
    reply.events = newest.into_vec();
    Ok(reply)
}

/// Serves `acs.monitor.history` in the monitor queue group until the subscription ends.
pub async fn serve(
    client: async_nats::Client,
    subjects: Subjects,
    counters: std::sync::Arc<crate::Counters>,
) -> anyhow::Result<()> {
    let js = jetstream::new(client.clone());
    let mut sub = client
        .queue_subscribe(
            subjects.monitor_history(),
            crate::service::QUEUE_GROUP.to_string(),
        )
        .await
        .context("subscribing to the history subject")?;
    while let Some(msg) = sub.next().await {
        counters
            .queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(reply_to) = msg.reply.clone() else {
            counters
                .rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(subject = %msg.subject, "history request without a reply subject");
            continue;
        };
        let (client, js, subjects, counters) = (
            client.clone(),
            js.clone(),
            subjects.clone(),
            counters.clone(),
        );
        // A long read must not hold up the next request.
        tokio::spawn(async move {
            let answer = match decode::<HistoryRequest>(&msg.payload) {
                Ok(req) => query(&js, &subjects, &req, unix_ms()).await,
                Err(e) => {
                    counters
                        .rejected
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %e, "refused a history request");
                    HistoryReply::error(e.to_string())
                }
            };
            if let Err(e) = client.publish(reply_to, encode(&answer).into()).await {
                tracing::warn!(error = %e, "could not send a history reply");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> HistoryRequest {
        decode(json.as_bytes()).unwrap()
    }

    #[test]
    fn filters_name_one_kind_or_everything() {
        let s = Subjects::default();
        assert_eq!(
            filter(&s, &req(r#"{"kind":"decision","id":"web"}"#)),
            "acs.events.decision.web"
        );
        assert_eq!(
            filter(&s, &req(r#"{"kind":"alarm"}"#)),
            "acs.events.alarm.*"
        );
        assert_eq!(
            filter(&s, &req(r#"{"kind":"leader"}"#)),
            "acs.events.leader"
        );
        assert_eq!(filter(&s, &req("{}")), "acs.events.>");
        assert_eq!(kind_of(&s, "acs.events.decision.web"), "decision");
        assert_eq!(kind_of(&s, "acs.events.leader"), "leader");
    }

    #[test]
    fn windows_default_to_the_last_hour() {
        assert_eq!(
            window(&req("{}"), 10_000_000),
            (10_000_000 - 3_600_000, 10_000_001)
        );
        assert_eq!(window(&req(r#"{"last_ms":1000}"#), 5_000), (4_000, 5_001));
        assert_eq!(
            window(&req(r#"{"from_ms":10,"to_ms":20}"#), 5_000),
            (10, 20)
        );
    }

    #[test]
    fn newest_keeps_the_last_entries_in_order() {
        let e = |seq| HistoryEntry {
            seq,
            ts_ms: seq,
            subject: String::new(),
            kind: String::new(),
            data: serde_json::Value::Null,
        };
        let mut n = Newest::new(2, 1_000);
        (1..=3).for_each(|s| n.push(10, e(s)));
        assert!(n.dropped);
        assert_eq!(
            n.into_vec().iter().map(|e| e.seq).collect::<Vec<_>>(),
            [2, 3]
        );
        // The byte budget holds too, but never empties the reply.
        let mut n = Newest::new(10, 25);
        (1..=3).for_each(|s| n.push(10, e(s)));
        assert_eq!(
            n.into_vec().iter().map(|e| e.seq).collect::<Vec<_>>(),
            [2, 3]
        );
        let mut n = Newest::new(10, 5);
        n.push(10, e(1));
        assert_eq!(n.into_vec().len(), 1);
    }
}
