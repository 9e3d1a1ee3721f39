//! `acs-monitor`: durable metrics history with rollups and a statistics API.
//!
//! # Layout
//! - [`rollup`]: the tiers of one metric: a fixed ring of raw 1 s slots, and rollups of 24-byte
//!   buckets (count/sum/min/max/last/p95), each built from the finer tier when it closes. Pure.
//! - [`store`]: one series per (scope, id, metric), fed from decoded metrics; closes buckets on
//!   a watermark and hands them out for publishing; forgets what is past each memory keep. Pure.
//! - [`query`]: the query engine: plan (tier, older buckets needed), then `StatsReply` from
//!   memory plus those buckets. Pure; every API calls it.
//! - [`durable`]: the `ACS_ROLLUPS` stream: closed buckets published (deduplicated across
//!   monitors by `Nats-Msg-Id`) and read back for windows older than memory.
//! - [`service`]: NATS: the `ACS_METRICS` stream, replay into the store, `acs.monitor.stats`.
//! - [`http`]: HTTP on axum: the route table, middleware for the bearer token, session and CSRF,
//!   errors as RFC 9457 problem JSON; `GET /api/v1/stats` (same engine), history, alarms, the
//!   dashboard's routes, public `/healthz` and `/readyz` (docs/monitor-openapi.yaml).
//! - [`alarm`]: alarm rules (`--alarms FILE`) evaluated every second against the store; events on
//!   `acs.events.alarm.<rule>`, webhook/Slack/e-mail notices, state and lease in KV `acs_monitor`.
//! - [`history`]: the `ACS_EVENTS` stream of every `acs.events.>` message, read back by kind and
//!   window on `acs.monitor.history` and `GET /api/v1/history`.
//! - [`web`]: the live web dashboard: embedded pages (with ETags), login sessions, SSE from the
//!   bus with event ids and replay on reconnect, actions.
//! - [`prom`]: Prometheus `GET /metrics` (`--metrics-listen`), read at scrape time.

pub mod alarm;
pub mod durable;
pub mod history;
pub mod http;
pub mod prom;
pub mod query;
pub mod rollup;
pub mod service;
pub mod store;
pub mod web;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::Subjects;
use anyhow::Context;

pub use service::{Counters, Shared};

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats: acs_node::NatsOptions,
    pub subjects: Subjects,
    /// Stream retention (raw history replayed after a restart).
    pub stream_max_age: Duration,
    /// Raw tier first, then the rollups; checked by [`rollup::validate`] at start.
    pub tiers: Vec<rollup::TierSpec>,
    /// How long a bucket waits for late samples before it closes.
    pub grace_ms: u64,
    /// Where the REST API listens, and who may ask; `None`: NATS only.
    pub http: Option<(std::net::SocketAddr, http::HttpAuth)>,
    /// Alarm rules and engine settings (`--alarms FILE`); `None`: no alarms.
    pub alarms: Option<alarm::AlarmConfig>,
    /// Prometheus `GET /metrics` (`--metrics-listen`); `None`: off.
    pub metrics: Option<acs_node::metrics::MetricsListen>,
    /// How long the event history (`ACS_EVENTS`) keeps events.
    pub events_max_age: Duration,
}

impl Config {
    pub fn new(nats: acs_node::NatsOptions) -> Self {
        Config {
            nats,
            subjects: Subjects::default(),
            stream_max_age: Duration::from_secs(3600),
            tiers: rollup::DEFAULT_TIERS.to_vec(),
            grace_ms: store::DEFAULT_GRACE_MS,
            http: None,
            alarms: None,
            metrics: None,
            events_max_age: history::DEFAULT_MAX_AGE,
        }
    }
}

