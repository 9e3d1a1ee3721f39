//! The NATS side: keep the `ACS_METRICS` stream, replay it into the [`Store`], hand closed
//! buckets to the ACS_ROLLUPS publisher ([`crate::durable`]), answer `acs.monitor.stats`.
//!
//! Sharing between monitors: every monitor must answer every query, so each one reads the whole
//! stream with its OWN ordered consumer (no acks, no shared cursor) and keeps the same tiers in
//! memory; a restart replays the stream (1 h raw by default) to rebuild them, and anything older
//! is read from ACS_ROLLUPS when a query asks for it. The stats subject is served in the queue group `acs-monitor`, so one request gets one
//! answer from whichever monitor NATS picks — correct because all hold the same data. A shared
//! durable work-queue consumer would split samples between monitors and make each answer wrong;
//! it is kept for later per-message work (alarms), not for the history.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{
    check_sender, decode, encode, MetricsAssembler, ProxyMetricsMsg, Rejection, StatsReply,
    StatsRequest, Subjects, WorkerMetrics,
};
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

use crate::query;
use crate::store::Store;

pub const STREAM: &str = "ACS_METRICS";
pub const QUEUE_GROUP: &str = "acs-monitor";

/// The one wall clock of every acs process, re-exported where the monitor's code and tests read it.
pub use acs_node::unix_ms;

/// Counters, shared with whoever wants to show them.
#[derive(Debug, Default)]
pub struct Counters {
    pub ingested: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
    pub queries: std::sync::atomic::AtomicU64,
    /// Rollup messages stored in ACS_ROLLUPS, refused there as duplicates (another monitor
    /// stored them first), not stored (publish or ack failed), dropped on a full queue, and
    /// left out after a replay because ACS_ROLLUPS already had them.
    pub rollups_published: std::sync::atomic::AtomicU64,
    pub rollups_duplicate: std::sync::atomic::AtomicU64,
    pub rollups_failed: std::sync::atomic::AtomicU64,
    pub rollups_dropped: std::sync::atomic::AtomicU64,
    pub rollups_skipped: std::sync::atomic::AtomicU64,
    /// Queries that read older buckets from ACS_ROLLUPS, and those reads that failed.
    pub rollup_fetches: std::sync::atomic::AtomicU64,
    pub rollup_fetch_errors: std::sync::atomic::AtomicU64,
    /// Split proxy reports (and stray parts) given up on before they were whole
    /// ([`acs_events::PartsDropped::total`]).
    pub proxy_parts_dropped: std::sync::atomic::AtomicU64,
}

/// Where older buckets are read from.
#[derive(Clone)]
pub struct Rollups {
    pub stream: stream::Stream,
    pub prefix: String,
}

#[derive(Clone)]
pub struct Shared {
    pub store: Arc<Mutex<Store>>,
    pub counters: Arc<Counters>,
    /// `None`: memory only (unit tests).
    pub rollups: Option<Rollups>,
}

/// Finds or creates a stream; if it exists but `same` says its config differs from `cfg`
/// (retention changed by a flag), updates it.
pub async fn ensure(
    js: &jetstream::Context,
    cfg: stream::Config,
    same: impl Fn(&stream::Config, &stream::Config) -> bool,
) -> anyhow::Result<stream::Stream> {
    let name = cfg.name.clone();
    let mut s = match js.get_or_create_stream(cfg.clone()).await {
        Ok(s) => s,
        // Another monitor may have created it between our look and our create.
        Err(e) => js
            .get_stream(&name)
            .await
            .map_err(|_| e)
            .with_context(|| format!("creating the {name} stream"))?,
    };
    let have = s
        .info()
        .await
        .with_context(|| format!("reading the {name} stream"))?
        .config
        .clone();
    if !same(&have, &cfg) {
        let mut want = have.clone();
        (
            want.subjects,
            want.max_age,
            want.max_messages_per_subject,
            want.duplicate_window,
        ) = (
            cfg.subjects,
            cfg.max_age,
            cfg.max_messages_per_subject,
            cfg.duplicate_window,
        );
        tracing::info!(stream = %name, max_age = ?want.max_age, "updating the stream's limits");
        js.update_stream(want)
            .await
            .with_context(|| format!("updating the {name} stream"))?;
        s = js
            .get_stream(&name)
            .await
            .with_context(|| format!("reading the {name} stream"))?;
    }
    Ok(s)
}

