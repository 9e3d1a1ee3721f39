//! `vmm-worker`: thin binary around [`vmm_worker::run`].

use std::path::PathBuf;
use std::time::Duration;

use acs_events::{RuntimeKind, Subjects, WorkerId};
use anyhow::Context;
use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RuntimeArg {
    Process,
    Docker,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AdvertiseArg {
    /// Publish the container port on a free host port, advertised as <advertise-host>:<port>.
    HostPort,
    /// Advertise the container's IP on its network (proxies on the same Docker network).
    ContainerIp,
}

#[derive(Debug, Parser)]
#[command(
    name = "vmm-worker",
    version,
    about = "acs worker: runs replicas on this host, reports metrics"
)]
struct Args {
    /// Worker id (letters, digits, '-', '_'); default: this host's name.
    #[arg(long, env = "ACS_WORKER_ID")]
    id: Option<String>,
    /// Most replicas this worker runs at once.
    #[arg(long, env = "ACS_MAX_REPLICAS", default_value_t = 4)]
    max_replicas: u32,
    /// How replicas run.
    #[arg(long, env = "ACS_RUNTIME", value_enum, default_value_t = RuntimeArg::Process)]
    runtime: RuntimeArg,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Subject prefix.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// Metrics / heartbeat period in milliseconds.
    #[arg(long, env = "ACS_INTERVAL_MS", default_value_t = 1000)]
    interval_ms: u64,
    /// Host in the replica addresses handed to proxies.
    #[arg(long, env = "ACS_ADVERTISE_HOST", default_value = "127.0.0.1")]
    advertise_host: String,
    /// Docker runtime: how replicas are reached.
    #[arg(long, env = "ACS_ADVERTISE", value_enum, default_value_t = AdvertiseArg::HostPort)]
    advertise: AdvertiseArg,
    /// Docker runtime: network the replica containers join (default: Docker's bridge).
    #[arg(long, env = "ACS_DOCKER_NETWORK")]
    docker_network: Option<String>,
    /// State files and replica logs; default `.acs/worker-<id>`.
    #[arg(long, env = "ACS_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// On shutdown leave replicas running; the next worker with the same state dir adopts them.
    #[arg(long, env = "ACS_KEEP_REPLICAS")]
    keep_replicas: bool,
    /// Milliseconds a new replica has to pass its health check before it is stopped.
    #[arg(long, env = "ACS_HEALTH_TIMEOUT_MS", default_value_t = 30_000)]
    health_timeout_ms: u64,
    /// Grace period in milliseconds for replicas stopped at shutdown.
    #[arg(long, env = "ACS_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    shutdown_grace_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let id = match args.id {
        Some(id) => WorkerId::new(id).context("--id")?,
        None => default_id()?,
    };
    let mut config = vmm_worker::Config::new(id);
    config.max_replicas = args.max_replicas;
    config.runtime = match args.runtime {
        RuntimeArg::Process => RuntimeKind::Process,
        RuntimeArg::Docker => RuntimeKind::Docker,
    };
    config.nats_url = args.nats;
    config.subjects = Subjects::new(args.prefix)
        .map_err(anyhow::Error::msg)
        .context("--prefix")?;
    config.interval = Duration::from_millis(args.interval_ms);
    config.advertise_host = args.advertise_host;
    config.advertise = match args.advertise {
        AdvertiseArg::HostPort => vmm_worker::config::Advertise::HostPort,
        AdvertiseArg::ContainerIp => vmm_worker::config::Advertise::ContainerIp,
    };
    config.docker_network = args.docker_network.filter(|n| !n.is_empty());
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    config.keep_replicas = args.keep_replicas;
    config.health.start_timeout = Duration::from_millis(args.health_timeout_ms);
    config.shutdown_grace = Duration::from_millis(args.shutdown_grace_ms);
    vmm_worker::run(config, shutdown_signal()).await?;
    Ok(())
}

/// The host name with anything but `[A-Za-z0-9_-]` replaced by `-`.
fn default_id() -> anyhow::Result<WorkerId> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let clean: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    WorkerId::new(if clean.is_empty() {
        "w1".to_string()
    } else {
        clean
    })
    .context("cannot derive a worker id from the host name; pass --id")
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
