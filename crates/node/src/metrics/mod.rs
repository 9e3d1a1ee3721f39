//! `GET /metrics` in the Prometheus text format (0.0.4), for every long-running component.
//!
//! A binary flattens [`MetricsArgs`] into its flags and turns them into a [`MetricsListen`]
//! (or `None`: off, the default). The component fills a `prometheus_client` [`Registry`] with
//! its metrics (preferably collectors that read counters it already keeps, at scrape time) and
//! calls [`spawn`]. Every request needs `Authorization: Bearer <token>` unless the process was
//! started with `--metrics-insecure-no-auth` (tests only); the token is compared in constant
//! time. Only `GET` and `HEAD` on `/metrics` are answered; refusals are logged and counted in
//! `acs_metrics_http_refused_total`. Given a [`Readiness`] ([`spawn_with_health`]), the same
//! server also answers the public `/healthz` and `/readyz`; [`spawn_health`] serves only those.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::health::{self, Readiness};

pub use prometheus_client;

/// One unlabelled counter read at scrape time, for a [`prometheus_client::collector::Collector`]
/// (the name gets `_total`).
pub fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One unlabelled gauge read at scrape time, for a [`prometheus_client::collector::Collector`].
pub fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

pub const METRICS_PATH: &str = "/metrics";
/// Shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;
/// What a scrape answer is.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "metrics on {0} need a bearer token: pass --metrics-token-file FILE (or ACS_METRICS_TOKEN_FILE); \
         --metrics-insecure-no-auth serves without one (tests only)"
    )]
    NoToken(SocketAddr),
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token in {0} is shorter than {MIN_TOKEN_LEN} characters")]
    ShortToken(PathBuf),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The `--metrics-*` flags, flattened into each binary's own `clap` arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. 127.0.0.1:9480. Default: off.
    #[arg(long = "metrics-listen", env = "ACS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// File holding the bearer token every scrape must carry (at least 16 characters; mode 0600).
    #[arg(long = "metrics-token-file", env = "ACS_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Serve metrics without a token. Only for tests: anyone who reaches the port reads them.
    #[arg(
        long = "metrics-insecure-no-auth",
        conflicts_with = "metrics_token_file"
    )]
    pub metrics_insecure_no_auth: bool,
}

impl MetricsArgs {
    /// `None` without `--metrics-listen`; a listen address without a token (or the insecure
    /// flag) is an error that says what to pass.
    pub fn into_listen(self) -> Result<Option<MetricsListen>, MetricsError> {
        let Some(addr) = self.metrics_listen else {
            return Ok(None);
        };
        let auth = match (self.metrics_token_file, self.metrics_insecure_no_auth) {
            (_, true) => MetricsAuth::Insecure,
            (Some(path), false) => MetricsAuth::Bearer(read_token(path)?),
            (None, false) => return Err(MetricsError::NoToken(addr)),
        };
        Ok(Some(MetricsListen { addr, auth }))
    }
}

/// A bearer token from a file (trimmed, at least 16 characters). The monitor's REST API reads
/// its token the same way.
pub fn read_token(path: PathBuf) -> Result<String, MetricsError> {
    let token = std::fs::read_to_string(&path).map_err(|source| MetricsError::Read {
        path: path.clone(),
        source,
    })?;
    let token = token.trim();
    if token.len() < MIN_TOKEN_LEN {
        return Err(MetricsError::ShortToken(path));
    }
    Ok(token.to_string())
}

/// Who may scrape: a bearer token, or nobody checked (`--metrics-insecure-no-auth`).
#[derive(Clone, PartialEq, Eq)]
pub enum MetricsAuth {
    Bearer(String),
    Insecure,
}

impl std::fmt::Debug for MetricsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MetricsAuth::Bearer(_) => "Bearer(<redacted>)",
            MetricsAuth::Insecure => "Insecure",
        })
    }
}

/// Where and how a component serves its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsListen {
    pub addr: SocketAddr,
    pub auth: MetricsAuth,
}

/// Binds `listen.addr` and serves `registry` from a task; returns the bound address (port 0
/// becomes the real port) and the task (abort it to stop serving).
pub async fn spawn(
    listen: &MetricsListen,
    registry: Registry,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    let site = Site {
        auth: listen.auth.clone(),
        registry: Some(Arc::new(registry)),
        ready: None,
    };
    bind_and_serve(listen.addr, site).await
}

/// [`spawn`], plus `/healthz` and `/readyz` answered from `ready`.
pub async fn spawn_with_health(
    listen: &MetricsListen,
    registry: Registry,
    ready: Readiness,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    let site = Site {
        auth: listen.auth.clone(),
        registry: Some(Arc::new(registry)),
        ready: Some(ready),
    };
    bind_and_serve(listen.addr, site).await
}

/// Only `/healthz` and `/readyz` on `addr` (`--health-listen`): nothing there needs a token.
pub async fn spawn_health(
    addr: SocketAddr,
    ready: Readiness,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    let site = Site {
        auth: MetricsAuth::Insecure,
        registry: None,
        ready: Some(ready),
    };
    bind_and_serve(addr, site).await
}

