//! `GET /healthz` (the process answers) and `GET /readyz` (it does its job): [`Readiness`],
//! which each component feeds (NATS connected, its loop turning, its routes loaded), the
//! `--health-listen` flag ([`HealthArgs`]) for a port that serves only these two, and
//! [`probe`], the `--healthcheck URL` mode that lets a container image without a shell or
//! curl (ours are `FROM scratch`) check itself.
//!
//! Both answers are public and say nothing but `ok` or `not ready`: why a component is not
//! ready is in its log, not on the wire.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";

/// The health flags every long-running binary flattens into its own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HealthArgs {
    /// Serve only `GET /healthz` and `GET /readyz` (public, no token) on this address, e.g.
    /// 127.0.0.1:9479. `--metrics-listen` serves them too. Default: off.
    #[arg(long = "health-listen", env = "ACS_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Ask `URL` (e.g. `http://127.0.0.1:9479/readyz`) and exit 0 if it answers 200, 1
    /// otherwise: the container health check of an image without a shell.
    #[arg(long = "healthcheck", value_name = "URL")]
    pub healthcheck: Option<String>,
}

/// What a component must show to be ready; see [`Readiness::new`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadyWhen {
    /// Its loop must have called [`Readiness::beat`] within this long.
    pub beat_within: Option<Duration>,
    /// It must have called [`Readiness::loaded`] once (e.g. its routes arrived).
    pub loaded: bool,
}

/// A component's readiness, cheap to clone and to update from any task. Ready when NATS is
/// connected (after [`Readiness::connected`]) and what [`ReadyWhen`] asks holds.
#[derive(Clone)]
pub struct Readiness(Arc<Inner>);

struct Inner {
    when: ReadyWhen,
    start: Instant,
    nats: OnceLock<async_nats::Client>,
    /// Milliseconds after `start` of the last beat, plus one; 0: never.
    beat: AtomicU64,
    loaded: AtomicBool,
}

impl Readiness {
    pub fn new(when: ReadyWhen) -> Self {
        Self(Arc::new(Inner {
            when,
            start: Instant::now(),
            nats: OnceLock::new(),
            beat: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
        }))
    }

    /// The NATS connection whose state counts from now on.
    pub fn connected(&self, client: &async_nats::Client) {
        let _ = self.0.nats.set(client.clone());
    }

    /// The component's loop turned.
    pub fn beat(&self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.0.beat.store(ms + 1, Ordering::Relaxed);
    }

    /// What the component needs before it can serve has arrived.
    pub fn loaded(&self) {
        self.0.loaded.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        let i = &self.0;
        let nats = i
            .nats
            .get()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected);
        let beat = i.when.beat_within.is_none_or(|within| {
            let last = i.beat.load(Ordering::Relaxed);
            last > 0 && i.start.elapsed().as_millis() < u128::from(last - 1) + within.as_millis()
        });
        let loaded = !i.when.loaded || i.loaded.load(Ordering::Relaxed);
        nats && beat && loaded
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("when", &self.0.when)
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// The answer to `path`, if it is a health path: `(status, body)`.
pub fn answer(path: &str, ready: &Readiness) -> Option<(u16, &'static str)> {
    match path {
        HEALTHZ => Some((200, "ok\n")),
        READYZ if ready.is_ready() => Some((200, "ok\n")),
        READYZ => Some((503, "not ready\n")),
        _ => None,
    }
}

/// `--healthcheck URL`: a plain `GET` over HTTP/1.1 (no TLS: health ports are local), exit 0
/// on a 200 within 3 s, else 1 with the reason on stderr.
pub fn probe(url: &str) -> ExitCode {
    match check(url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// [`probe`] as a `Result`, for a `main` that returns one.
pub fn check(url: &str) -> Result<(), String> {
    match probe_status(url, Duration::from_secs(3)) {
        Ok(200) => Ok(()),
        Ok(status) => Err(format!("healthcheck {url}: HTTP {status}")),
        Err(e) => Err(format!("healthcheck {url}: {e}")),
    }
}

/// The status code `url` answers a `GET` with.
pub fn probe_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("want an http:// URL such as http://127.0.0.1:9479/readyz")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // The status line is all we need: read until its end (or 64 bytes, or the end).
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while head.len() < 64 && !head.contains(&b'\n') {
        match s.read(&mut buf).map_err(|e| e.to_string())? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.strip_prefix("HTTP/1.")
        .and_then(|l| l.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                line.lines().next().unwrap_or("")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_is_always_ok_and_readyz_waits_for_what_was_asked() {
        let r = Readiness::new(ReadyWhen {
            beat_within: Some(Duration::from_secs(60)),
            loaded: true,
        });
        assert_eq!(answer("/healthz", &r), Some((200, "ok\n")));
        assert_eq!(answer("/readyz", &r), Some((503, "not ready\n")));
        assert_eq!(answer("/metrics", &r), None);
        r.beat();
        r.loaded();
        // Still no NATS connection.
        assert!(!r.is_ready());
    }

    #[test]
    fn a_stale_beat_is_not_ready() {
        let r = Readiness::new(ReadyWhen {
            beat_within: Some(Duration::ZERO),
            loaded: false,
        });
        r.beat();
        assert!(!r.is_ready());
    }

    #[test]
    fn probe_refuses_what_it_cannot_ask() {
        let e = probe_status("https://x/readyz", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(probe_status(&format!("http://{closed}/readyz"), Duration::from_secs(1)).is_err());
    }
}
