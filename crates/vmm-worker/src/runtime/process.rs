//! Replicas as local processes.
//!
//! Each replica gets a free port on the advertise host; `{port}` and `{replica}` are substituted
//! in its argv, `PORT` and `ACS_REPLICA` (plus `spec.env`) are set in its environment. It runs in
//! its own process group, so a worker crash does not take it down, with stdout and stderr
//! appended to `<state-dir>/logs/<replica>.log`.
//!
//! For every replica a state file `<state-dir>/replicas/<replica>.json` ([`StateRecord`]) records
//! pid, port, spec and argv. A restarted worker reads them back in [`Runtime::adopt`]: a record
//! whose pid is alive and whose `/proc/<pid>/cmdline` matches the recorded argv is adopted;
//! anything else is forgotten (file removed).
//!
//! Stop: SIGTERM to the process group, SIGKILL to the group after the grace period.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acs_events::{ReplicaId, ReplicaSpec, RuntimeKind, ServiceName, UnixMs};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::{Result, RunningReplica, Runtime, RuntimeError, RuntimeEvent};

/// How often adopted processes (not our children, so we cannot `wait` on them) are polled.
const ADOPTED_POLL: Duration = Duration::from_millis(500);

/// What a state file holds: enough to adopt the replica and to tell whether a pid is still it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub replica: ReplicaId,
    pub service: ServiceName,
    pub spec: ReplicaSpec,
    pub pid: u32,
    pub port: u16,
    /// Advertised `host:port`.
    pub addr: String,
    /// The argv as executed (program resolved through `PATH`, placeholders substituted).
    pub argv: Vec<String>,
    pub started_ms: UnixMs,
}

struct Entry {
    record: StateRecord,
    /// The task that waits for (or polls) the process.
    watcher: Option<AbortHandle>,
}

struct Inner {
    replicas_dir: PathBuf,
    logs_dir: PathBuf,
    advertise_host: String,
    bind_ip: IpAddr,
    entries: Mutex<HashMap<ReplicaId, Entry>>,
    events_tx: mpsc::UnboundedSender<RuntimeEvent>,
}

pub struct ProcessRuntime {
    inner: Arc<Inner>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<RuntimeEvent>>>,
}

impl ProcessRuntime {
    /// Creates `<state_dir>/replicas` and `<state_dir>/logs`. Replicas are advertised as
    /// `<advertise_host>:<port>`.
    pub fn new(state_dir: &Path, advertise_host: &str) -> Result<Self> {
        let replicas_dir = state_dir.join("replicas");
        let logs_dir = state_dir.join("logs");
        for d in [&replicas_dir, &logs_dir] {
            std::fs::create_dir_all(d).map_err(|source| RuntimeError::Io {
                what: format!("create {}", d.display()),
                err: source,
            })?;
        }
        // Ports are probed on the advertise host when it is a local address, else on all.
        let bind_ip = advertise_host
            .parse::<IpAddr>()
            .ok()
            .filter(|ip| TcpListener::bind(SocketAddr::new(*ip, 0)).is_ok())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(Self {
            inner: Arc::new(Inner {
                replicas_dir,
                logs_dir,
                advertise_host: advertise_host.to_string(),
                bind_ip,
                entries: Mutex::new(HashMap::new()),
                events_tx,
            }),
            events_rx: Mutex::new(Some(events_rx)),
        })
    }

    pub fn state_file(&self, replica: &ReplicaId) -> PathBuf {
        self.inner.replicas_dir.join(format!("{replica}.json"))
    }

    pub fn log_file(&self, replica: &ReplicaId) -> PathBuf {
        self.inner.logs_dir.join(format!("{replica}.log"))
    }

    fn pick_port(&self) -> Result<u16> {
        let used: HashSet<u16> = self
            .inner
            .entries
            .lock()
            .unwrap()
            .values()
            .map(|e| e.record.port)
            .collect();
        for _ in 0..32 {
            let l =
                TcpListener::bind(SocketAddr::new(self.inner.bind_ip, 0)).map_err(|source| {
                    RuntimeError::Io {
                        what: "probe a free port".into(),
                        err: source,
                    }
                })?;
            let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
            if port != 0 && !used.contains(&port) {
                return Ok(port);
            }
        }
        Err(RuntimeError::InvalidSpec("no free port found".into()))
    }
}