/// Creates (or finds) the metrics stream capturing `<prefix>.metrics.>`.
pub async fn ensure_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    max_age: Duration,
) -> anyhow::Result<stream::Stream> {
    let cfg = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![format!("{}.metrics.>", subjects.prefix())],
        max_age,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    ensure(js, cfg, |have, want| {
        have.max_age == want.max_age && have.subjects == want.subjects
    })
    .await
}

/// Where closed buckets go: the publisher's queue, and per tier the newest bucket already in
/// ACS_ROLLUPS (not published again).
pub struct Outbox {
    pub tx: tokio::sync::mpsc::Sender<Vec<crate::store::Closed>>,
    pub marks: Vec<Option<u64>>,
}

/// Samples stamped further ahead of this monitor's clock are refused: one would close every
/// open bucket at once.
const MAX_FUTURE_MS: u64 = 300_000;

/// Reads the stream from its start with an ordered consumer and folds every message in.
/// `caught_up` turns true once the replay has reached the end of the stream (a message with
/// nothing pending after it, or an empty stream): only then is this monitor's history complete.
pub async fn ingest(
    client: async_nats::Client,
    mut stream: stream::Stream,
    subjects: Subjects,
    shared: Shared,
    caught_up: tokio::sync::watch::Sender<bool>,
    outbox: Outbox,
) -> anyhow::Result<()> {
    if stream
        .info()
        .await
        .context("reading the ACS_METRICS stream state")?
        .state
        .messages
        == 0
    {
        caught_up.send_replace(true);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("creating the ordered consumer")?;
    let mut msgs = consumer
        .messages()
        .await
        .context("reading the metrics stream")?;
    let wk = subjects.worker_metrics_all();
    let wk = wk.trim_end_matches('*');
    let px = subjects.proxy_metrics_all();
    let px = px.trim_end_matches('*');
    // A proxy report too big for one message is stored as parts; the store takes it whole.
    let mut parts = MetricsAssembler::default();
    let started = std::time::Instant::now();
    while let Some(m) = msgs.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "metrics stream read failed; the ordered consumer resumes");
                continue;
            }
        };
        note_caught_up(&m, &caught_up, &shared);
        let subject = m.subject.as_str();
        let res = if subject.starts_with(wk) {
            decode::<WorkerMetrics>(&m.payload)
                .map_err(|e| (e.kind(), e.to_string()))
                .and_then(|w| {
                    check_sender(subject, w.worker.as_str())
                        .map(|_| w)
                        .map_err(|e| ("invalid", e))
                })
                .and_then(|w| not_future(w.ts_ms).map(|_| w))
                .map(|w| fold(&shared, &outbox, |s| s.ingest_worker(&w)))
        } else if subject.starts_with(px) {
            decode::<ProxyMetricsMsg>(&m.payload)
                .map_err(|e| (e.kind(), e.to_string()))
                .and_then(|p| check_sender(subject, p.metrics.proxy.as_str()).map(|_| p).map_err(|e| ("invalid", e)))
                .and_then(|p| not_future(p.metrics.ts_ms).map(|_| p))
                .map(|p| {
                    let whole = parts.push(p, started.elapsed().as_millis() as u64);
                    let dropped = parts.dropped().total();
                    let before = shared.counters.proxy_parts_dropped.swap(dropped, std::sync::atomic::Ordering::Relaxed);
                    if dropped > before {
                        tracing::warn!(subject, dropped = ?parts.dropped(), "incomplete split proxy report dropped");
                    }
                    if let Some(p) = whole {
                        fold(&shared, &outbox, |s| s.ingest_proxy(&p));
                    }
                })
        } else {
            Ok(())
        };
        match res {
            Ok(()) => {
                shared
                    .counters
                    .ingested
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err((kind, error)) => reject(&client, &subjects, &shared, subject, kind, error).await,
        }
    }
    Ok(())
}

