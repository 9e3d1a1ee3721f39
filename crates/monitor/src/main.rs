//! `acs-monitor`: parse flags, set up tracing, run.

use acs_events::Subjects;
use acs_monitor::rollup::TierSpec;
use anyhow::Context;
use clap::Parser;

/// Auto Cloud Scaler monitor: keeps metrics history and answers statistics queries.
#[derive(Debug, Parser)]
#[command(name = "acs-monitor", version)]
struct Args {
    #[command(flatten)]
    nats: acs_node::NatsArgs,
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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    acs_node::init_tracing("info");
    let nats = args.nats.into_options("acs-monitor")?;
    let mut config = acs_monitor::Config::new(nats);
    config.subjects = Subjects::new(&args.prefix).map_err(anyhow::Error::msg)?;
    config.stream_max_age = std::time::Duration::from_secs(args.stream_max_age_s);
    config.tiers = vec![
        TierSpec { width_ms: 1_000, keep_ms: args.raw_keep_s * 1000 },
        TierSpec { width_ms: 60_000, keep_ms: args.minute_keep_s * 1000 },
        TierSpec { width_ms: 3_600_000, keep_ms: args.hour_keep_s * 1000 },
    ];
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    rt.block_on(acs_monitor::run(config, acs_node::shutdown_signal())).context("acs-monitor failed")
}
