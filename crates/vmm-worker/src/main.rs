//! `vmm-worker`: thin binary around [`vmm_worker::run`].

use std::path::PathBuf;
use std::time::Duration;

use acs_events::{RuntimeKind, Subjects, WorkerId};
use acs_node::duration::parse_duration;
use acs_node::legacy::Legacy;
use anyhow::Context;
use clap::{Parser, ValueEnum};

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
    /// Metrics / heartbeat period.
    #[arg(long, env = "ACS_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
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
    /// How long a new replica has to pass its health check before it is stopped.
    #[arg(long, env = "ACS_HEALTH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    health_timeout: Duration,
    /// Grace period for replicas stopped at shutdown.
    #[arg(long, env = "ACS_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// Docker runtime: an image replicas may run, exactly (`repo:tag`) or as a prefix ending in
    /// `*` (`acs/demo-web:*`). Repeat or separate by commas. None: no image runs.
    #[arg(long = "allow-image", env = "ACS_ALLOW_IMAGES", value_delimiter = ',')]
    allow_images: Vec<String>,
    /// Process runtime: an absolute program path replicas may run (compared after resolving
    /// `PATH` and symlinks). Repeat or separate by commas. None: no command runs.
    #[arg(
        long = "allow-command",
        env = "ACS_ALLOW_COMMANDS",
        value_delimiter = ','
    )]
    allow_commands: Vec<PathBuf>,
    /// Docker runtime: a Linux capability replicas keep (`NET_BIND_SERVICE`); all others are
    /// dropped. Default: none.
    #[arg(long = "allow-cap", env = "ACS_ALLOW_CAPS", value_delimiter = ',')]
    allow_caps: Vec<String>,
    /// Directory of secrets: a spec's secret `<name>` is the file `<dir>/<name>`.
    #[arg(long, env = "ACS_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// TOML file with `allow_images`, `allow_commands`, `allow_caps` and `secrets_dir`, added to
    /// the flags.
    #[arg(long, env = "ACS_POLICY_FILE")]
    policy: Option<PathBuf>,
    /// Docker runtime: most processes per replica container; 0 = no limit.
    #[arg(long, env = "ACS_PIDS_LIMIT", default_value_t = 256)]
    pids_limit: u32,
    /// Most starts the runtime runs at once; further starts wait (within their deadline).
    #[arg(long, env = "ACS_MAX_CONCURRENT_STARTS", default_value_t = 4)]
    max_concurrent_starts: u32,
    /// How long a start may take (waiting for a slot, remove, create, start, inspect) before it
    /// is abandoned and what it left removed.
    #[arg(long, env = "ACS_START_DEADLINE", default_value = "30s", value_parser = parse_duration)]
    start_deadline: Duration,
    /// Refuse a command issued (its `issued_ms`, by the sender's wall clock) longer ago than
    /// this by this host's wall clock; 0 = never. Keep it well above the clock skew.
    #[arg(long, env = "ACS_COMMAND_MAX_AGE", default_value = "10s", value_parser = parse_duration)]
    command_max_age: Duration,
}

/// The integer flags in milliseconds the duration flags replaced, still read.
const LEGACY: &[Legacy] = &[
    Legacy::ms(
        "interval-ms",
        "interval",
        ["ACS_INTERVAL_MS", "ACS_INTERVAL"],
    ),
    Legacy::ms(
        "health-timeout-ms",
        "health-timeout",
        ["ACS_HEALTH_TIMEOUT_MS", "ACS_HEALTH_TIMEOUT"],
    ),
    Legacy::ms(
        "shutdown-grace-ms",
        "shutdown-grace",
        ["ACS_SHUTDOWN_GRACE_MS", "ACS_SHUTDOWN_GRACE"],
    ),
    Legacy::ms(
        "start-deadline-ms",
        "start-deadline",
        ["ACS_START_DEADLINE_MS", "ACS_START_DEADLINE"],
    ),
    Legacy::ms(
        "command-max-age-ms",
        "command-max-age",
        ["ACS_COMMAND_MAX_AGE_MS", "ACS_COMMAND_MAX_AGE"],
    ),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, deprecated) = acs_node::legacy::parse::<Args>(LEGACY);
    if let Some(url) = &args.health.healthcheck {
        return acs_node::health::check(url).map_err(anyhow::Error::msg);
    }
    args.log.init("info");
    acs_node::legacy::warn(&deprecated);
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
    config.nats = args
        .nats
        .into_options(format!("vmm-worker {}", config.worker_id))?;
    config.subjects = Subjects::new(args.prefix)
        .map_err(anyhow::Error::msg)
        .context("--prefix")?;
    config.interval = args.interval;
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
    config.health.start_timeout = args.health_timeout;
    config.shutdown_grace = args.shutdown_grace;
    config.policy = vmm_worker::policy::Policy {
        allow_images: args.allow_images,
        allow_commands: args.allow_commands,
        allow_caps: args.allow_caps,
        secrets_dir: args.secrets_dir,
    };
    if let Some(file) = &args.policy {
        let file = vmm_worker::policy::PolicyFile::load(file)
            .map_err(anyhow::Error::msg)
            .context("--policy")?;
        config.policy.merge(file);
    }
    config.pids_limit = args.pids_limit;
    config.max_concurrent_starts = args.max_concurrent_starts;
    config.start_deadline = args.start_deadline;
    config.command_max_age = args.command_max_age;
    config.metrics = args.metrics.into_listen().context("--metrics-listen")?;
    config.health_listen = args.health.health_listen;
    vmm_worker::run(config, acs_node::shutdown_signal()).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        acs_node::legacy::try_parse(LEGACY, "vmm-worker", args)
    }

    fn durations(a: &Args) -> [Duration; 5] {
        [
            a.interval,
            a.health_timeout,
            a.shutdown_grace,
            a.start_deadline,
            a.command_max_age,
        ]
    }

    #[test]
    fn old_millisecond_flags_and_new_duration_flags_agree() {
        let new = parse(&[
            "--interval=250ms",
            "--health-timeout=1m",
            "--shutdown-grace=2.5s",
            "--start-deadline=45s",
            "--command-max-age=0",
        ]);
        let old = parse(&[
            "--interval-ms=250",
            "--health-timeout-ms=60000",
            "--shutdown-grace-ms=2500",
            "--start-deadline-ms=45000",
            "--command-max-age-ms=0",
        ]);
        let (new, old) = (new.unwrap(), old.unwrap());
        assert_eq!(durations(&new), durations(&old));
        assert_eq!(new.interval, Duration::from_millis(250));
        assert_eq!(old.command_max_age, Duration::ZERO);
    }

    #[test]
    fn a_bad_duration_is_refused_naming_the_flag() {
        let e = parse(&["--shutdown-grace", "5 sec later"]).err().unwrap();
        assert!(e.contains("--shutdown-grace"), "{e}");
        let e = parse(&["--interval-ms", "1s"]).err().unwrap();
        assert!(e.contains("--interval-ms"), "{e}");
    }
}
