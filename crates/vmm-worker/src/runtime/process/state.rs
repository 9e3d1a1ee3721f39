//! State files: one [`StateRecord`] per replica under `<state-dir>/replicas/`, written when a
//! replica starts and read back by a restarted worker, and the check whether a recorded pid is
//! still that replica (alive, and running the recorded argv) before it is adopted.

use std::path::Path;

use acs_events::{ReplicaId, ReplicaSpec, ServiceName, UnixMs};
use serde::{Deserialize, Serialize};

use super::unix::pid_alive;
use crate::runtime::{Result, RuntimeError};

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
