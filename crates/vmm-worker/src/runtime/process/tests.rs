//! Unit tests of the process runtime: state files, adoption checks, start and stop of real
//! processes.

use super::*;
use acs_events::ServiceName;

fn rid(s: &str) -> ReplicaId {
    ReplicaId::new(s).unwrap()
}

fn spec(cmd: &[&str]) -> ReplicaSpec {
    serde_json::from_value(serde_json::json!({"service": "web", "command": cmd})).unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "vmm-worker-{tag}-{}-{}",
        std::process::id(),
        unix_now_ms()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `sleep 30` that is not the runtime's child (as an adopted process is not), and its argv.
fn sleep_30() -> (Kill, Vec<String>) {
    let sleep = resolve_program("sleep", std::env::var_os("PATH").as_deref()).unwrap();
    let argv = vec![sleep.to_string_lossy().into_owned(), "30".to_string()];
    let child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
        .unwrap();
    (Kill(child), argv)
}

/// The state record of `child` (a [`sleep_30`]) as replica `id`, advertised as `addr`.
fn sleep_record(id: &str, child: &Kill, argv: Vec<String>, addr: &str) -> StateRecord {
    StateRecord {
        replica: rid(id),
        service: ServiceName::new("web").unwrap(),
        spec: spec(&["sleep", "30"]),
        pid: child.0.id(),
        port: addr.rsplit_once(':').unwrap().1.parse().unwrap(),
        addr: addr.into(),
        argv,
        started_ms: 1,
    }
}

#[test]
fn resolves_through_path() {
    let p = resolve_program("sleep", std::env::var_os("PATH").as_deref()).unwrap();
    assert!(p.is_absolute() && p.ends_with("sleep"), "{p:?}");
    let err =
        resolve_program("no-such-program-xyz", std::env::var_os("PATH").as_deref()).unwrap_err();
    assert!(err.contains("not found in PATH"), "{err}");
    assert!(resolve_program("/nonexistent/bin", None).is_err());
}

#[test]
fn cmdline_matching() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let argv = s(&["/usr/bin/demo", "--port", "1"]);
    assert!(cmdline_matches(
        &s(&["/usr/bin/demo", "--port", "1"]),
        &argv
    ));
    assert!(cmdline_matches(&s(&["demo", "--port", "1"]), &argv));
    assert!(cmdline_matches(
        &s(&["/bin/sh", "/usr/bin/demo", "--port", "1"]),
        &argv
    ));
    assert!(!cmdline_matches(
        &s(&["/usr/bin/demo", "--port", "2"]),
        &argv
    ));
    assert!(!cmdline_matches(
        &s(&["/usr/bin/other", "--port", "1"]),
        &argv
    ));
    assert!(!cmdline_matches(&s(&[]), &argv));
}

#[test]
fn adoption_checks_pid_and_cmdline() {
    let (child, argv) = sleep_30();
    let mut record = sleep_record("r1", &child, argv, "127.0.0.1:1234");
    // /proc may lag a moment behind exec.
    let deadline = Instant::now() + Duration::from_secs(10);
    while check_adoptable(&record, &read_cmdline).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(check_adoptable(&record, &read_cmdline), Ok(()));

    // Same pid, different program (pid reuse): not ours.
    let err = check_adoptable(&record, &|_| Some(vec!["/bin/bash".into()])).unwrap_err();
    assert!(err.contains("now runs"), "{err}");

    // Dead pid.
    drop(child);
    let err = check_adoptable(&record, &read_cmdline).unwrap_err();
    assert!(err.contains("not running"), "{err}");
    record.pid = 0;
    assert!(check_adoptable(&record, &read_cmdline).is_err());
}

