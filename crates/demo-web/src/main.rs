//! `demo-web`: the demo workload. See the library docs for the routes.

use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "demo-web",
    version,
    about = "Demo workload: CPU work per request, /whoami, /healthz"
)]
struct Args {
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    port: u16,
    /// Address to bind.
    #[arg(long, env = "DEMO_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Instance id shown in answers (default: <hostname>-<pid>).
    #[arg(long, env = "ACS_REPLICA")]
    id: Option<String>,
    /// CPU milliseconds burnt per request when `?ms=` is not given.
    #[arg(long, env = "WORK_MS", default_value_t = 10)]
    work_ms: u64,
    /// How long to wait for requests in flight on shutdown.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "30s", value_parser = acs_node::parse_duration)]
    drain_timeout: Duration,
    /// `--log-format text|json`.
    #[command(flatten)]
    log: acs_node::LogArgs,
}

/// The integer flag in seconds the duration flag replaced, still read.
const LEGACY: &[acs_node::legacy::Legacy] = &[acs_node::legacy::Legacy::secs(
    "drain-timeout-s",
    "drain-timeout",
    ["DRAIN_TIMEOUT_S", "DRAIN_TIMEOUT"],
)];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, deprecated) = acs_node::legacy::parse::<Args>(LEGACY);
    args.log.init("info");
    acs_node::legacy::warn(&deprecated);
    let mut config = demo_web::Config::new(args.port);
    config.bind = args.bind;
    if let Some(id) = args.id.filter(|s| !s.is_empty()) {
        config.id = id;
    }
    config.work_ms = args.work_ms.min(demo_web::MAX_WORK_MS);
    config.drain_timeout = args.drain_timeout;
    demo_web::run(config, acs_node::shutdown_signal()).await?;
    Ok(())
}
