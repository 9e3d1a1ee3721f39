//! `acs-monitor`: durable metrics history with rollups and a statistics API.
//!
//! # Layout
//! - [`rollup`]: buckets (count/sum/min/max/last + log histogram for p95) and tiers. Pure.
//! - [`store`]: one rollup series per (scope, id, metric), fed from decoded metrics. Pure.
//! - [`query`]: the query engine, `StatsRequest` → `StatsReply`. Pure; every API calls it.
//! - [`service`]: NATS: the `ACS_METRICS` stream, replay into the store, `acs.monitor.stats`.
//! - [`http`]: REST: `GET /api/v1/stats` with a bearer token, same engine
//!   (docs/monitor-openapi.yaml).

pub mod http;
pub mod query;
pub mod rollup;
pub mod service;
pub mod store;

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
    pub tiers: Vec<rollup::TierSpec>,
    /// Where the REST API listens, and who may ask; `None`: NATS only.
    pub http: Option<(std::net::SocketAddr, http::HttpAuth)>,
}

impl Config {
    pub fn new(nats: acs_node::NatsOptions) -> Self {
        Config {
            nats,
            subjects: Subjects::default(),
            stream_max_age: Duration::from_secs(3600),
            tiers: rollup::DEFAULT_TIERS.to_vec(),
            http: None,
        }
    }
}

/// Connects, replays the stream, serves stats until `shutdown` resolves. Returns the shared state
/// through `started` once serving, so tests can look at it.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Bind first: a taken port fails the start instead of a half-working monitor.
    let listener = match &config.http {
        Some((addr, _)) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?),
        None => None,
    };
    let client = config.nats.connect().await.context("connecting to NATS")?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = service::ensure_stream(&js, &config.subjects, config.stream_max_age).await?;
    let shared = Shared { store: Arc::new(Mutex::new(store::Store::new(&config.tiers))), counters: Arc::default() };
    let (caught_up, caught_up_rx) = tokio::sync::watch::channel(false);
    let ingest = tokio::spawn(service::ingest(client.clone(), stream, config.subjects.clone(), shared.clone(), caught_up));
    let serve = tokio::spawn(service::serve_stats(client.clone(), config.subjects.clone(), shared.clone(), caught_up_rx));
    let rest = listener.zip(config.http.clone()).map(|(l, (addr, auth))| {
        tracing::info!(%addr, ?auth, path = http::STATS_PATH, "http stats api listening");
        tokio::spawn(http::serve(l, auth, shared.clone()))
    });
    tracing::info!(subject = %config.subjects.monitor_stats(), "monitor replaying, then serving");
    shutdown.await;
    if let Some(rest) = rest {
        rest.abort();
    }
    ingest.abort();
    serve.abort();
    client.flush().await.ok();
    Ok(())
}
