//! The children of a [`LocalCluster`]: how they are spawned (own process group,
//! `PR_SET_PDEATHSIG`, log file), watched for exits, signalled, restarted and stopped in order.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{io, ClusterError, LocalCluster, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Nats,
    Brain,
    Worker,
    Proxy,
    Monitor,
}

/// How to (re)start one child.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    /// Extra environment: the child's NATS identity (`NATS_NKEY`, `NATS_INBOX_PREFIX`).
    pub(super) env: Vec<(&'static str, String)>,
}

pub(super) struct Proc {
    pub(super) spec: Spec,
    pub(super) child: Child,
    log: PathBuf,
    /// Exit already seen (and reported by `check_children`).
    pub(super) exited: Option<ExitStatus>,
}

/// A child that exited, with the end of its log.
#[derive(Debug, Clone)]
pub struct ChildExit {
    pub name: String,
    pub status: String,
    pub log: PathBuf,
    pub tail: String,
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited ({}); last lines of {}:",
            self.name,
            self.status,
            self.log.display()
        )?;
        for line in self.tail.lines() {
            write!(f, "\n  | {line}")?;
        }
        Ok(())
    }
}

fn describe_status(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

/// The last `lines` lines of a file (reads at most the last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return "(no log)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        "(log is empty)".into()
    } else {
        tail.join("\n")
    }
}

