//! The simulated fleet and the messages it sends. Pure: every value is a function of
//! (worker index, sequence number, timestamp), so a run is reproducible and testable.
//!
//! Values vary the way a real host's do: each worker has its own base load and a slow wave
//! (period 5 min) with per-message noise on top; memory, network and disk follow the CPU; the
//! replicas share the host's CPU. Ids: worker `sim00042`, replica `sim00042-web-3`, address
//! `10.0.0.42:20003` (unique per replica).

use acs_events::{
    BackendTraffic, Capacity, HostMetrics, ProxyId, ProxyMetrics, ReplicaId, ReplicaState,
    ReplicaStatus, RuntimeKind, ServiceName, ServiceTraffic, Traffic, UnixMs, WorkerId,
    WorkerMetrics, SCHEMA_VERSION,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// The id of simulated worker `i` (the query tool derives the same ids).
pub fn worker_id(i: usize) -> String {
    format!("sim{i:05}")
}

pub fn proxy_id(i: usize) -> String {
    format!("simproxy{i:03}")
}

/// The `j`-th replica of worker `i` runs `services[j % services.len()]`.
pub fn replica_id(worker: &str, service: &str, j: usize) -> String {
    format!("{worker}-{service}-{j}")
}

/// A deterministic hash to a float in `[0, 1)` (splitmix64).
pub fn unit(a: u64, b: u64, c: u64) -> f64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(c.wrapping_mul(0x94D0_49BB_1331_11EB));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone)]
pub struct SimWorker {
    pub index: usize,
    pub id: WorkerId,
    pub subject: String,
    pub cpus: u32,
    pub mem_total: u64,
    pub started_ms: UnixMs,
    pub replicas: Vec<ReplicaStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("give at least one service")]
    NoServices,
    #[error("{0}")]
    BadId(String),
}

/// Builds `count` workers with `replicas` healthy replicas each, spread over `services`.
pub fn workers(
    count: usize,
    replicas: usize,
    services: &[ServiceName],
    now_ms: UnixMs,
    subject: impl Fn(&WorkerId) -> String,
) -> Result<Vec<SimWorker>, FleetError> {
    if services.is_empty() {
        return Err(FleetError::NoServices);
    }
    (0..count)
        .map(|i| {
            let id = WorkerId::new(worker_id(i)).map_err(|e| FleetError::BadId(e.to_string()))?;
            let seed = i as u64;
            let cpus = [2, 4, 8, 16][(unit(seed, 0, 1) * 4.0) as usize];
            let mem_total = u64::from(cpus) * 4 * GIB;
            // Up for somewhere between a minute and a week already.
            let started_ms =
                now_ms.saturating_sub(60_000 + (unit(seed, 0, 2) * 7.0 * 86_400_000.0) as u64);
            let replicas = (0..replicas)
                .map(|j| {
                    let service = &services[j % services.len()];
                    let rid = replica_id(id.as_str(), service.as_str(), j);
                    let rid = ReplicaId::new(rid).map_err(|e| FleetError::BadId(e.to_string()))?;
                    Ok(ReplicaStatus {
                        id: rid,
                        service: service.clone(),
                        addr: format!(
                            "10.{}.{}.{}:{}",
                            (i >> 16) & 255,
                            (i >> 8) & 255,
                            i & 255,
                            20_000 + j
                        ),
                        state: ReplicaState::Healthy,
                        cpu_pct: 0.0,
                        mem_bytes: 0,
                        started_ms: started_ms
                            + 5_000
                            + (unit(seed, j as u64, 3) * 30_000.0) as u64,
                        restarts: 0,
                    })
                })
                .collect::<Result<Vec<_>, FleetError>>()?;
            Ok(SimWorker {
                index: i,
                subject: subject(&id),
                id,
                cpus,
                mem_total,
                started_ms,
                replicas,
            })
        })
        .collect()
}

impl SimWorker {
    /// Host CPU percent at `ts_ms` for message `seq`: base + slow wave + noise, in 1..=99.
    pub fn cpu_pct(&self, seq: u64, ts_ms: UnixMs) -> f64 {
        let s = self.index as u64;
        let base = 10.0 + unit(s, 0, 10) * 50.0;
        let phase = unit(s, 0, 11) * std::f64::consts::TAU;
        let wave = 15.0 * ((ts_ms as f64 / 300_000.0) * std::f64::consts::TAU + phase).sin();
        let noise = (unit(s, seq, 12) - 0.5) * 10.0;
        (base + wave + noise).clamp(1.0, 99.0)
    }

