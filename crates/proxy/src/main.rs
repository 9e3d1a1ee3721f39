//! `acs-proxy`: parse flags, set up tracing (Pingora's `log` records included), run.

use std::net::SocketAddr;
use std::time::Duration;

use acs_events::ProxyId;
use acs_node::duration::parse_duration;
use acs_node::legacy::Legacy;
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
    /// `--health-listen` (default off): `/healthz`, `/readyz`; `--healthcheck URL` probes one.
    #[command(flatten)]
    health: acs_node::HealthArgs,
    /// `--log-format text|json`.
    #[command(flatten)]
    log: acs_node::LogArgs,
    /// Subject prefix.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// This proxy's id (metrics go to `<prefix>.metrics.proxy.<id>`).
    #[arg(long, env = "ACS_PROXY_ID", default_value = "p1")]
    id: ProxyId,
    /// Traffic metrics interval.
    #[arg(long, env = "ACS_PROXY_METRICS_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    metrics_interval: Duration,
    /// How often to look for a load jump that should be reported before the interval is up
    /// (0: only report every interval).
    #[arg(long, env = "ACS_PROXY_PRESSURE_CHECK", default_value = "50ms", value_parser = parse_duration)]
    pressure_check: Duration,
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
    #[arg(long, env = "ACS_PROXY_EJECT", default_value = "5s", value_parser = parse_duration)]
    eject: Duration,
    /// Upstream connect timeout.
    #[arg(long, env = "ACS_PROXY_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Upstream read/write timeout.
    #[arg(long, env = "ACS_PROXY_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    upstream_timeout: Duration,
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

/// The integer flags in milliseconds the duration flags replaced, still read.
const LEGACY: &[Legacy] = &[
    Legacy::ms(
        "metrics-interval-ms",
        "metrics-interval",
        [
            "ACS_PROXY_METRICS_INTERVAL_MS",
            "ACS_PROXY_METRICS_INTERVAL",
        ],
    ),
    Legacy::ms(
        "pressure-check-ms",
        "pressure-check",
        ["ACS_PROXY_PRESSURE_CHECK_MS", "ACS_PROXY_PRESSURE_CHECK"],
    ),
    Legacy::ms(
        "eject-ms",
        "eject",
        ["ACS_PROXY_EJECT_MS", "ACS_PROXY_EJECT"],
    ),
    Legacy::ms(
        "connect-timeout-ms",
        "connect-timeout",
        ["ACS_PROXY_CONNECT_TIMEOUT_MS", "ACS_PROXY_CONNECT_TIMEOUT"],
    ),
    Legacy::ms(
        "upstream-timeout-ms",
        "upstream-timeout",
        [
            "ACS_PROXY_UPSTREAM_TIMEOUT_MS",
            "ACS_PROXY_UPSTREAM_TIMEOUT",
        ],
    ),
];

fn main() -> anyhow::Result<()> {
    let (args, deprecated) = acs_node::legacy::parse::<Args>(LEGACY);
    if let Some(url) = &args.health.healthcheck {
        return acs_node::health::check(url).map_err(anyhow::Error::msg);
    }
    args.log.init("info");
    acs_node::legacy::warn(&deprecated);

    let nats = args.nats.into_options(format!("acs-proxy {}", args.id))?;
    let mut config =
        Config::new(args.listen, acs_node::nats::DEFAULT_URL, args.id).with_prefix(&args.prefix)?;
    config.nats = nats;
    config.metrics_interval = args.metrics_interval;
    config.pressure = PressureSettings {
        check: args.pressure_check,
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
            duration: args.eject,
        },
        timeouts: PeerTimeouts {
            connect: args.connect_timeout,
            io: args.upstream_timeout,
            ..PeerTimeouts::default()
        },
    };
    config.health_listen = args.health.health_listen;
    config.server = ServerTuning {
        work_stealing: args.work_stealing,
        listener_tasks: args.listener_tasks,
        upstream_keepalive_pool: args.upstream_keepalive_pool,
    };
    let metrics = args.metrics.into_listen().context("--metrics-listen")?;
    acs_proxy::run_with_metrics(config, metrics, acs_node::shutdown_signal())
        .context("acs-proxy failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        acs_node::legacy::try_parse(LEGACY, "acs-proxy", args)
    }

    fn durations(a: &Args) -> [Duration; 5] {
        [
            a.metrics_interval,
            a.pressure_check,
            a.eject,
            a.connect_timeout,
            a.upstream_timeout,
        ]
    }

    #[test]
    fn old_millisecond_flags_and_new_duration_flags_agree() {
        let new = parse(&[
            "--metrics-interval=300ms",
            "--pressure-check=0",
            "--eject=2.5s",
            "--connect-timeout=300ms",
            "--upstream-timeout=1m",
        ]);
        let old = parse(&[
            "--metrics-interval-ms=300",
            "--pressure-check-ms=0",
            "--eject-ms=2500",
            "--connect-timeout-ms=300",
            "--upstream-timeout-ms=60000",
        ]);
        let (new, old) = (new.unwrap(), old.unwrap());
        assert_eq!(durations(&new), durations(&old));
        assert_eq!(new.eject, Duration::from_millis(2500));
        assert_eq!(
            parse(&[]).unwrap().pressure_check,
            Duration::from_millis(50)
        );
    }

    #[test]
    fn a_bad_duration_is_refused_naming_the_flag() {
        let e = parse(&["--upstream-timeout", "forever"]).err().unwrap();
        assert!(e.contains("--upstream-timeout"), "{e}");
    }
}
