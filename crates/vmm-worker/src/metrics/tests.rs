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