/// Refuses a sample stamped more than [`MAX_FUTURE_MS`] ahead of this monitor's clock.
fn not_future(ts_ms: u64) -> Result<(), (&'static str, String)> {
    match ts_ms > unix_ms() + MAX_FUTURE_MS {
        true => Err((
            "invalid",
            format!("ts_ms {ts_ms} is more than {MAX_FUTURE_MS} ms ahead of this monitor's clock"),
        )),
        false => Ok(()),
    }
}

/// Turns `caught_up` true at the first message with nothing pending after it.
fn note_caught_up(
    m: &jetstream::Message,
    caught_up: &tokio::sync::watch::Sender<bool>,
    shared: &Shared,
) {
    if !*caught_up.borrow() && m.info().is_ok_and(|i| i.pending == 0) {
        tracing::info!(
            ingested = shared
                .counters
                .ingested
                .load(std::sync::atomic::Ordering::Relaxed),
            "replay caught up"
        );
        caught_up.send_replace(true);
    }
}

/// Folds one message into the store and queues what it closed.
fn fold(shared: &Shared, outbox: &Outbox, f: impl FnOnce(&mut Store)) {
    let closed = {
        let mut store = shared.store.lock().unwrap();
        f(&mut store);
        store.take_closed()
    };
    if !closed.is_empty() {
        crate::durable::enqueue(&outbox.tx, &outbox.marks, &shared.counters, closed);
    }
}

async fn reject(
    client: &async_nats::Client,
    subjects: &Subjects,
    shared: &Shared,
    subject: &str,
    kind: &str,
    error: String,
) {
    let total = shared
        .counters
        .rejected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    tracing::warn!(subject, kind, %error, total, "rejected a message");
    let r = Rejection::new("monitor", subject, kind, error, unix_ms(), total);
    if let Err(e) = client
        .publish(subjects.rejections("monitor"), encode(&r).into())
        .await
    {
        tracing::warn!(error = %e, "could not publish a rejection");
    }
}

/// Decodes and answers one stats request payload; bad input becomes an error reply.
pub async fn handle(shared: &Shared, payload: &[u8], now_ms: u64) -> StatsReply {
    shared
        .counters
        .queries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match decode::<StatsRequest>(payload) {
        Ok(req) => answer(shared, &req, now_ms).await,
        Err(e) => {
            shared
                .counters
                .rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            StatsReply::error(e.to_string())
        }
    }
}

/// Plans `req` against memory, reads the older buckets it needs from ACS_ROLLUPS (without
/// holding the store), and answers from both.
pub async fn answer(shared: &Shared, req: &StatsRequest, now_ms: u64) -> StatsReply {
    let plan = match query::plan(&shared.store.lock().unwrap(), req, now_ms) {
        Ok(p) => p,
        Err(e) => return StatsReply::error(e),
    };
    let durable = match (&plan.fetch, &shared.rollups) {
        (Some(f), Some(r)) => {
            shared
                .counters
                .rollup_fetches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match crate::durable::fetch(&r.stream, &r.prefix, f).await {
                Ok(v) => v,
                Err(e) => {
                    let total = shared
                        .counters
                        .rollup_fetch_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        + 1;
                    tracing::warn!(error = %e, total, "could not read older buckets");
                    return StatsReply::error(format!(
                        "reading older history from ACS_ROLLUPS failed: {e}"
                    ));
                }
            }
        }
        _ => Vec::new(),
    };
    query::answer_with(&shared.store.lock().unwrap(), req, &plan, &durable)
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
    caught_up
        .wait_for(|c| *c)
        .await
        .context("the replay stopped before catching up")?;
    let mut sub = client
        .queue_subscribe(subjects.monitor_stats(), QUEUE_GROUP.to_string())
        .await
        .context("subscribing to the stats subject")?;
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            reject(
                &client,
                &subjects,
                &shared,
                msg.subject.as_str(),
                "invalid",
                "stats request without a reply subject".into(),
            )
            .await;
            continue;
        };
        // Each request in its own task: one reading ACS_ROLLUPS does not hold up the others.
        let (client, shared) = (client.clone(), shared.clone());
        tokio::spawn(async move {
            let answer = handle(&shared, &msg.payload, unix_ms()).await;
            if let Err(e) = client.publish(reply, encode(&answer).into()).await {
                tracing::warn!(error = %e, "could not send a stats reply");
            }
        });
    }
    Ok(())
}
