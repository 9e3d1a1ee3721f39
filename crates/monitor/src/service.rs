//! The NATS side: keep the `ACS_METRICS` stream, replay it into the [`Store`], answer
//! `acs.monitor.stats`.
//!
//! Sharing between monitors: every monitor must answer every query, so each one reads the whole
//! stream with its OWN ordered consumer (no acks, no shared cursor) and keeps full rollups in
//! memory; a restart replays the stream (1 h raw by default), so nothing within its max_age is
//! lost. The stats subject is served in the queue group `acs-monitor`, so one request gets one
//! answer from whichever monitor NATS picks — correct because all hold the same data. A shared
//! durable work-queue consumer would split samples between monitors and make each answer wrong;
//! it is kept for later per-message work (alarms), not for the history.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acs_events::{
    check_sender, decode, encode, ProxyMetrics, Rejection, StatsReply, StatsRequest, Subjects, WorkerMetrics,
};
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

use crate::query;
use crate::store::Store;

pub const STREAM: &str = "ACS_METRICS";
pub const QUEUE_GROUP: &str = "acs-monitor";

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Counters, shared with whoever wants to show them.
#[derive(Debug, Default)]
pub struct Counters {
    pub ingested: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
    pub queries: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct Shared {
    pub store: Arc<Mutex<Store>>,
    pub counters: Arc<Counters>,
}

/// Creates (or finds) the metrics stream capturing `<prefix>.metrics.>`.
pub async fn ensure_stream(js: &jetstream::Context, subjects: &Subjects, max_age: Duration) -> anyhow::Result<stream::Stream> {
    let cfg = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![format!("{}.metrics.>", subjects.prefix())],
        max_age,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    js.get_or_create_stream(cfg).await.context("creating the ACS_METRICS stream")
}

/// Reads the stream from its start with an ordered consumer and folds every message in.
/// `caught_up` turns true once the replay has reached the end of the stream (a message with
/// nothing pending after it, or an empty stream): only then is this monitor's history complete.
pub async fn ingest(
    client: async_nats::Client,
    mut stream: stream::Stream,
    subjects: Subjects,
    shared: Shared,
    caught_up: tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<()> {
    if stream.info().await.context("reading the ACS_METRICS stream state")?.state.messages == 0 {
        caught_up.send_replace(true);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig { deliver_policy: consumer::DeliverPolicy::All, ..Default::default() })
        .await
        .context("creating the ordered consumer")?;
    let mut msgs = consumer.messages().await.context("reading the metrics stream")?;
    let wk = subjects.worker_metrics_all();
    let wk = wk.trim_end_matches('*');
    let px = subjects.proxy_metrics_all();
    let px = px.trim_end_matches('*');
    while let Some(m) = msgs.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "metrics stream read failed; the ordered consumer resumes");
                continue;
            }
        };
        if !*caught_up.borrow() && m.info().is_ok_and(|i| i.pending == 0) {
            tracing::info!(ingested = shared.counters.ingested.load(std::sync::atomic::Ordering::Relaxed), "replay caught up");
            caught_up.send_replace(true);
        }
        let subject = m.subject.as_str();
        let res = if subject.starts_with(wk) {
            decode::<WorkerMetrics>(&m.payload)
                .map_err(|e| (e.kind(), e.to_string()))
                .and_then(|w| check_sender(subject, w.worker.as_str()).map(|_| w).map_err(|e| ("invalid", e)))
                .map(|w| shared.store.lock().unwrap().ingest_worker(&w))
        } else if subject.starts_with(px) {
            decode::<ProxyMetrics>(&m.payload)
                .map_err(|e| (e.kind(), e.to_string()))
                .and_then(|p| check_sender(subject, p.proxy.as_str()).map(|_| p).map_err(|e| ("invalid", e)))
                .map(|p| shared.store.lock().unwrap().ingest_proxy(&p))
        } else {
            Ok(())
        };
        match res {
            Ok(()) => {
                shared.counters.ingested.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err((kind, error)) => reject(&client, &subjects, &shared, subject, kind, error).await,
        }
    }
    Ok(())
}

async fn reject(client: &async_nats::Client, subjects: &Subjects, shared: &Shared, subject: &str, kind: &str, error: String) {
    let total = shared.counters.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    tracing::warn!(subject, kind, %error, total, "rejected a message");
    let r = Rejection::new("monitor", subject, kind, error, unix_ms(), total);
    if let Err(e) = client.publish(subjects.rejections("monitor"), encode(&r).into()).await {
        tracing::warn!(error = %e, "could not publish a rejection");
    }
}

/// Decodes and answers one stats request payload; bad input becomes an error reply.
pub fn handle(shared: &Shared, payload: &[u8], now_ms: u64) -> StatsReply {
    shared.counters.queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match decode::<StatsRequest>(payload) {
        Ok(req) => query::answer(&shared.store.lock().unwrap(), &req, now_ms),
        Err(e) => {
            shared.counters.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            StatsReply::error(e.to_string())
        }
    }
}

/// Serves `acs.monitor.stats` until the subscription ends. Joins the queue group only once
/// `caught_up` is true, so no query reaches a monitor still replaying (it would answer with a
/// partial history).
pub async fn serve_stats(
    client: async_nats::Client,
    subjects: Subjects,
    shared: Shared,
    mut caught_up: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    caught_up.wait_for(|c| *c).await.context("the replay stopped before catching up")?;
    let mut sub = client
        .queue_subscribe(subjects.monitor_stats(), QUEUE_GROUP.to_string())
        .await
        .context("subscribing to the stats subject")?;
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            reject(&client, &subjects, &shared, msg.subject.as_str(), "invalid", "stats request without a reply subject".into()).await;
            continue;
        };
        let answer = handle(&shared, &msg.payload, unix_ms());
        if let Err(e) = client.publish(reply, encode(&answer).into()).await {
            tracing::warn!(error = %e, "could not send a stats reply");
        }
    }
    Ok(())
}
