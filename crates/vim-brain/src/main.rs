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
    /// Subject prefix.
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// Plan at least this often (ms).
    #[arg(long, env = "ACS_TICK_MS", default_value_t = 500)]
    tick_ms: u64,
    /// A worker silent for this long is down (ms).
    #[arg(long, env = "ACS_WORKER_TIMEOUT_MS", default_value_t = 3000)]
    worker_timeout_ms: u64,
    /// Listen only, for this long after start (ms), so a restarted brain learns what runs.
    #[arg(long, env = "ACS_WARMUP_MS", default_value_t = 2500)]
    warmup_ms: u64,
    /// Keep manual pins in this file so they survive a restart.
    #[arg(long, env = "ACS_BRAIN_STATE_FILE")]
    state_file: Option<PathBuf>,
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
        println!("{}: {} service(s) valid", args.services.display(), services.0.len());
        return ExitCode::SUCCESS;
    }
    let subjects = match Subjects::new(args.prefix) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --prefix: {e}");
            return ExitCode::from(2);
        }
    };
    let nats = match args.nats.into_options("vim-brain") {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        nats,
        subjects,
        settings: Settings {
            worker_timeout_ms: args.worker_timeout_ms,
            warmup_ms: args.warmup_ms,
            start_timeout_ms: args.start_timeout_ms,
            forget_after_ms: args.forget_after_ms.unwrap_or(args.worker_timeout_ms.saturating_mul(10)),
            max_ids: args.max_ids.max(1),
            ..Settings::default()
        },
        tick: Duration::from_millis(args.tick_ms.max(10)),
        state_file: args.state_file,
        ..Config::default()
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(vim_brain::run(config, services, acs_node::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
