//! Command-line definitions. Every flag can also come from an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use acs_events::{ServiceName, MAX_REPLICAS};
use clap::{Args, Parser, Subcommand};

use crate::load::LoadOptions;
use crate::output::OutputArgs;
use acs_cluster::ClusterOptions;

#[derive(Debug, Parser)]
#[command(
    name = "acsctl",
    version,
    about = "Auto Cloud Scaler: inspect and steer a cluster through NATS, or run one locally",
    after_help = "Start a local cluster with `acsctl up`, then try `acsctl status` and `acsctl watch` in another terminal."
)]
pub struct Cli {
    /// NATS servers, credentials and TLS (ignored by `up`, which starts its own server).
    #[command(flatten)]
    pub nats: acs_node::NatsArgs,

    /// Subject prefix shared by every component of the cluster.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs", global = true)]
    pub prefix: String,

    /// How long to wait for connections and replies (default 5s); with `drain --wait` or
    /// `replace --wait`, how long the whole wait may take (default 10m). E.g. `30s`, `500ms`.
    #[arg(long, env = "ACS_TIMEOUT", value_parser = parse_duration, global = true)]
    pub timeout: Option<Duration>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Services (desired, running, backends) and workers, as the brain sees them.
    /// A large cluster gets a summary; its lists come a page at a time (`--service`, `--workers`).
    /// `-o wide` adds columns, the backends with their addresses, and the brain's term.
    Status {
        #[command(flatten)]
        output: OutputArgs,
        /// One service's replicas and backends, a page of them.
        #[arg(long, value_parser = parse_service, conflicts_with = "workers")]
        service: Option<ServiceName>,
        /// The workers, a page of them.
        #[arg(long)]
        workers: bool,
        /// First item of the page.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Most items in the page (the brain gives at most 500).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },

    /// Pin SERVICE at N replicas, or hand it back to its autoscaling policy with `auto`.
    Scale {
        /// Service name, as declared in the brain's services file.
        #[arg(value_parser = parse_service)]
        service: ServiceName,
        /// A replica count (0..=10000) or `auto`.
        #[arg(allow_hyphen_values = true, value_parser = parse_scale_target)]
        target: ScaleTarget,
        #[command(flatten)]
        output: OutputArgs,
    },

    /// No new replicas on WORKER; what runs there stays.
    Cordon {
        worker: acs_events::WorkerId,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Placements allowed on WORKER again (also ends a drain).
    Uncordon {
        worker: acs_events::WorkerId,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Cordon WORKER and move its replicas off, each replacement serving before the old one stops.
    Drain {
        worker: acs_events::WorkerId,
        /// Wait until the worker runs no replica, printing progress; fails when the brain
        /// says the drain is blocked, or after --timeout (default 10m).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        output: OutputArgs,
    },

    /// Replace REPLICA: a replacement starts, then REPLICA is drained and stopped once it serves.
    Replace {
        replica: String,
        /// Wait until REPLICA is gone, printing its state as it changes; fails when the brain
        /// says the move is blocked, or after --timeout (default 10m).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        output: OutputArgs,
    },

    /// Metrics history from acs-monitor: min, max, avg, p95 and last over a window, and a series.
    Stats(StatsArgs),

    /// The monitor's alarms: list them, or ack / silence one (with an expiry).
    Alarms {
        #[command(subcommand)]
        command: Option<AlarmsCommand>,
        #[command(flatten)]
        output: OutputArgs,
    },

    /// Kept events from acs-monitor (decisions, replica/worker events, leader, alarms, errors).
    History {
        /// decision, replica, worker, leader, alarm, error or drained; default every kind.
        #[arg(long)]
        kind: Option<String>,
        /// Narrow the kind to one service, worker, rule or component.
        #[arg(long, requires = "kind")]
        id: Option<String>,
        /// The window: the last DURATION (default 1h; events are kept 7d).
        #[arg(long, value_parser = parse_duration, conflicts_with = "from")]
        last: Option<Duration>,
        /// Window start: RFC 3339, a local `2026-12-07 18:00`, unix ms, or `-2h` / `2h ago`.
        #[arg(long, value_parser = parse_instant, allow_hyphen_values = true)]
        from: Option<u64>,
        /// Window end, in the same forms (default now).
        #[arg(long, requires = "from", value_parser = parse_instant, allow_hyphen_values = true)]
        to: Option<u64>,
        /// Most events shown, the newest (1..=1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        output: OutputArgs,
    },

    /// Live hosts and services (CPU, memory, network, req/s, latency): a full-screen view on
    /// a terminal (q quits), plain text once per interval when piped.
    Top {
        /// How often the view is refreshed.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// Print one frame and exit (for scripts); `-o json` implies it.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        output: OutputArgs,
    },

    /// Print every message on the cluster's subjects, one readable line each.
    Watch {
        /// Subject to subscribe to; default `<prefix>.>` (everything).
        #[arg(env = "ACSCTL_WATCH_SUBJECT")]
        subject: Option<String>,
        /// Print raw `{"subject":..,"payload":..}` JSON lines instead.
        #[arg(long, env = "ACSCTL_JSON")]
        json: bool,
        /// Hide the once-a-second worker and proxy metrics.
        #[arg(long, env = "ACSCTL_NO_METRICS")]
        no_metrics: bool,
    },

    /// Open-loop HTTP load: a fixed request rate, whatever the answers take.
    Load(LoadArgs),

    /// Run a local cluster (nats-server, vim-brain, workers, proxy) until Ctrl-C.
    Up(UpArgs),

    /// Make and manage the cluster's NATS credentials: one nkey per identity, the
    /// least-privilege auth.conf the server includes, and (with --tls) a local CA.
    Auth(crate::auth::AuthArgs),

    /// Print a completion script for SHELL, e.g. `acsctl completions bash > /etc/bash_completion.d/acsctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// How long one connection or reply may take.
    pub fn reply_timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(5))
    }

    /// How long `--wait` may take in all.
    pub fn wait_timeout(&self) -> Duration {
        self.timeout.unwrap_or(crate::wait::DEFAULT_WAIT)
    }
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// worker, replica, service or proxy.
    #[arg(value_parser = parse_scope)]
    pub scope: acs_events::StatsScope,
    /// Which one: a worker id, replica id, service name or proxy id.
    pub id: String,
    /// cpu, memory, net_rx, net_tx, disk_read, disk_write, disk_used, replicas (workers);
    /// rps, in_flight, errors, p50_ms, p99_ms (services, replicas, proxies); `acsctl stats --help`.
    pub metric: String,
    /// The window: the last DURATION (default 1h; 24h with --hourly).
    #[arg(long, value_parser = parse_duration, conflicts_with = "from")]
    pub last: Option<Duration>,
    /// Window start: RFC 3339, a local `2026-12-07 18:00`, unix ms, or `-2h` / `2h ago`.
    #[arg(long, value_parser = parse_instant, allow_hyphen_values = true)]
    pub from: Option<u64>,
    /// Window end, in the same forms (default now).
    #[arg(long, requires = "from", value_parser = parse_instant, allow_hyphen_values = true)]
    pub to: Option<u64>,
    /// Also a series at this step (e.g. `1m`).
    #[arg(long, value_parser = parse_duration)]
    pub step: Option<Duration>,
    /// Hourly averages over the last 24 h (hourly utilisation per host).
    #[arg(long)]
    pub hourly: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum AlarmsCommand {
    /// Every alarm the monitor holds (the default).
    List,
    /// Acknowledge RULE (all its targets, or --id one): no repeats and no escalation while acked.
    Ack(AlarmTarget),
    /// Take an ack back.
    Unack(AlarmTarget),
    /// No notifications for RULE (or --id one target) for --for DURATION.
    Silence(AlarmTarget),
    /// End a silence early.
    Unsilence(AlarmTarget),
}

#[derive(Debug, Args)]
pub struct AlarmTarget {
    pub rule: String,
    /// One target of the rule (a worker id, service name...).
    #[arg(long)]
    pub id: Option<String>,
    /// How long it lasts (ack: until it resolves when not given; silence: required).
    #[arg(long = "for", value_parser = parse_duration)]
    pub for_: Option<Duration>,
    /// Who does it (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
}

fn parse_scope(s: &str) -> Result<acs_events::StatsScope, String> {
    use acs_events::StatsScope::*;
    match s {
        "worker" | "host" => Ok(Worker),
        "replica" => Ok(Replica),
        "service" => Ok(Service),
        "proxy" => Ok(Proxy),
        other => Err(format!(
            "unknown scope {other:?}: use worker, replica, service or proxy"
        )),
    }
}

/// What `acsctl scale` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleTarget {
    Replicas(u32),
    Auto,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// URL to GET, e.g. http://127.0.0.1:8080/whoami (plain http only).
    #[arg(env = "ACSCTL_LOAD_URL")]
    pub url: String,
    /// Requests started per second.
    #[arg(long, env = "ACSCTL_LOAD_RPS", default_value_t = 50.0)]
    pub rps: f64,
    /// How long to send (e.g. `30s`, `2m`).
    #[arg(long, env = "ACSCTL_LOAD_DURATION", default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Most requests in flight at once; when full, a due request is counted as skipped.
    #[arg(long, env = "ACSCTL_LOAD_CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,
    /// Per-request timeout.
    #[arg(long, env = "ACSCTL_LOAD_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Host header to send (for host-routed services).
    #[arg(long, env = "ACSCTL_LOAD_HOST")]
    pub host: Option<String>,
    /// Print each second and the total as JSON lines (latency in µs under `latency_us`)
    /// instead of text.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    pub fn into_options(self) -> LoadOptions {
        LoadOptions {
            url: self.url,
            rps: self.rps,
            duration: self.duration,
            concurrency: self.concurrency,
            request_timeout: self.request_timeout,
            host: self.host,
        }
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of vmm-workers (w1..wN).
    #[arg(long, env = "ACS_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Replica capacity of each worker.
    #[arg(long, env = "ACS_MAX_REPLICAS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_replicas: u32,
    /// The brain's services file.
    #[arg(
        long,
        env = "ACS_SERVICES",
        default_value = "config/services.local.toml"
    )]
    pub services: PathBuf,
    /// Where the proxy listens.
    #[arg(long, env = "ACS_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    pub proxy_listen: SocketAddr,
    /// Port of the local nats-server (on 127.0.0.1).
    #[arg(long, env = "ACS_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// Where acs-monitor's HTTP API listens (bearer token in `<dir>/monitor.token`).
    #[arg(long, env = "ACS_MONITOR_HTTP", default_value = "127.0.0.1:9470")]
    pub monitor_http: SocketAddr,
    /// nats-server config file; default `nats/local.conf` when it exists. Port and address
    /// always come from --nats-port.
    #[arg(long, env = "ACS_NATS_CONFIG")]
    pub nats_config: Option<PathBuf>,
    /// Directory for logs and worker state.
    #[arg(long, env = "ACS_DIR", default_value = ".acs")]
    pub dir: PathBuf,
    /// Directory holding vim-brain, vmm-worker and acs-proxy; default: next to acsctl.
    #[arg(long, env = "ACS_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// How long to wait for the cluster to become ready.
    #[arg(long, env = "ACS_READY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub ready_timeout: Duration,
}