impl Inner {
    fn running(&self, r: &StateRecord, adopted: bool) -> RunningReplica {
        RunningReplica {
            id: r.replica.clone(),
            service: r.service.clone(),
            addr: r.addr.clone(),
            health_addr: format!("127.0.0.1:{}", r.port),
            health_path: r.spec.health_path.clone(),
            pid: Some(r.pid),
            container_id: None,
            started_ms: r.started_ms,
            adopted,
        }
    }

    fn state_file(&self, replica: &ReplicaId) -> PathBuf {
        self.replicas_dir.join(format!("{replica}.json"))
    }

    /// The process of `replica` (pid `pid`) is gone: forget it and report it, unless it was
    /// already forgotten or replaced by a newer process under the same id.
    fn gone(&self, replica: &ReplicaId, pid: u32, code: Option<i32>, reason: String) {
        {
            let mut entries = self.entries.lock().unwrap();
            match entries.get(replica) {
                Some(e) if e.record.pid == pid => {
                    entries.remove(replica);
                }
                _ => return,
            }
        }
        let _ = std::fs::remove_file(self.state_file(replica));
        // Whatever the leader left behind in its group goes too.
        signal_group(pid, libc::SIGKILL);
        info!(replica = %replica, pid, %reason, "replica process is gone");
        let _ = self.events_tx.send(RuntimeEvent::Exited {
            replica: replica.clone(),
            code,
            reason,
        });
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    async fn start(&self, replica: &ReplicaId, spec: &ReplicaSpec) -> Result<RunningReplica> {
        let start_err = |message: String| RuntimeError::Start {
            replica: replica.clone(),
            message,
        };
        if spec.command.is_empty() || spec.command[0].is_empty() {
            return Err(RuntimeError::InvalidSpec(format!(
                "service {} has no command; the process runtime runs spec.command (an image needs --runtime docker)",
                spec.service
            )));
        }
        if self.inner.entries.lock().unwrap().contains_key(replica) {
            return Err(start_err("it is already running".into()));
        }
        let port = self.pick_port()?;
        let mut argv = substitute(&spec.command, port, replica);
        let program =
            resolve_program(&argv[0], std::env::var_os("PATH").as_deref()).map_err(start_err)?;
        argv[0] = program.to_string_lossy().into_owned();

        let log_path = self.log_file(replica);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| RuntimeError::Io {
                what: format!("open {}", log_path.display()),
                err: source,
            })?;
        let log2 = log.try_clone().map_err(|source| RuntimeError::Io {
            what: "duplicate log file".into(),
            err: source,
        })?;

        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&argv[1..])
            .envs(&spec.env)
            .env("PORT", port.to_string())
            .env("ACS_REPLICA", replica.as_str())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| start_err(format!("spawn {}: {e}", argv[0])))?;
        let Some(pid) = child.id() else {
            return Err(start_err("the process exited at once".into()));
        };

        let record = StateRecord {
            replica: replica.clone(),
            service: spec.service.clone(),
            spec: spec.clone(),
            pid,
            port,
            addr: format!("{}:{port}", self.inner.advertise_host),
            argv,
            started_ms: now_ms(),
        };
        if let Err(e) = write_record(&self.inner.state_file(replica), &record) {
            // Without a state file a restarted worker would not find it: do not leave it behind.
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            return Err(e);
        }

        let inner = self.inner.clone();
        let id = replica.clone();
        // Register before the watcher can possibly report the exit.
        self.inner.entries.lock().unwrap().insert(
            replica.clone(),
            Entry {
                record: record.clone(),
                watcher: None,
            },
        );
        let task = tokio::spawn(async move {
            let (code, reason) = match child.wait().await {
                Ok(status) => (status.code(), describe_status(status)),
                Err(e) => (None, format!("wait failed: {e}")),
            };
            inner.gone(&id, pid, code, reason);
        });
        if let Some(e) = self.inner.entries.lock().unwrap().get_mut(replica) {
            e.watcher = Some(task.abort_handle());
        }
        info!(replica = %replica, service = %spec.service, pid, port, log = %log_path.display(), "replica process started");
        Ok(self.inner.running(&record, false))
    }

    async fn stop(&self, replica: &ReplicaId, grace: Duration) -> Result<()> {
        let Some(pid) = self
            .inner
            .entries
            .lock()
            .unwrap()
            .get(replica)
            .map(|e| e.record.pid)
        else {
            debug!(replica = %replica, "stop: not running");
            return Ok(());
        };
        info!(replica = %replica, pid, grace_ms = grace.as_millis() as u64, "stopping replica (SIGTERM)");
        signal_group(pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && pid_alive(pid) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if pid_alive(pid) {
            warn!(replica = %replica, pid, "still running after the grace period: SIGKILL");
        }
        // Also takes down anything else left in the group.
        signal_group(pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) {
            if Instant::now() > deadline {
                return Err(RuntimeError::Stop {
                    replica: replica.clone(),
                    message: format!("pid {pid} survived SIGKILL"),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // Our own child is reported by its waiter; an adopted one by its poller. Report here
        // too in case neither has run yet (`gone` reports only once).
        self.inner.gone(replica, pid, None, "stopped".into());
        Ok(())
    }

    async fn adopt(&self) -> Result<Vec<RunningReplica>> {
        let dir = &self.inner.replicas_dir;
        let read = std::fs::read_dir(dir).map_err(|source| RuntimeError::Io {
            what: format!("read {}", dir.display()),
            err: source,
        })?;
        let mut adopted = Vec::new();
        for ent in read.flatten() {
            let path = ent.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let record = match read_record(&path) {
                Ok(r) => r,
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "unreadable state file; removing it");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            if let Err(why) = check_adoptable(&record, &read_cmdline) {
                info!(replica = %record.replica, pid = record.pid, %why, "forgetting replica");
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if self
                .inner
                .entries
                .lock()
                .unwrap()
                .contains_key(&record.replica)
            {
                continue;
            }
            info!(replica = %record.replica, service = %record.service, pid = record.pid, addr = %record.addr, "adopting running replica");
            let inner = self.inner.clone();
            let (id, pid, argv) = (record.replica.clone(), record.pid, record.argv.clone());
            self.inner.entries.lock().unwrap().insert(
                id.clone(),
                Entry {
                    record: record.clone(),
                    watcher: None,
                },
            );
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ADOPTED_POLL).await;
                    let alive = pid_alive(pid)
                        && read_cmdline(pid)
                            .map(|c| cmdline_matches(&c, &argv))
                            .unwrap_or(false);
                    if !alive {
                        inner.gone(
                            &id,
                            pid,
                            None,
                            "exited (adopted process; status unknown)".into(),
                        );
                        return;
                    }
                }
            });
            if let Some(e) = self.inner.entries.lock().unwrap().get_mut(&record.replica) {
                e.watcher = Some(task.abort_handle());
            }
            adopted.push(self.inner.running(&record, true));
        }
        adopted.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(adopted)
    }

    async fn list(&self) -> Vec<RunningReplica> {
        let mut v: Vec<_> = self
            .inner
            .entries
            .lock()
            .unwrap()
            .values()
            .map(|e| self.inner.running(&e.record, false))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<RuntimeEvent>> {
        self.events_rx.lock().unwrap().take()
    }

    async fn detach(&self) {
        let mut entries = self.inner.entries.lock().unwrap();
        for (_, e) in entries.drain() {
            if let Some(w) = e.watcher {
                w.abort();
            }
        }
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        // Watchers hold an `Arc<Inner>`; stop them so they do not outlive the runtime.
        if let Ok(mut entries) = self.inner.entries.lock() {
            for (_, e) in entries.drain() {
                if let Some(w) = e.watcher {
                    w.abort();
                }
            }
        }
    }
}

/// Replaces `{port}` and `{replica}` in every argument.
pub fn substitute(command: &[String], port: u16, replica: &ReplicaId) -> Vec<String> {
    let port = port.to_string();
    command
        .iter()
        .map(|a| {
            a.replace("{port}", &port)
                .replace("{replica}", replica.as_str())
        })
        .collect()
}

/// `argv[0]` as a path: as given when it contains a `/`, else the first executable match in
/// `path` (the `PATH` variable).
pub fn resolve_program(
    program: &str,
    path: Option<&std::ffi::OsStr>,
) -> std::result::Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if executable(&p) {
            Ok(p)
        } else {
            Err(format!("{program} is not an executable file"))
        };
    }
    if let Some(path) = path {
        for dir in std::env::split_paths(path) {
            let cand = dir.join(program);
            if executable(&cand) {
                return Ok(cand);
            }
        }
    }
    Err(format!("command {program:?} not found in PATH"))
}