/// Spawns children from one long-lived thread, so that `PR_SET_PDEATHSIG` (which fires when
/// the *thread* that forked dies) fires exactly when the cluster or the whole process goes away.
pub(super) struct Spawner {
    tx: Option<std_mpsc::Sender<(Command, std_mpsc::Sender<std::io::Result<Child>>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    pub(super) fn new() -> Self {
        let (tx, rx) = std_mpsc::channel::<(Command, std_mpsc::Sender<std::io::Result<Child>>)>();
        let thread = std::thread::Builder::new()
            .name("acs-cluster-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn thread");
        Self {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (rtx, rrx) = std_mpsc::channel();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("cluster stopped"))?;
        tx.send((cmd, rtx))
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
        rrx.recv()
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LocalCluster {
    pub(super) fn spawn(&mut self, spec: Spec) -> Result<()> {
        let log = self.dir.join("logs").join(format!("{}.log", spec.name));
        let file = File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = file.try_clone().map_err(io("clone log file"))?;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .args(
                self.opts
                    .extra_args
                    .get(
                        spec.program
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or(""),
                    )
                    .into_iter()
                    .flatten(),
            )
            .env("PATH", &self.path_env)
            // Logs go to files: no colour codes in them.
            .env("NO_COLOR", "1")
            .envs(spec.env.iter().map(|(k, v)| (*k, v)))
            .envs(&self.opts.env)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                }
                Ok(())
            });
        }
        let child = self.spawner.spawn(cmd).map_err(io(format!(
            "start {} ({})",
            spec.name,
            spec.program.display()
        )))?;
        info!(name = %spec.name, pid = child.id(), log = %log.display(), "started");
        self.procs.push(Proc {
            spec,
            child,
            log,
            exited: None,
        });
        Ok(())
    }

    /// Fails with the child's log tail if one of the children has exited.
    pub(super) fn fail_on_exit(&mut self) -> Result<()> {
        fail_on_exit(&mut self.procs)
    }

    /// Children that exited since the last call, each with its log tail.
    pub fn check_children(&mut self) -> Vec<ChildExit> {
        new_exits(&mut self.procs)
    }

    /// The index of the running child called `name`.
    pub(super) fn live(&self, name: &str) -> Option<usize> {
        self.procs
            .iter()
            .position(|p| p.spec.name == name && p.exited.is_none())
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`) to a child: for failover tests and demos.
    pub fn signal(&mut self, name: &str, signal: i32) -> Result<()> {
        let idx = self
            .live(name)
            .ok_or_else(|| ClusterError::UnknownProcess(name.to_string()))?;
        let p = &self.procs[idx];
        // SAFETY: plain syscall on a pid we own (not yet reaped, so it cannot be reused).
        let rc = unsafe { libc::kill(p.child.id() as libc::pid_t, signal) };
        if rc != 0 {
            return Err(ClusterError::Io {
                what: format!("signal {signal} to {name}"),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Stops one child (SIGTERM, then SIGKILL after `grace`) and waits for it.
    pub fn stop_process(&mut self, name: &str, grace: Duration) -> Result<()> {
        let idx = self
            .live(name)
            .ok_or_else(|| ClusterError::UnknownProcess(name.to_string()))?;
        terminate(std::slice::from_mut(&mut self.procs[idx]), grace);
        Ok(())
    }

    /// Starts a child again with the same arguments (its log is overwritten), e.g. a worker
    /// after [`signal`](Self::signal) killed it. Does not wait for readiness.
    pub fn restart_process(&mut self, name: &str) -> Result<()> {
        let idx = self
            .procs
            .iter()
            .rposition(|p| p.spec.name == name)
            .ok_or_else(|| ClusterError::UnknownProcess(name.to_string()))?;
        if self.procs[idx].exited.is_none() {
            terminate(
                std::slice::from_mut(&mut self.procs[idx]),
                Duration::from_secs(10),
            );
        }
        let spec = self.procs.remove(idx).spec;
        self.spawn(spec)
    }

    /// Stops everything in order (monitor, proxy, brain, workers, nats-server) and waits.
    /// Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.nc = None;
        let worker_grace = self.opts.worker_stop_timeout;
        for (role, grace) in [
            (Role::Monitor, Duration::from_secs(5)),
            (Role::Proxy, Duration::from_secs(5)),
            (Role::Brain, Duration::from_secs(5)),
            (Role::Worker, worker_grace),
            (Role::Nats, Duration::from_secs(5)),
        ] {
            let mut group: Vec<&mut Proc> = self
                .procs
                .iter_mut()
                .filter(|p| p.spec.role == role)
                .collect();
            terminate_refs(&mut group, grace);
        }
        info!("local cluster stopped");
    }
}

/// Fails with the first child that exited since the last look, with its log tail.
pub(super) fn fail_on_exit(procs: &mut [Proc]) -> Result<()> {
    match new_exits(procs).into_iter().next() {
        Some(exit) => Err(ClusterError::ChildExited(exit)),
        None => Ok(()),
    }
}

/// Children that exited since the last look, each with its log tail.
fn new_exits(procs: &mut [Proc]) -> Vec<ChildExit> {
    let mut out = Vec::new();
    for p in procs {
        if p.exited.is_some() {
            continue;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            p.exited = Some(status);
            out.push(ChildExit {
                name: p.spec.name.clone(),
                status: describe_status(status),
                log: p.log.clone(),
                tail: log_tail(&p.log, 20),
            });
        }
    }
    out
}

fn terminate(procs: &mut [Proc], grace: Duration) {
    let mut refs: Vec<&mut Proc> = procs.iter_mut().collect();
    terminate_refs(&mut refs, grace);
}

/// SIGTERM to every live process of the group, wait up to `grace`, SIGKILL the rest, reap all.
fn terminate_refs(procs: &mut [&mut Proc], grace: Duration) {
    for p in procs.iter_mut() {
        if p.exited.is_none() {
            if let Ok(Some(s)) = p.child.try_wait() {
                p.exited = Some(s);
                continue;
            }
            // SAFETY: plain syscall on a child we have not reaped.
            unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        let mut alive = false;
        for p in procs.iter_mut() {
            if p.exited.is_none() {
                match p.child.try_wait() {
                    Ok(Some(s)) => p.exited = Some(s),
                    _ => alive = true,
                }
            }
        }
        if !alive {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in procs.iter_mut() {
        if p.exited.is_none() {
            warn!(name = %p.spec.name, "did not stop in time; killing");
            let _ = p.child.kill();
            if let Ok(s) = p.child.wait() {
                p.exited = Some(s);
            }
        }
    }
}
