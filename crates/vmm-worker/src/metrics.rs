//! Host and per-process sampling.
//!
//! One [`Sampler`] lives as long as the worker, because CPU use and the network/disk rates are
//! differences between two samples. Refreshes closer together than
//! `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` return the previous sample. Anything that cannot be
//! read is reported as 0; sampling never fails (the metrics stream is the heartbeat).
//!
//! A tick reads only what it reports (the worker runs on hosts full of other processes, and
//! its own cost is a target: < 1 % of a core at idle):
//! - host CPU and memory through sysinfo (`/proc/stat`, `/proc/meminfo`);
//! - the replicas' pids and their descendants only, found through
//!   `/proc/<pid>/task/<tid>/children` (never a scan of every process; a kernel without that
//!   file falls back to sysinfo's full scan);
//! - network bytes from `/proc/net/dev` and disk bytes from `/proc/diskstats` (whole physical
//!   disks), one file each, as differences per interface / device;
//! - disk space by `statvfs` on the known file systems, their list re-read every
//!   [`DISK_RELIST`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use acs_events::HostMetrics;
use sysinfo::{DiskRefreshKind, Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::runtime::ReplicaStats;

/// How often the list of mounted file systems is read again (their space is read every tick).
pub const DISK_RELIST: Duration = Duration::from_secs(60);

/// Most processes followed under one replica (a fork bomb does not make sampling unbounded).
const MAX_TREE: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub host: HostMetrics,
    /// CPU/memory of each asked-for pid, including its descendants.
    pub procs: HashMap<u32, ReplicaStats>,
}

pub struct Sampler {
    sys: Option<System>,
    disks: Option<Disks>,
    disks_listed: Option<Instant>,
    /// Pids refreshed last time: refreshed once more after they leave the set, so that sysinfo
    /// drops the dead ones.
    tracked: Vec<Pid>,
    /// Whole physical disks (`/sys/block/<name>/device` exists), by name.
    block_devices: HashSet<String>,
    net: Counters,
    disk_io: Counters,
    /// Reused read buffer for the `/proc` files.
    buf: String,
    last_refresh: Option<Instant>,
    last: Sample,
}

/// Byte counters (received / read, transmitted / written) per interface or device at the last
/// sample.
#[derive(Debug, Default)]
struct Counters(HashMap<String, (u64, u64)>);

impl Counters {
    /// Replaces the counters with `now` and returns the bytes added since the last call, summed
    /// over the names present both times (a new or removed interface adds nothing; a counter
    /// that went backwards, e.g. a re-created device, counts from 0).
    fn advance(&mut self, now: HashMap<String, (u64, u64)>) -> (u64, u64) {
        let (mut a, mut b) = (0u64, 0u64);
        for (name, (x, y)) in &now {
            if let Some((px, py)) = self.0.get(name) {
                a = a.saturating_add(if x >= px { x - px } else { *x });
                b = b.saturating_add(if y >= py { y - py } else { *y });
            }
        }
        self.0 = now;
        (a, b)
    }
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
            disks: None,
            disks_listed: None,
            tracked: Vec::new(),
            block_devices: block_devices(),
            net: Counters::default(),
            disk_io: Counters::default(),
            buf: String::new(),
            last_refresh: None,
            last: Sample::default(),
        };
        s.ensure();
        // Prime the counters so that the first real sample has something to compare with.
        if let Some(sys) = s.sys.as_mut() {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            // What needs no second refresh is right from the first sample on.
            s.last.host.cpus = sys.cpus().len() as u32;
            s.last.host.mem_used_bytes = sys.used_memory();
            s.last.host.mem_total_bytes = sys.total_memory();
        }
        if let Some(now) = read_net_dev(&mut s.buf) {
            s.net.advance(now);
        }
        if let Some(now) = read_diskstats(&mut s.buf, &s.block_devices) {
            s.disk_io.advance(now);
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
        if self.disks.is_none() {
            self.disks =
                Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
                    .ok();
            if self.disks.is_some() {
                self.disks_listed = Some(Instant::now());
            }
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
        let procs = self.sample_processes(&mut host, pids);
        if let Ok(load) = System::load_average() {
            host.load1 = sane(load.one);
            host.load5 = sane(load.five);
            host.load15 = sane(load.fifteen);
        }
        if let Some(counters) = read_net_dev(&mut self.buf) {
            let (rx, tx) = self.net.advance(counters);
            host.net_rx_bytes_per_s = sane(per_s(rx));
            host.net_tx_bytes_per_s = sane(per_s(tx));
        }
        if let Some(counters) = read_diskstats(&mut self.buf, &self.block_devices) {
            let (read, written) = self.disk_io.advance(counters);
            host.disk_read_bytes_per_s = sane(per_s(read));
            host.disk_write_bytes_per_s = sane(per_s(written));
        }
        self.sample_disks(&mut host, now);
        self.last = Sample { host, procs };
        self.last.clone()
    }

    /// Host CPU and memory, and each replica's process tree's CPU and memory.
    fn sample_processes(
        &mut self,
        host: &mut HostMetrics,
        pids: &[u32],
    ) -> HashMap<u32, ReplicaStats> {
        let Some(sys) = self.sys.as_mut() else {
            return HashMap::new();
        };
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        host.cpu_pct = sane(sys.global_cpu_usage() as f64).min(100.0);
        host.cpus = sys.cpus().len() as u32;
        host.mem_used_bytes = sys.used_memory();
        host.mem_total_bytes = sys.total_memory();

        // Each replica's process tree, from the kernel's children lists.
        let trees: Option<Vec<Vec<Pid>>> = pids
            .iter()
            .map(|&pid| process_tree(pid, &mut self.buf))
            .collect();
        match trees {
            Some(trees) => {
                let mut update: Vec<Pid> = trees.iter().flatten().copied().collect();
                let now_tracked = update.clone();
                update.extend(self.tracked.iter().copied());
                update.sort_unstable();
                update.dedup();
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&update),
                    true,
                    process_kind(),
                );
                self.tracked = now_tracked;
                pids.iter()
                    .zip(&trees)
                    .map(|(&pid, tree)| (pid, tree_stats(sys, tree.iter().copied())))
                    .collect()
            }
            // No `children` files in this kernel: every process, linked by parent.
            None => {
                sys.refresh_processes_specifics(ProcessesToUpdate::All, true, process_kind());
                let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
                for (pid, p) in sys.processes() {
                    if let Some(parent) = p.parent() {
                        children.entry(parent).or_default().push(*pid);
                    }
                }
                pids.iter()
                    .map(|&pid| {
                        (
                            pid,
                            tree_stats(sys, descendants(&children, Pid::from_u32(pid))),
                        )
                    })
                    .collect()
            }
        }
    }

    /// Space used and total over the mounted disks, each device counted once.
    fn sample_disks(&mut self, host: &mut HostMetrics, now: Instant) {
        let Some(disks) = self.disks.as_mut() else {
            return;
        };
        let storage = DiskRefreshKind::nothing().with_storage();
        if self
            .disks_listed
            .is_none_or(|t| now.duration_since(t) >= DISK_RELIST)
        {
            disks.refresh_specifics(true, storage);
            self.disks_listed = Some(now);
        } else {
            for d in disks.iter_mut() {
                d.refresh_specifics(storage);
            }
        }
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
}