/// Whether `record` still describes a live process: the pid exists, is not a zombie, and its
/// command line is the recorded argv. `cmdline` reads `/proc/<pid>/cmdline` (injectable for
/// tests).
pub fn check_adoptable(
    record: &StateRecord,
    cmdline: &dyn Fn(u32) -> Option<Vec<String>>,
) -> std::result::Result<(), String> {
    if record.pid == 0 || !pid_alive(record.pid) {
        return Err(format!("pid {} is not running", record.pid));
    }
    match cmdline(record.pid) {
        None => Err(format!(
            "cannot read the command line of pid {}",
            record.pid
        )),
        Some(c) if cmdline_matches(&c, &record.argv) => Ok(()),
        Some(c) => Err(format!(
            "pid {} now runs {:?}, not {:?}",
            record.pid, c, record.argv
        )),
    }
}

/// `cmd` (from `/proc`) runs `argv`: the same arguments, and the same program (by path or file
/// name), possibly behind up to two interpreter words (`/bin/sh script`, `python3 script`).
pub fn cmdline_matches(cmd: &[String], argv: &[String]) -> bool {
    if argv.is_empty() || cmd.len() < argv.len() || cmd.len() > argv.len() + 2 {
        return false;
    }
    let k = cmd.len() - argv.len();
    if cmd[k + 1..] != argv[1..] {
        return false;
    }
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    cmd[k] == argv[0] || base(&cmd[k]) == base(&argv[0])
}