#[tokio::test]
async fn adopt_keeps_live_and_forgets_dead_records() {
    let dir = temp_dir("adopt");
    let rt = ProcessRuntime::new(&dir, "127.0.0.1").unwrap();
    let (child, argv) = sleep_30();
    let live = StateRecord {
        started_ms: 5,
        ..sleep_record("live", &child, argv.clone(), "10.0.0.1:1111")
    };
    let dead = StateRecord {
        replica: rid("dead"),
        pid: 0,
        ..live.clone()
    };
    write_record(&rt.state_file(&rid("live")), &live).unwrap();
    write_record(&rt.state_file(&rid("dead")), &dead).unwrap();
    std::fs::write(dir.join("replicas/garbage.json"), b"{not json").unwrap();
    // Wait until /proc shows the exec'd command line.
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_cmdline(live.pid)
        .map(|c| !cmdline_matches(&c, &argv))
        .unwrap_or(true)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let adopted = rt.adopt().await.unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0].id, rid("live"));
    assert_eq!(adopted[0].addr, "10.0.0.1:1111");
    assert_eq!(adopted[0].health_addr, "127.0.0.1:1111");
    assert!(adopted[0].adopted);
    assert!(rt.state_file(&rid("live")).exists());
    assert!(!rt.state_file(&rid("dead")).exists());
    assert!(!dir.join("replicas/garbage.json").exists());
    assert_eq!(rt.list().await.len(), 1);

    // The adopted process dies: the poller reports it and forgets the record.
    let mut events = rt.take_events().unwrap();
    drop(child);
    let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, RuntimeEvent::Exited { ref replica, .. } if replica == &rid("live")),
        "{ev:?}"
    );
    assert!(!rt.state_file(&rid("live")).exists());
    assert!(rt.list().await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn start_and_stop_a_process() {
    let dir = temp_dir("startstop");
    let rt = ProcessRuntime::new(&dir, "127.0.0.1").unwrap();
    let mut events = rt.take_events().unwrap();
    assert!(rt.take_events().is_none());
    let mut s = spec(&[
        "sh",
        "-c",
        "echo port=$PORT replica=$ACS_REPLICA arg={port}; exec sleep 30",
    ]);
    s.env.insert("EXTRA".into(), "1".into());
    let r = rt.start(&rid("r1"), &s).await.unwrap();
    let pid = r.pid.unwrap();
    let port = r.addr.rsplit_once(':').unwrap().1.to_string();
    assert!(pid_alive(pid));
    let rec = read_record(&rt.state_file(&rid("r1"))).unwrap();
    assert_eq!(rec.pid, pid);
    assert!(rec.argv[0].ends_with("/sh"), "{:?}", rec.argv);
    assert!(
        rec.argv[2].contains(&format!("arg={port}")),
        "{:?}",
        rec.argv
    );

    // Wait for the echo.
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = format!("port={port} replica=r1 arg={port}");
    while !std::fs::read_to_string(rt.log_file(&rid("r1")))
        .unwrap_or_default()
        .contains(&want)
    {
        assert!(Instant::now() < deadline, "log never showed {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second start of the same id is refused by the runtime.
    assert!(rt.start(&rid("r1"), &s).await.is_err());

    rt.stop(&rid("r1"), Duration::from_secs(5)).await.unwrap();
    assert!(!pid_alive(pid));
    assert!(!rt.state_file(&rid("r1")).exists());
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev, RuntimeEvent::Exited { ref replica, .. } if replica == &rid("r1")));
    // Stopping again, or something unknown, is fine.
    rt.stop(&rid("r1"), Duration::from_secs(1)).await.unwrap();
    rt.stop(&rid("zz"), Duration::from_secs(1)).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn refuses_specs_it_cannot_run() {
    let dir = temp_dir("bad");
    let rt = ProcessRuntime::new(&dir, "127.0.0.1").unwrap();
    let mut s = spec(&["x"]);
    s.command.clear();
    s.image = Some("nginx".into());
    let err = rt.start(&rid("r1"), &s).await.unwrap_err().to_string();
    assert!(err.contains("no command"), "{err}");
    let err = rt
        .start(&rid("r1"), &spec(&["no-such-program-xyz"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found in PATH"), "{err}");
    assert!(rt.list().await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