/// The summed CPU and memory of these processes (gone ones count as zero).
fn tree_stats(sys: &System, tree: impl IntoIterator<Item = Pid>) -> ReplicaStats {
    let mut stats = ReplicaStats::default();
    for p in tree {
        if let Some(proc_) = sys.process(p) {
            stats.cpu_pct += sane(proc_.cpu_usage() as f64);
            stats.mem_bytes = stats.mem_bytes.saturating_add(proc_.memory());
        }
    }
    stats
}

/// `root` and its descendants by the parent links, at most [`MAX_TREE`] processes.
fn descendants(children: &HashMap<Pid, Vec<Pid>>, root: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if out.len() >= MAX_TREE {
            break;
        }
        out.push(p);
        if let Some(kids) = children.get(&p) {
            stack.extend(kids.iter().copied());
        }
    }
    out
}

/// `pid` and its descendants (breadth first, at most [`MAX_TREE`]), from
/// `/proc/<pid>/task/<tid>/children` of every thread (a child belongs to the thread that forked
/// it). `Some(vec![pid])` for a pid that is gone (it is reported as zeros); `None` when the
/// kernel has no `children` files.
fn process_tree(pid: u32, buf: &mut String) -> Option<Vec<Pid>> {
    let mut out = vec![Pid::from_u32(pid)];
    let mut i = 0;
    while i < out.len() && out.len() < MAX_TREE {
        let p = out[i].as_u32();
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue; // gone
        };
        for task in tasks.flatten() {
            buf.clear();
            let path = task.path().join("children");
            if let Err(e) = read_into(&path, buf) {
                if e.kind() == std::io::ErrorKind::NotFound && i == 1 && task_exists(&task.path()) {
                    return None; // the task is there, its children file is not
                }
                continue;
            }
            for child in buf.split_ascii_whitespace() {
                if let Ok(c) = child.parse::<u32>() {
                    if out.len() < MAX_TREE {
                        out.push(Pid::from_u32(c));
                    }
                }
            }
        }
    }
    Some(out)
}

fn task_exists(task: &std::path::Path) -> bool {
    task.join("stat").exists()
}

fn read_into(path: &std::path::Path, buf: &mut String) -> std::io::Result<()> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)?.read_to_string(buf).map(|_| ())
}

/// Received / transmitted bytes per interface except `lo`, from `/proc/net/dev`.
fn read_net_dev(buf: &mut String) -> Option<HashMap<String, (u64, u64)>> {
    read_into(std::path::Path::new("/proc/net/dev"), buf).ok()?;
    Some(parse_net_dev(buf))
}

fn parse_net_dev(text: &str) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        if let (Some(rx), Some(tx)) = (
            f.first().and_then(|v| v.parse().ok()),
            f.get(8).and_then(|v| v.parse().ok()),
        ) {
            out.insert(name.to_string(), (rx, tx));
        }
    }
    out
}

/// Read / written bytes per whole physical disk, from `/proc/diskstats` (sectors of 512 bytes).
fn read_diskstats(
    buf: &mut String,
    devices: &HashSet<String>,
) -> Option<HashMap<String, (u64, u64)>> {
    read_into(std::path::Path::new("/proc/diskstats"), buf).ok()?;
    Some(parse_diskstats(buf, devices))
}

fn parse_diskstats(text: &str, devices: &HashSet<String>) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(name) = f.get(2) else { continue };
        if !devices.contains(*name) {
            continue;
        }
        if let (Some(r), Some(w)) = (
            f.get(5).and_then(|v| v.parse::<u64>().ok()),
            f.get(9).and_then(|v| v.parse::<u64>().ok()),
        ) {
            out.insert(
                name.to_string(),
                (r.saturating_mul(512), w.saturating_mul(512)),
            );
        }
    }
    out
}

/// Whole disks backed by a device (`/sys/block/<name>/device`): not partitions, loop, RAM,
/// zram or device-mapper devices, whose I/O would be counted twice or is not disk I/O.
fn block_devices() -> HashSet<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().join("device").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn process_kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing().with_cpu().with_memory()
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
mod tests;
