//! Host and per-process sampling with sysinfo.
//!
//! One [`Sampler`] lives as long as the worker and reuses one `System`, `Networks` and `Disks`,
//! because CPU use and the network/disk rates are differences between two refreshes. Refreshes
//! closer together than `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` return the previous sample.
//! Anything sysinfo cannot read is reported as 0; sampling never fails (the metrics stream is
//! the heartbeat).

use std::collections::HashMap;
use std::time::Instant;

use acs_events::HostMetrics;
use sysinfo::{
    DiskRefreshKind, Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System,
};

use crate::runtime::ReplicaStats;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub host: HostMetrics,
    /// CPU/memory of each asked-for pid, including its descendants.
    pub procs: HashMap<u32, ReplicaStats>,
}

pub struct Sampler {
    sys: Option<System>,
    networks: Option<Networks>,
    disks: Option<Disks>,
    last_refresh: Option<Instant>,
    last: Sample,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Self {
        let mut s = Self {
            sys: None,
            networks: None,
            disks: None,
            last_refresh: None,
            last: Sample::default(),
        };
        s.ensure();
        // Prime the counters so that the first real sample has something to compare with.
        if let Some(sys) = s.sys.as_mut() {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            sys.refresh_processes_specifics(ProcessesToUpdate::All, true, process_kind());
            // What needs no second refresh is right from the first sample on.
            s.last.host.cpus = sys.cpus().len() as u32;
            s.last.host.mem_used_bytes = sys.used_memory();
            s.last.host.mem_total_bytes = sys.total_memory();
        }
        if let Ok(load) = System::load_average() {
            s.last.host.load1 = sane(load.one);
            s.last.host.load5 = sane(load.five);
            s.last.host.load15 = sane(load.fifteen);
        }
        s.last_refresh = Some(Instant::now());
        s
    }

    /// (Re)creates whatever sysinfo could not set up before.
    fn ensure(&mut self) {
        if self.sys.is_none() {
            self.sys = System::new().ok();
        }
        if self.networks.is_none() {
            self.networks = Networks::new_with_refreshed_list().ok();
        }
        if self.disks.is_none() {
            self.disks =
                Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
                    .ok();
        }
    }

    /// Samples the host and the given pids. Blocking (reads `/proc`): call it from
    /// `spawn_blocking`.
    pub fn sample(&mut self, pids: &[u32]) -> Sample {
        let now = Instant::now();
        if let Some(last) = self.last_refresh {
            if now.duration_since(last) < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
                return self.last.clone();
            }
        }
        let elapsed = self
            .last_refresh
            .map(|l| now.duration_since(l).as_secs_f64())
            .unwrap_or(0.0);
        self.last_refresh = Some(now);
        self.ensure();
        let per_s = |bytes: u64| {
            if elapsed > 0.0 {
                bytes as f64 / elapsed
            } else {
                0.0
            }
        };

        let mut host = HostMetrics::default();
        let mut procs = HashMap::new();
        if let Some(sys) = self.sys.as_mut() {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            sys.refresh_processes_specifics(ProcessesToUpdate::All, true, process_kind());
            host.cpu_pct = sane(sys.global_cpu_usage() as f64).min(100.0);
            host.cpus = sys.cpus().len() as u32;
            host.mem_used_bytes = sys.used_memory();
            host.mem_total_bytes = sys.total_memory();

            let (mut read, mut written) = (0u64, 0u64);
            let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
            for (pid, p) in sys.processes() {
                let du = p.disk_usage();
                read = read.saturating_add(du.read_bytes);
                written = written.saturating_add(du.written_bytes);
                if let Some(parent) = p.parent() {
                    children.entry(parent).or_default().push(*pid);
                }
            }
            host.disk_read_bytes_per_s = sane(per_s(read));
            host.disk_write_bytes_per_s = sane(per_s(written));

            for &pid in pids {
                // The replica and everything it forked (`sh -c ...`, worker processes).
                let mut stats = ReplicaStats::default();
                let mut stack = vec![Pid::from_u32(pid)];
                let mut seen = 0;
                while let Some(p) = stack.pop() {
                    seen += 1;
                    if seen > 10_000 {
                        break;
                    }
                    if let Some(proc_) = sys.process(p) {
                        stats.cpu_pct += sane(proc_.cpu_usage() as f64);
                        stats.mem_bytes = stats.mem_bytes.saturating_add(proc_.memory());
                    }
                    if let Some(kids) = children.get(&p) {
                        stack.extend(kids.iter().copied());
                    }
                }
                procs.insert(pid, stats);
            }
        }
        if let Ok(load) = System::load_average() {
            host.load1 = sane(load.one);
            host.load5 = sane(load.five);
            host.load15 = sane(load.fifteen);
        }
        if let Some(nets) = self.networks.as_mut() {
            nets.refresh(true);
            let (mut rx, mut tx) = (0u64, 0u64);
            for (name, data) in nets.iter() {
                if name == "lo" {
                    continue;
                }
                rx = rx.saturating_add(data.received());
                tx = tx.saturating_add(data.transmitted());
            }
            host.net_rx_bytes_per_s = sane(per_s(rx));
            host.net_tx_bytes_per_s = sane(per_s(tx));
        }
        if let Some(disks) = self.disks.as_mut() {
            disks.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
            // One device may be mounted several times (bind mounts): count each once.
            let mut by_device: HashMap<&std::ffi::OsStr, (u64, u64)> = HashMap::new();
            for d in disks.iter() {
                let used = d.total_space().saturating_sub(d.available_space());
                by_device.entry(d.name()).or_insert((d.total_space(), used));
            }
            for (total, used) in by_device.values() {
                host.disk_total_bytes = host.disk_total_bytes.saturating_add(*total);
                host.disk_used_bytes = host.disk_used_bytes.saturating_add(*used);
            }
        }
        self.last = Sample { host, procs };
        self.last.clone()
    }
}

fn process_kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .with_disk_usage()
}

/// Finite and >= 0, else 0.
fn sane(x: f64) -> f64 {
    if x.is_finite() && x >= 0.0 {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_the_host_and_a_busy_process() {
        let mut s = Sampler::new();
        let me = std::process::id();
        let burn = || {
            let start = Instant::now();
            let mut x = 1u64;
            while start.elapsed() < std::time::Duration::from_millis(300) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        };
        // sysinfo computes a process's CPU use only once it has seen non-zero CPU times, so a
        // fresh process needs three refreshes: burn between each.
        burn();
        s.sample(&[me]);
        burn();
        let sample = s.sample(&[me]);
        let h = &sample.host;
        assert!(h.cpus >= 1);
        assert!(h.mem_total_bytes > 0 && h.mem_used_bytes <= h.mem_total_bytes);
        assert!((0.0..=100.0).contains(&h.cpu_pct));
        assert!(h.disk_total_bytes >= h.disk_used_bytes);
        let me_stats = sample.procs[&me];
        assert!(me_stats.mem_bytes > 0);
        assert!(me_stats.cpu_pct > 0.0, "{me_stats:?}");
        // Too soon for another refresh: the same sample comes back.
        assert_eq!(s.sample(&[me]), sample);
        // Unknown pids are reported as zero, not as an error.
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let z = s.sample(&[u32::MAX - 1]);
        assert_eq!(z.procs[&(u32::MAX - 1)], ReplicaStats::default());
    }
}
