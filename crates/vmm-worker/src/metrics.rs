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
        let mut procs = HashMap::with_capacity(pids.len());
        if let Some(sys) = self.sys.as_mut() {
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
                    for (&pid, tree) in pids.iter().zip(&trees) {
                        let mut stats = ReplicaStats::default();
                        for p in tree {
                            if let Some(proc_) = sys.process(*p) {
                                stats.cpu_pct += sane(proc_.cpu_usage() as f64);
                                stats.mem_bytes = stats.mem_bytes.saturating_add(proc_.memory());
                            }
                        }
                        procs.insert(pid, stats);
                    }
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
                    for &pid in pids {
                        let mut stats = ReplicaStats::default();
                        let mut stack = vec![Pid::from_u32(pid)];
                        let mut seen = 0;
                        while let Some(p) = stack.pop() {
                            seen += 1;
                            if seen > MAX_TREE {
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
            }
        }
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
        if let Some(disks) = self.disks.as_mut() {
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
        self.last = Sample { host, procs };
        self.last.clone()
    }
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

    #[test]
    fn a_replica_is_its_whole_process_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut buf = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let tree = loop {
            let tree = process_tree(pid, &mut buf).expect("this kernel has children files");
            if tree.len() >= 3 || Instant::now() > deadline {
                break tree;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(tree[0], Pid::from_u32(pid));
        assert_eq!(tree.len(), 3, "{tree:?}");
        // The sample adds up the tree's memory.
        let mut s = Sampler::new();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let whole = s.sample(&[pid]).procs[&pid].mem_bytes;
        let sys = s.sys.as_ref().unwrap();
        let alone = sys.process(Pid::from_u32(pid)).unwrap().memory();
        assert!(whole > alone, "tree {whole} vs sh alone {alone}");
        child.kill().unwrap();
        child.wait().unwrap();
        // A pid that is gone is a tree of itself (reported as zeros).
        assert_eq!(process_tree(pid, &mut buf), Some(vec![Pid::from_u32(pid)]));
        // Dead pids leave sysinfo's table after the next sample.
        let kids: Vec<Pid> = tree[1..].to_vec();
        for k in &kids {
            unsafe { libc::kill(k.as_u32() as i32, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        s.sample(&[]);
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        s.sample(&[]);
        let sys = s.sys.as_ref().unwrap();
        assert!(sys.process(Pid::from_u32(pid)).is_none());
    }

    #[test]
    fn net_and_disk_counters() {
        let net = "Inter-|   Receive    |  Transmit\n face |bytes packets|bytes\n\
                   lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n\
                   eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n\
                   veth1:300 3 0 0 0 0 0 0 400 4 0 0 0 0 0 0\n";
        let m = parse_net_dev(net);
        assert_eq!(m.len(), 2);
        assert_eq!(m["eth0"], (1000, 2000));
        assert_eq!(m["veth1"], (300, 400));

        let disks = " 254 0 vda 100 0 8 0 50 0 16 0 0 0 0\n 254 1 vda1 100 0 8 0 50 0 16 0 0 0 0\n   7 0 loop0 1 0 2 0 0 0 0 0 0 0 0\n";
        let devices: HashSet<String> = ["vda".to_string()].into();
        let d = parse_diskstats(disks, &devices);
        assert_eq!(d.len(), 1);
        assert_eq!(d["vda"], (8 * 512, 16 * 512));

        let mut c = Counters::default();
        assert_eq!(c.advance(m.clone()), (0, 0)); // nothing to compare with yet
        let mut next = m;
        next.insert("eth0".into(), (1500, 2100));
        next.remove("veth1"); // a removed interface adds nothing
        next.insert("veth2".into(), (9999, 9999)); // nor does a new one
        assert_eq!(c.advance(next.clone()), (500, 100));
        next.insert("eth0".into(), (10, 20)); // went backwards: counted from 0
        assert_eq!(c.advance(next), (10, 20));
    }
}
