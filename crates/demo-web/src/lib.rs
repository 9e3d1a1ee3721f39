//! The demo workload that acs scales: a tiny HTTP server that burns CPU per request.
//!
//! # Layout
//!
//! - [`Config`]: port, bind address, instance id, default work per request.
//! - [`run`]: binds and serves until `shutdown` resolves; [`serve`] does the same on a listener
//!   the caller bound (tests bind port 0).
//! - Routes (all in this file):
//!   - `GET /`, `GET /work?ms=N`: busy-spins one CPU for N ms (default `work_ms`) on the blocking
//!     pool, answers `"<id> did <n> ms of work\n"`.
//!   - `GET /whoami`: `{"instance","pid","port","hostname","requests"}` as JSON.
//!   - `GET /healthz`: `ok`.
//!   - anything else: 404.
//!
//! Shutdown is graceful: the listener closes at once, requests in flight finish (hyper-util's
//! `GracefulShutdown`, bounded by [`Config::drain_timeout`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// Longest work a single request may ask for.
pub const MAX_WORK_MS: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// Instance id reported in answers (`ACS_REPLICA` when run by a worker).
    pub id: String,
    /// Work per request when `?ms=` is not given.
    pub work_ms: u64,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Config {
    pub fn new(port: u16) -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port,
            id: default_id(),
            work_ms: 10,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// `<hostname>-<pid>`.
pub fn default_id() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

/// The host name from the kernel, or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Binds `config.bind:config.port` and serves until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    serve(listener, config, shutdown).await;
    Ok(())
}

struct State {
    id: String,
    port: u16,
    hostname: String,
    work_ms: u64,
    requests: AtomicU64,
}

/// Serves on `listener` until `shutdown` resolves, then drains connections.
pub async fn serve(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    let local = listener.local_addr().ok();
    let port = local.map(|a| a.port()).unwrap_or(config.port);
    let state = Arc::new(State {
        id: config.id.clone(),
        port,
        hostname: hostname(),
        work_ms: config.work_ms,
        requests: AtomicU64::new(0),
    });
    info!(instance = %config.id, addr = ?local, work_ms = config.work_ms, "demo-web listening");

    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off a little and keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    info!(
        in_flight = graceful.count(),
        "shutting down: listener closed, draining connections"
    );
    match tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await {
        Ok(()) => info!("all connections closed"),
        Err(_) => {
            warn!(timeout = ?config.drain_timeout, "connections still open after the drain timeout")
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let served = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.uri().path();
    let resp = match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/whoami") => {
            let body = serde_json::json!({
                "instance": state.id,
                "pid": std::process::id(),
                "port": state.port,
                "hostname": state.hostname,
                "requests": served,
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!("{body}\n"))))
                .expect("static response parts are valid")
        }
        (&Method::GET, "/" | "/work") => match work_ms(req.uri().query(), state.work_ms) {
            Ok(ms) => {
                let _ = tokio::task::spawn_blocking(move || burn(Duration::from_millis(ms))).await;
                text(
                    StatusCode::OK,
                    format!("{} did {ms} ms of work\n", state.id),
                )
            }
            Err(msg) => text(StatusCode::BAD_REQUEST, format!("{msg}\n")),
        },
        (_, "/" | "/work" | "/whoami" | "/healthz") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, format!("no route for {path}\n")),
    };
    Ok(resp)
}

/// The `ms` query parameter, or `default`.
fn work_ms(query: Option<&str>, default: u64) -> Result<u64, String> {
    let Some(q) = query else { return Ok(default) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("ms=") {
            let ms: u64 = v.parse().map_err(|_| {
                format!("ms must be a whole number of milliseconds >= 0, got {v:?}")
            })?;
            if ms > MAX_WORK_MS {
                return Err(format!("ms must be <= {MAX_WORK_MS}, got {ms}"));
            }
            return Ok(ms);
        }
    }
    Ok(default)
}

/// Keeps one CPU busy for `d`; returns how long it actually ran.
pub fn burn(d: Duration) -> Duration {
    let start = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while start.elapsed() < d {
        for _ in 0..2_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
        std::hint::black_box(x);
    }
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_work_ms() {
        assert_eq!(work_ms(None, 10), Ok(10));
        assert_eq!(work_ms(Some("x=1"), 10), Ok(10));
        assert_eq!(work_ms(Some("a=b&ms=25"), 10), Ok(25));
        assert_eq!(work_ms(Some("ms=0"), 10), Ok(0));
        assert!(work_ms(Some("ms=-1"), 10).unwrap_err().contains(">= 0"));
        assert!(work_ms(Some("ms=abc"), 10).is_err());
        assert!(work_ms(Some("ms=999999"), 10).unwrap_err().contains("<="));
    }

    #[test]
    fn burn_runs_at_least_as_long_as_asked() {
        assert!(burn(Duration::from_millis(5)) >= Duration::from_millis(5));
    }
}