    /// The metrics message number `seq` (1, 2, ...) at `ts_ms`.
    pub fn metrics(
        &self,
        seq: u64,
        ts_ms: UnixMs,
        interval_ms: u64,
        instance: &str,
    ) -> WorkerMetrics {
        let s = self.index as u64;
        let cpu = self.cpu_pct(seq, ts_ms);
        let load = cpu / 100.0;
        let n = self.replicas.len().max(1) as f64;
        let replicas = self
            .replicas
            .iter()
            .enumerate()
            .map(|(j, r)| {
                let j = j as u64;
                let share = 0.5 + unit(s, j, 20);
                let mut r = r.clone();
                // cpu_pct is per core: the host's busy cores, split over the replicas.
                r.cpu_pct = load * f64::from(self.cpus) * 100.0 / n * share;
                r.mem_bytes = 64 * MIB
                    + (unit(s, j, 21) * 192.0) as u64 * MIB
                    + (unit(s, seq, 22 + j) * 8.0) as u64 * MIB;
                r
            })
            .collect::<Vec<_>>();
        let mem_used =
            (self.mem_total as f64 * (0.2 + 0.5 * load + 0.05 * unit(s, seq, 13))) as u64;
        let disk_total = 500 * GIB;
        let uptime_s = ts_ms.saturating_sub(self.started_ms) / 1000;
        let disk_used =
            100 * GIB + (unit(s, 0, 14) * 200.0) as u64 * GIB + (uptime_s % 86_400) * 4096;
        let cpus = f64::from(self.cpus);
        WorkerMetrics {
            v: SCHEMA_VERSION,
            worker: self.id.clone(),
            seq,
            ts_ms,
            started_ms: self.started_ms,
            instance: instance.to_string(),
            interval_ms,
            runtime: RuntimeKind::Docker,
            host: HostMetrics {
                cpu_pct: cpu,
                cpus: self.cpus,
                mem_used_bytes: mem_used,
                mem_total_bytes: self.mem_total,
                load1: load * cpus * (0.9 + 0.2 * unit(s, seq, 15)),
                load5: load * cpus,
                load15: load * cpus * 0.95,
                net_rx_bytes_per_s: load * 40e6 * (0.8 + 0.4 * unit(s, seq, 16)),
                net_tx_bytes_per_s: load * 25e6 * (0.8 + 0.4 * unit(s, seq, 17)),
                disk_read_bytes_per_s: load * 5e6 * unit(s, seq, 18),
                disk_write_bytes_per_s: load * 8e6 * unit(s, seq, 19),
                disk_used_bytes: disk_used.min(disk_total),
                disk_total_bytes: disk_total,
            },
            capacity: Capacity {
                max_replicas: (self.replicas.len() as u32).max(self.cpus * 4),
                running: self.replicas.len() as u32,
            },
            replicas,
            rejected: 0,
        }
    }
}

/// One proxy's traffic report: every service with the backends of all workers, each proxy
/// carrying `1 / proxies` of the fleet's requests.
pub fn proxy_metrics(
    proxy: &ProxyId,
    proxies: usize,
    workers: &[SimWorker],
    services: &[ServiceName],
    seq: u64,
    ts_ms: UnixMs,
    interval_ms: u64,
) -> ProxyMetrics {
    let p = proxies.max(1) as f64;
    let window_s = interval_ms as f64 / 1000.0;
    let services = services
        .iter()
        .map(|svc| {
            let backends: Vec<BackendTraffic> = workers
                .iter()
                .flat_map(|w| w.replicas.iter().map(move |r| (w, r)))
                .filter(|(_, r)| r.service == *svc)
                .map(|(w, r)| {
                    let h = w.index as u64 ^ (r.addr.len() as u64) << 32;
                    // Requests follow the host's load: a busy host's replicas serve more.
                    let rps = w.cpu_pct(seq, ts_ms) * (0.5 + unit(h, seq, 30)) / p;
                    BackendTraffic {
                        id: r.id.clone(),
                        traffic: traffic(rps, window_s, h, seq),
                        draining: false,
                        ejected: false,
                    }
                })
                .collect();
            let rps: f64 = backends.iter().map(|b| b.traffic.rps).sum();
            let h = unit(seq, 0, 40).to_bits();
            let mut totals = traffic(rps, window_s, h, seq);
            totals.requests = backends.iter().map(|b| b.traffic.requests).sum();
            totals.in_flight = backends.iter().map(|b| b.traffic.in_flight).sum();
            totals.errors = backends.iter().map(|b| b.traffic.errors).sum();
            ServiceTraffic {
                service: svc.clone(),
                version: 1,
                totals,
                backends,
            }
        })
        .collect();
    ProxyMetrics {
        v: SCHEMA_VERSION,
        proxy: proxy.clone(),
        ts_ms,
        interval_ms,
        services,
        unrouted: 0,
        rejected: 0,
    }
}

