//! The proxy's test rig: a real nats-server (acs-testkit), the real `acs-proxy` binary, tiny
//! in-test HTTP backends that answer with their own id, and a fake brain that answers sync
//! requests.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acs_events::{
    decode, encode, Backend, BackendChange, BackendUpdate, ProxyId, ProxyMetrics, ReplicaId, Route,
    Selection, ServiceName, Subjects, SyncReply, WorkerId,
};
use acs_testkit::{free_port, wait_for_port, NatsServer};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub const DEADLINE: Duration = Duration::from_secs(30);

// ---- backends ------------------------------------------------------------------------------

/// An HTTP server answering every request with its id. `/slow?ms=N` waits N ms first.
pub struct TestBackend {
    pub id: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestBackend {
    pub async fn start(id: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let (id2, hits2) = (id.to_string(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (id, hits) = (id2.clone(), hits2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (id, hits) = (id.clone(), hits.clone());
                        async move {
                            hits.fetch_add(1, Ordering::Relaxed);
                            if req.uri().path().starts_with("/slow") {
                                let ms = req
                                    .uri()
                                    .query()
                                    .and_then(|q| q.strip_prefix("ms="))
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(1500);
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(id),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            id: id.to_string(),
            addr,
            hits,
            task,
        }
    }

    pub fn backend(&self) -> Backend {
        backend(&self.id, &self.addr.to_string())
    }
}

/// One [`TestBackend`] per id, in order.
pub async fn test_backends<const N: usize>(ids: [&str; N]) -> [TestBackend; N] {
    let mut started = Vec::with_capacity(N);
    for id in ids {
        started.push(TestBackend::start(id).await);
    }
    match started.try_into() {
        Ok(all) => all,
        Err(_) => unreachable!("one backend per id"),
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn backend(id: &str, addr: &str) -> Backend {
    Backend {
        id: ReplicaId::new(id).unwrap(),
        addr: addr.to_string(),
        worker: WorkerId::new("w1").unwrap(),
        draining: false,
    }
}

/// An address where nothing listens.
pub fn closed_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

// ---- messages ------------------------------------------------------------------------------

pub fn update(service: &str, version: u64, change: BackendChange) -> BackendUpdate {
    BackendUpdate {
        v: 1,
        service: ServiceName::new(service).unwrap(),
        version,
        ts_ms: 0,
        selection: Selection::RoundRobin,
        change,
    }
}

pub fn reset(service: &str, version: u64, route: Route, backends: Vec<Backend>) -> BackendUpdate {
    update(service, version, BackendChange::Reset { route, backends })
}

/// `web` on the default route (every request) with `backends`.
pub fn web_reset(version: u64, backends: Vec<Backend>) -> BackendUpdate {
    reset("web", version, Route::default(), backends)
}

pub fn add(version: u64, backends: Vec<Backend>) -> BackendUpdate {
    update("web", version, BackendChange::Add { backends })
}

pub fn route(host: Option<&str>, prefix: Option<&str>) -> Route {
    Route {
        host: host.map(Into::into),
        path_prefix: prefix.map(Into::into),
    }
}

pub fn ids(v: &[&str]) -> Vec<ReplicaId> {
    v.iter().map(|s| ReplicaId::new(*s).unwrap()).collect()
}

// ---- the world: nats, fake brain, proxy ----------------------------------------------------

/// The real `acs-proxy` binary, killed on drop. Its log goes to a file that is printed when
/// the test fails (`RUST_LOG` for it comes from `PROXY_LOG`, default `info`).
pub struct ProxyProc {
    pub child: Child,
    pub port: u16,
    pub log: std::path::PathBuf,
}

impl ProxyProc {
    /// Starts the proxy on a free port; tries another port if the proxy exits at once (another
    /// test may have bound the "free" port in between).
    /// `extra` arguments come last; a `--metrics-interval` there replaces the default 300ms.
    pub fn start(nats_url: &str, id: &str, extra: &[&str]) -> Self {
        for _ in 0..5 {
            let mut p = Self::start_once(nats_url, id, extra);
            std::thread::sleep(Duration::from_millis(100));
            if p.child.try_wait().ok().flatten().is_none() {
                return p;
            }
        }
        panic!("acs-proxy did not stay up");
    }

    pub fn start_once(nats_url: &str, id: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let log =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("acs-proxy-{port}.log"));
        let interval: &[&str] = if extra.contains(&"--metrics-interval") {
            &[]
        } else {
            &["--metrics-interval", "300ms"]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_acs-proxy"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--nats",
                nats_url,
                "--nats-insecure",
            ])
            .args(["--prefix", "acs", "--id", id, "--threads", "1"])
            .args(interval)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("PROXY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("proxy log file"))
            .spawn()
            .expect("start acs-proxy");
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), DEADLINE).expect("proxy listens");
        Self { child, port, log }
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<_> = text.lines().collect();
            eprintln!("---- acs-proxy log (last 200 lines) ----");
            for l in &lines[lines.len().saturating_sub(200)..] {
                eprintln!("{l}");
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A stand-in for vim-brain's sync responder: answers `acs.sync.backends` with the resets it
/// holds, and counts the requests.
#[derive(Clone, Default)]
pub struct FakeBrain {
    pub state: Arc<Mutex<BTreeMap<String, BackendUpdate>>>,
    pub syncs: Arc<AtomicU64>,
}

impl FakeBrain {
    pub async fn start(nc: &async_nats::Client) -> Self {
        let brain = FakeBrain::default();
        let mut sub = nc
            .subscribe(Subjects::default().backends_sync())
            .await
            .unwrap();
        nc.flush().await.unwrap();
        let (b, nc) = (brain.clone(), nc.clone());
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let updates: Vec<_> = b.state.lock().unwrap().values().cloned().collect();
                b.syncs.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = msg.reply {
                    let _ = nc
                        .publish(reply, encode(&SyncReply { v: 1, updates }).into())
                        .await;
                }
            }
        });
        brain
    }

    pub fn set(&self, u: BackendUpdate) {
        self.state.lock().unwrap().insert(u.service.to_string(), u);
    }

    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
}

/// Fields drop in order: the proxy goes before the NATS server it talks to.
pub struct World {
    pub proxy: ProxyProc,
    pub http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    pub brain: FakeBrain,
    pub nc: async_nats::Client,
    pub _nats: NatsServer,
}

impl World {
    /// Starts NATS, the fake brain (holding `initial` resets) and the proxy, and waits until
    /// the proxy has synced.
    pub async fn start(initial: Vec<BackendUpdate>) -> Self {
        Self::start_with(initial, &[]).await
    }

    /// As [`World::start`], with more proxy arguments.
    pub async fn start_with(initial: Vec<BackendUpdate>, proxy_args: &[&str]) -> Self {
        let (nats, nc) = nats_and_client().await;
        let brain = FakeBrain::start(&nc).await;
        for u in initial {
            brain.set(u);
        }
        let proxy = ProxyProc::start(&nats.url(), "p1", proxy_args);
        let http = Client::builder(TokioExecutor::new()).build_http();
        let w = World {
            _nats: nats,
            nc,
            brain,
            proxy,
            http,
        };
        w.until("the proxy asks for a sync", || async {
            w.brain.syncs() >= 1
        })
        .await;
        w
    }

    pub async fn publish(&self, u: &BackendUpdate) {
        self.publish_raw(&Subjects::default().backends(&u.service), encode(u))
            .await;
    }

    pub async fn publish_raw(&self, subject: &str, payload: Vec<u8>) {
        self.nc
            .publish(subject.to_string(), payload.into())
            .await
            .unwrap();
        self.nc.flush().await.unwrap();
    }

    /// GET through the proxy with a Host header: `(status, body)`; `(0, error)` on failure.
    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let req = hyper::Request::get(format!("http://127.0.0.1:{}{path}", self.proxy.port))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(15), self.http.request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
            Ok(Err(e)) => (0, e.to_string()),
            Err(_) => (0, "timeout".into()),
        }
    }

    /// GET through the proxy for an answer with a JSON body (the proxy's own errors): the
    /// response and its body, parsed.
    pub async fn get_json(
        &self,
        host: &str,
        path: &str,
    ) -> (hyper::Response<()>, serde_json::Value) {
        let req = hyper::Request::get(format!("http://127.0.0.1:{}{path}", self.proxy.port))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self.http.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body).expect("a JSON body");
        (hyper::Response::from_parts(parts, ()), json)
    }

    /// Polls `cond` until it holds, or panics after [`DEADLINE`].
    pub async fn until<F, Fut>(&self, what: &str, cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        acs_testkit::poll::until(what, DEADLINE, cond).await
    }

    /// A `GET path` through the proxy on a connection of its own, in a task of its own (for
    /// requests that stay in flight while the test goes on): `(status, body)`.
    pub fn spawn_get(&self, path: &str) -> tokio::task::JoinHandle<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.proxy.port);
        tokio::spawn(async move {
            let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let req = hyper::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = http.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// Polls until `n` GETs in a row all answer with a body in `want`.
    pub async fn until_served_by(&self, host: &str, path: &str, want: &[&str], n: usize) {
        let what = format!("{host}{path} is served only by {want:?}");
        self.until(&what, || async {
            for _ in 0..n {
                let (status, body) = self.get(host, path).await;
                if status != 200 || !want.contains(&body.as_str()) {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Hit counts by backend over `n` GETs.
    pub async fn spread(&self, host: &str, path: &str, n: usize) -> HashMap<String, usize> {
        let mut hits = HashMap::new();
        for _ in 0..n {
            let (status, body) = self.get(host, path).await;
            assert_eq!(status, 200, "{body}");
            *hits.entry(body).or_default() += 1;
        }
        hits
    }

    pub async fn metrics_sub(&self) -> async_nats::Subscriber {
        let s = self
            .nc
            .subscribe(Subjects::default().proxy_metrics(&ProxyId::new("p1").unwrap()))
            .await
            .unwrap();
        self.nc.flush().await.unwrap();
        s
    }
}

pub async fn next_metrics(sub: &mut async_nats::Subscriber) -> ProxyMetrics {
    let msg = tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("metrics arrive")
        .unwrap();
    decode(&msg.payload).expect("metrics decode and validate")
}

/// A nats-server and a client on it. Retried with a new server when the connection fails: with
/// tests running in parallel, the port the server was given may have been taken in between.
pub async fn nats_and_client() -> (NatsServer, async_nats::Client) {
    for _ in 0..5 {
        let nats = NatsServer::start();
        let connect = async_nats::ConnectOptions::new().connect(nats.url());
        if let Ok(Ok(nc)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
            return (nats, nc);
        }
    }
    panic!("could not start and reach a nats-server");
}

// ---- tests ---------------------------------------------------------------------------------
