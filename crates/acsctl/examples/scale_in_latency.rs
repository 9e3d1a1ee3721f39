//! P4 in docs/PERFORMANCE.md: scale-in request -> replica drained, stopped and gone, on a real
//! local cluster (process runtime), under steady load through the proxy with requests in flight.
//!
//! Each round scales `web` 1 -> 2 (not timed), lets the new replica take traffic, then asks
//! 2 -> 1 and times, from the request, what it sees on `acs.>`:
//! - `drain`: the brain's drain decision;
//! - `drained`: the proxy's `BackendDrained` event for the victim;
//! - `stop`: the brain's stop decision (its reason says which evidence ended the drain);
//! - `exited`: the worker's replica event (the process is gone);
//! - `gone`: exited, and removed from the proxies' backend set (the later of the two).
//!
//! ```text
//! cargo build --release --workspace --bins --examples
//! target/release/examples/scale_in_latency [ROUNDS] [RPS]
//! ```
//!
//! `bench/scale-in.sh` wraps it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_events::{
    decode, BackendChange, BackendDrained, BackendUpdate, Decision, DecisionAction, ReplicaEvent,
    ReplicaId, ReplicaState,
};
use acs_testkit::TempDir;
use acsctl::load::{self, LoadOptions};
use futures::StreamExt;

const SERVICES: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "2"]
route = { path_prefix = "/" }
selection = "round_robin"
policy = { min_replicas = 1, max_replicas = 8, drain_timeout = "10s", stop_grace = "5s" }
"#;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("dir");
    if dir.ends_with("examples") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The nearest-rank percentile `q` of `v` (NaN when empty).
fn pct(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    acs_node::percentile(&v, q).unwrap_or(f64::NAN)
}

/// Milliseconds since the round's scale-in request at which each step was seen.
#[derive(Default, Debug)]
struct Round {
    drain: Option<f64>,
    drained: Option<f64>,
    stop: Option<f64>,
    exited: Option<f64>,
    removed: Option<f64>,
    reason: String,
}

/// Folds one message of the trail into the round: the drain and stop decisions, the drained
/// event, the exit and the removal from the backends of the replica chosen (`victim`).
fn note(out: &mut Round, victim: &mut Option<ReplicaId>, m: &async_nats::Message, at: f64) {
    let s = m.subject.as_str();
    if s.starts_with("acs.events.decision.") {
        let Ok(d) = decode::<Decision>(&m.payload) else {
            return;
        };
        match d.action {
            DecisionAction::Drain { replica, .. } if victim.is_none() => {
                *victim = Some(replica);
                out.drain = Some(at);
            }
            DecisionAction::Stop { replica, .. } if Some(&replica) == victim.as_ref() => {
                out.stop = Some(at);
                out.reason = d.reason;
            }
            _ => {}
        }
    } else if s.starts_with("acs.events.drained.") {
        if let Ok(d) = decode::<BackendDrained>(&m.payload) {
            if Some(&d.replica) == victim.as_ref() && out.drained.is_none() {
                out.drained = Some(at);
            }
        }
    } else if s.starts_with("acs.events.replica.") {
        if let Ok(e) = decode::<ReplicaEvent>(&m.payload) {
            if Some(&e.replica.id) == victim.as_ref() && e.replica.state == ReplicaState::Exited {
                out.exited = Some(at);
            }
        }
    } else if s.starts_with("acs.backends.") && out.stop.is_some() {
        if let (Ok(u), Some(v)) = (decode::<BackendUpdate>(&m.payload), victim.as_ref()) {
            let gone = match &u.change {
                BackendChange::Remove { ids } => ids.contains(v),
                BackendChange::Reset { backends, .. } => !backends.iter().any(|b| &b.id == v),
                _ => false,
            };
            if gone && out.removed.is_none() {
                out.removed = Some(at);
            }
        }
    }
}