impl UpArgs {
    pub fn into_options(self, prefix: String) -> ClusterOptions {
        let mut o = ClusterOptions::new(self.dir);
        o.workers = self.workers;
        o.max_replicas = self.max_replicas;
        o.services = self.services;
        o.proxy_listen = self.proxy_listen;
        o.nats_port = self.nats_port;
        o.monitor_http = self.monitor_http;
        o.nats_config = self.nats_config.or_else(|| {
            let default = acs_cluster::resolve_path(std::path::Path::new("nats/local.conf"));
            default.is_file().then_some(default)
        });
        o.bin_dir = self.bin_dir;
        o.prefix = prefix;
        o.ready_timeout = self.ready_timeout;
        o
    }
}

/// The duration parser (`30s`, `500ms`, `2m`, `1h`, `7d`, `1h 30m`).
pub use crate::clock::parse_duration;
use crate::clock::parse_instant;

/// A service name that is a valid subject token.
pub fn parse_service(s: &str) -> Result<ServiceName, String> {
    ServiceName::new(s).map_err(|e| e.to_string())
}

/// `auto`, or a replica count in `0..=MAX_REPLICAS`.
pub fn parse_scale_target(s: &str) -> Result<ScaleTarget, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(ScaleTarget::Auto);
    }
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("replicas must be >= 0, got {n}")),
        Ok(n) if n > MAX_REPLICAS => Err(format!("replicas must be <= {MAX_REPLICAS}, got {n}")),
        Ok(n) => Ok(ScaleTarget::Replicas(n as u32)),
        Err(_) => Err(format!(
            "expected a replica count (0..={MAX_REPLICAS}) or `auto`, got {s:?}"
        )),
    }
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
