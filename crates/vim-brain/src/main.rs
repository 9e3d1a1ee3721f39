use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use acs_events::Subjects;
use clap::Parser;
use vim_brain::{Config, Services, Settings};

/// vim-brain: the Auto Cloud Scaler decider.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Services file (TOML).
    #[arg(long, env = "ACS_SERVICES", default_value = "config/services.toml")]
    services: PathBuf,
    /// Validate the services file and exit.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    nats: acs_node::NatsArgs,
    /// `--metrics-listen` (default off), `--metrics-token-file`: Prometheus `GET /metrics`.
    #[command(flatten)]
    metrics: acs_node::MetricsArgs,
    /// Subject prefix.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// Plan at least this often (ms).
    #[arg(long, env = "ACS_TICK_MS", default_value_t = 500)]
    tick_ms: u64,
    /// A worker silent for this long is down (ms).
    #[arg(long, env = "ACS_WORKER_TIMEOUT_MS", default_value_t = 3000)]
    worker_timeout_ms: u64,
    /// A proxy silent for this long no longer counts for drains and traffic (ms); keep it above
    /// the proxies' `--metrics-interval-ms`.
    #[arg(long, env = "ACS_PROXY_TIMEOUT_MS", default_value_t = 3000)]
    proxy_timeout_ms: u64,
    /// Listen only, for this long after start (ms), so a restarted brain learns what runs.
    #[arg(long, env = "ACS_WARMUP_MS", default_value_t = 2500)]
    warmup_ms: u64,
    /// JetStream KV bucket for the leader lease, manual pins and maintenance (shared by every
    /// brain of the cluster).
    #[arg(long, env = "ACS_KV_BUCKET", default_value = "acs_brain")]
    kv_bucket: String,
    /// Replicas of the bucket (3 on a 3-node NATS cluster).
    #[arg(long, env = "ACS_KV_REPLICAS", default_value_t = 1)]
    kv_replicas: usize,
    /// A leader that has not renewed its lease for this long is replaced (ms). It stops acting
    /// a third of this earlier.
    #[arg(long, env = "ACS_LEASE_MS", default_value_t = 1500)]
    lease_ms: u64,
    /// This brain's instance id in the lease and in logs (default: host-pid-random).
    #[arg(long, env = "ACS_BRAIN_INSTANCE")]
    instance: Option<String>,
    /// A replica not healthy this long after its start is replaced (ms).
    #[arg(long, env = "ACS_START_TIMEOUT_MS", default_value_t = 60_000)]
    start_timeout_ms: u64,
    /// A worker announced down, or a proxy, silent this long is forgotten (ms; default: 10 worker timeouts).
    #[arg(long, env = "ACS_FORGET_AFTER_MS")]
    forget_after_ms: Option<u64>,
    /// Most distinct worker ids, and most distinct proxy ids, kept; reports from more are refused.
    #[arg(long, env = "ACS_MAX_IDS", default_value_t = 100_000)]
    max_ids: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    acs_node::init_tracing("info");
    let services = match Services::load(&args.services) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        for (_, service) in services.iter() {
            println!("ok: {}", service.summary());
        }
        println!(
            "{}: {} service(s) valid",
            args.services.display(),
            services.0.len()
        );
        return ExitCode::SUCCESS;
    }
    let subjects = match Subjects::new(args.prefix) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --prefix: {e}");
            return ExitCode::from(2);
        }
    };
    if args.lease_ms < 100 {
        eprintln!(
            "error: --lease-ms must be at least 100 (got {})",
            args.lease_ms
        );
        return ExitCode::from(2);
    }
    if args.kv_bucket.is_empty()
        || !args
            .kv_bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        eprintln!(
            "error: --kv-bucket {:?}: a KV bucket name is letters, digits, '_' and '-'",
            args.kv_bucket
        );
        return ExitCode::from(2);
    }
    let nats = match args.nats.into_options("vim-brain") {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = match args.metrics.into_listen() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        nats,
        metrics,
        subjects,
        settings: Settings {
            worker_timeout_ms: args.worker_timeout_ms,
            proxy_timeout_ms: args.proxy_timeout_ms,
            warmup_ms: args.warmup_ms,
            start_timeout_ms: args.start_timeout_ms,
            forget_after_ms: args
                .forget_after_ms
                .unwrap_or(args.worker_timeout_ms.saturating_mul(10)),
            max_ids: args.max_ids.max(1),
            ..Settings::default()
        },
        tick: Duration::from_millis(args.tick_ms.max(10)),
        lease: vim_brain::lease::LeaseConfig {
            bucket: args.kv_bucket,
            lease_ms: args.lease_ms,
            replicas: args.kv_replicas,
            instance: args
                .instance
                .unwrap_or_else(vim_brain::lease::default_instance),
        },
        ..Config::default()
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(vim_brain::run(
        config,
        services,
        acs_node::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
