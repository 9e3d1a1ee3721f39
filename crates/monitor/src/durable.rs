//! Durable rollups: closed buckets go to the JetStream stream `ACS_ROLLUPS`, and queries read
//! older buckets back from it.
//!
//! - Subject `<prefix>.rollup.<tier>.<scope>.<id>` (e.g. `acs.rollup.1m.worker.w1`), one
//!   message per closed bucket of an id carrying all its metrics ([`RollupMsg`], JSON through
//!   the events codec, `v` = 1; docs/EVENTS.md).
//! - Every monitor computes the same buckets (see [`crate::store`]) and publishes them with
//!   `Nats-Msg-Id: <tier>.<scope>.<id>.<start_ms>`, so JetStream keeps one copy
//!   ([`DUPLICATE_WINDOW`]). After a restart, the replay of ACS_METRICS closes buckets again:
//!   those not newer than the newest already stored for their tier ([`resume_marks`]) are not
//!   published again.
//! - Publishing runs in its own task fed by a bounded queue: ingestion never waits for it. A
//!   full queue drops the batch; failures and drops are logged and counted.
//! - Retention: `max_age` is the longest durable keep; `max_msgs_per_subject` the most buckets
//!   any tier keeps (a subject is one tier of one id), so a finer tier is trimmed by count to its
//!   own keep while a coarser one lives to `max_age`.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use acs_events::codec::Versioned;
use acs_events::{decode, encode, StatsScope, Validate, SCHEMA_VERSION};
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::query::Fetch;
use crate::rollup::{tier_name, Bucket, TierSpec};
use crate::service::Counters;
use crate::store::Closed;

pub const STREAM: &str = "ACS_ROLLUPS";
/// Covers two monitors closing the same bucket seconds apart, and a restarted monitor's replay
/// publishing buckets another monitor stored after the restart began.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(300);
/// Closed batches waiting for the publisher (one per watermark step: about one a minute).
const QUEUE: usize = 64;
/// Publishes awaiting their JetStream ack at once.
const IN_FLIGHT: usize = 256;
/// Publishes are paced at `PACE_CHUNK` per `PACE_EVERY` (10,000/s): a minute boundary closes a
/// bucket for every id at once, and a burst of them (times the number of monitors) would hold up
/// nats-server's JetStream API, which the queries reading ACS_ROLLUPS wait on.
const PACE_CHUNK: usize = 500;
const PACE_EVERY: Duration = Duration::from_millis(50);
/// Longest a query waits for its older buckets.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One closed bucket of one id: `metrics` maps a metric to `[count, sum, min, max, last, p95]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupMsg {
    pub v: u32,
    pub tier: String,
    pub scope: StatsScope,
    pub id: String,
    pub start_ms: u64,
    pub width_ms: u64,
    pub metrics: BTreeMap<String, (u32, f32, f32, f32, f32, f32)>,
}

impl Versioned for RollupMsg {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Validate for RollupMsg {
    fn validate(&self) -> Result<(), String> {
        if self.width_ms == 0 || !self.start_ms.is_multiple_of(self.width_ms) {
            return Err(format!(
                "start_ms {} is not a multiple of width_ms {}",
                self.start_ms, self.width_ms
            ));
        }
        for (m, &(count, sum, min, max, last, p95)) in &self.metrics {
            if count == 0 || ![sum, min, max, last, p95].iter().all(|x| x.is_finite()) || min > max
            {
                return Err(format!(
                    "metric {m:?}: not a bucket (count {count}, min {min}, max {max})"
                ));
            }
        }
        Ok(())
    }
}

impl RollupMsg {
    pub fn new(c: &Closed) -> Self {
        RollupMsg {
            v: SCHEMA_VERSION,
            tier: tier_name(c.width_ms),
            scope: c.scope,
            id: c.id.clone(),
            start_ms: c.start_ms,
            width_ms: c.width_ms,
            metrics: c
                .metrics
                .iter()
                .map(|(m, b)| (m.to_string(), (b.count, b.sum, b.min, b.max, b.last, b.p95)))
                .collect(),
        }
    }

    pub fn bucket(&self, metric: &str) -> Option<Bucket> {
        let &(count, sum, min, max, last, p95) = self.metrics.get(metric)?;
        Some(Bucket {
            count,
            sum,
            min,
            max,
            last,
            p95,
        })
    }

    pub fn msg_id(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.tier,
            self.scope.as_str(),
            self.id,
            self.start_ms
        )
    }
}

pub fn subject(prefix: &str, tier: &str, scope: StatsScope, id: &str) -> String {
    format!("{prefix}.rollup.{tier}.{}.{id}", scope.as_str())
}

