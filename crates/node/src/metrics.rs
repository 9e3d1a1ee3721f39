//! `GET /metrics` in the Prometheus text format (0.0.4), for every long-running component.
//!
//! A binary flattens [`MetricsArgs`] into its flags and turns them into a [`MetricsListen`]
//! (or `None`: off, the default). The component fills a `prometheus_client` [`Registry`] with
//! its metrics (preferably collectors that read counters it already keeps, at scrape time) and
//! calls [`spawn`]. Every request needs `Authorization: Bearer <token>` unless the process was
//! started with `--metrics-insecure-no-auth` (tests only); the token is compared in constant
//! time. Only `GET` and `HEAD` on `/metrics` are answered; refusals are logged and counted in
//! `acs_metrics_http_refused_total`.

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
    let bind_err = |source| MetricsError::Bind {
        addr: listen.addr,
        source,
    };
    let listener = TcpListener::bind(listen.addr).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    tracing::info!(%addr, auth = ?listen.auth, "serving Prometheus metrics on GET {METRICS_PATH}");
    Ok((
        addr,
        tokio::spawn(serve(listener, listen.auth.clone(), Arc::new(registry))),
    ))
}

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, auth: MetricsAuth, registry: Arc<Registry>) {
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
        let (auth, registry, refused) = (auth.clone(), registry.clone(), refused.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let out = handle(&auth, &registry, &refused, peer, &req);
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
    auth: &MetricsAuth,
    registry: &Registry,
    refused: &AtomicU64,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
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
    if let MetricsAuth::Bearer(token) = auth {
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
    if req.method() != Method::GET && req.method() != Method::HEAD {
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
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOKEN: &str = "0123456789abcdef0123";

    /// One raw HTTP/1.1 request on a fresh connection; the status code and the whole answer.
    async fn ask(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, out)
    }

    async fn server(auth: MetricsAuth) -> (SocketAddr, Counter) {
        let mut registry = Registry::default();
        let c = Counter::default();
        registry.register("acs_test_things", "Things", c.clone());
        c.inc_by(7);
        let listen = MetricsListen {
            addr: "127.0.0.1:0".parse().unwrap(),
            auth,
        };
        let (addr, _task) = spawn(&listen, registry).await.unwrap();
        (addr, c)
    }

    #[tokio::test]
    async fn the_token_is_required_and_only_get_metrics_is_served() {
        let (addr, c) = server(MetricsAuth::Bearer(TOKEN.into())).await;

        let (code, out) = ask(addr, "GET", "/metrics", None).await;
        assert_eq!(code, 401, "{out}");
        assert!(
            out.to_lowercase().contains("www-authenticate: bearer"),
            "{out}"
        );
        assert!(!out.contains("acs_test_things"), "{out}");
        let (code, _) = ask(addr, "GET", "/metrics", Some("0123456789abcdef0124")).await;
        assert_eq!(code, 401);
        let (code, _) = ask(addr, "GET", "/metrics", Some("short")).await;
        assert_eq!(code, 401);
        // Unauthenticated, other paths look the same as /metrics: nothing to probe.
        let (code, _) = ask(addr, "GET", "/other", None).await;
        assert_eq!(code, 401);

        c.inc();
        let (code, out) = ask(addr, "GET", "/metrics", Some(TOKEN)).await;
        assert_eq!(code, 200, "{out}");
        assert!(
            out.contains(&format!("content-type: {CONTENT_TYPE}")),
            "{out}"
        );
        assert!(
            out.contains("# TYPE acs_test_things_total counter\n"),
            "{out}"
        );
        assert!(out.contains("\nacs_test_things_total 8\n"), "{out}");
        // Four refusals so far.
        assert!(
            out.contains("\nacs_metrics_http_refused_total 4\n"),
            "{out}"
        );

        let (code, out) = ask(addr, "HEAD", "/metrics", Some(TOKEN)).await;
        assert_eq!(code, 200, "{out}");
        assert!(
            !out.contains("acs_test_things"),
            "a HEAD answer has no body: {out}"
        );

        let (code, out) = ask(addr, "GET", "/metricsx", Some(TOKEN)).await;
        assert_eq!(code, 404, "{out}");
        assert!(out.contains("try GET /metrics"), "{out}");
        let (code, out) = ask(addr, "POST", "/metrics", Some(TOKEN)).await;
        assert_eq!(code, 405, "{out}");
        assert!(out.to_lowercase().contains("allow: get, head"), "{out}");
    }

    #[tokio::test]
    async fn insecure_serves_without_a_token() {
        let (addr, _c) = server(MetricsAuth::Insecure).await;
        let (code, out) = ask(addr, "GET", "/metrics", None).await;
        assert_eq!(code, 200, "{out}");
        assert!(out.contains("acs_test_things_total 7"), "{out}");
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_does_not_block_others() {
        let (addr, _c) = server(MetricsAuth::Bearer(TOKEN.into())).await;
        let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (code, _) = ask(addr, "GET", "/metrics", Some(TOKEN)).await;
        assert_eq!(code, 200);
    }

    #[test]
    fn flags_turn_into_a_listener_or_say_what_is_missing() {
        let addr: SocketAddr = "127.0.0.1:9480".parse().unwrap();
        let off = MetricsArgs::default();
        assert_eq!(off.into_listen().unwrap(), None);

        let no_token = MetricsArgs {
            metrics_listen: Some(addr),
            ..Default::default()
        };
        let err = no_token.into_listen().unwrap_err().to_string();
        assert!(
            err.contains("--metrics-token-file") && err.contains("--metrics-insecure-no-auth"),
            "{err}"
        );

        let dir = std::env::temp_dir().join(format!("acs-metrics-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short.token");
        std::fs::write(&short, "abc\n").unwrap();
        let err = MetricsArgs {
            metrics_listen: Some(addr),
            metrics_token_file: Some(short),
            metrics_insecure_no_auth: false,
        }
        .into_listen()
        .unwrap_err();
        assert!(matches!(err, MetricsError::ShortToken(_)), "{err}");

        let good = dir.join("good.token");
        std::fs::write(&good, format!("{TOKEN}\n")).unwrap();
        let l = MetricsArgs {
            metrics_listen: Some(addr),
            metrics_token_file: Some(good),
            metrics_insecure_no_auth: false,
        }
        .into_listen()
        .unwrap()
        .unwrap();
        assert_eq!(
            l,
            MetricsListen {
                addr,
                auth: MetricsAuth::Bearer(TOKEN.into())
            }
        );

        let missing = MetricsArgs {
            metrics_listen: Some(addr),
            metrics_token_file: Some(dir.join("nope")),
            metrics_insecure_no_auth: false,
        };
        assert!(matches!(
            missing.into_listen(),
            Err(MetricsError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn clap_reads_the_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            metrics: MetricsArgs,
        }
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "x",
            "--metrics-listen",
            "127.0.0.1:1",
            "--metrics-insecure-no-auth",
        ])
        .unwrap();
        assert_eq!(
            cli.metrics.into_listen().unwrap().unwrap().auth,
            MetricsAuth::Insecure
        );
        assert!(Cli::try_parse_from([
            "x",
            "--metrics-token-file",
            "f",
            "--metrics-insecure-no-auth"
        ])
        .is_err());
    }
}