/// `/proc/<pid>/cmdline` split at NULs.
pub fn read_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // zombie or kernel thread
    }
    let mut parts: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    if parts.last().is_some_and(|s| s.is_empty()) {
        parts.pop();
    }
    Some(parts)
}

/// The pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Format: `pid (comm) S ...`; comm may contain spaces and parens, so split at the last ')'.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X') | None),
            None => true,
        },
        Err(_) => false,
    }
}

/// Sends `sig` to the process group led by `pgid`; errors (already gone) are ignored.
pub fn signal_group(pgid: u32, sig: libc::c_int) {
    if pgid <= 1 || pgid > i32::MAX as u32 {
        return; // never signal group 0 (our own) or init
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    let rc = unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
    if rc != 0 {
        debug!(pgid, sig, error = %std::io::Error::last_os_error(), "kill(-pgid) failed");
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("exited ({status})"),
    }
}

pub fn write_record(path: &Path, record: &StateRecord) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(record).expect("state records serialize");
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| RuntimeError::Io {
            what: format!("write {}", path.display()),
            err: source,
        })
}

pub fn read_record(path: &Path) -> std::result::Result<StateRecord, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

pub(crate) fn now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            now_ms()
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

    #[test]
    fn substitutes_placeholders() {
        let cmd = vec![
            "srv".into(),
            "--port={port}".into(),
            "{replica}-{port}".into(),
        ];
        assert_eq!(
            substitute(&cmd, 8080, &rid("r1")),
            ["srv", "--port=8080", "r1-8080"]
        );
    }

    #[test]
    fn resolves_through_path() {
        let p = resolve_program("sleep", std::env::var_os("PATH").as_deref()).unwrap();
        assert!(p.is_absolute() && p.ends_with("sleep"), "{p:?}");
        let err = resolve_program("no-such-program-xyz", std::env::var_os("PATH").as_deref())
            .unwrap_err();
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
        let sleep = resolve_program("sleep", std::env::var_os("PATH").as_deref()).unwrap();
        let argv = vec![sleep.to_string_lossy().into_owned(), "30".to_string()];
        let child = Kill(
            std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .spawn()
                .unwrap(),
        );
        let mut record = StateRecord {
            replica: rid("r1"),
            service: ServiceName::new("web").unwrap(),
            spec: spec(&["sleep", "30"]),
            pid: child.0.id(),
            port: 1234,
            addr: "127.0.0.1:1234".into(),
            argv,
            started_ms: 1,
        };
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
        let sleep = resolve_program("sleep", std::env::var_os("PATH").as_deref()).unwrap();
        let argv = vec![sleep.to_string_lossy().into_owned(), "30".to_string()];
        let child = Kill(
            std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .spawn()
                .unwrap(),
        );
        let live = StateRecord {
            replica: rid("live"),
            service: ServiceName::new("web").unwrap(),
            spec: spec(&["sleep", "30"]),
            pid: child.0.id(),
            port: 1111,
            addr: "10.0.0.1:1111".into(),
            argv: argv.clone(),
            started_ms: 5,
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
}