/// The HTTP servers of one component: metrics with health on `--metrics-listen`, health
/// alone on `--health-listen`. Dropping it stops them.
#[derive(Debug, Default)]
pub struct Servers(Vec<JoinHandle<()>>);

impl Servers {
    /// Starts whichever of the two is asked for; `registry` is built only for metrics.
    pub async fn start(
        metrics: Option<&MetricsListen>,
        registry: impl FnOnce() -> Registry,
        health: Option<SocketAddr>,
        ready: &Readiness,
    ) -> Result<Self, MetricsError> {
        let mut tasks = Vec::new();
        if let Some(listen) = metrics {
            tasks.push(
                spawn_with_health(listen, registry(), ready.clone())
                    .await?
                    .1,
            );
        }
        if let Some(addr) = health {
            tasks.push(spawn_health(addr, ready.clone()).await?.1);
        }
        Ok(Self(tasks))
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// What one server answers: `/metrics` (with a registry) behind `auth`, the health paths
/// (with a readiness) to anyone.
#[derive(Clone)]
struct Site {
    auth: MetricsAuth,
    registry: Option<Arc<Registry>>,
    ready: Option<Readiness>,
}

async fn bind_and_serve(
    addr: SocketAddr,
    site: Site,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    let bind_err = |source| MetricsError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    if site.registry.is_some() {
        let health = site.ready.is_some();
        tracing::info!(%addr, auth = ?site.auth, health, "serving Prometheus metrics on GET {METRICS_PATH}");
    } else {
        tracing::info!(%addr, "serving GET {} and {}", health::HEALTHZ, health::READYZ);
    }
    Ok((addr, tokio::spawn(serve_site(listener, site))))
}

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, auth: MetricsAuth, registry: Arc<Registry>) {
    let site = Site {
        auth,
        registry: Some(registry),
        ready: None,
    };
    serve_site(listener, site).await
}

/// [`serve`], plus `/healthz` and `/readyz` answered from `ready`.
pub async fn serve_with_health(
    listener: TcpListener,
    auth: MetricsAuth,
    registry: Arc<Registry>,
    ready: Readiness,
) {
    let site = Site {
        auth,
        registry: Some(registry),
        ready: Some(ready),
    };
    serve_site(listener, site).await
}

/// Only `/healthz` and `/readyz`, until the task is dropped.
pub async fn serve_health(listener: TcpListener, ready: Readiness) {
    let site = Site {
        auth: MetricsAuth::Insecure,
        registry: None,
        ready: Some(ready),
    };
    serve_site(listener, site).await
}

async fn serve_site(listener: TcpListener, site: Site) {
    let refused = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                // Out of descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (site, refused) = (site.clone(), refused.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let out = handle(&site, &refused, peer, &req);
                async move { Ok::<_, std::convert::Infallible>(out) }
            });
            // A client that never finishes its headers is dropped instead of holding a task.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

fn handle(
    site: &Site,
    refused: &AtomicU64,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    // Health first and without a token: an orchestrator's probe carries none, and the answer
    // reveals nothing but ok / not ready.
    if let Some((status, body)) = site
        .ready
        .as_ref()
        .and_then(|ready| health::answer(req.uri().path(), ready))
        .filter(|_| get)
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return text(status, "text/plain; charset=utf-8", body.into());
    }
    let refuse = |status: StatusCode, error: String| {
        let total = refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(%peer, path = req.uri().path(), status = status.as_u16(), %error, total, "refused a metrics request");
        let mut r = text(status, "text/plain; charset=utf-8", format!("{error}\n"));
        match status {
            StatusCode::UNAUTHORIZED => {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                r.headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            }
            _ => {}
        }
        r
    };
    let Some(registry) = &site.registry else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {}; try GET {} or {}",
                req.uri().path(),
                health::HEALTHZ,
                health::READYZ
            ),
        );
    };
    if let MetricsAuth::Bearer(token) = &site.auth {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token>)".into(),
            );
        }
    }
    if req.uri().path() != METRICS_PATH {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {}; try GET {METRICS_PATH}",
                req.uri().path()
            ),
        );
    }
    if !get {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed; use GET", req.method()),
        );
    }
    match encode(registry, refused.load(Ordering::Relaxed)) {
        Ok(body) => text(StatusCode::OK, CONTENT_TYPE, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "cannot encode the metrics\n".into(),
            )
        }
    }
}

/// The registry, then this server's own refusal counter.
fn encode(registry: &Registry, refused: u64) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(4096);
    prometheus_text::encode(&mut out, registry)?;
    let mut own = Registry::default();
    own.register(
        "acs_metrics_http_refused",
        "Requests to this /metrics endpoint that were refused (bad token, path or method)",
        ConstCounter::new(refused),
    );
    prometheus_text::encode(&mut out, &own)?;
    Ok(out)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// Compares a presented token with the expected one in time that does not depend on where
/// they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
