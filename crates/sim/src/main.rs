//! `acs-sim`: parse flags, set up tracing, connect, run one simulation until Ctrl-C (or the
//! query run's duration).

use std::time::Duration;

use acs_events::{ServiceName, Subjects};
use acs_sim::query::QueryConfig;
use acs_sim::schedule::parse_duration;
use acs_sim::workers::FleetConfig;
use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};

/// Simulated acs workers and proxies over real NATS, and a stats-query load generator.
#[derive(Debug, Parser)]
#[command(name = "acs-sim", version)]
struct Args {
    #[command(flatten)]
    nats: acs_node::NatsArgs,
    /// Subject prefix.
    #[arg(global = true, long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, ClapArgs)]
struct FleetArgs {
    /// Simulated workers (ids sim00000, sim00001, ...).
    #[arg(long = "workers", default_value_t = 1000)]
    workers: usize,
    /// Healthy replicas on each worker.
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    /// Services the replicas run, round robin.
    #[arg(long, value_delimiter = ',', default_value = "web,api")]
    services: Vec<ServiceName>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Publish WorkerMetrics for N workers, each once per interval, spread evenly.
    Workers {
        /// Simulated workers.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Healthy replicas on each worker.
        #[arg(long, default_value_t = 10)]
        replicas: usize,
        #[arg(long, value_delimiter = ',', default_value = "web,api")]
        services: Vec<ServiceName>,
        /// Publication interval of each worker (1s, 500ms, ...).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// Stop after this long (default: run until Ctrl-C).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Publish ProxyMetrics for P proxies routing to the replicas of the simulated workers.
    Proxies {
        /// Simulated proxies.
        #[arg(long, default_value_t = 2)]
        count: usize,
        #[command(flatten)]
        fleet: FleetArgs,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Send StatsRequests at a steady rate for random workers, replicas, metrics and windows.
    Query {
        /// Requests per second (open loop).
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        /// How long to wait for each answer.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Also print the summary as one JSON line.
        #[arg(long)]
        json: bool,
    },
}

async fn stop_after(d: Option<Duration>) {
    match d {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = acs_node::shutdown_signal() => {}
        },
        None => acs_node::shutdown_signal().await,
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let subjects = Subjects::new(&args.prefix).map_err(anyhow::Error::msg)?;
    let nats = args.nats.into_options("acs-sim")?;
    match args.cmd {
        Cmd::Workers {
            count,
            replicas,
            services,
            interval,
            duration,
        } => {
            let client = nats.connect().await.context("connecting to NATS")?;
            let cfg = FleetConfig {
                interval,
                subjects,
                ..FleetConfig::new(count, replicas, services)
            };
            let total = acs_sim::workers::run_workers(&client, &cfg, stop_after(duration)).await?;
            anyhow::ensure!(total.errors == 0, "{} publishes failed", total.errors);
        }
        Cmd::Proxies {
            count,
            fleet,
            interval,
            duration,
        } => {
            let client = nats.connect().await.context("connecting to NATS")?;
            let cfg = FleetConfig {
                interval,
                subjects,
                ..FleetConfig::new(fleet.workers, fleet.replicas, fleet.services)
            };
            let total =
                acs_sim::workers::run_proxies(&client, count, &cfg, stop_after(duration)).await?;
            anyhow::ensure!(total.errors == 0, "{} publishes failed", total.errors);
        }
        Cmd::Query {
            rate,
            duration,
            timeout,
            fleet,
            json,
        } => {
            let client = nats
                .connect_once(Duration::from_secs(5))
                .await
                .context("connecting to NATS")?;
            let cfg = QueryConfig {
                rate,
                duration,
                timeout,
                workers: fleet.workers,
                replicas: fleet.replicas,
                services: fleet.services,
                subjects,
            };
            let report = acs_sim::query::run(&client, &cfg).await?;
            println!("{}", report.text());
            if json {
                println!("{}", report.json());
            }
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    acs_node::init_tracing("info");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(run(args))
}
