//! Process plumbing: finding the program in `PATH`, process liveness from `/proc`, signalling
//! a process group, describing an exit status.

use std::path::{Path, PathBuf};

use tracing::debug;

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

pub(super) fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("exited ({status})"),
    }
}
