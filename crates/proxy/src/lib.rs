//! `acs-proxy`: the Auto Cloud Scaler reverse proxy, a Pingora HTTP proxy whose routes come live
//! from NATS.
//!
//! # Layout
//!
//! - [`config`]: [`Config`] and [`Tuning`] (retries, ejection, timeouts), validated at start.
//! - [`routes`]: the pure [`RouteTable`] (`apply(&BackendUpdate) -> Outcome`, versions, gaps) and,
//!   in `routes/router.rs`, the compiled [`routes::Router`] (Host + longest path prefix, no
//!   allocation per lookup); their tests in `routes/tests.rs`.
//! - [`select`]: round-robin, least-connections and power-of-two-choices over plain candidates.
//! - [`backend`]: per-backend runtime state (in flight, failure streak, ejection, window) that
//!   survives table swaps, the `DrainWatch` a draining backend's last request wakes, and
//!   `mono_now_ms`, the monotonic clock ejection and selection read.
//! - [`stats`]: the fixed-bucket atomic latency histogram and per-window counters.
//! - [`snapshot`]: the immutable value behind the `ArcSwap` that the request path reads.
//! - [`service`]: the Pingora `ProxyHttp` implementation (routing, retries, 404/503 answers).
//! - [`metrics`]: builds `ProxyMetrics` from a snapshot every interval.
//! - [`pressure`]: asks for a report before the interval is up when a service's rate or
//!   in-flight count jumps (so a load step reaches the brain in ~0.1 s, not up to 1 s).
//! - [`prom`]: `GET /metrics` for Prometheus (`--metrics-listen`): running sums of those
//!   windows, and the live snapshot read at scrape time; with `/healthz` and `/readyz` there
//!   and on `--health-listen` (ready: NATS connected and a sync reply applied).
//! - [`sync`]: live updates. `sync/updater.rs`: the pure [`Updater`] (decode, check, apply,
//!   buffer out-of-order deltas, swap the snapshot); `sync/nats.rs`: the NATS task around it
//!   (subscribe, sync on start/gap/reconnect, reject bad input, publish metrics, in parts when
//!   one message cannot hold them, and publish `BackendDrained` the moment a draining backend
//!   has nothing in flight).
//! - [`run`]: wires it all into a Pingora `Server` and runs until `shutdown` resolves.
//!
//! Pingora logs through the `log` crate; the binary bridges it into `tracing`
//! (tracing-subscriber's `tracing-log` feature installs a `LogTracer`).

pub mod backend;
pub mod config;
pub mod metrics;
pub mod pressure;
pub mod prom;
pub mod routes;
pub mod select;
pub mod service;
pub mod snapshot;
pub mod stats;
pub mod sync;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

pub use config::{Config, ConfigError, Tuning};
pub use routes::{Outcome, RouteTable};
pub use service::{AcsProxy, Shared};
pub use sync::{NatsSettings, Updater};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Metrics(#[from] acs_node::metrics::MetricsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Seconds Pingora waits for in-flight requests after `shutdown` before stopping its runtimes.
const GRACE_SECS: u64 = 1;
const RUNTIME_SHUTDOWN_SECS: u64 = 5;

/// Runs the proxy until `shutdown` resolves, then shuts down gracefully (requests in flight get
/// `GRACE_SECS` seconds). Blocking: Pingora builds its own runtimes, so call this from `main`,
/// not from inside a tokio runtime. `shutdown` is polled on Pingora's main runtime.
pub fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    run_with_metrics(config, None, shutdown)
}

/// [`run`], also serving `GET /metrics` on `metrics` ([`prom`]).
pub fn run_with_metrics(
    config: Config,
    metrics: Option<acs_node::MetricsListen>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config.validate()?;
    // Pingora panics on a listener it cannot bind; check first for a clean error.
    std::net::TcpListener::bind(config.listen).map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;

    let shared = Arc::new(Shared::new(config.tuning));
    let conf = ServerConf {
        threads: config.threads,
        work_stealing: config.server.work_stealing,
        listener_tasks_per_fd: config.server.listener_tasks,
        upstream_keepalive_pool_size: config.server.upstream_keepalive_pool,
        grace_period_seconds: Some(GRACE_SECS),
        graceful_shutdown_timeout_seconds: Some(RUNTIME_SHUTDOWN_SECS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        AcsProxy::new(shared.clone()),
        "acs-proxy",
    );
    proxy.add_tcp(&config.listen.to_string());
    server.add_service(proxy);

    let nats = NatsTask {
        settings: NatsSettings {
            nats: config.nats.clone(),
            subjects: config.subjects.clone(),
            id: config.id.clone(),
            metrics_interval: config.metrics_interval,
            pressure: config.pressure,
        },
        shared,
    };
    let ready = nats.shared.ready.clone();
    if let Some(listen) = &metrics {
        let registry = prom::registry(nats.shared.clone(), &config.id);
        server.add_service(background_service(
            "metrics",
            prom::MetricsService::bind(listen, registry, ready.clone())?,
        ));
    }
    if let Some(addr) = config.health_listen {
        server.add_service(background_service(
            "health",
            prom::MetricsService::bind_health(addr, ready)?,
        ));
    }
    server.add_service(background_service("nats", nats));

    tracing::info!(listen = %config.listen, proxy = %config.id, nats = %config.nats.servers_display(),
        threads = config.threads, "acs-proxy starting");
    server.run(RunArgs {
        shutdown_signal: Box::new(FutureSignal::new(shutdown)),
    });
    tracing::info!("acs-proxy stopped");
    Ok(())
}

/// The NATS task as a Pingora background service (runs on its own single-thread runtime).
struct NatsTask {
    settings: NatsSettings,
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for NatsTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        sync::run(self.settings.clone(), self.shared.clone(), stop).await;
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Turns the caller's shutdown future into Pingora's shutdown signal.
struct FutureSignal(Mutex<Option<BoxFuture>>);

impl FutureSignal {
    fn new(f: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Mutex::new(Some(Box::pin(f))))
    }
}

#[async_trait]
impl ShutdownSignalWatch for FutureSignal {
    async fn recv(&self) -> ShutdownSignal {
        let f = self.0.lock().ok().and_then(|mut g| g.take());
        match f {
            Some(f) => f.await,
            None => std::future::pending::<()>().await,
        }
        ShutdownSignal::GracefulTerminate
    }
}