/// Whether `id` can be one subject token.
fn token_ok(id: &str) -> bool {
    !id.is_empty()
        && !id
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

/// Creates ACS_ROLLUPS, or brings an existing one's limits in line with `tiers`.
pub async fn ensure_stream(
    js: &jetstream::Context,
    prefix: &str,
    tiers: &[TierSpec],
) -> anyhow::Result<stream::Stream> {
    let rollups = &tiers[1.min(tiers.len())..];
    let max_age = Duration::from_millis(
        rollups
            .iter()
            .map(|t| t.durable_ms)
            .max()
            .unwrap_or(3_600_000),
    );
    let per_subject = rollups
        .iter()
        .map(|t| t.durable_ms.div_ceil(t.width_ms))
        .max()
        .unwrap_or(1) as i64;
    let cfg = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![format!("{prefix}.rollup.>")],
        max_age,
        max_messages_per_subject: per_subject,
        duplicate_window: DUPLICATE_WINDOW.min(max_age),
        storage: stream::StorageType::File,
        ..Default::default()
    };
    crate::service::ensure(js, cfg, |have, want| {
        have.max_age == want.max_age
            && have.max_messages_per_subject == want.max_messages_per_subject
            && have.duplicate_window == want.duplicate_window
            && have.subjects == want.subjects
    })
    .await
}

/// For each tier (index as in `tiers`; the raw tier is always `None`), the start of the newest
/// bucket already stored, read with an ordered consumer delivering the last message of
/// `<prefix>.rollup.<tier>.>`.
pub async fn resume_marks(
    stream: &stream::Stream,
    prefix: &str,
    tiers: &[TierSpec],
) -> anyhow::Result<Vec<Option<u64>>> {
    let mut marks = vec![None];
    for t in &tiers[1..] {
        let filter = format!("{prefix}.rollup.{}.>", tier_name(t.width_ms));
        let c = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy: consumer::DeliverPolicy::Last,
                ..Default::default()
            })
            .await
            .with_context(|| format!("reading the newest bucket on {filter}"))?;
        if c.cached_info().num_pending == 0 {
            marks.push(None);
            continue;
        }
        let mut msgs = c.messages().await.context("reading ACS_ROLLUPS")?;
        let first = tokio::time::timeout(Duration::from_secs(5), msgs.next())
            .await
            .ok()
            .flatten();
        let start = match first {
            Some(Ok(m)) => decode::<RollupMsg>(&m.payload).ok().map(|r| r.start_ms),
            _ => None,
        };
        marks.push(start);
    }
    Ok(marks)
}

/// Starts the publisher; batches go in through the returned queue (`try_send`, never waiting).
pub fn spawn_publisher(
    js: jetstream::Context,
    prefix: String,
    counters: Arc<Counters>,
) -> tokio::sync::mpsc::Sender<Vec<Closed>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Closed>>(QUEUE);
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            publish_batch(&js, &prefix, &counters, batch).await;
        }
    });
    tx
}

