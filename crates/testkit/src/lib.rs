//! Test harness shared by integration tests. What it starts is real: [`NatsServer`] runs the
//! `nats-server` binary on a free loopback port, as async-nats's own test harness does, and
//! [`docker`] drives the local Docker engine.
//!
//! # Layout
//!
//! - [`nats`]: [`NatsServer`], start / stop / restart / reload a real server, killed on drop;
//!   [`NatsServer::with_auth`] demands credentials ([`ServerAuth`]: nats-server's flags, or the
//!   `auth.conf` of an auth directory, with or without TLS).
//! - [`msg`]: messages as tests build them ([`msg::worker_metrics`], [`msg::proxy_metrics`]).
//! - [`free_port`], [`wait_for_port`]: loopback port helpers.
//! - [`bin_dir`], [`workspace_bin`]: where this workspace's binaries are built
//!   (`target/<profile>`), and the path of one of them; [`nats_server_bin`]: the server's path.
//! - [`TempDir`]: a scratch directory removed on drop.
//! - [`http`]: one raw HTTP/1.1 GET on a fresh connection, `(status, body)`.
//! - [`poll`]: [`poll::eventually`] / [`poll::until`], polling a condition with a deadline.
//! - [`docker`]: the real Docker engine through the `docker` CLI: [`docker::require_docker`]
//!   (fail without an engine, unless `ACS_SKIP_DOCKER_TESTS=1`), a throwaway `FROM scratch`
//!   image of a workspace binary, and guards that remove containers, networks and images.

pub mod docker;
pub mod http;
pub mod msg;
pub mod nats;
pub mod poll;

pub use nats::{NatsServer, ServerAuth};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Ports [`free_port`] picks from: below Linux's ephemeral range (32768..61000), so a port the
/// kernel hands out for an outgoing connection cannot take it between our check and the child's
/// bind (a port-0 listener's port could be).
const FREE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port from `FREE_PORTS` that was free a moment ago on 127.0.0.1. Walks the range from a
/// start that differs per process and call time, so parallel test processes spread out; within a
/// process no port is handed out twice (until the range wraps).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let len = u32::from(FREE_PORTS.end - FREE_PORTS.start);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let start = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % len;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..len {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % len;
        let port = FREE_PORTS.start + n as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listened on {addr} within {timeout:?}"))
}

/// Where `nats-server` is: `$NATS_SERVER_BIN`, then `PATH`, then Debian's `/usr/sbin`.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("nats-server");
            if cand.is_file() {
                return cand;
            }
        }
    }
    PathBuf::from("/usr/sbin/nats-server")
}

/// The directory of the running executable: where this workspace's binaries are built
/// (`target/<profile>`; test binaries live one level down, in `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary (e.g. `demo-web`); panics with a hint when it is not built.
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        Path::new(&p).is_file(),
        "{} is not built; run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("acs-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_outside_the_ephemeral_range_and_distinct() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        assert!(ports.iter().all(|p| FREE_PORTS.contains(p)), "{ports:?}");
        let mut uniq = ports.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), ports.len(), "{ports:?}");
    }
}
