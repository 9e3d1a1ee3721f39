//! Debian's real `prometheus` scrapes a local cluster with the repo's `config/prometheus.yml`
//! (unchanged: it sits in `<tmp>/config/`, the cluster dir is `<tmp>/.acs`, as `../.acs` in the
//! config expects), and its HTTP API shows every target up and one acs metric per component.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use acs_cluster::{ClusterOptions, LocalCluster};
use acs_testkit::TempDir;

const WEB: &str = r#"
[[service]]
name = "web"
command = ["demo-web", "--port", "{port}", "--id", "{replica}", "--bind", "127.0.0.1", "--work-ms", "1"]
route = { path_prefix = "/" }
policy = { min_replicas = 1, max_replicas = 2 }
"#;

/// `prometheus` on PATH or where Debian puts it.
fn prometheus_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file());
    let bin = on_path.unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        bin.is_file(),
        "prometheus not found; run scripts/install-deps.sh (Debian package `prometheus`)"
    );
    bin
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One instant query: each series' labels and value.
async fn query(prom: SocketAddr, q: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
    let (status, body) =
        acs_testkit::http::get(prom, &format!("/api/v1/query?query={}", urlencode(q))).await?;
    if status != 200 {
        return Err(format!("{q}: HTTP {status}: {body}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{q}: {e}: {body}"))?;
    let result = v["data"]["result"]
        .as_array()
        .ok_or_else(|| format!("{q}: no result in {body}"))?;
    Ok(result
        .iter()
        .map(|r| {
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            (r["metric"].clone(), value)
        })
        .collect())
}

/// Polls `q` until `ok` holds for its answer; panics with the last answer after `timeout`.
async fn wait_query(
    prom: SocketAddr,
    q: &str,
    ok: impl Fn(&[(serde_json::Value, f64)]) -> bool,
) -> Vec<(serde_json::Value, f64)> {
    let got = acs_testkit::poll::eventually(
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            match query(prom, q).await {
                Ok(r) if ok(&r) => Ok(r),
                Ok(r) => Err(format!("{q} answered {r:?}")),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    got.unwrap_or_else(|e| panic!("Prometheus never saw what was expected: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_component_of_a_local_cluster() {
    for bin in [
        "vim-brain",
        "vmm-worker",
        "acs-proxy",
        "acs-monitor",
        "demo-web",
    ] {
        acs_testkit::workspace_bin(bin);
    }
    let prometheus = prometheus_bin();
    let tmp = TempDir::new("prom");
    let repo_config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/prometheus.yml");
    std::fs::create_dir_all(tmp.path().join("config")).unwrap();
    let config = tmp.path().join("config/prometheus.yml");
    std::fs::copy(&repo_config, &config).unwrap();

    let mut o = ClusterOptions::with_free_ports(tmp.path().join(".acs"));
    o.workers = 1;
    o.max_replicas = 2;
    let services = tmp.path().join("services.toml");
    std::fs::write(&services, WEB).unwrap();
    o.services = services;
    let cluster = LocalCluster::start(o)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    cluster
        .wait_for_status(Duration::from_secs(60), |s| {
            s.services
                .iter()
                .any(|x| x.name.as_str() == "web" && x.running >= 1)
        })
        .await
        .unwrap_or_else(|e| panic!("web never ran: {e}"));

    let targets = cluster.metrics_targets().to_vec();
    let components: BTreeSet<&str> = targets.iter().map(|t| t.component.as_str()).collect();
    assert_eq!(
        components,
        BTreeSet::from(["acs-monitor", "acs-proxy", "vim-brain", "vmm-worker"]),
        "{targets:?}"
    );
    // Without the token a scrape is refused.
    let (status, _) = acs_testkit::http::get(targets[0].addr, "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 401, "a scrape without the token");

    // Some traffic through the proxy (polled: the proxy learns the backend a moment later).
    let mut served = 0;
    for _ in 0..200 {
        if let Ok((200, _)) = acs_testkit::http::get(cluster.proxy_addr(), "/whoami").await {
            served += 1;
            if served == 20 {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(served, 20, "the proxy serves web");

    let port = acs_testkit::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(tmp.path().join("prometheus.log")).unwrap();
    let mut child = tokio::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            tmp.path().join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");

    let n = targets.len();
    let up = wait_query(addr, "up", |r| {
        r.len() == n && r.iter().all(|(_, v)| *v == 1.0)
    })
    .await;
    let names: BTreeSet<String> = up
        .iter()
        .map(|(m, _)| m["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        names,
        targets
            .iter()
            .map(|t| t.name.clone())
            .collect::<BTreeSet<_>>(),
        "{up:?}"
    );

    // One metric per component, each with a value that says it works.
    wait_query(addr, "acs_monitor_ingested_messages_total", |r| {
        r.len() == 1 && r[0].1 >= 1.0
    })
    .await;
    wait_query(addr, "acs_monitor_alarm_leader", |r| {
        r.len() == 1 && r[0].1 == 1.0
    })
    .await;
    wait_query(addr, "acs_brain_leader", |r| r.len() == 1 && r[0].1 == 1.0).await;
    wait_query(addr, "sum(acs_brain_decisions_total)", |r| {
        r.len() == 1 && r[0].1 >= 1.0
    })
    .await;
    wait_query(addr, r#"acs_worker_replicas{state="healthy"}"#, |r| {
        r.len() == 1 && r[0].1 >= 1.0
    })
    .await;
    wait_query(
        addr,
        r#"sum(acs_worker_commands_total{result="launched"})"#,
        |r| r.len() == 1 && r[0].1 >= 1.0,
    )
    .await;
    wait_query(
        addr,
        r#"sum(acs_proxy_requests_total{service="web"})"#,
        |r| r.len() == 1 && r[0].1 >= 20.0,
    )
    .await;
    wait_query(
        addr,
        r#"acs_proxy_request_duration_seconds_count{service="web"}"#,
        |r| r.len() == 1 && r[0].1 >= 20.0,
    )
    .await;
    wait_query(
        addr,
        r#"acs_proxy_backends{service="web",state="active"}"#,
        |r| r.len() == 1 && r[0].1 >= 1.0,
    )
    .await;

    child.kill().await.ok();
    drop(cluster);
}
