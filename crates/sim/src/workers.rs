//! `acs-sim workers` and `acs-sim proxies`: the fleet on the wheel.

use std::future::Future;
use std::time::Duration;

use acs_events::{encode, ProxyId, ServiceName, Subjects};
use anyhow::Context;

use crate::fleet::{self, SimWorker};
use crate::publish::{self, wall_ms, Tally};
use crate::schedule::Schedule;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub count: usize,
    pub replicas: usize,
    pub interval: Duration,
    pub subjects: Subjects,
    pub services: Vec<ServiceName>,
    pub report_every: Duration,
}

impl FleetConfig {
    pub fn new(count: usize, replicas: usize, services: Vec<ServiceName>) -> Self {
        FleetConfig {
            count,
            replicas,
            interval: Duration::from_secs(1),
            subjects: Subjects::default(),
            services,
            report_every: Duration::from_secs(10),
        }
    }

    fn fleet(&self) -> anyhow::Result<Vec<SimWorker>> {
        fleet::workers(self.count, self.replicas, &self.services, wall_ms(), |w| {
            self.subjects.worker_metrics(w)
        })
        .context("building the simulated fleet")
    }
}

fn interval_ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// Publishes `WorkerMetrics` for every simulated worker once per interval until `shutdown`.
pub async fn run_workers(
    client: &async_nats::Client,
    cfg: &FleetConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Tally> {
    let fleet = cfg.fleet()?;
    let schedule = Schedule::new(cfg.count, cfg.interval)?;
    let instance = format!("sim-{:08x}", rand::random::<u32>());
    let every = interval_ms(cfg.interval);
    tracing::info!(
        workers = cfg.count,
        replicas = cfg.replicas,
        interval_ms = every,
        "simulating workers"
    );
    let make = |w: usize, round: u64, now: u64| {
        let worker = &fleet[w];
        (
            worker.subject.clone(),
            encode(&worker.metrics(round + 1, now, every, &instance)),
        )
    };
    Ok(publish::run(
        client,
        schedule,
        "workers",
        cfg.report_every,
        make,
        shutdown,
    )
    .await)
}

/// Publishes `ProxyMetrics` for `proxies` simulated proxies that route to the replicas of
/// `cfg`'s fleet (same ids as `run_workers`), each carrying an equal share of the traffic.
pub async fn run_proxies(
    client: &async_nats::Client,
    proxies: usize,
    cfg: &FleetConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Tally> {
    let fleet = cfg.fleet()?;
    let ids = (0..proxies)
        .map(|i| ProxyId::new(fleet::proxy_id(i)).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let subjects: Vec<String> = ids.iter().map(|p| cfg.subjects.proxy_metrics(p)).collect();
    let schedule = Schedule::new(proxies, cfg.interval)?;
    let every = interval_ms(cfg.interval);
    tracing::info!(
        proxies,
        workers = cfg.count,
        replicas = cfg.replicas,
        interval_ms = every,
        "simulating proxies"
    );
    let make = |p: usize, round: u64, now: u64| {
        let m = fleet::proxy_metrics(
            &ids[p],
            proxies,
            &fleet,
            &cfg.services,
            round + 1,
            now,
            every,
        );
        (subjects[p].clone(), encode(&m))
    };
    Ok(publish::run(
        client,
        schedule,
        "proxies",
        cfg.report_every,
        make,
        shutdown,
    )
    .await)
}