/// The table of every step's latency, and the load's figures.
fn print_report(results: &[Round], rounds: usize, rps: f64, report: &load::LoadReport) {
    let col =
        |f: &dyn Fn(&Round) -> Option<f64>| -> Vec<f64> { results.iter().filter_map(f).collect() };
    let rows: [(&str, Vec<f64>); 5] = [
        ("drain decision", col(&|r| r.drain)),
        ("proxy BackendDrained event", col(&|r| r.drained)),
        ("stop decision", col(&|r| r.stop)),
        ("replica exited", col(&|r| r.exited)),
        (
            "gone (exited + removed from backends)",
            col(&|r| Some(r.exited?.max(r.removed?))),
        ),
    ];
    let by_event = results
        .iter()
        .filter(|r| r.reason.contains("drained event"))
        .count();
    println!();
    println!("P4 scale-in 2 -> 1, process runtime, {rounds} rounds, {rps} req/s through the proxy");
    println!();
    println!("| ms after the scale-in request | n | p50 | p90 | max |");
    println!("|---|---|---|---|---|");
    for (name, v) in &rows {
        if v.is_empty() {
            println!("| {name} | 0 | - | - | - |");
        } else {
            println!(
                "| {name} | {} | {:.1} | {:.1} | {:.1} |",
                v.len(),
                pct(v, 0.5),
                pct(v, 0.9),
                pct(v, 1.0)
            );
        }
    }
    println!();
    println!("drains ended by the BackendDrained event: {by_event}/{rounds}");
    println!("load: {report}");
    println!("failed requests: {}", report.failed);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let rps: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50.0);

    let tmp = TempDir::new("scale-in-bench");
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, SERVICES)?;
    let mut opts = ClusterOptions::with_free_ports(tmp.path().join("acs"));
    opts.services = services;
    opts.bin_dir = Some(bin_dir());
    opts.workers = 1;
    opts.max_replicas = 4;
    let mut cluster = LocalCluster::start(opts).await?;
    let web = |s: &acs_events::StatusReply| s.services[0].clone();
    cluster
        .wait_for_status(Duration::from_secs(60), |s| web(s).running == 1)
        .await?;
    let nats = cluster.operator_client().await?;
    let mut trail = nats.subscribe("acs.>").await?;
    nats.flush().await?;

    let (stop_load, rx) = tokio::sync::oneshot::channel::<()>();
    let load_url = format!("{}/whoami", cluster.proxy_url());
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

    let mut results = Vec::new();
    for round in 1..=rounds {
        let r = nats
            .request("acs.cmd.scale", r#"{"service":"web","replicas":2}"#.into())
            .await?;
        anyhow::ensure!(serde_json::from_slice::<serde_json::Value>(&r.payload)?["ok"] == true);
        cluster
            .wait_for_status(Duration::from_secs(60), |s| {
                web(s).backends.len() == 2 && web(s).running == 2
            })
            .await?;
        // Traffic on both, then forget what came before the scale-in.
        tokio::time::sleep(Duration::from_millis(700)).await;
        while futures::FutureExt::now_or_never(trail.next())
            .flatten()
            .is_some()
        {}

        let t0 = Instant::now();
        let r = nats
            .request("acs.cmd.scale", r#"{"service":"web","replicas":1}"#.into())
            .await?;
        anyhow::ensure!(serde_json::from_slice::<serde_json::Value>(&r.payload)?["ok"] == true);
        let mut out = Round::default();
        let mut victim = None;
        let deadline = t0 + Duration::from_secs(30);
        while out.exited.is_none() || out.removed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, trail.next())
                .await
                .map_err(|_| anyhow::anyhow!("round {round}: not gone in 30 s: {out:?}"))?;
            let Some(m) = m else {
                anyhow::bail!("trail ended")
            };
            let at = t0.elapsed().as_secs_f64() * 1000.0;
            note(&mut out, &mut victim, &m, at);
        }
        eprintln!(
            "round {round}: drain {:.1} drained-event {:.1} stop {:.1} exited {:.1} removed {:.1} ms ({})",
            out.drain.unwrap_or(f64::NAN), out.drained.unwrap_or(f64::NAN), out.stop.unwrap_or(f64::NAN),
            out.exited.unwrap_or(f64::NAN), out.removed.unwrap_or(f64::NAN), out.reason
        );
        results.push(out);
    }
    let _ = stop_load.send(());
    let report = load.await??;
    cluster.stop();

    print_report(&results, rounds, rps, &report);
    Ok(())
}
