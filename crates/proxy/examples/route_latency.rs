//! Route propagation latency: how long from publishing a backend event on NATS until the proxy
//! routes by it.
//!
//! Publishes a `reset` for `--service` with the `--backend`s given (and waits until the proxy
//! answers through it), then, per sample: starts a fresh in-process HTTP backend, publishes an
//! `add` for it, and hammers the proxy until that backend answers; the time from publish to the
//! first answer is one sample. The backend is then removed again. Prints p50/p99/max in ms.
//!
//! ```text
//! cargo run --release -p acs-proxy --example route_latency -- \
//!     --nats nats://127.0.0.1:4222 --proxy 127.0.0.1:8080 --service bench \
//!     --backend be1=127.0.0.1:9001 --samples 50
//! ```
//! `--setup-only` publishes the reset, waits until it routes, and exits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use acs_events::{
    encode, Backend, BackendChange, BackendUpdate, ReplicaId, Route, Selection, ServiceName,
    Subjects, WorkerId,
};
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    #[arg(long, env = "ACS_PREFIX", default_value = "acs")]
    prefix: String,
    /// The proxy's listen address.
    #[arg(long)]
    proxy: SocketAddr,
    #[arg(long, default_value = "bench")]
    service: ServiceName,
    /// Existing backends for the reset, as `id=host:port` (repeatable).
    #[arg(long = "backend", value_parser = parse_backend)]
    backends: Vec<Backend>,
    /// Path requested through the proxy.
    #[arg(long, default_value = "/whoami")]
    path: String,
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Publish the reset, wait until it routes, exit.
    #[arg(long)]
    setup_only: bool,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    let (id, addr) = s.split_once('=').ok_or("expected id=host:port")?;
    Ok(Backend {
        id: ReplicaId::new(id).map_err(|e| e.to_string())?,
        addr: addr.to_string(),
        worker: WorkerId::new("bench").unwrap(),
        draining: false,
    })
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn get(http: &Http, url: &str) -> Option<(u16, Bytes)> {
    let req = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), http.request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.into_body().collect().await.ok()?.to_bytes()))
}

/// A backend answering every request with its id.
async fn tiny_backend(id: String) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let id = id.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = Bytes::from(id.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    acs_node::percentile(sorted, q).unwrap_or(0.0)
}

/// Publishes `reset` until the proxy answers on `url`, for at most 30 s.
async fn publish_until_routed(
    nc: &async_nats::Client,
    http: &Http,
    url: &str,
    subject: &str,
    reset: &BackendUpdate,
    args: &Args,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Re-published until it routes (the proxy may not be subscribed yet); stale repeats are
        // ignored by the proxy.
        nc.publish(subject.to_string(), encode(reset).into())
            .await?;
        nc.flush().await?;
        if let Some((200, _)) = get(http, url).await {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the proxy at {} never routed {} after the reset",
                args.proxy,
                args.service
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let subjects = Subjects::new(args.prefix.clone()).map_err(anyhow::Error::msg)?;
    let nc = async_nats::connect(&args.nats)
        .await
        .context("connect to NATS")?;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{}{}", args.proxy, args.path);
    let subject = subjects.backends(&args.service);

    // Versions seeded from the clock, like the brain's: later runs always win.
    let mut version = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as u64;
    let update = |version: u64, change: BackendChange| BackendUpdate {
        v: 1,
        service: args.service.clone(),
        version,
        ts_ms: 0,
        selection: Selection::RoundRobin,
        change,
    };

    let reset = update(
        version,
        BackendChange::Reset {
            route: Route::default(),
            backends: args.backends.clone(),
        },
    );
    publish_until_routed(&nc, &http, &url, &subject, &reset, &args).await?;
    eprintln!(
        "route_latency: {} routes through {} (version {version})",
        args.service, args.proxy
    );
    if args.setup_only {
        return Ok(());
    }

    let mut samples = Vec::with_capacity(args.samples);
    let mut requests = 0u64;
    for k in 0..args.samples {
        let id = format!("rl-{k}");
        let (addr, task) = tiny_backend(id.clone()).await?;
        let b = Backend {
            id: ReplicaId::new(&id)?,
            addr: addr.to_string(),
            worker: WorkerId::new("bench")?,
            draining: false,
        };
        version += 1;
        let add = encode(&update(version, BackendChange::Add { backends: vec![b] }));
        let start = Instant::now();
        nc.publish(subject.clone(), add.into()).await?;
        nc.flush().await?;
        loop {
            requests += 1;
            if let Some((200, body)) = get(&http, &url).await {
                if body.as_ref() == id.as_bytes() {
                    break;
                }
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("backend {id} never answered through the proxy");
            }
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        version += 1;
        let remove = encode(&update(
            version,
            BackendChange::Remove {
                ids: vec![ReplicaId::new(&id)?],
            },
        ));
        nc.publish(subject.clone(), remove.into()).await?;
        nc.flush().await?;
        // Let the removal land before the backend goes away.
        tokio::time::sleep(Duration::from_millis(20)).await;
        task.abort();
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99, max) = (
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
    );
    println!(
        "route_latency samples={} p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3} requests={requests}",
        samples.len()
    );
    Ok(())
}
