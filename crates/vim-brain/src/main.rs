use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use acs_events::Subjects;
use acs_node::duration::parse_duration;
use acs_node::legacy::Legacy;
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
    /// `--health-listen` (default off): `/healthz`, `/readyz`; `--healthcheck URL` probes one.
    #[command(flatten)]
    health: acs_node::HealthArgs,
    /// `--log-format text|json`.
    #[command(flatten)]
    log: acs_node::LogArgs,
    /// Subject prefix.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// Plan at least this often (at least 10ms).
    #[arg(long, env = "ACS_TICK", default_value = "500ms", value_parser = parse_duration)]
    tick: Duration,
    /// A worker silent for this long is down.
    #[arg(long, env = "ACS_WORKER_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    worker_timeout: Duration,
    /// A proxy silent for this long no longer counts for drains and traffic; keep it above the
    /// proxies' `--metrics-interval`.
    #[arg(long, env = "ACS_PROXY_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    proxy_timeout: Duration,
    /// Listen only, for this long after start, so a restarted brain learns what runs.
    #[arg(long, env = "ACS_WARMUP", default_value = "2.5s", value_parser = parse_duration)]
    warmup: Duration,
    /// JetStream KV bucket for the leader lease, manual pins and maintenance (shared by every
    /// brain of the cluster).
    #[arg(long, env = "ACS_KV_BUCKET", default_value = "acs_brain")]
    kv_bucket: String,
    /// Replicas of the bucket (3 on a 3-node NATS cluster).
    #[arg(long, env = "ACS_KV_REPLICAS", default_value_t = 1)]
    kv_replicas: usize,
    /// A leader that has not renewed its lease for this long is replaced (at least 100ms). It
    /// stops acting a third of this earlier.
    #[arg(long, env = "ACS_LEASE", default_value = "1.5s", value_parser = parse_duration)]
    lease: Duration,
    /// This brain's instance id in the lease and in logs (default: host-pid-random).
    #[arg(long, env = "ACS_BRAIN_INSTANCE")]
    instance: Option<String>,
    /// A replica not healthy this long after its start is replaced.
    #[arg(long, env = "ACS_START_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    start_timeout: Duration,
    /// A worker announced down, or a proxy, silent this long is forgotten (default: 10 worker
    /// timeouts).
    #[arg(long, env = "ACS_FORGET_AFTER", value_parser = parse_duration)]
    forget_after: Option<Duration>,
    /// Most distinct worker ids, and most distinct proxy ids, kept; reports from more are refused.
    #[arg(long, env = "ACS_MAX_IDS", default_value_t = 100_000)]
    max_ids: usize,
}

/// The integer flags in milliseconds the duration flags replaced, still read.
const LEGACY: &[Legacy] = &[
    Legacy::ms("tick-ms", "tick", ["ACS_TICK_MS", "ACS_TICK"]),
    Legacy::ms(
        "worker-timeout-ms",
        "worker-timeout",
        ["ACS_WORKER_TIMEOUT_MS", "ACS_WORKER_TIMEOUT"],
    ),
    Legacy::ms(
        "proxy-timeout-ms",
        "proxy-timeout",
        ["ACS_PROXY_TIMEOUT_MS", "ACS_PROXY_TIMEOUT"],
    ),
    Legacy::ms("warmup-ms", "warmup", ["ACS_WARMUP_MS", "ACS_WARMUP"]),
    Legacy::ms("lease-ms", "lease", ["ACS_LEASE_MS", "ACS_LEASE"]),
    Legacy::ms(
        "start-timeout-ms",
        "start-timeout",
        ["ACS_START_TIMEOUT_MS", "ACS_START_TIMEOUT"],
    ),
    Legacy::ms(
        "forget-after-ms",
        "forget-after",
        ["ACS_FORGET_AFTER_MS", "ACS_FORGET_AFTER"],
    ),
];

/// Whole milliseconds, as the brain's settings keep them.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `--lease` and `--kv-bucket`, refused before anything connects.
fn check_lease_flags(lease: Duration, kv_bucket: &str) -> Result<(), String> {
    if lease < Duration::from_millis(100) {
        return Err(format!("--lease must be at least 100ms (got {lease:?})"));
    }
    if kv_bucket.is_empty()
        || !kv_bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "--kv-bucket {kv_bucket:?}: a KV bucket name is letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let (args, deprecated) = acs_node::legacy::parse::<Args>(LEGACY);
    if let Some(url) = &args.health.healthcheck {
        return acs_node::health::probe(url);
    }
    args.log.init("info");
    acs_node::legacy::warn(&deprecated);
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
    if let Err(e) = check_lease_flags(args.lease, &args.kv_bucket) {
        eprintln!("error: {e}");
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
        health_listen: args.health.health_listen,
        subjects,
        settings: Settings {
            worker_timeout_ms: ms(args.worker_timeout),
            proxy_timeout_ms: ms(args.proxy_timeout),
            warmup_ms: ms(args.warmup),
            start_timeout_ms: ms(args.start_timeout),
            forget_after_ms: ms(args
                .forget_after
                .unwrap_or(args.worker_timeout.saturating_mul(10))),
            max_ids: args.max_ids.max(1),
            ..Settings::default()
        },
        tick: args.tick.max(Duration::from_millis(10)),
        lease: vim_brain::lease::LeaseConfig {
            bucket: args.kv_bucket,
            lease_ms: ms(args.lease),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        acs_node::legacy::try_parse(LEGACY, "vim-brain", args)
    }

    fn durations(a: &Args) -> [Duration; 7] {
        let forget = a.forget_after.unwrap_or_default();
        [
            a.tick,
            a.worker_timeout,
            a.proxy_timeout,
            a.warmup,
            a.lease,
            a.start_timeout,
            forget,
        ]
    }

    #[test]
    fn old_millisecond_flags_and_new_duration_flags_agree() {
        let new = parse(&[
            "--tick=250ms",
            "--worker-timeout=4s",
            "--proxy-timeout=5s",
            "--warmup=1.5s",
            "--lease=2s",
            "--start-timeout=1m",
            "--forget-after=1h 30m",
        ])
        .unwrap();
        let old = parse(&[
            "--tick-ms=250",
            "--worker-timeout-ms",
            "4000",
            "--proxy-timeout-ms=5000",
            "--warmup-ms=1500",
            "--lease-ms=2000",
            "--start-timeout-ms=60000",
            "--forget-after-ms=5400000",
        ])
        .unwrap();
        assert_eq!(durations(&new), durations(&old));
        assert_eq!(new.lease, Duration::from_secs(2));
        assert_eq!(parse(&[]).unwrap().lease, Duration::from_millis(1500));
    }

    #[test]
    fn a_bad_duration_is_refused_naming_the_flag() {
        let e = parse(&["--lease", "soon"]).err().unwrap();
        assert!(e.contains("--lease"), "{e}");
        let e = parse(&["--lease-ms", "1.5s"]).err().unwrap();
        assert!(e.contains("--lease-ms"), "{e}");
        let e = parse(&["--lease=1s", "--lease-ms=900"]).err().unwrap();
        assert!(e.contains("--lease"), "{e}");
    }
}
