//! `acsctl up`: a [`LocalCluster`] in the foreground until Ctrl-C / SIGTERM.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use acs_cluster::{ClusterOptions, LocalCluster};

pub async fn run(opts: ClusterOptions, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    tokio::pin!(shutdown);
    eprintln!(
        "starting local cluster: nats-server on 127.0.0.1:{}, vim-brain, {} worker(s), proxy on {} (logs in {}/logs)",
        opts.nats_port,
        opts.workers,
        opts.proxy_listen,
        opts.dir.display()
    );
    let start = LocalCluster::start(opts);
    let mut cluster = tokio::select! {
        c = start => c?,
        _ = &mut shutdown => {
            // Dropping the start future dropped the half-started cluster, which stopped it.
            eprintln!("interrupted while starting; stopped what had started");
            return Ok(());
        }
    };

    // Give the services a moment to reach their desired count, so the first status is useful.
    let _ = tokio::select! {
        r = cluster.wait_for_status(Duration::from_secs(30), |s| {
            s.services.iter().all(|svc| svc.running >= svc.desired.min(1))
        }) => r.ok(),
        _ = &mut shutdown => None,
    };
    if let Ok(s) = cluster.status().await {
        println!("{}", crate::status::render(&s));
    }
    println!("{}", next_steps(&cluster));

    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                for exit in cluster.check_children() {
                    eprintln!("!! {exit}");
                }
            }
        }
    }

    eprintln!(
        "stopping: proxy, brain, workers (they stop their replicas, up to {:?}), nats-server...",
        cluster.options().worker_stop_timeout
    );
    tokio::task::spawn_blocking(move || {
        cluster.stop();
        for exit in cluster.check_children() {
            tracing::debug!(name = %exit.name, status = %exit.status, "stopped");
        }
    })
    .await
    .map_err(|e| Error::Failed(format!("shutdown task failed: {e}")))?;
    eprintln!("stopped");
    Ok(())
}

fn next_steps(c: &LocalCluster) -> String {
    let proxy = c.proxy_url();
    let nats = c.nats_url();
    let prefix = c.options().prefix.clone();
    let env = if nats == "nats://127.0.0.1:4222" && prefix == "acs" {
        String::new()
    } else {
        format!("  export NATS_URL={nats} ACS_PREFIX={prefix}\n")
    };
    format!(
        "\
Local cluster is up. Try, in another terminal:

{env}  curl {proxy}/whoami          # a replica answers through the proxy
  acsctl status                # services, replicas, workers
  acsctl watch --no-metrics    # decisions, backend changes, replica events (drop the flag for metrics)
  acsctl scale web 3           # pin web at 3 replicas; `acsctl scale web auto` hands it back
  acsctl load {proxy}/whoami --rps 200 --duration 60s   # then watch web scale out
  # history and statistics (min/max/avg/last/p95, series): acs-monitor answers on NATS {stats}, and
  curl -H \"Authorization: Bearer $(cat {token})\" '{rest}?scope=worker&id=w1&metric=cpu&window=1h&step=1m'
{metrics}
Logs: {logs}/<name>.log    Ctrl-C stops everything.",
        logs = c.dir().join("logs").display(),
        metrics = metrics_lines(c),
        token = c.monitor_token_file().display(),
        rest = c.monitor_stats_url(),
        stats = acs_events::Subjects::new(prefix.clone()).map(|s| s.monitor_stats()).unwrap_or_default(),
    )
}

/// Where each component's Prometheus `/metrics` is, and how to scrape it.
fn metrics_lines(c: &LocalCluster) -> String {
    let token = c.metrics_token_file();
    let mut out = format!(
        "  # Prometheus: prometheus --config.file=config/prometheus.yml (targets in {}), or by hand:\n",
        c.metrics_targets_file().display()
    );
    for t in c.metrics_targets() {
        out.push_str(&format!(
            "  curl -H \"Authorization: Bearer $(cat {})\" http://{}/metrics   # {}\n",
            token.display(),
            t.addr,
            t.name
        ));
    }
    out
}
