//! `acs-monitor`: parse flags, set up tracing, run.

use acs_events::Subjects;
use acs_monitor::http::HttpAuth;
use acs_monitor::rollup::TierSpec;
use anyhow::Context;
use clap::Parser;

/// Auto Cloud Scaler monitor: keeps metrics history and answers statistics queries.
#[derive(Debug, Parser)]
#[command(name = "acs-monitor", version)]
struct Args {
    #[command(flatten)]
    nats: acs_node::NatsArgs,
    /// `--metrics-listen` (default off), `--metrics-token-file`: Prometheus `GET /metrics`.
    #[command(flatten)]
    metrics: acs_node::MetricsArgs,
    /// Subject prefix.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// How long the ACS_METRICS stream keeps raw messages (replayed on restart).
    #[arg(long, env = "ACS_MONITOR_STREAM_MAX_AGE_S", default_value_t = 3600)]
    stream_max_age_s: u64,
    /// Raw tier: how long 1 s samples are kept in memory.
    #[arg(long, env = "ACS_MONITOR_RAW_KEEP_S", default_value_t = 3600)]
    raw_keep_s: u64,
    /// Minute tier retention.
    #[arg(long, env = "ACS_MONITOR_MINUTE_KEEP_S", default_value_t = 86_400)]
    minute_keep_s: u64,
    /// Hour tier retention.
    #[arg(long, env = "ACS_MONITOR_HOUR_KEEP_S", default_value_t = 30 * 86_400)]
    hour_keep_s: u64,
    /// Where the REST stats API listens (`GET /api/v1/stats`).
    #[arg(long, env = "ACS_MONITOR_HTTP", default_value = "127.0.0.1:9470")]
    http: std::net::SocketAddr,
    /// No REST API at all: NATS only.
    #[arg(long, conflicts_with_all = ["token_file", "insecure_no_auth"])]
    no_http: bool,
    /// File holding the bearer token every REST request must carry (keep it mode 0600).
    #[arg(long, env = "ACS_MONITOR_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Serve the REST API without a token. Only for tests: anyone who reaches it reads the stats.
    #[arg(long, conflicts_with = "token_file")]
    insecure_no_auth: bool,
    /// Alarm rules and channels (TOML; see config/alarms.example.toml). Without it, no alarms.
    #[arg(long, env = "ACS_MONITOR_ALARMS")]
    alarms: Option<std::path::PathBuf>,
    /// Replicas of the alarm state's KV bucket `acs_monitor` (3 on a 3-node NATS cluster).
    #[arg(long, env = "ACS_MONITOR_KV_REPLICAS", default_value_t = 1)]
    kv_replicas: usize,
    /// Check the flags and the alarm rules, print what was found, and exit.
    #[arg(long)]
    check: bool,
}

/// The REST API's address and auth, or `None` with `--no-http`; no token is an error.
fn http(args: &Args) -> anyhow::Result<Option<(std::net::SocketAddr, HttpAuth)>> {
    if args.no_http {
        return Ok(None);
    }
    let auth = match (&args.token_file, args.insecure_no_auth) {
        (_, true) => HttpAuth::Insecure,
        (Some(path), false) => HttpAuth::Bearer(acs_node::metrics::read_token(path.clone())?),
        (None, false) => anyhow::bail!(
            "the REST API needs a bearer token: pass --token-file FILE (or ACS_MONITOR_TOKEN_FILE); \
             --no-http turns it off, --insecure-no-auth serves without (tests only)"
        ),
    };
    Ok(Some((args.http, auth)))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    acs_node::init_tracing("info");
    let http = http(&args)?;
    let alarms = match &args.alarms {
        Some(path) => {
            let rules = acs_monitor::alarm::rules::load(path)?;
            let mut cfg = acs_monitor::alarm::AlarmConfig::new(rules);
            cfg.replicas = args.kv_replicas;
            Some(cfg)
        }
        None => None,
    };
    if args.check {
        match &alarms {
            Some(a) => println!("ok: {} alarm rules, {} channels", a.rules.rules.len(), a.rules.channels.len()),
            None => println!("ok: no alarm rules (--alarms not given)"),
        }
        return Ok(());
    }
    let nats = args.nats.into_options("acs-monitor")?;
    let mut config = acs_monitor::Config::new(nats);
    config.subjects = Subjects::new(&args.prefix).map_err(anyhow::Error::msg)?;
    config.stream_max_age = std::time::Duration::from_secs(args.stream_max_age_s);
    config.tiers = vec![
        TierSpec { width_ms: 1_000, keep_ms: args.raw_keep_s * 1000 },
        TierSpec { width_ms: 60_000, keep_ms: args.minute_keep_s * 1000 },
        TierSpec { width_ms: 3_600_000, keep_ms: args.hour_keep_s * 1000 },
    ];
    config.http = http;
    config.metrics = args.metrics.clone().into_listen()?;
    config.alarms = alarms;
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    rt.block_on(acs_monitor::run(config, acs_node::shutdown_signal())).context("acs-monitor failed")
}