async fn publish_batch(
    js: &jetstream::Context,
    prefix: &str,
    counters: &Counters,
    batch: Vec<Closed>,
) {
    let (mut failed, mut first_error) = (0u64, None::<String>);
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut pace = tokio::time::interval(PACE_EVERY);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for (i, c) in batch.iter().enumerate() {
        if i % PACE_CHUNK == 0 {
            pace.tick().await;
        }
        if !token_ok(&c.id) {
            failed += 1;
            first_error.get_or_insert_with(|| format!("id {:?} cannot be a subject token", c.id));
            continue;
        }
        let msg = RollupMsg::new(c);
        let publish = jetstream::message::PublishMessage::build()
            .payload(encode(&msg).into())
            .message_id(msg.msg_id());
        match js
            .send_publish(subject(prefix, &msg.tier, c.scope, &c.id), publish)
            .await
        {
            Ok(ack) => acks.push(ack.into_future()),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
        while acks.len() >= IN_FLIGHT {
            ack_one(acks.next().await, counters, &mut failed, &mut first_error);
        }
    }
    while let Some(a) = acks.next().await {
        ack_one(Some(a), counters, &mut failed, &mut first_error);
    }
    if failed > 0 {
        let total = counters.rollups_failed.fetch_add(failed, Ordering::Relaxed) + failed;
        tracing::warn!(
            failed,
            total,
            of = batch.len(),
            error = first_error.unwrap_or_default(),
            "rollups not stored in ACS_ROLLUPS"
        );
    }
}

fn ack_one(
    a: Option<Result<jetstream::publish::PublishAck, jetstream::context::PublishError>>,
    counters: &Counters,
    failed: &mut u64,
    first_error: &mut Option<String>,
) {
    match a {
        Some(Ok(ack)) if ack.duplicate => {
            counters.rollups_duplicate.fetch_add(1, Ordering::Relaxed);
        }
        Some(Ok(_)) => {
            counters.rollups_published.fetch_add(1, Ordering::Relaxed);
        }
        Some(Err(e)) => {
            *failed += 1;
            first_error.get_or_insert_with(|| e.to_string());
        }
        None => {}
    }
}

/// Hands `closed` to the publisher, leaving out buckets not newer than `marks` (already stored).
/// Never waits: a full queue drops the batch, logged and counted.
pub fn enqueue(
    tx: &tokio::sync::mpsc::Sender<Vec<Closed>>,
    marks: &[Option<u64>],
    counters: &Counters,
    mut closed: Vec<Closed>,
) {
    let before = closed.len();
    closed.retain(|c| {
        marks
            .get(c.tier)
            .copied()
            .flatten()
            .is_none_or(|m| c.start_ms > m)
    });
    counters
        .rollups_skipped
        .fetch_add((before - closed.len()) as u64, Ordering::Relaxed);
    if closed.is_empty() {
        return;
    }
    let n = closed.len() as u64;
    if let Err(e) = tx.try_send(closed) {
        let total = counters.rollups_dropped.fetch_add(n, Ordering::Relaxed) + n;
        tracing::error!(dropped = n, total, error = %e, "rollup publish queue full or closed: buckets not stored durably");
    }
}

/// Reads the buckets `f` asks for: an ordered consumer on the one subject, from the window's
/// start (a bucket is published after it ends, so after its start), until a bucket at or past
/// `f.until_ms` or the end of the stream.
pub async fn fetch(
    stream: &stream::Stream,
    prefix: &str,
    f: &Fetch,
) -> Result<Vec<(u64, Bucket)>, String> {
    let start_time = async_nats::datetime::from_nanos(f.from_ms as i128 * 1_000_000)
        .map_err(|e| e.to_string())?;
    let c = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject(prefix, &f.tier, f.scope, &f.id),
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating a consumer on ACS_ROLLUPS: {e}"))?;
    // Ephemeral consumers would linger 30 s each at the query rate: delete it once done, off the
    // query's path.
    let (name, s) = (c.cached_info().name.clone(), stream.clone());
    let _cleanup = Cleanup(Some(Box::pin(async move {
        let _ = s.delete_consumer(&name).await;
    })));
    let mut out = Vec::new();
    if c.cached_info().num_pending == 0 {
        return Ok(out);
    }
    let mut msgs = c
        .messages()
        .await
        .map_err(|e| format!("reading ACS_ROLLUPS: {e}"))?;
    let read = async {
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| format!("reading ACS_ROLLUPS: {e}"))?;
            let pending = m.info().map(|i| i.pending).unwrap_or(0);
            match decode::<RollupMsg>(&m.payload) {
                Ok(r) if r.start_ms >= f.until_ms => break,
                Ok(r) if r.start_ms >= f.from_ms => {
                    out.extend(r.bucket(&f.metric).map(|b| (r.start_ms, b)))
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(subject = %m.subject, error = %e, "skipped a bad message in ACS_ROLLUPS")
                }
            }
            if pending == 0 {
                break;
            }
        }
        Ok::<_, String>(())
    };
    tokio::time::timeout(FETCH_TIMEOUT, read)
        .await
        .map_err(|_| format!("ACS_ROLLUPS did not answer within {FETCH_TIMEOUT:?}"))??;
    Ok(out)
}

/// Runs its future in a task when dropped, whichever way [`fetch`] returns.
struct Cleanup(Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            tokio::spawn(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollup_message_round_trips_and_bad_ones_are_refused() {
        let b = Bucket {
            count: 60,
            sum: 270.0,
            min: 0.0,
            max: 9.0,
            last: 9.0,
            p95: 9.0,
        };
        let c = Closed {
            tier: 1,
            width_ms: 60_000,
            start_ms: 120_000,
            scope: StatsScope::Worker,
            id: "w1".into(),
            metrics: vec![("cpu", b)],
        };
        let m = RollupMsg::new(&c);
        assert_eq!(m.msg_id(), "1m.worker.w1.120000");
        assert_eq!(
            subject("acs", &m.tier, m.scope, &m.id),
            "acs.rollup.1m.worker.w1"
        );
        let json = String::from_utf8(encode(&m)).unwrap();
        assert!(
            json.contains(r#""cpu":[60,270.0,0.0,9.0,9.0,9.0]"#),
            "{json}"
        );
        let back: RollupMsg = decode(json.as_bytes()).unwrap();
        assert_eq!(back.bucket("cpu"), Some(b));
        let bad = json.replace("120000", "120001");
        assert!(decode::<RollupMsg>(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("not a multiple"));
        let bad = json.replace("[60,", "[0,");
        assert!(decode::<RollupMsg>(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("not a bucket"));
        assert!(!token_ok("a.b") && !token_ok("") && token_ok("w1-web-3"));
    }

    #[test]
    fn skipped_and_dropped_batches_are_counted() {
        let counters = Counters::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let c = |start_ms| Closed {
            tier: 1,
            width_ms: 60_000,
            start_ms,
            scope: StatsScope::Worker,
            id: "w1".into(),
            metrics: vec![],
        };
        let marks = [None, Some(120_000)];
        enqueue(
            &tx,
            &marks,
            &counters,
            vec![c(60_000), c(120_000), c(180_000)],
        );
        assert_eq!(counters.rollups_skipped.load(Ordering::Relaxed), 2);
        enqueue(&tx, &marks, &counters, vec![c(240_000)]);
        assert_eq!(
            counters.rollups_dropped.load(Ordering::Relaxed),
            1,
            "the queue holds one batch"
        );
        assert_eq!(rx.try_recv().unwrap().len(), 1);
    }
}
