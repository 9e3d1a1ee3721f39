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
//!
//! Here: the runtime (spawn, stop, adopt). `state`: the state files and the adoption check.
//! `unix`: `PATH` lookup, `/proc`, process-group signals.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use acs_events::{ReplicaId, ReplicaSpec, RuntimeKind};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::{by_id, Result, RunningReplica, Runtime, RuntimeError, RuntimeEvent};
use crate::clock::unix_now_ms;
use crate::spec::{replica_env, substitute, without_secret_values};

mod state;
mod unix;

pub use state::{
    check_adoptable, cmdline_matches, read_cmdline, read_record, write_record, StateRecord,
};
use unix::describe_status;
pub use unix::{pid_alive, resolve_program, signal_group};

/// How often adopted processes (not our children, so we cannot `wait` on them) are polled.
const ADOPTED_POLL: Duration = Duration::from_millis(500);

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

    fn pid_of(&self, replica: &ReplicaId) -> Option<u32> {
        self.entries
            .lock()
            .unwrap()
            .get(replica)
            .map(|e| e.record.pid)
    }

    fn state_file(&self, replica: &ReplicaId) -> PathBuf {
        self.replicas_dir.join(format!("{replica}.json"))
    }

    /// Tracks `record` and spawns `watcher`, the task that reports its exit. The entry is in
    /// place before the task runs, so the exit is never reported for an untracked replica.
    fn track(&self, record: StateRecord, watcher: impl Future<Output = ()> + Send + 'static) {
        let id = record.replica.clone();
        let mut entries = self.entries.lock().unwrap();
        entries.insert(
            id.clone(),
            Entry {
                record,
                watcher: None,
            },
        );
        let task = tokio::spawn(watcher);
        if let Some(e) = entries.get_mut(&id) {
            e.watcher = Some(task.abort_handle());
        }
    }

    /// Forgets every replica and stops their watchers; the processes themselves keep running.
    fn forget_all(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, e) in entries.drain() {
            if let Some(w) = e.watcher {
                w.abort();
            }
        }
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
            .envs(replica_env(&spec.env, port, replica))
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
            // Secret values stay in the process's environment, not in the state file.
            spec: without_secret_values(spec),
            pid,
            port,
            addr: format!("{}:{port}", self.inner.advertise_host),
            argv,
            started_ms: unix_now_ms(),
        };
        if let Err(e) = write_record(&self.inner.state_file(replica), &record) {
            // Without a state file a restarted worker would not find it: do not leave it behind.
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            return Err(e);
        }

        let inner = self.inner.clone();
        let id = replica.clone();
        self.inner.track(record.clone(), async move {
            let (code, reason) = match child.wait().await {
                Ok(status) => (status.code(), describe_status(status)),
                Err(e) => (None, format!("wait failed: {e}")),
            };
            inner.gone(&id, pid, code, reason);
        });
        info!(replica = %replica, service = %spec.service, pid, port, log = %log_path.display(), "replica process started");
        Ok(self.inner.running(&record, false))
    }

    async fn stop(&self, replica: &ReplicaId, grace: Duration) -> Result<()> {
        let Some(pid) = self.inner.pid_of(replica) else {
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
            let poll = poll_adopted(self.inner.clone(), &record);
            self.inner.track(record.clone(), poll);
            adopted.push(self.inner.running(&record, true));
        }
        Ok(by_id(adopted))
    }

    async fn list(&self) -> Vec<RunningReplica> {
        let entries = self.inner.entries.lock().unwrap();
        by_id(
            entries
                .values()
                .map(|e| self.inner.running(&e.record, false))
                .collect(),
        )
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<RuntimeEvent>> {
        self.events_rx.lock().unwrap().take()
    }

    async fn detach(&self) {
        self.inner.forget_all();
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        // Watchers hold an `Arc<Inner>`; stop them so they do not outlive the runtime.
        self.inner.forget_all();
    }
}

/// Watches an adopted process, which is not our child (no `wait`): polls until its pid is gone
/// or runs something else, then reports it gone.
fn poll_adopted(inner: Arc<Inner>, record: &StateRecord) -> impl Future<Output = ()> {
    let (id, pid, argv) = (record.replica.clone(), record.pid, record.argv.clone());
    async move {
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
    }
}

#[cfg(test)]
mod tests;
