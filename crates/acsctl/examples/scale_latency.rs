//! Measures, on a real local cluster (process runtime):
//! - the time from a manual scale request (`acs.cmd.scale`, 1 -> 2) to the new replica answering
//!   through the proxy;
//! - the time from a scale-in request (2 -> 1) until the drained replica is stopped and gone;
//! - failed requests through the proxy while all of that happens, under steady load.
//!
//! ```text
//! cargo build --release --workspace --bins --examples
//! target/release/examples/scale_latency [ROUNDS] [RPS]
//! ```
//!
//! `bench/scale.sh` wraps it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_testkit::TempDir;
use acsctl::load::{self, LoadOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "1"]
route = { path_prefix = "/" }
selection = "round_robin"
policy = { min_replicas = 1, max_replicas = 8, drain_timeout = "10s", stop_grace = "5s" }
"#;

fn bin_dir() -> PathBuf {
    // target/release/examples/scale_latency -> target/release
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("dir");
    if dir.ends_with("examples") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The nearest-rank percentile `q` of `v` (NaN when empty).
fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    acs_node::percentile(v, q).unwrap_or(f64::NAN)
}

/// Asks the proxy until a replica that was not in `before` answers; the time since `t0`.
async fn new_replica_serving(
    http: &Client<HttpConnector, Empty<Bytes>>,
    whoami: &str,
    before: &BTreeSet<String>,
    t0: Instant,
) -> anyhow::Result<Duration> {
    Ok(loop {
        let resp = http.get(whoami.parse()?).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        if let Some(id) = load::instance_of(&body) {
            if !before.contains(&id) {
                break t0.elapsed();
            }
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "new replica never served"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let rps: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50.0);

    let tmp = TempDir::new("scale-bench");
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES)?;
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services;
    opts.bin_dir = Some(bin_dir());
    opts.workers = 2;
    opts.max_replicas = 4;
    let mut cluster = LocalCluster::start(opts).await?;
    let web = |s: &acs_events::StatusReply| s.services[0].clone();
    cluster
        .wait_for_status(Duration::from_secs(60), |s| web(s).running == 1)
        .await?;
    let nats = cluster.operator_client().await?;
    let whoami = format!("{}/whoami", cluster.proxy_url());

    // Steady load for the whole run; its failures are the figure that must be 0.
    let (stop_load, rx) = tokio::sync::oneshot::channel::<()>();
    let load_url = whoami.clone();
    let load = tokio::spawn(async move {
        let opts = LoadOptions::new(load_url, rps, Duration::from_secs(3600));
        load::run(
            &opts,
            async {
                let _ = rx.await;
            },
            |_| {},
        )
        .await
    });

    let http: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut out_ms = Vec::new();
    let mut in_ms = Vec::new();
    for round in 1..=rounds {
        let before: BTreeSet<String> = web(&cluster.status().await?)
            .backends
            .iter()
            .map(|b| b.id.to_string())
            .collect();
        let t0 = Instant::now();
        let r = nats
            .request("acs.cmd.scale", r#"{"service":"web","replicas":2}"#.into())
            .await?;
        anyhow::ensure!(serde_json::from_slice::<serde_json::Value>(&r.payload)?["ok"] == true);
        let serving = new_replica_serving(&http, &whoami, &before, t0).await?;
        out_ms.push(serving.as_secs_f64() * 1000.0);

        let t1 = Instant::now();
        let r = nats
            .request("acs.cmd.scale", r#"{"service":"web","replicas":1}"#.into())
            .await?;
        anyhow::ensure!(serde_json::from_slice::<serde_json::Value>(&r.payload)?["ok"] == true);
        cluster
            .wait_for_status(Duration::from_secs(60), |s| {
                web(s).backends.len() == 1 && web(s).replicas.len() == 1
            })
            .await?;
        in_ms.push(t1.elapsed().as_secs_f64() * 1000.0);
        eprintln!(
            "round {round}: scale-out to serving {:.0} ms, scale-in drained+stopped {:.0} ms",
            out_ms[round - 1],
            in_ms[round - 1]
        );
    }
    let _ = stop_load.send(());
    let report = load.await??;
    cluster.stop();

    println!();
    println!("manual scale 1->2, request to new replica serving via proxy ({rounds} rounds):");
    println!(
        "  p50 {:.0} ms   p95 {:.0} ms   max {:.0} ms",
        pct(&mut out_ms, 0.5),
        pct(&mut out_ms, 0.95),
        pct(&mut out_ms, 1.0)
    );
    println!("manual scale 2->1, request to replica drained, stopped and gone from status:");
    println!(
        "  p50 {:.0} ms   p95 {:.0} ms   max {:.0} ms",
        pct(&mut in_ms, 0.5),
        pct(&mut in_ms, 0.95),
        pct(&mut in_ms, 1.0)
    );
    println!("steady load through the proxy during all of it ({rps} req/s):");
    println!("  {report}");
    println!("  failed requests: {}", report.failed);
    Ok(())
}
