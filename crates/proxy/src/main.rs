//! `acs-proxy`: parse flags, set up tracing (Pingora's `log` records included), run.

use std::net::SocketAddr;
use std::time::Duration;

use acs_events::ProxyId;
use acs_proxy::backend::EjectPolicy;
use acs_proxy::config::ServerTuning;
use acs_proxy::pressure::PressureSettings;
use acs_proxy::snapshot::PeerTimeouts;
use acs_proxy::{Config, Tuning};
use anyhow::Context;
use clap::Parser;

/// mimalloc instead of glibc malloc: Pingora allocates per request, and glibc's malloc/free were
/// about 8 % of the proxy's CPU under load (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Auto Cloud Scaler reverse proxy: routes HTTP to the backends the brain announces on NATS.
#[derive(Debug, Parser)]
#[command(name = "acs-proxy", version)]
struct Args {
    /// Address to accept HTTP on.
    #[arg(long, env = "ACS_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    nats: acs_node::NatsArgs,
    /// `--metrics-listen` (default off), `--metrics-token-file`: Prometheus `GET /metrics`.
    #[command(flatten)]
    metrics: acs_node::MetricsArgs,
    /// Subject prefix.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// This proxy's id (metrics go to `<prefix>.metrics.proxy.<id>`).
    #[arg(long, env = "ACS_PROXY_ID", default_value = "p1")]
    id: ProxyId,
    /// Traffic metrics interval.
    #[arg(long, env = "ACS_PROXY_METRICS_INTERVAL_MS", default_value_t = 1000)]
    metrics_interval_ms: u64,
    /// How often to look for a load jump that should be reported before the interval is up
    /// (0: only report every interval).
    #[arg(long, env = "ACS_PROXY_PRESSURE_CHECK_MS", default_value_t = 50)]
    pressure_check_ms: u64,
    /// A jump: the recent rate or in-flight count at least this many times the last report's ...
    #[arg(long, env = "ACS_PROXY_PRESSURE_FACTOR", default_value_t = 2.0)]
    pressure_factor: f64,
    /// ... and at least this many req/s above it.
    #[arg(long, env = "ACS_PROXY_PRESSURE_MIN_RPS", default_value_t = 20.0)]
    pressure_min_rps: f64,
    /// Proxy worker threads (default: number of CPUs).
    #[arg(long, env = "ACS_PROXY_THREADS")]
    threads: Option<usize>,
    /// Tries per request, each on a different backend (idempotent or body-less requests only).
    #[arg(long, env = "ACS_PROXY_MAX_TRIES", default_value_t = 3)]
    max_tries: u32,
    /// Consecutive failures that eject a backend (0 = never eject).
    #[arg(long, env = "ACS_PROXY_EJECT_AFTER", default_value_t = 3)]
    eject_after: u32,
    /// How long an ejected backend stays out of rotation.
    #[arg(long, env = "ACS_PROXY_EJECT_MS", default_value_t = 5000)]
    eject_ms: u64,
    /// Upstream connect timeout.
    #[arg(long, env = "ACS_PROXY_CONNECT_TIMEOUT_MS", default_value_t = 1000)]
    connect_timeout_ms: u64,
    /// Upstream read/write timeout.
    #[arg(long, env = "ACS_PROXY_UPSTREAM_TIMEOUT_MS", default_value_t = 60_000)]
    upstream_timeout_ms: u64,
    /// Tokio work stealing between the proxy threads (`false`: one runtime per thread).
    #[arg(long, env = "ACS_PROXY_WORK_STEALING", default_value_t = true, action = clap::ArgAction::Set)]
    work_stealing: bool,
    /// Accept tasks per listening socket.
    #[arg(long, env = "ACS_PROXY_LISTENER_TASKS", default_value_t = 1)]
    listener_tasks: usize,
    /// Idle upstream connections kept for reuse, over all backends.
    #[arg(long, env = "ACS_PROXY_UPSTREAM_KEEPALIVE_POOL", default_value_t = 128)]
    upstream_keepalive_pool: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    acs_node::init_tracing("info");

    let nats = args.nats.into_options(format!("acs-proxy {}", args.id))?;
    let mut config =
        Config::new(args.listen, acs_node::nats::DEFAULT_URL, args.id).with_prefix(&args.prefix)?;
    config.nats = nats;
    config.metrics_interval = Duration::from_millis(args.metrics_interval_ms);
    config.pressure = PressureSettings {
        check: Duration::from_millis(args.pressure_check_ms),
        factor: args.pressure_factor,
        min_rps: args.pressure_min_rps,
        ..PressureSettings::default()
    };
    if let Some(t) = args.threads {
        config.threads = t;
    }
    config.tuning = Tuning {
        max_tries: args.max_tries,
        eject: EjectPolicy {
            after: args.eject_after,
            duration: Duration::from_millis(args.eject_ms),
        },
        timeouts: PeerTimeouts {
            connect: Duration::from_millis(args.connect_timeout_ms),
            io: Duration::from_millis(args.upstream_timeout_ms),
            ..PeerTimeouts::default()
        },
    };
    config.server = ServerTuning {
        work_stealing: args.work_stealing,
        listener_tasks: args.listener_tasks,
        upstream_keepalive_pool: args.upstream_keepalive_pool,
    };
    let metrics = args.metrics.into_listen().context("--metrics-listen")?;
    acs_proxy::run_with_metrics(config, metrics, acs_node::shutdown_signal())
        .context("acs-proxy failed")
}