/// Connects, replays the stream, serves stats until `shutdown` resolves. Returns the shared state
/// through `started` once serving, so tests can look at it.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    rollup::validate(&config.tiers, config.grace_ms)
        .map_err(|e| anyhow::anyhow!("bad tiers: {e}"))?;
    // Bind first: a taken port fails the start instead of a half-working monitor.
    let listener = match &config.http {
        Some((addr, _)) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?,
        ),
        None => None,
    };
    let client = config.nats.connect().await.context("connecting to NATS")?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = service::ensure_stream(&js, &config.subjects, config.stream_max_age).await?;
    history::ensure_stream(&js, &config.subjects, config.events_max_age).await?;
    let prefix = config.subjects.prefix().to_string();
    let rollups = durable::ensure_stream(&js, &prefix, &config.tiers).await?;
    let marks = durable::resume_marks(&rollups, &prefix, &config.tiers).await?;
    let store = store::Store::with_grace(&config.tiers, config.grace_ms);
    let shared = Shared {
        store: Arc::new(Mutex::new(store)),
        counters: Arc::default(),
        rollups: Some(service::Rollups {
            stream: rollups,
            prefix: prefix.clone(),
        }),
    };
    let outbox = service::Outbox {
        tx: durable::spawn_publisher(js.clone(), prefix, shared.counters.clone()),
        marks,
    };
    let (caught_up, caught_up_rx) = tokio::sync::watch::channel(false);
    let ingest = tokio::spawn(service::ingest(
        client.clone(),
        stream,
        config.subjects.clone(),
        shared.clone(),
        caught_up,
        outbox,
    ));
    let alarm_caught_up = caught_up_rx.clone();
    let history = tokio::spawn(history::serve(
        client.clone(),
        config.subjects.clone(),
        shared.counters.clone(),
    ));
    let serve = tokio::spawn(service::serve_stats(
        client.clone(),
        config.subjects.clone(),
        shared.clone(),
        caught_up_rx,
    ));
    let (alarm_stop, alarm_stop_rx) = tokio::sync::watch::channel(false);
    let (alarms, alarm_counters) = spawn_alarms(
        config.alarms.clone(),
        &client,
        &config.subjects,
        &shared.store,
        alarm_caught_up,
        alarm_stop_rx,
    )?;
    let rest = listener.zip(config.http.clone()).map(|(l, (addr, auth))| {
        tracing::info!(%addr, ?auth, path = http::STATS_PATH, "http stats api and dashboard listening");
        let web = Arc::new(web::Web::new(auth, client.clone(), config.subjects.clone()));
        let live = [tokio::spawn(web::sse::forward(web.clone())), tokio::spawn(web::sse::poll_status(web.clone()))];
        (tokio::spawn(http::serve(l, shared.clone(), web)), live)
    });
    let metrics = match &config.metrics {
        Some(listen) => Some(
            acs_node::metrics::spawn(listen, prom::registry(shared.clone(), alarm_counters))
                .await?
                .1,
        ),
        None => None,
    };
    tracing::info!(subject = %config.subjects.monitor_stats(), "monitor replaying, then serving");
    shutdown.await;
    // The alarm task releases its lease on the way out, so a standby takes over at once.
    alarm_stop.send_replace(true);
    if let Some(a) = alarms {
        let _ = tokio::time::timeout(Duration::from_secs(3), a).await;
    }
    if let Some((rest, live)) = rest {
        rest.abort();
        live.iter().for_each(|t| t.abort());
    }
    if let Some(m) = metrics {
        m.abort();
    }
    ingest.abort();
    serve.abort();
    history.abort();
    client.flush().await.ok();
    Ok(())
}

/// The alarm task's counters and its notifier's, for the metrics endpoint.
type AlarmMetrics = Option<(
    Arc<alarm::AlarmCounters>,
    Arc<alarm::notify::NotifyCounters>,
)>;

/// Starts the alarm task when `--alarms` is given: its notifier, counters and wiring.
fn spawn_alarms(
    config: Option<alarm::AlarmConfig>,
    client: &async_nats::Client,
    subjects: &Subjects,
    store: &Arc<Mutex<store::Store>>,
    caught_up: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Option<tokio::task::JoinHandle<()>>, AlarmMetrics)> {
    let mut alarm_counters = None;
    let alarms = match config {
        Some(cfg) => {
            let notifier = alarm::notify::Notifier::start(&cfg.rules.channels, cfg.retry)?;
            let counters = Arc::new(alarm::AlarmCounters::default());
            alarm_counters = Some((counters.clone(), notifier.counters.clone()));
            let wiring = alarm::task::Wiring {
                client: client.clone(),
                subjects: subjects.clone(),
                store: store.clone(),
                caught_up,
                stop,
            };
            Some(tokio::spawn(alarm::task::run(
                wiring, cfg, notifier, counters,
            )))
        }
        None => None,
    };
    Ok((alarms, alarm_counters))
}