fn traffic(rps: f64, window_s: f64, h: u64, seq: u64) -> Traffic {
    let p50 = 2.0 + 8.0 * unit(h, seq, 31);
    Traffic {
        requests: (rps * window_s).round() as u64,
        rps,
        in_flight: (rps * p50 / 1000.0).round() as u64,
        p50_ms: p50,
        p99_ms: p50 * (2.0 + 4.0 * unit(h, seq, 32)),
        errors: u64::from(unit(h, seq, 33) < 0.02),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acs_events::{decode, encode, Subjects};

    fn services() -> Vec<ServiceName> {
        vec![
            ServiceName::new("web").unwrap(),
            ServiceName::new("api").unwrap(),
        ]
    }

    fn fleet(n: usize, r: usize) -> Vec<SimWorker> {
        let subjects = Subjects::default();
        workers(n, r, &services(), 1_700_000_000_000, |w| {
            subjects.worker_metrics(w)
        })
        .unwrap()
    }

    #[test]
    fn workers_have_unique_ids_and_addresses() {
        let ws = fleet(300, 10);
        let ids: std::collections::BTreeSet<_> = ws
            .iter()
            .flat_map(|w| w.replicas.iter().map(|r| r.id.clone()))
            .collect();
        let addrs: std::collections::BTreeSet<_> = ws
            .iter()
            .flat_map(|w| w.replicas.iter().map(|r| r.addr.clone()))
            .collect();
        assert_eq!(ids.len(), 3000);
        assert_eq!(addrs.len(), 3000);
        assert_eq!(ws[42].id.as_str(), "sim00042");
        assert_eq!(ws[42].subject, "acs.metrics.worker.sim00042");
        assert_eq!(ws[1].replicas[3].id.as_str(), "sim00001-api-3");
        assert_eq!(
            ws[0]
                .replicas
                .iter()
                .filter(|r| r.service.as_str() == "web")
                .count(),
            5
        );
    }

    #[test]
    fn metrics_decode_validate_and_vary_within_bounds() {
        let ws = fleet(50, 4);
        let mut cpus = Vec::new();
        for w in &ws {
            for seq in 1..40 {
                let ts = 1_700_000_000_000 + seq * 1000;
                let m = w.metrics(seq, ts, 1000, "inst");
                let back: WorkerMetrics = decode(&encode(&m)).expect("decodes and validates");
                // JSON floats may round in the last digit; the rest comes back as sent.
                assert_eq!(
                    (&back.worker, back.seq, back.ts_ms, &back.replicas.len()),
                    (&m.worker, seq, ts, &4)
                );
                let h = &m.host;
                assert!((1.0..=99.0).contains(&h.cpu_pct));
                assert!(h.mem_used_bytes > 0 && h.mem_used_bytes < h.mem_total_bytes);
                assert!(h.disk_used_bytes <= h.disk_total_bytes);
                assert_eq!(m.capacity.running, 4);
                assert!(m.replicas.iter().all(|r| r.state == ReplicaState::Healthy
                    && r.cpu_pct > 0.0
                    && r.mem_bytes > 0));
                cpus.push(h.cpu_pct);
            }
        }
        let (lo, hi) = cpus
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        assert!(
            hi - lo > 20.0,
            "values vary across workers and time: {lo}..{hi}"
        );
        // Same inputs, same message.
        assert_eq!(
            ws[3].metrics(7, 5, 1000, "i"),
            ws[3].metrics(7, 5, 1000, "i")
        );
    }

    #[test]
    fn proxy_metrics_cover_every_replica_of_each_service() {
        let ws = fleet(20, 6);
        let p = ProxyId::new(proxy_id(0)).unwrap();
        let m = proxy_metrics(&p, 2, &ws, &services(), 3, 1_700_000_003_000, 1000);
        let back: ProxyMetrics = decode(&encode(&m)).expect("decodes and validates");
        assert_eq!(back.services.len(), 2);
        assert_eq!(
            back.services
                .iter()
                .map(|s| s.backends.len())
                .sum::<usize>(),
            120
        );
        for s in &back.services {
            let sum: f64 = s.backends.iter().map(|b| b.traffic.rps).sum();
            assert!((s.totals.rps - sum).abs() < 1e-6 && sum > 0.0);
        }
    }

    #[test]
    fn no_services_is_an_error() {
        assert_eq!(
            workers(3, 2, &[], 0, |_| String::new()).unwrap_err(),
            FleetError::NoServices
        );
    }
}
